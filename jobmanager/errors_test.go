package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestClassString(t *testing.T) {
	assert.Equal(t, "data", ClassData.String())
	assert.Equal(t, "technical", ClassTechnical.String())
	assert.Equal(t, "auth", ClassAuth.String())
	assert.Equal(t, "", Class(0).String())
	assert.Equal(t, "Class(9)", Class(9).String())
}

func TestClassifyAndAmbiguousOutsideTheClient(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name      string
		err       error
		class     Class
		ambiguous bool
	}{
		{"nil", nil, 0, false},
		{"plain error", errors.New("boom"), ClassData, false},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), ClassTechnical, false},
		{"deadline", context.DeadlineExceeded, ClassTechnical, false},
		{"wrapped *Error", fmt.Errorf("bridge: %w", &Error{Op: "submit", StatusCode: 502}), ClassTechnical, true},
		{"unknown-stage transport error", &Error{Op: "submit", Err: errors.New("EOF")}, ClassTechnical, true},
		{"unknown-stage refused", &Error{Op: "submit", Err: refused}, ClassTechnical, false},
		{"unknown-stage DNS", &Error{Op: "submit", Err: &net.DNSError{Err: "no such host", Name: "jm"}}, ClassTechnical, false},
		{"status request never ambiguous", &Error{Op: "batch", StatusCode: 504}, ClassTechnical, false},
		{"503 with retry-after", &Error{Op: "submit", StatusCode: 503, RetryAfter: time.Second}, ClassTechnical, false},
		{"429", &Error{Op: "submit", StatusCode: 429, RetryAfter: time.Second}, ClassTechnical, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.class, Classify(tt.err), tt.name)
		assert.Equal(t, tt.ambiguous, Ambiguous(tt.err), tt.name)
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Op: "submit", URL: "http://jm/m/api/v2.0/jobs/create", StatusCode: 429, RetryAfter: 3 * time.Second, Body: "slow down"}
	assert.Equal(t, `jobmanager: submit http://jm/m/api/v2.0/jobs/create: 429 Too Many Requests (retry after 3s); body: "slow down"`, e.Error())
	e = &Error{Op: "submit", URL: "u", StatusCode: 202, Err: ErrNoBatchID}
	assert.Equal(t, "jobmanager: submit u: 202 Accepted: answer has no BatchId", e.Error())
	assert.True(t, errors.Is(e, ErrNoBatchID))
	assert.False(t, errors.Is(e, ErrNotFound))
}

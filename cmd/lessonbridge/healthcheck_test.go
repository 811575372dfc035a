package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHealthcheck(t *testing.T) {
	code := http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"nats":"connecting"}` + "\n"))
	}))
	defer srv.Close()
	check := func(args ...string) error {
		return run(context.Background(), append([]string{"healthcheck"}, args...), &lockedBuffer{}, &lockedBuffer{})
	}

	err := check("--url", srv.URL+"/readyz")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "503 Service Unavailable")
	assert.Contains(t, err.Error(), `{"nats":"connecting"}`)
	code = http.StatusOK
	assert.NoError(t, check("--url", srv.URL+"/readyz"))

	// The environment of `run` in a container does not change what it asks.
	t.Setenv("LESSONBRIDGE_URL", "http://127.0.0.1:1/")
	t.Setenv("LESSONBRIDGE_JOBMANAGER_URL", "http://jobmanager-sim:8080")
	assert.NoError(t, check("--url", srv.URL+"/readyz"))

	assert.ErrorContains(t, check("--url", "127.0.0.1:8081/readyz"), `--url "127.0.0.1:8081/readyz": want an absolute http or https URL`)
	assert.ErrorContains(t, check("--url", srv.URL, "--timeout", "0s"), "--timeout 0s must be positive")
	assert.ErrorContains(t, check("extra"), `unexpected argument "extra"`)
}

package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Test with errors.Is; the client returns them inside an *Error.
var (
	// ErrNotFound matches an *Error for an HTTP 404. On a status request it can mean
	// "batch not known yet" (the guide: wait and retry; a persisting 404 means a wrong
	// batchId or mandator).
	ErrNotFound = errors.New("jobmanager: not found")
	// ErrUnauthorized matches an *Error for an HTTP 401 or 403.
	ErrUnauthorized = errors.New("jobmanager: unauthorized")
	// ErrNoBatchID is the Err of an *Error for a 2xx submit answer that carries no BatchId.
	// Such a submit may have been stored by JobManager (see Ambiguous).
	ErrNoBatchID = errors.New("jobmanager: answer has no BatchId")

	errBodyTooLarge = errors.New("jobmanager: response body too large")
)

// Op names of an *Error.
const (
	opSubmit  = "submit"
	opBatch   = "batch"
	opBatches = "batches"
)

// maxBodyExcerpt bounds Error.Body.
const maxBodyExcerpt = 512

// Error is the error of a JobManager call that got as far as choosing a URL: a transport
// failure (StatusCode 0), an HTTP status that is not success, or a success answer that
// could not be used. errors.Is(err, ErrNotFound) holds for a 404 and
// errors.Is(err, ErrUnauthorized) for a 401 or 403. No field ever holds the bearer token:
// a token echoed by the server is redacted from Body.
type Error struct {
	Op         string        // "submit", "batch" or "batches"
	URL        string        // the request URL
	StatusCode int           // the HTTP status; 0 when no answer was received
	Body       string        // an excerpt of the answer body (at most 512 bytes), token redacted
	RetryAfter time.Duration // from a Retry-After header (seconds or HTTP-date); 0 when absent
	Err        error         // the cause, if any: a transport error, ErrNoBatchID, a decode error

	stage stage // how far the call got when StatusCode is 0
}

// stage records how far a call got before a transport failure. The zero value (unknown)
// is what an *Error built outside this package has; it is judged by its Err.
type stage uint8

const (
	stageUnknown stage = iota
	stageToken         // the token source failed: nothing was sent
	stageNotSent       // the request was not completely written: the server cannot act on it
	stageSent          // the request was written, then the exchange failed
)

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("jobmanager: ")
	b.WriteString(e.Op)
	b.WriteByte(' ')
	b.WriteString(e.URL)
	if e.StatusCode != 0 {
		b.WriteString(": ")
		b.WriteString(strconv.Itoa(e.StatusCode))
		if t := http.StatusText(e.StatusCode); t != "" {
			b.WriteByte(' ')
			b.WriteString(t)
		}
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "jobmanager: "))
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.Body != "" {
		fmt.Fprintf(&b, "; body: %q", e.Body)
	}
	return b.String()
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether e matches ErrNotFound (404) or ErrUnauthorized (401, 403).
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden
	}
	return false
}

// Class is what a caller should do about an error.
type Class int

// The classes. The zero Class (String "") is returned for a nil error only.
const (
	// ClassData: the request or payload is wrong; fix it, do not retry it unchanged.
	ClassData Class = iota + 1
	// ClassTechnical: a transient or system problem; retry with backoff and a bounded count.
	ClassTechnical
	// ClassAuth: the token is missing, wrong or lacks rights; an operator must act.
	ClassAuth
)

// String returns "data", "technical", "auth", or "" for the zero Class.
func (c Class) String() string {
	switch c {
	case 0:
		return ""
	case ClassData:
		return "data"
	case ClassTechnical:
		return "technical"
	case ClassAuth:
		return "auth"
	}
	return "Class(" + strconv.Itoa(int(c)) + ")"
}

// Classify is the one place that decides whether a failed call may be retried.
//
// For an *Error (found with errors.As):
//   - transport errors and timeouts (StatusCode 0): ClassTechnical; a failing token source: ClassAuth
//   - 401, 403: ClassAuth
//   - 408, 425, 429, every 5xx: ClassTechnical
//   - 404 on a status request ("batch"): ClassTechnical (JobManager may not know the batch yet;
//     the caller bounds how long it waits); 404 on submit or list: ClassData
//   - every other 4xx (400, 409, 413, 415, 422, ...): ClassData
//   - a 2xx that could not be used (no BatchId, undecodable, too large) and 1xx/3xx: ClassTechnical
//
// For other errors: context.Canceled, context.DeadlineExceeded and network timeouts are
// ClassTechnical; anything else (such as an invalid argument) is ClassData: no blind retries.
// Classify(nil) is the zero Class.
func Classify(err error) Class {
	if err == nil {
		return 0
	}
	var e *Error
	if !errors.As(err, &e) {
		var ne net.Error
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
			(errors.As(err, &ne) && ne.Timeout()) {
			return ClassTechnical
		}
		return ClassData
	}
	code := e.StatusCode
	switch {
	case code == 0:
		if e.stage == stageToken {
			return ClassAuth
		}
		return ClassTechnical
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return ClassAuth
	case code == http.StatusRequestTimeout || code == http.StatusTooEarly || code == http.StatusTooManyRequests:
		return ClassTechnical
	case code == http.StatusNotFound && e.Op == opBatch:
		return ClassTechnical
	case code >= 400 && code < 500:
		return ClassData
	}
	return ClassTechnical
}

// Ambiguous reports whether a submit that returned err MAY nevertheless have been stored by
// JobManager, so that sending the same JobIDs again might fail with "Duplicate JobId".
//
// True: the request was written and then the exchange failed (reset, timeout awaiting the
// answer), 500, 502, 504 and other 5xx except 501 and a 503 with Retry-After, a 2xx
// answer without BatchId or with an unusable body.
// False: nothing or only part of the request reached the server (connection refused, DNS
// failure, dial timeout, token source failure), 1xx/3xx/4xx (including 408, 425 and 429),
// 501, a 503 with a Retry-After, errors of status or list requests (op "batch"/"batches",
// they change nothing), invalid arguments, and nil.
// When it cannot tell (an *Error built elsewhere), it answers true unless Err is a
// connection refusal or a DNS error: in doubt, in doubt.
func Ambiguous(err error) bool {
	var e *Error
	if err == nil || !errors.As(err, &e) {
		return false
	}
	if e.Op == opBatch || e.Op == opBatches {
		return false
	}
	code := e.StatusCode
	switch {
	case code == 0:
		switch e.stage {
		case stageToken, stageNotSent:
			return false
		case stageSent:
			return true
		}
		var dnsErr *net.DNSError
		return !errors.Is(e.Err, syscall.ECONNREFUSED) && !errors.As(e.Err, &dnsErr)
	case code >= 200 && code < 300:
		return true
	case code == http.StatusNotImplemented:
		return false
	case code == http.StatusServiceUnavailable:
		return e.RetryAfter <= 0
	case code >= 500:
		return true
	}
	return false
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP-date. Absent,
// invalid or past values give 0.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if n, err := strconv.ParseUint(h, 10, 64); err == nil {
		const maxSeconds = 7 * 24 * 3600 // anything longer is nonsense; cap it
		return time.Duration(min(n, maxSeconds)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := t.Sub(now); d > 0 {
			return d.Round(time.Second)
		}
	}
	return 0
}

// bodyExcerpt returns at most maxBodyExcerpt bytes of body with every occurrence of token
// replaced first, cut at a UTF-8 boundary.
func bodyExcerpt(body []byte, token string) string {
	s := string(body)
	if token != "" {
		s = strings.ReplaceAll(s, token, "[REDACTED]")
	}
	if len(s) > maxBodyExcerpt {
		cut := maxBodyExcerpt
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.TrimSpace(s)
}

package jobmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testToken = "s3cr3t-t0ken-value"

var testJobs = []Job{{JobID: "job-20251223-001", LektionList: []Lesson{{
	LektionID: "L-0001", Beginn: "2025-12-23T08:00:00Z", Ende: "2025-12-23T10:00:00Z", RessourceName: "Raum 1.01",
	Extra: map[string]json.RawMessage{"Kurs": json.RawMessage(`"MATH-3A"`)},
}}}}

// countingServer starts an httptest server running h and counts its requests.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func newClient(t *testing.T, base string, opts ...Option) *Client {
	t.Helper()
	c, err := New(base, opts...)
	require.NoError(t, err)
	return c
}

func TestSubmitSendsTheContractRequest(t *testing.T) {
	type seen struct {
		method, path, auth, ctype, ua string
		jobs                          []Job
	}
	got := make(chan seen, 1)
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var jobs []Job
		_ = json.Unmarshal(body, &jobs)
		got <- seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.Header.Get("User-Agent"), jobs}
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"BatchId":"12345","ImportStatus":"AwaitingLessonCreation"}`)
	})
	c := newClient(t, srv.URL+"/", WithToken(testToken), WithUserAgent("test-agent/1"))

	st, err := c.Submit(context.Background(), "zh-kanti", ActionUpdate, testJobs)
	require.NoError(t, err)
	assert.Equal(t, &BatchStatus{BatchID: "12345", ImportStatus: StatusAwaitingLessonCreation}, st)
	s := <-got
	assert.Equal(t, http.MethodPost, s.method)
	assert.Equal(t, "/zh-kanti/api/v2.0/jobs/update", s.path, "trailing slash of the base URL tolerated")
	assert.Equal(t, "Bearer "+testToken, s.auth)
	assert.Equal(t, "application/json", s.ctype)
	assert.Equal(t, "test-agent/1", s.ua)
	assert.Equal(t, testJobs, s.jobs)
}

func TestSubmitAcceptsOtherSuccessCodes(t *testing.T) {
	for _, code := range []int{http.StatusOK, http.StatusCreated, http.StatusAccepted} {
		srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			_, _ = io.WriteString(w, `{"batchId":42,"importStatus":"AwaitingLessonCreation"}`)
		})
		st, err := newClient(t, srv.URL).Submit(context.Background(), "m", ActionCreate, testJobs)
		require.NoError(t, err, code)
		assert.Equal(t, "42", st.BatchID, code)
	}
}

func TestStatusCodes(t *testing.T) {
	tests := []struct {
		op         string // "submit", "batch" or "batches"
		code       int
		header     string // Retry-After
		body       string
		class      Class
		ambiguous  bool
		notFound   bool
		unauth     bool
		noBatchID  bool
		retryAfter time.Duration
	}{
		{op: "submit", code: 400, class: ClassData},
		{op: "submit", code: 401, class: ClassAuth, unauth: true},
		{op: "submit", code: 403, class: ClassAuth, unauth: true},
		{op: "submit", code: 404, class: ClassData, notFound: true},
		{op: "batch", code: 404, class: ClassTechnical, notFound: true},
		{op: "batches", code: 404, class: ClassData, notFound: true},
		{op: "submit", code: 405, class: ClassData},
		{op: "submit", code: 408, class: ClassTechnical},
		{op: "submit", code: 409, class: ClassData},
		{op: "submit", code: 413, class: ClassData},
		{op: "submit", code: 415, class: ClassData},
		{op: "submit", code: 418, class: ClassData},
		{op: "submit", code: 422, class: ClassData},
		{op: "submit", code: 425, class: ClassTechnical},
		{op: "submit", code: 429, header: "7", class: ClassTechnical, retryAfter: 7 * time.Second},
		{op: "submit", code: 500, class: ClassTechnical, ambiguous: true},
		{op: "submit", code: 501, class: ClassTechnical},
		{op: "submit", code: 502, class: ClassTechnical, ambiguous: true},
		{op: "submit", code: 503, class: ClassTechnical, ambiguous: true},
		{op: "submit", code: 503, header: "2", class: ClassTechnical, retryAfter: 2 * time.Second},
		{op: "submit", code: 504, class: ClassTechnical, ambiguous: true},
		{op: "submit", code: 507, class: ClassTechnical, ambiguous: true},
		{op: "batch", code: 502, class: ClassTechnical},
		{op: "batch", code: 401, class: ClassAuth, unauth: true},
		{op: "submit", code: 301, header: "", class: ClassTechnical},
		{op: "submit", code: 202, body: `{"ImportStatus":"AwaitingLessonCreation"}`, class: ClassTechnical, ambiguous: true, noBatchID: true},
		{op: "submit", code: 202, body: `{"BatchId":""}`, class: ClassTechnical, ambiguous: true, noBatchID: true},
		{op: "submit", code: 204, body: ``, class: ClassTechnical, ambiguous: true},
		{op: "submit", code: 202, body: `<html>accepted</html>`, class: ClassTechnical, ambiguous: true},
		{op: "batch", code: 200, body: `not json`, class: ClassTechnical},
		{op: "batches", code: 200, body: `{"a":[],"b":[]}`, class: ClassTechnical},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %d %s", tt.op, tt.code, tt.header), func(t *testing.T) {
			srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				w.WriteHeader(tt.code)
				_, _ = io.WriteString(w, tt.body)
			})
			c := newClient(t, srv.URL, WithToken(testToken))
			ctx := context.Background()
			var err error
			switch tt.op {
			case "submit":
				_, err = c.Submit(ctx, "m", ActionCreate, testJobs)
			case "batch":
				_, err = c.Batch(ctx, "m", "b-1")
			case "batches":
				_, err = c.Batches(ctx, "m")
			}
			require.Error(t, err)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tt.op, e.Op)
			assert.Equal(t, tt.code, e.StatusCode)
			assert.Contains(t, e.URL, srv.URL+"/m/api/v2.0/jobs/")
			assert.Equal(t, tt.class, Classify(err), "class")
			assert.Equal(t, tt.ambiguous, Ambiguous(err), "ambiguous")
			assert.Equal(t, tt.notFound, errors.Is(err, ErrNotFound), "ErrNotFound")
			assert.Equal(t, tt.unauth, errors.Is(err, ErrUnauthorized), "ErrUnauthorized")
			assert.Equal(t, tt.noBatchID, errors.Is(err, ErrNoBatchID), "ErrNoBatchID")
			assert.Equal(t, tt.retryAfter, e.RetryAfter)
			assert.Contains(t, err.Error(), fmt.Sprintf("jobmanager: %s http://", tt.op))
			assert.Contains(t, err.Error(), fmt.Sprint(tt.code))
		})
	}
}

func TestErrorBodyExcerpt(t *testing.T) {
	long := strings.Repeat("ä", 400) // 800 bytes
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = io.WriteString(w, long)
	})
	_, err := newClient(t, srv.URL).Submit(context.Background(), "m", ActionCreate, testJobs)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.LessOrEqual(t, len(e.Body), 512)
	assert.Greater(t, len(e.Body), 500)
	assert.True(t, strings.HasPrefix(long, e.Body), "cut at a UTF-8 boundary")
}

func TestRetryAfterForms(t *testing.T) {
	now := time.Date(2025, 12, 23, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 120 * time.Second},
		{" 5 ", 5 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"99999999999", 7 * 24 * time.Hour},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, parseRetryAfter(tt.in, now), tt.in)
	}
}

func TestRetryAfterHTTPDateFromServer(t *testing.T) {
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	_, err := newClient(t, srv.URL).Submit(context.Background(), "m", ActionCreate, testJobs)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.InDelta(t, time.Hour.Seconds(), e.RetryAfter.Seconds(), 2)
	assert.False(t, Ambiguous(err), "503 with Retry-After: not taken")
}

func TestTransportErrors(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())

		_, err = newClient(t, "http://"+addr).Submit(context.Background(), "m", ActionCreate, testJobs)
		var e *Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, 0, e.StatusCode)
		assert.Error(t, e.Err)
		assert.Equal(t, ClassTechnical, Classify(err))
		assert.False(t, Ambiguous(err), "nothing reached the server")
	})
	t.Run("timeout awaiting the answer", func(t *testing.T) {
		release := make(chan struct{})
		srv, n := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
			<-release
		})
		defer close(release)
		c := newClient(t, srv.URL, WithHTTPClient(&http.Client{Timeout: 50 * time.Millisecond}))
		_, err := c.Submit(context.Background(), "m", ActionCreate, testJobs)
		var e *Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, 0, e.StatusCode)
		var ne net.Error
		assert.True(t, errors.As(err, &ne) && ne.Timeout(), "a net.Error timeout: %v", err)
		assert.Equal(t, ClassTechnical, Classify(err))
		assert.True(t, Ambiguous(err), "the request was written")
		assert.EqualValues(t, 1, n.Load())
	})
	t.Run("connection dropped after the request", func(t *testing.T) {
		srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		})
		_, err := newClient(t, srv.URL).Submit(context.Background(), "m", ActionCreate, testJobs)
		var e *Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, 0, e.StatusCode)
		assert.Equal(t, ClassTechnical, Classify(err))
		assert.True(t, Ambiguous(err))
	})
	t.Run("context canceled", func(t *testing.T) {
		srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := newClient(t, srv.URL).Batch(ctx, "m", "1")
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, ClassTechnical, Classify(err))
		assert.False(t, Ambiguous(err))
	})
}

func TestBodyLimit(t *testing.T) {
	body := `{"BatchId":"1","ImportStatus":"LessonsCreated","Padding":"` + strings.Repeat("x", 100) + `"}`
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	})
	_, err := newClient(t, srv.URL, WithMaxBodyBytes(int64(len(body)-1))).Batch(context.Background(), "m", "1")
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.ErrorIs(t, err, errBodyTooLarge)
	assert.Equal(t, http.StatusOK, e.StatusCode)
	assert.Equal(t, ClassTechnical, Classify(err))

	st, err := newClient(t, srv.URL, WithMaxBodyBytes(int64(len(body)))).Batch(context.Background(), "m", "1")
	require.NoError(t, err)
	assert.Equal(t, StatusLessonsCreated, st.ImportStatus)
}

func TestTokenFileReloadOn401(t *testing.T) {
	tests := []struct {
		name      string
		rotateTo  string // written to the token file when the server rejects a token; "" leaves it
		accept    string // the token the server accepts
		wantReqs  int64
		wantError bool
	}{
		{name: "rotated token succeeds on retry", rotateTo: "new-token", accept: "new-token", wantReqs: 2},
		{name: "rotated but still wrong fails after one retry", rotateTo: "newer-but-wrong", accept: "other", wantReqs: 2, wantError: true},
		{name: "unchanged file is not retried", accept: "other", wantReqs: 1, wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			require.NoError(t, os.WriteFile(path, []byte("old-token\n"), 0o600))
			srv, n := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer "+tt.accept {
					if tt.rotateTo != "" {
						_ = os.WriteFile(path, []byte(tt.rotateTo), 0o600)
					}
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				body, _ := io.ReadAll(r.Body)
				if !json.Valid(body) || len(body) < 10 {
					w.WriteHeader(http.StatusBadRequest) // the retry must resend the body
					return
				}
				w.WriteHeader(http.StatusAccepted)
				_, _ = io.WriteString(w, `{"BatchId":"7"}`)
			})
			c := newClient(t, srv.URL, WithTokenFile(path))
			st, err := c.Submit(context.Background(), "m", ActionCreate, testJobs)
			assert.Equal(t, tt.wantReqs, n.Load())
			if tt.wantError {
				assert.ErrorIs(t, err, ErrUnauthorized)
				assert.Equal(t, ClassAuth, Classify(err))
				assert.False(t, Ambiguous(err))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "7", st.BatchID)

			// The new token is kept: the next call needs no reload.
			_, err = c.Submit(context.Background(), "m", ActionCreate, testJobs)
			require.NoError(t, err)
			assert.Equal(t, tt.wantReqs+1, n.Load())
		})
	}
}

func TestTokenSourceFailureSendsNothing(t *testing.T) {
	srv, n := countingServer(t, func(w http.ResponseWriter, r *http.Request) {})
	c := newClient(t, srv.URL, WithTokenFile(filepath.Join(t.TempDir(), "missing")))
	_, err := c.Submit(context.Background(), "m", ActionCreate, testJobs)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Equal(t, ClassAuth, Classify(err))
	assert.False(t, Ambiguous(err))
	assert.Zero(t, n.Load())
}

func TestNoTokenSendsNoAuthorization(t *testing.T) {
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header["Authorization"]; ok {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, `{"BatchId":"1","ImportStatus":"LessonsCreated"}`)
	})
	_, err := newClient(t, srv.URL).Batch(context.Background(), "m", "1")
	assert.NoError(t, err)
}

func TestArgumentValidationSendsNothing(t *testing.T) {
	srv, n := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"BatchId":"1"}`)
	})
	c := newClient(t, srv.URL, WithToken(testToken))
	ctx := context.Background()
	long := strings.Repeat("a", 65)
	for _, m := range []string{"", "../admin", "a/b", "a b", "ä", "a?x", "a%2Fb", long} {
		_, err := c.Submit(ctx, m, ActionCreate, testJobs)
		assert.ErrorContains(t, err, fmt.Sprintf("invalid mandator %q", m), m)
		assert.Equal(t, ClassData, Classify(err))
		assert.False(t, Ambiguous(err))
		_, err = c.Batch(ctx, m, "1")
		assert.ErrorContains(t, err, "invalid mandator", m)
		_, err = c.Batches(ctx, m)
		assert.ErrorContains(t, err, "invalid mandator", m)
	}
	bad := []struct {
		name   string
		action Action
		jobs   []Job
		want   string
	}{
		{"unknown action", "purge", testJobs, `invalid action "purge"`},
		{"empty action", "", testJobs, `invalid action ""`},
		{"no jobs", ActionCreate, nil, "no jobs"},
		{"no JobID", ActionCreate, []Job{{LektionList: []Lesson{{LektionID: "L"}}}}, "job 0 has no JobID"},
		{"no lessons", ActionCreate, []Job{{JobID: "j"}}, `job "j" has no lessons`},
		{"no LektionId", ActionDelete, []Job{{JobID: "j", LektionList: []Lesson{{}}}}, "without LektionId"},
		{"invalid extra", ActionCreate, []Job{{JobID: "j", LektionList: []Lesson{{LektionID: "L", Extra: map[string]json.RawMessage{"x": json.RawMessage("{")}}}}}, `extra member "x"`},
	}
	for _, tt := range bad {
		_, err := c.Submit(ctx, "m", tt.action, tt.jobs)
		assert.ErrorContains(t, err, tt.want, tt.name)
	}
	_, err := c.Batch(ctx, "m", "")
	assert.ErrorContains(t, err, "empty batchId")
	_, err = c.Submit(ctx, strings.Repeat("a", 64), ActionCreate, testJobs)
	assert.NoError(t, err, "64 characters are allowed")
	assert.EqualValues(t, 1, n.Load(), "only the valid call reached the server")
}

func TestBatchPathEscaping(t *testing.T) {
	paths := make(chan string, 1)
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		paths <- r.URL.EscapedPath()
		_, _ = io.WriteString(w, `{"ImportStatus":"AwaitingLessonProcessing","LessonCount":3}`)
	})
	st, err := newClient(t, srv.URL).Batch(context.Background(), "m", "a/b c?d#e")
	require.NoError(t, err)
	assert.Equal(t, "/m/api/v2.0/jobs/batches/a%2Fb%20c%3Fd%23e", <-paths)
	assert.Equal(t, "a/b c?d#e", st.BatchID, "an answer without BatchId gets the requested one")
	require.NotNil(t, st.LessonCount)
	assert.Equal(t, 3, *st.LessonCount)
}

func TestBatches(t *testing.T) {
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/m/api/v2.0/jobs/batches" || r.Method != http.MethodGet {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_, _ = io.WriteString(w, `{"Batches":[{"BatchId":"1","ImportStatus":"AwaitingLessonCreation"},{"batchid":2,"importstatus":"Weird"}]}`)
	})
	list, err := newClient(t, srv.URL).Batches(context.Background(), "m")
	require.NoError(t, err)
	assert.Equal(t, []BatchStatus{
		{BatchID: "1", ImportStatus: StatusAwaitingLessonCreation},
		{BatchID: "2", ImportStatus: "Weird"},
	}, list)
}

func TestTokenNeverInErrors(t *testing.T) {
	echo := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			// A careless server echoing the header, with the token straddling the 512-byte cut.
			_, _ = io.WriteString(w, strings.Repeat("x", 498)+r.Header.Get("Authorization"))
		}
	}
	for _, code := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusAccepted, http.StatusInternalServerError} {
		srv, _ := countingServer(t, echo(code))
		_, err := newClient(t, srv.URL, WithToken(testToken)).Submit(context.Background(), "m", ActionCreate, testJobs)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), testToken[:6], code)
		assert.NotContains(t, fmt.Sprintf("%+v %#v", err, err), testToken[:6], code)
	}
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, "denied for "+r.Header.Get("Authorization"))
	})
	_, err := newClient(t, srv.URL, WithToken(testToken)).Batch(context.Background(), "m", "1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "denied for Bearer [REDACTED]")

	dir := t.TempDir()
	bad := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(bad, []byte(testToken+" with space"), 0o600))
	_, err = newClient(t, srv.URL, WithTokenFile(bad)).Batch(context.Background(), "m", "1")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), testToken)

	_, err = New(srv.URL, WithToken(testToken+"\n"))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), testToken)
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name string
		base string
		opts []Option
		want string
	}{
		{name: "relative", base: "/jm", want: `base URL "/jm"`},
		{name: "ftp", base: "ftp://h/x", want: `"ftp://h/x": scheme must be http or https`},
		{name: "no host", base: "http:///x", want: "no host"},
		{name: "user info redacted", base: "https://u:pw@h", want: `"https://u:xxxxx@h": user info`},
		{name: "query", base: "https://h/?a=1", want: "query"},
		{name: "unparsable", base: "http://h/%zz", want: "base URL"},
		{name: "nil http client", base: "http://h", opts: []Option{WithHTTPClient(nil)}, want: "WithHTTPClient: nil"},
		{name: "max body", base: "http://h", opts: []Option{WithMaxBodyBytes(-5)}, want: "WithMaxBodyBytes: -5"},
		{name: "user agent", base: "http://h", opts: []Option{WithUserAgent("a\nb")}, want: `WithUserAgent: invalid user agent "a\nb"`},
		{name: "empty token", base: "http://h", opts: []Option{WithToken("")}, want: "WithToken: empty token"},
		{name: "empty token file", base: "http://h", opts: []Option{WithTokenFile(" ")}, want: "WithTokenFile: empty path"},
		{name: "nil source", base: "http://h", opts: []Option{WithTokenSource(nil)}, want: "WithTokenSource: nil"},
		{name: "two token options", base: "http://h", opts: []Option{WithToken("a"), WithTokenFile("/f")}, want: "WithTokenFile: a token option was already given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.base, tt.opts...)
			assert.Nil(t, c)
			assert.ErrorContains(t, err, tt.want)
			assert.True(t, strings.HasPrefix(err.Error(), "jobmanager: "), err.Error())
			assert.NotContains(t, err.Error(), "pw")
		})
	}
	c, err := New("https://jm.example/base/", WithToken("t"))
	require.NoError(t, err)
	assert.Equal(t, "https://jm.example/base", c.base)
	assert.Equal(t, DefaultTimeout, c.hc.Timeout)
	assert.EqualValues(t, DefaultMaxBodyBytes, c.maxBody)
}

func TestDefaultClientDoesNotFollowRedirects(t *testing.T) {
	srv, n := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	_, err := newClient(t, srv.URL).Submit(context.Background(), "m", ActionCreate, testJobs)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusFound, e.StatusCode)
	assert.EqualValues(t, 1, n.Load())
}

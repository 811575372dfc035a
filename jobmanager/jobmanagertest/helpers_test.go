package jobmanagertest_test

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
)

const (
	token    = "s3cret"
	mandator = "zh-kanti"
)

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 12, 22, 16, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a simulator behind a real HTTP server.
type env struct {
	t     *testing.T
	sim   *jobmanagertest.Sim
	srv   *httptest.Server
	clock *fakeClock
}

// start serves a simulator; cfg.Token defaults to token and cfg.Now to a fake clock.
func start(t *testing.T, cfg jobmanagertest.Config) *env {
	t.Helper()
	e := &env{t: t}
	if cfg.Token == "" {
		cfg.Token = token
	}
	if cfg.Now == nil {
		e.clock = newClock()
		cfg.Now = e.clock.Now
	}
	e.sim = jobmanagertest.New(cfg)
	e.srv = httptest.NewServer(e.sim)
	t.Cleanup(e.srv.Close)
	return e
}

type reply struct {
	Code   int
	Header http.Header
	Body   string
}

func (r reply) status(t *testing.T) statusJSON {
	t.Helper()
	var s statusJSON
	require.NoError(t, json.Unmarshal([]byte(r.Body), &s), r.Body)
	return s
}

// statusJSON decodes a status object; ErrorMessages stays raw to check its shape.
type statusJSON struct {
	BatchID       string          `json:"BatchId"`
	ImportStatus  string          `json:"ImportStatus"`
	LessonCount   *int            `json:"LessonCount"`
	ErrorMessages json.RawMessage `json:"ErrorMessages"`
}

// messages returns ErrorMessages as a list, whether it came as a string or an array.
func (s statusJSON) messages(t *testing.T) []string {
	t.Helper()
	if len(s.ErrorMessages) == 0 {
		return nil
	}
	var one string
	if json.Unmarshal(s.ErrorMessages, &one) == nil {
		return []string{one}
	}
	var many []string
	require.NoError(t, json.Unmarshal(s.ErrorMessages, &many))
	return many
}

func (e *env) do(method, path string, header map[string]string, body string) reply {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	require.NoError(e.t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return reply{Code: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

func auth() map[string]string {
	return map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
}

func (e *env) submit(action, body string) reply {
	e.t.Helper()
	return e.do(http.MethodPost, "/"+mandator+"/api/v2.0/jobs/"+action, auth(), body)
}

// submitOK submits and requires a 202; it returns the BatchId.
func (e *env) submitOK(action, body string) string {
	e.t.Helper()
	r := e.submit(action, body)
	require.Equal(e.t, http.StatusAccepted, r.Code, r.Body)
	s := r.status(e.t)
	require.Equal(e.t, jobmanagertest.StatusAwaitingLessonCreation, s.ImportStatus)
	require.NotEmpty(e.t, s.BatchID)
	return s.BatchID
}

func (e *env) status(batchID string) reply {
	e.t.Helper()
	return e.do(http.MethodGet, "/"+mandator+"/api/v2.0/jobs/batches/"+batchID, auth(), "")
}

// statusOK requires a 200 and returns the status object.
func (e *env) statusOK(batchID string) statusJSON {
	e.t.Helper()
	r := e.status(batchID)
	require.Equal(e.t, http.StatusOK, r.Code, r.Body)
	return r.status(e.t)
}

// lessonJSON is one lesson object of a request body.
func lessonJSON(id, begin, end, resource string) string {
	return `{"LektionId":"` + id + `","Beginn":"` + begin + `","Ende":"` + end + `","RessourceName":"` + resource + `"}`
}

// okLesson is a valid lesson with the given id.
func okLesson(id string) string {
	return lessonJSON(id, "2025-12-23T08:00:00Z", "2025-12-23T10:00:00Z", "Raum 1.01")
}

// jobsJSON builds a body from JobID/lessons pairs.
func jobJSON(jobID string, lessons ...string) string {
	return `{"JobID":"` + jobID + `","LektionList":[` + strings.Join(lessons, ",") + `]}`
}

func body(jobs ...string) string {
	return "[" + strings.Join(jobs, ",") + "]"
}

func keys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

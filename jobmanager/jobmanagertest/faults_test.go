package jobmanagertest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
)

func TestSubmitStatus(t *testing.T) {
	tests := []struct {
		name       string
		code       int
		retryAfter time.Duration
		wantHeader string
	}{
		{"503 with Retry-After", http.StatusServiceUnavailable, 2 * time.Second, "2"},
		{"429 rounds Retry-After up", http.StatusTooManyRequests, 1500 * time.Millisecond, "2"},
		{"500 without Retry-After", http.StatusInternalServerError, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, jobmanagertest.Config{})
			e.sim.SubmitStatus(tt.code, 2, tt.retryAfter)
			for range 2 {
				r := e.submit("create", body(jobJSON("j-1", okLesson("L-1"))))
				assert.Equal(t, tt.code, r.Code)
				assert.Equal(t, tt.wantHeader, r.Header.Get("Retry-After"))
			}
			assert.Empty(t, e.sim.Batches(mandator), "a refused submit is not recorded")
			id := e.submitOK("create", body(jobJSON("j-1", okLesson("L-1"))))
			assert.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(id).ImportStatus, "the retry is no duplicate")
			assert.Equal(t, 3, e.sim.Submits())
			assert.Equal(t, 2, e.sim.Requests()[jobmanagertest.RequestKey{Kind: jobmanagertest.KindSubmit, Code: tt.code}])
		})
	}
}

func TestSubmitStatusForeverUntilCleared(t *testing.T) {
	e := start(t, jobmanagertest.Config{})
	e.sim.SubmitStatus(http.StatusServiceUnavailable, jobmanagertest.Forever, 0)
	for range 5 {
		assert.Equal(t, http.StatusServiceUnavailable, e.submit("create", body(jobJSON("j", okLesson("L-1")))).Code)
	}
	e.sim.SubmitStatus(0, 0, 0)
	e.submitOK("create", body(jobJSON("j", okLesson("L-1"))))
}

func TestLoseSubmitResponseWith502(t *testing.T) {
	e := start(t, jobmanagertest.Config{})
	e.sim.LoseSubmitResponse(1, jobmanagertest.LoseWith502)
	r := e.submit("create", body(jobJSON("job-1", okLesson("L-1"))))
	assert.Equal(t, http.StatusBadGateway, r.Code)
	assert.NotContains(t, r.Body, "BatchId")

	bs := e.sim.Batches(mandator)
	require.Len(t, bs, 1, "the batch is recorded although the answer was lost")
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, bs[0].ImportStatus)
	assert.Equal(t, 1, e.sim.Creations(mandator, "L-1"))

	// The client's retry with the same JobID is refused as a duplicate: the "in doubt" case.
	id := e.submitOK("create", body(jobJSON("job-1", okLesson("L-1"))))
	s := e.statusOK(id)
	assert.Equal(t, jobmanagertest.StatusLessonsImportFailed, s.ImportStatus)
	assert.Equal(t, []string{"Fehler: Duplicate JobId: job-1"}, s.messages(t))
	assert.Empty(t, e.sim.JobIDConflicts(mandator), "same content, no conflict")
}

func TestLoseSubmitResponseByClose(t *testing.T) {
	e := start(t, jobmanagertest.Config{})
	e.sim.LoseSubmitResponse(1, jobmanagertest.LoseByClose)
	req, err := http.NewRequest("POST", e.srv.URL+"/"+mandator+"/api/v2.0/jobs/create",
		strings.NewReader(body(jobJSON("job-1", okLesson("L-1")))))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.srv.Client().Do(req)
	if err == nil {
		resp.Body.Close()
	}
	require.Error(t, err, "the connection closes without an answer")
	assert.True(t, errors.Is(err, io.EOF) || strings.Contains(err.Error(), "EOF"), err.Error())

	require.Len(t, e.sim.Batches(mandator), 1)
	assert.Equal(t, 1, e.sim.Requests()[jobmanagertest.RequestKey{Kind: jobmanagertest.KindSubmit, Code: 0}])
	e.submitOK("create", body(jobJSON("job-2", okLesson("L-2"))))
}

func TestStatusStatus(t *testing.T) {
	e := start(t, jobmanagertest.Config{})
	id := e.submitOK("create", body(jobJSON("j", okLesson("L-1"))))
	e.sim.StatusStatus(http.StatusInternalServerError, 1)
	assert.Equal(t, http.StatusInternalServerError, e.status(id).Code)
	assert.Equal(t, http.StatusOK, e.status(id).Code)

	e.sim.StatusStatus(http.StatusServiceUnavailable, jobmanagertest.Forever)
	for range 3 {
		assert.Equal(t, http.StatusServiceUnavailable, e.status(id).Code)
	}
	assert.Equal(t, http.StatusAccepted, e.submit("create", body(jobJSON("k", okLesson("L-2")))).Code, "submits unaffected")
	e.sim.StatusStatus(0, 0)
	assert.Equal(t, http.StatusOK, e.status(id).Code)
}

func TestFailImport(t *testing.T) {
	e := start(t, jobmanagertest.Config{ProcessingDelay: 10 * time.Millisecond})
	due := e.submitOK("create", body(jobJSON("j-0", okLesson("L-0"))))
	e.clock.Add(10 * time.Millisecond)
	e.sim.FailImport(2) // j-0 was due before: it completes normally

	a := e.submitOK("create", body(jobJSON("j-1", okLesson("L-1"))))
	b := e.submitOK("create", body(jobJSON("j-2", okLesson("L-2"))))
	c := e.submitOK("create", body(jobJSON("j-3", okLesson("L-3"))))
	e.clock.Add(10 * time.Millisecond)

	assert.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(due).ImportStatus)
	for _, id := range []string{a, b} {
		s := e.statusOK(id)
		assert.Equal(t, jobmanagertest.StatusLessonsImportFailed, s.ImportStatus)
		assert.Equal(t, []string{jobmanagertest.TechnicalErrorMessage}, s.messages(t))
	}
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(c).ImportStatus)
	assert.Equal(t, []string{"L-0", "L-3"}, keys(e.sim.Lessons(mandator)), "failed batches applied nothing")

	e.sim.FailImport(1, "Fehler: Timeout", "Fehler: Queue voll")
	d := e.submitOK("create", body(jobJSON("j-4", okLesson("L-4"))))
	e.clock.Add(10 * time.Millisecond)
	s := e.statusOK(d)
	assert.Equal(t, []string{"Fehler: Timeout", "Fehler: Queue voll"}, s.messages(t))
}

func TestLatency(t *testing.T) {
	e := start(t, jobmanagertest.Config{Now: time.Now})
	e.sim.Latency(30 * time.Millisecond)
	began := time.Now()
	e.submitOK("create", body(jobJSON("j", okLesson("L-1"))))
	assert.GreaterOrEqual(t, time.Since(began), 30*time.Millisecond)

	// A client that gives up first gets no answer; the request is counted with code 0.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/"+mandator+"/api/v2.0/jobs/batches", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	_, err = e.srv.Client().Do(req)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Eventually(t, func() bool {
		return e.sim.Requests()[jobmanagertest.RequestKey{Kind: jobmanagertest.KindList, Code: 0}] == 1
	}, time.Second, time.Millisecond)

	e.sim.Latency(0)
	assert.Equal(t, http.StatusOK, e.do("GET", jobmanagertest.StatePath, nil, "").Code)
}

func TestHold(t *testing.T) {
	e := start(t, jobmanagertest.Config{ProcessingDelay: 10 * time.Millisecond})
	early := e.submitOK("create", body(jobJSON("j-0", okLesson("L-0"))))
	e.clock.Add(10 * time.Millisecond)
	e.sim.Hold(true) // early was due: it completes before the hold

	id := e.submitOK("create", body(jobJSON("j-1", okLesson("L-1"))))
	e.clock.Add(time.Hour)
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(early).ImportStatus)
	assert.Equal(t, jobmanagertest.StatusAwaitingLessonProcessing, e.statusOK(id).ImportStatus, "held")
	assert.NotContains(t, e.sim.Lessons(mandator), "L-1")

	e.sim.Hold(false)
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(id).ImportStatus)
	b, ok := e.sim.Batch(id)
	require.True(t, ok)
	assert.Equal(t, e.clock.Now(), b.FinishedAt, "completed at the release")

	later := e.submitOK("create", body(jobJSON("j-2", okLesson("L-2"))))
	e.clock.Add(10 * time.Millisecond)
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(later).ImportStatus)
	b, _ = e.sim.Batch(later)
	assert.Equal(t, e.clock.Now(), b.FinishedAt, "after the release, batches complete when due")
}

func TestRandomFaultsAreSeeded(t *testing.T) {
	run := func(seed int64) []int {
		e := start(t, jobmanagertest.Config{Random: jobmanagertest.RandomFaults{
			Seed: seed, SubmitFailRate: 0.3, LoseResponseRate: 0.2, StatusFailRate: 0.3, ImportFailRate: 0.3,
		}})
		var codes []int
		for i := range 30 {
			r := e.submit("create", body(jobJSON("j-"+string(rune('a'+i)), okLesson("L-1"))))
			codes = append(codes, r.Code)
			codes = append(codes, e.status(lastBatchID(e)).Code)
		}
		for _, b := range e.sim.Batches(mandator) {
			if b.ImportStatus == jobmanagertest.StatusLessonsImportFailed {
				codes = append(codes, -1)
			} else {
				codes = append(codes, -2)
			}
		}
		return codes
	}
	a, b := run(7), run(7)
	assert.Equal(t, a, b, "same seed, same faults")
	assert.Contains(t, a, http.StatusServiceUnavailable)
	assert.Contains(t, a, http.StatusBadGateway)
	assert.Contains(t, a, -1)
	assert.Contains(t, a, -2)
	assert.NotEqual(t, a, run(8), "another seed, other faults")
}

func TestRandomFaultsAlways(t *testing.T) {
	e := start(t, jobmanagertest.Config{Random: jobmanagertest.RandomFaults{SubmitFailRate: 1}})
	r := e.submit("create", body(jobJSON("j", okLesson("L-1"))))
	assert.Equal(t, http.StatusServiceUnavailable, r.Code)
	assert.Equal(t, "1", r.Header.Get("Retry-After"))

	e = start(t, jobmanagertest.Config{Random: jobmanagertest.RandomFaults{ImportFailRate: 1}})
	id := e.submitOK("create", body(jobJSON("j", okLesson("L-1"))))
	assert.Equal(t, []string{jobmanagertest.TechnicalErrorMessage}, e.statusOK(id).messages(t))
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  jobmanagertest.Config
		want string
	}{
		{"valid", jobmanagertest.Config{Mandators: []string{"a-b_1"}}, ""},
		{"negative delay", jobmanagertest.Config{ProcessingDelay: -1}, "ProcessingDelay is negative"},
		{"rate above 1", jobmanagertest.Config{Random: jobmanagertest.RandomFaults{StatusFailRate: 1.5}}, "Random.StatusFailRate"},
		{"bad mandator", jobmanagertest.Config{Mandators: []string{"a/b"}}, `mandator "a/b"`},
		{"bad lose mode", jobmanagertest.Config{Random: jobmanagertest.RandomFaults{LoseMode: 9}}, "LoseMode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "jobmanagertest: ")
			assert.Panics(t, func() { jobmanagertest.New(tt.cfg) })
		})
	}
}

// lastBatchID is the BatchId of the mandator's latest batch, or "0".
func lastBatchID(e *env) string {
	bs := e.sim.Batches(mandator)
	if len(bs) == 0 {
		return "0"
	}
	return bs[len(bs)-1].BatchID
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

func pwOutcome(id, mandator, status string) *schemas.Outcome {
	at := time.Date(2025, 12, 22, 16, 3, 10, 0, time.UTC)
	o := &schemas.Outcome{
		SpecVersion: schemas.SpecVersion, ID: id, Source: schemas.OutcomeSource, Type: "lesson.batch." + status,
		Time: at, Subject: "12345", DataContentType: "application/json",
		Data: schemas.OutcomeData{
			Status: status, BatchID: "12345", Mandator: mandator, Action: schemas.ActionCreate,
			ImportStatus: "LessonsCreated", ErrorMessages: []string{}, JobIDs: []string{"lb-20251222-a"},
			LessonCount: 3, LessonIDs: []string{"L-1", "L-2", "L-3"}, EventIDs: []string{"e1", "e2", "e3"},
			FinishedAt: at, Polls: 6,
		},
	}
	if status == schemas.StatusFailed {
		o.Data.Reason, o.Data.ErrorClass = schemas.ReasonImportFailed, schemas.ErrorClassData
		o.Data.ImportStatus = "LessonsImportFailed"
		o.Data.ErrorMessages = []string{"Fehler: Duplicate JobId: lb-20251222-a"}
	}
	return o
}

func TestFormatOutcome(t *testing.T) {
	hhmmss := time.Date(2025, 12, 22, 16, 3, 10, 0, time.UTC).Local().Format("15:04:05")
	many := pwOutcome("o", "zh-kanti", schemas.StatusFailed)
	many.Data.JobIDs = []string{"j1", "j2", "j3", "j4", "j5"}
	many.Data.BatchID, many.Data.Reason, many.Data.ErrorClass = "", schemas.ReasonRejected, schemas.ErrorClassData
	many.Data.ErrorMessages = []string{"first\nsecond", strings.Repeat("x", 600)}
	many.Data.LessonCount = 0

	tests := []struct {
		name string
		o    *schemas.Outcome
		want string
	}{
		{"succeeded", pwOutcome("o", "zh-kanti", schemas.StatusSucceeded),
			hhmmss + " ✔ succeeded zh-kanti create batch=12345 lessons=3 events=3 polls=6 jobs=lb-20251222-a"},
		{"failed", pwOutcome("o", "zh-kanti", schemas.StatusFailed),
			hhmmss + " ✘ failed    zh-kanti create batch=12345 reason=import_failed class=data lessons=3 events=3 polls=6" +
				" jobs=lb-20251222-a: Fehler: Duplicate JobId: lb-20251222-a"},
		{"no batch, many jobs, long multi-line error", many,
			hhmmss + " ✘ failed    zh-kanti create batch=- reason=rejected class=data lessons=3 events=3 polls=6" +
				" jobs=j1,j2,j3,+2: first second; " + strings.Repeat("x", 500-len("first second; ")) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := formatOutcome(tt.o)
			assert.Equal(t, tt.want, got)
			assert.NotContains(t, got, "\n")
		})
	}
}

func TestFormatDeadLetter(t *testing.T) {
	at := time.Date(2025, 12, 22, 16, 3, 11, 0, time.UTC)
	hhmmss := at.Local().Format("15:04:05")
	tests := []struct {
		name    string
		subject string
		h       nats.Header
		want    string
	}{
		{"invalid event", "lessons.deadletter.zh-kanti", nats.Header{
			schemas.HeaderReason: {"invalid_event"}, schemas.HeaderStreamSeq: {"42"},
			schemas.HeaderError: {`data.end "2025-12-23T08:00:00Z" is not after data.start`},
		}, hhmmss + ` ☠ deadletter zh-kanti reason=invalid_event seq=42: data.end "2025-12-23T08:00:00Z" is not after data.start`},
		{"failed batch", "lessons.deadletter.m", nats.Header{
			schemas.HeaderReason: {"import_failed"}, schemas.HeaderStreamSeq: {"7"}, schemas.HeaderBatchID: {"12346"},
			schemas.HeaderError: {"Fehler"},
		}, hhmmss + " ☠ deadletter m reason=import_failed batch=12346 seq=7: Fehler"},
		{"no headers", "x", nats.Header{}, hhmmss + " ☠ deadletter x reason=- seq=-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, formatDeadLetter(tt.subject, tt.h, at))
		})
	}
}

// pwWatch runs the watch command until stop is called, which returns its error.
func pwWatch(t *testing.T, args []string) (stdout, stderr *lockedBuffer, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stdout, stderr = &lockedBuffer{}, &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- runWatch(ctx, args, stdout, stderr) }()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			return errors.New("watch did not stop within 5s of the cancel")
		}
	})
	t.Cleanup(func() { _ = stop() })
	return stdout, stderr, stop
}

func pwLines(b *lockedBuffer) []string {
	s := strings.TrimSuffix(b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestWatch(t *testing.T) {
	url, js := pwServer(t)
	p, err := publisher.New(js)
	require.NoError(t, err)
	ok := pwOutcome("o-1", "zh-kanti", schemas.StatusSucceeded)
	failed := pwOutcome("o-2", "other", schemas.StatusFailed)
	_, err = p.PublishOutcome(t.Context(), ok)
	require.NoError(t, err)
	_, err = p.PublishOutcome(t.Context(), failed)
	require.NoError(t, err)
	_, err = p.PublishDeadLetter(t.Context(), publisher.DeadLetter{
		Mandator: "zh-kanti", Body: []byte(`{"id":"bad"}`), Reason: schemas.ReasonInvalidEvent,
		Error: "data.lessonId is required", Subject: "lessons.changes.zh-kanti", StreamSeq: 42, StoredAt: time.Now(),
	})
	require.NoError(t, err)

	t.Run("all with dead letters", func(t *testing.T) {
		stdout, _, stop := pwWatch(t, []string{"--nats-url", url, "--since", "all", "--deadletter"})
		require.Eventually(t, func() bool { return len(pwLines(stdout)) >= 3 }, 5*time.Second, 10*time.Millisecond)
		require.NoError(t, stop())
		lines := pwLines(stdout)
		require.Len(t, lines, 3)
		// The two streams are read concurrently: the outcomes keep their order, the dead letter may come anywhere.
		var outcomes, dead []string
		for _, l := range lines {
			if strings.Contains(l, "☠") {
				dead = append(dead, l)
			} else {
				outcomes = append(outcomes, l)
			}
		}
		assert.Equal(t, []string{formatOutcome(ok), formatOutcome(failed)}, outcomes)
		require.Len(t, dead, 1)
		assert.Regexp(t, `^\d\d:\d\d:\d\d ☠ deadletter zh-kanti reason=invalid_event seq=42: data.lessonId is required$`, dead[0])
	})

	t.Run("one mandator", func(t *testing.T) {
		stdout, _, stop := pwWatch(t, []string{"--nats-url", url, "--since", "all", "--mandator", "other"})
		require.Eventually(t, func() bool { return len(pwLines(stdout)) >= 1 }, 5*time.Second, 10*time.Millisecond)
		require.NoError(t, stop())
		assert.Equal(t, []string{formatOutcome(failed)}, pwLines(stdout))
	})

	t.Run("json", func(t *testing.T) {
		stdout, _, stop := pwWatch(t, []string{"--nats-url", url, "--since", "all", "--json", "--deadletter", "--mandator", "zh-kanti"})
		require.Eventually(t, func() bool { return len(pwLines(stdout)) >= 2 }, 5*time.Second, 10*time.Millisecond)
		require.NoError(t, stop())
		var sawOutcome, sawDead bool
		for _, l := range pwLines(stdout) {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &m), l)
			if m["id"] == "o-1" {
				sawOutcome = true
			}
			if m["reason"] == schemas.ReasonInvalidEvent {
				sawDead = true
				assert.Equal(t, map[string]any{"id": "bad"}, m["body"])
				assert.Equal(t, float64(42), m["streamSeq"])
			}
		}
		assert.True(t, sawOutcome)
		assert.True(t, sawDead)
	})

	t.Run("new only", func(t *testing.T) {
		stdout, stderr, stop := pwWatch(t, []string{"--nats-url", url})
		require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "watching") }, 5*time.Second, 10*time.Millisecond)
		fresh := pwOutcome("o-3", "zh-kanti", schemas.StatusSucceeded)
		_, err := p.PublishOutcome(t.Context(), fresh)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return len(pwLines(stdout)) >= 1 }, 5*time.Second, 10*time.Millisecond)
		require.NoError(t, stop())
		assert.Equal(t, []string{formatOutcome(fresh)}, pwLines(stdout), "only what arrived after the start")
	})
}

func TestWatchErrors(t *testing.T) {
	url, _ := pwServer(t)
	wait := watchStreamWait
	watchStreamWait = 50 * time.Millisecond
	t.Cleanup(func() { watchStreamWait = wait })
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad since", []string{"--nats-url", url, "--since", "yesterday"}, "--since"},
		{"bad mandator", []string{"--nats-url", url, "--mandator", "a.b"}, `"a.b"`},
		{"missing stream", []string{"--nats-url", url, "--outcome-stream", "NOPE"}, "stream NOPE: nats: API error: code=404 err_code=10059 description=stream not found after waiting 50ms (the bridge creates it at start-up)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := runWatch(ctx, tt.args, &lockedBuffer{}, &lockedBuffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// watch reads LESSONBRIDGE_WATCH_<FLAG>; a run-style LESSONBRIDGE_SINCE is refused naming both
// variables (before, it reached watch's --since and failed without naming it).
func TestWatchEnvironment(t *testing.T) {
	clearRunEnv(t)
	url, js := pwServer(t)
	p, err := publisher.New(js)
	require.NoError(t, err)
	o := pwOutcome("o-env", "zh-kanti", schemas.StatusSucceeded)
	_, err = p.PublishOutcome(t.Context(), o)
	require.NoError(t, err)

	t.Setenv("LESSONBRIDGE_SINCE", "2h")
	err = runWatch(t.Context(), []string{"--nats-url", url}, &lockedBuffer{}, &lockedBuffer{})
	assert.ErrorContains(t, err, `environment LESSONBRIDGE_SINCE="2h": watch reads --since from LESSONBRIDGE_WATCH_SINCE`)
	require.NoError(t, os.Unsetenv("LESSONBRIDGE_SINCE"))

	t.Setenv("LESSONBRIDGE_WATCH_SINCE", "soon")
	err = runWatch(t.Context(), []string{"--nats-url", url}, &lockedBuffer{}, &lockedBuffer{})
	assert.ErrorContains(t, err, `--since (LESSONBRIDGE_WATCH_SINCE) "soon": must be new, all, an RFC 3339 time`)

	// A duration back from now delivers what was stored since then.
	t.Setenv("LESSONBRIDGE_WATCH_SINCE", "2h")
	t.Setenv("NATS_URL", url)
	stdout, _, stop := pwWatch(t, nil)
	require.Eventually(t, func() bool { return len(pwLines(stdout)) >= 1 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, stop())
	assert.Equal(t, []string{formatOutcome(o)}, pwLines(stdout))
}

// watch started together with the bridge waits for the streams the bridge creates (before, it
// failed at once with "stream not found" when it won the race).
func TestWatchWaitsForTheBridgesStreams(t *testing.T) {
	clearRunEnv(t)
	s := natstest.Start(t)
	_, js := s.Connect()
	stdout, stderr, stop := pwWatch(t, []string{"--nats-url", s.URL(), "--since", "all"})
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "stream LESSON_OUTCOMES does not exist yet") },
		5*time.Second, 10*time.Millisecond)
	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "LESSON_OUTCOMES", Subjects: []string{"lessons.outcomes.>"},
		Storage: jetstream.MemoryStorage})
	require.NoError(t, err)
	p, err := publisher.New(js)
	require.NoError(t, err)
	o := pwOutcome("o-wait", "zh-kanti", schemas.StatusSucceeded)
	_, err = p.PublishOutcome(t.Context(), o)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(pwLines(stdout)) >= 1 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, stop())
	assert.Equal(t, []string{formatOutcome(o)}, pwLines(stdout))
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

func TestReplayParseArgs(t *testing.T) {
	now := time.Date(2025, 12, 22, 17, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    func(*replayOptions) // changes to the defaults; nil: defaults
		wantErr []string             // substrings of the error; nil: no error
		stderr  string               // substring of stderr
		check   func(*testing.T, replayOptions)
	}{
		{name: "defaults", args: nil},
		{name: "lists repeated and comma-separated, duplicates dropped",
			args: []string{"--reason", "import_failed, rejected", "--reason", "in_doubt,import_failed", "--mandator", "zh-kanti",
				"--batch-id", "12345,12346", "--limit", "7", "--dry-run", "--run-id", "r1", "--input-prefix", "x.changes",
				"--deadletter-stream", "DL"},
			want: func(o *replayOptions) {
				o.filter.reasons = []string{"import_failed", "rejected", "in_doubt"}
				o.filter.mandators = []string{"zh-kanti"}
				o.filter.batchIDs = []string{"12345", "12346"}
				o.limit, o.dryRun, o.runID, o.inputPrefix, o.stream = 7, true, "r1", "x.changes", "DL"
			}},
		{name: "since as duration, until as RFC 3339",
			args: []string{"--since", "2h", "--until", "2025-12-22T16:30:00+01:00"},
			want: func(o *replayOptions) {
				o.filter.since = now.Add(-2 * time.Hour)
				o.filter.until = time.Date(2025, 12, 22, 15, 30, 0, 0, time.UTC)
			}},
		{name: "from the environment",
			env: map[string]string{"LESSONBRIDGE_REPLAY_REASON": "import_failed,rejected", "NATS_URL": "nats://elsewhere:4222"},
			want: func(o *replayOptions) {
				o.filter.reasons = []string{"import_failed", "rejected"}
				o.nats.URL = "nats://elsewhere:4222"
			}},
		{name: "an unknown reason is accepted with a warning",
			args:   []string{"--reason", "brand_new"},
			want:   func(o *replayOptions) { o.filter.reasons = []string{"brand_new"} },
			stderr: `--reason "brand_new" is not a reason this version knows`},
		{name: "every bad value is reported",
			args: []string{"--since", "yesterday", "--limit", "-1", "--mandator", "a.b", "--reason", "Import-Failed",
				"--run-id", "x y", "--input-prefix", "lessons.>", "--deadletter-stream", "a.b"},
			wantErr: []string{
				`--since (LESSONBRIDGE_REPLAY_SINCE) "yesterday": not an RFC 3339 time`,
				`--limit (LESSONBRIDGE_REPLAY_LIMIT) "-1"`, `--mandator (LESSONBRIDGE_REPLAY_MANDATOR) "a.b"`,
				`--reason (LESSONBRIDGE_REPLAY_REASON) "Import-Failed"`, `--run-id (LESSONBRIDGE_REPLAY_RUN_ID) "x y"`,
				`--input-prefix (LESSONBRIDGE_REPLAY_INPUT_PREFIX) "lessons.>"`, `--deadletter-stream (LESSONBRIDGE_DEADLETTER_STREAM) "a.b"`,
			}},
		{name: "until not after since", args: []string{"--since", "1h", "--until", "3h"},
			wantErr: []string{`--until (LESSONBRIDGE_REPLAY_UNTIL) "3h": must be after --since 1h`}},
		{name: "negative duration", args: []string{"--since", "-2h"},
			wantErr: []string{`--since (LESSONBRIDGE_REPLAY_SINCE) "-2h": a duration back from now must be positive`}},
		{name: "bad environment value names the variable", env: map[string]string{"LESSONBRIDGE_REPLAY_LIMIT": "many"},
			wantErr: []string{`environment LESSONBRIDGE_REPLAY_LIMIT="many" (flag --limit)`}},
		{name: "shared names: run's stream variable and the NATS CLI's context", env: map[string]string{
			"LESSONBRIDGE_DEADLETTER_STREAM": "DL", "LESSONBRIDGE_JOBMANAGER_URL": "http://jm", "LESSONBRIDGE_MANDATORS": "x"},
			want: func(o *replayOptions) { o.stream = "DL" }},
		{name: "a run-style variable of a replay-only flag is refused, naming both",
			env:     map[string]string{"LESSONBRIDGE_SINCE": "2h"},
			wantErr: []string{`environment LESSONBRIDGE_SINCE="2h": replay reads --since from LESSONBRIDGE_REPLAY_SINCE`}},
		{name: "positional argument", args: []string{"zh-kanti"}, wantErr: []string{`unexpected argument "zh-kanti"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stderr strings.Builder
			got, err := parseReplayArgs(tt.args, &stderr, now)
			if tt.wantErr != nil {
				require.Error(t, err)
				for _, want := range tt.wantErr {
					assert.Contains(t, err.Error(), want)
				}
				return
			}
			require.NoError(t, err)
			want := replayOptions{nats: natsSettings{URL: defaultNATSURL}, stream: "LESSON_DEADLETTER",
				inputPrefix: "lessons.changes", runID: fmt.Sprint(now.UnixNano()), marksBucket: replayMarksBucket}
			if tt.want != nil {
				tt.want(&want)
			}
			assert.Equal(t, want, got)
			assert.Contains(t, stderr.String(), tt.stderr)
		})
	}
}

func TestReplayHelpSaysDeadLettersStay(t *testing.T) {
	var stderr strings.Builder
	_, err := parseReplayArgs([]string{"--help"}, &stderr, time.Now())
	require.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, stderr.String(), "Replay does NOT delete dead letters")
	assert.Contains(t, stderr.String(), "--dry-run")
	assert.Contains(t, stderr.String(), "env LESSONBRIDGE_REPLAY_REASON")
}

func TestReplayFilterMatch(t *testing.T) {
	at := time.Date(2025, 12, 22, 16, 0, 0, 0, time.UTC)
	dl := &replayDeadLetter{mandator: "zh-kanti", reason: schemas.ReasonImportFailed, batchID: "12345", stored: at}
	tests := []struct {
		name   string
		filter replayFilter
		want   bool
	}{
		{"no filter", replayFilter{}, true},
		{"mandator", replayFilter{mandators: []string{"bern", "zh-kanti"}}, true},
		{"other mandator", replayFilter{mandators: []string{"bern"}}, false},
		{"reason", replayFilter{reasons: []string{schemas.ReasonRejected, schemas.ReasonImportFailed}}, true},
		{"other reason", replayFilter{reasons: []string{schemas.ReasonRejected}}, false},
		{"batch", replayFilter{batchIDs: []string{"12345"}}, true},
		{"other batch", replayFilter{batchIDs: []string{"12346"}}, false},
		{"since is inclusive", replayFilter{since: at}, true},
		{"after since", replayFilter{since: at.Add(time.Nanosecond)}, false},
		{"until is exclusive", replayFilter{until: at}, false},
		{"before until", replayFilter{until: at.Add(time.Nanosecond)}, true},
		{"all must match", replayFilter{mandators: []string{"zh-kanti"}, reasons: []string{schemas.ReasonRejected}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.filter.match(dl))
		})
	}
}

func TestReplayTarget(t *testing.T) {
	tests := []struct {
		name, mandator, origin string
		wantSubject            string
		wantValid              bool
	}{
		{"origin header", "zh-kanti", "lessons.changes.zh-kanti", "lessons.changes.zh-kanti", true},
		{"no header: prefix and mandator", "zh-kanti", "", "lessons.changes.zh-kanti", true},
		{"invalid subject", "_invalid", "lessons.changes.a.b", "lessons.changes.a.b", false},
		{"no header, no mandator", "_invalid", "", "", false},
		{"other prefix", "zh-kanti", "other.changes.zh-kanti", "other.changes.zh-kanti", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			subject, valid := replayTarget(&replayDeadLetter{mandator: tt.mandator, origin: tt.origin}, "lessons.changes")
			assert.Equal(t, tt.wantSubject, subject)
			assert.Equal(t, tt.wantValid, valid)
		})
	}
}

// rpServer starts NATS with the input and dead-letter streams (a 2 min duplicate window, as the
// bridge creates them).
func rpServer(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	s := natstest.Start(t)
	_, js := s.Connect()
	for name, subj := range map[string]string{"LESSONS": "lessons.changes.>", "LESSON_DEADLETTER": "lessons.deadletter.>"} {
		_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{subj},
			Storage: jetstream.MemoryStorage, Duplicates: 2 * time.Minute})
		require.NoError(t, err)
	}
	return s.URL(), js
}

// rpMsgs returns the messages of a stream in order, optionally only those on subject.
func rpMsgs(t *testing.T, js jetstream.JetStream, stream, subject string) []*jetstream.RawStreamMsg {
	t.Helper()
	var msgs []*jetstream.RawStreamMsg
	for _, m := range natstest.StreamMsgs(t, js, stream) {
		if subject == "" || m.Subject == subject {
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// rpReplay runs the replay command and returns its stdout and stderr.
func rpReplay(t *testing.T, url string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errOut lockedBuffer
	err = runReplay(ctx, append([]string{"--nats-url", url, "--yes"}, args...), &out, &errOut)
	return out.String(), errOut.String(), err
}

var rpRunID = regexp.MustCompile(`replay run (\S+):`)

func TestReplayWithoutBridge(t *testing.T) {
	url, js := rpServer(t)
	pub, err := publisher.New(js)
	require.NoError(t, err)
	dls := []publisher.DeadLetter{
		{Mandator: "zh-kanti", Body: []byte(`{"id":"a1"}`), Reason: schemas.ReasonImportFailed, BatchID: "12345",
			Error: "Fehler: Ressource 'Raum X' nicht gefunden\nzweite Zeile", Subject: "lessons.changes.zh-kanti", StreamSeq: 11, StoredAt: time.Now()},
		{Mandator: "zh-kanti", Body: []byte(`{"id":"r1"}`), Reason: schemas.ReasonRejected, Error: "422",
			Subject: "lessons.changes.zh-kanti", StreamSeq: 12, StoredAt: time.Now()},
		{Mandator: "bern", Body: []byte(`{"id":"c1"}`), Reason: schemas.ReasonImportFailed, BatchID: "12346",
			Error: "Fehler", Subject: "lessons.changes.bern", StreamSeq: 13, StoredAt: time.Now()},
		{Mandator: "_invalid", Body: []byte(`not json`), Reason: schemas.ReasonInvalidEvent,
			Error: "subject names no valid mandator", Subject: "lessons.changes.a.b", StreamSeq: 14, StoredAt: time.Now()},
		{Mandator: "zh-kanti", Body: []byte(`{}`), Reason: schemas.ReasonInvalidEvent, Error: "id is required",
			Subject: "lessons.changes.zh-kanti", StreamSeq: 15, StoredAt: time.Now()},
	}
	for _, dl := range dls {
		_, err := pub.PublishDeadLetter(t.Context(), dl)
		require.NoError(t, err)
	}
	stored := rpMsgs(t, js, "LESSON_DEADLETTER", "")
	require.Len(t, stored, len(dls))
	at := func(seq int) string { return stored[seq-1].Time.UTC().Format(time.RFC3339) }

	t.Run("dry run lists and publishes nothing", func(t *testing.T) {
		out, errOut, err := rpReplay(t, url, "--dry-run", "--reason", "import_failed,invalid_event")
		require.NoError(t, err)
		assert.Equal(t, strings.Join([]string{
			"seq=1 mandator=zh-kanti reason=import_failed batch=12345 stored=" + at(1) +
				" to=lessons.changes.zh-kanti: Fehler: Ressource 'Raum X' nicht gefunden zweite Zeile",
			"seq=3 mandator=bern reason=import_failed batch=12346 stored=" + at(3) + " to=lessons.changes.bern: Fehler",
			"seq=5 mandator=zh-kanti reason=invalid_event batch=- stored=" + at(5) + " to=lessons.changes.zh-kanti: id is required",
			"would replay 3 of 5 dead letters (1 skipped by filter, 0 errors, 1 without a valid mandator)",
			"  import_failed: 2 to replay, 0 skipped, 0 errors",
			"  invalid_event: 1 to replay, 0 skipped, 0 errors, 1 without a valid mandator",
			"  rejected: 0 to replay, 1 skipped, 0 errors",
		}, "\n")+"\n", out)
		assert.Contains(t, errOut, "dry run: nothing is published")
		assert.Contains(t, errOut, "seq 4 (lessons.deadletter._invalid, reason invalid_event) skipped: it came from "+
			"lessons.changes.a.b, which names no valid mandator; select it with --mandator _invalid")
		assert.Empty(t, rpMsgs(t, js, "LESSONS", ""))
	})

	t.Run("time range", func(t *testing.T) {
		since := stored[2].Time.UTC().Format(time.RFC3339Nano) // seq 3, inclusive
		until := stored[4].Time.UTC().Format(time.RFC3339Nano) // seq 5, exclusive
		out, _, err := rpReplay(t, url, "--dry-run", "--since", since, "--until", until, "--mandator", "bern,zh-kanti")
		require.NoError(t, err)
		lines := strings.Split(out, "\n")
		assert.True(t, strings.HasPrefix(lines[0], "seq=3 mandator=bern "), out)
		assert.Equal(t, "would replay 1 of 5 dead letters (4 skipped by filter, 0 errors)", lines[1])
	})

	t.Run("explicit mandator selects events without a valid one", func(t *testing.T) {
		out, errOut, err := rpReplay(t, url, "--mandator", "_invalid")
		require.NoError(t, err)
		assert.Contains(t, out, "replayed 1 of 5 dead letters (4 skipped by filter, 0 errors)\n")
		runID := rpRunID.FindStringSubmatch(errOut)
		require.NotNil(t, runID, errOut)
		msgs := rpMsgs(t, js, "LESSONS", "")
		require.Len(t, msgs, 1)
		assert.Equal(t, "lessons.changes.a.b", msgs[0].Subject)
		assert.Equal(t, "not json", string(msgs[0].Data))
		assert.Equal(t, "replay-4-"+runID[1], msgs[0].Header.Get("Nats-Msg-Id"))
		assert.Equal(t, "LESSON_DEADLETTER/4", msgs[0].Header.Get(replayHeaderOf))
	})

	t.Run("limit, and a repeated run id is de-duplicated", func(t *testing.T) {
		before := len(rpMsgs(t, js, "LESSONS", ""))
		out, _, err := rpReplay(t, url, "--limit", "1", "--run-id", "again")
		require.NoError(t, err)
		assert.Contains(t, out, "replayed 1 of 5 dead letters (0 skipped by filter, 0 errors, 1 without a valid mandator, 3 over --limit)\n")
		msgs := rpMsgs(t, js, "LESSONS", "")
		require.Len(t, msgs, before+1)
		assert.Equal(t, "replay-1-again", msgs[before].Header.Get("Nats-Msg-Id"))
		assert.JSONEq(t, `{"id":"a1"}`, string(msgs[before].Data))

		out, _, err = rpReplay(t, url, "--limit", "1", "--run-id", "again", "--again")
		require.NoError(t, err)
		assert.Contains(t, out, "replayed 1 of 5 dead letters")
		assert.Contains(t, out, "1 of them were already in the input")
		assert.Len(t, rpMsgs(t, js, "LESSONS", ""), before+1)
	})

	t.Run("stops when the last message at start was deleted", func(t *testing.T) {
		st, err := js.Stream(t.Context(), "LESSON_DEADLETTER")
		require.NoError(t, err)
		require.NoError(t, st.DeleteMsg(t.Context(), 5))
		out, _, err := rpReplay(t, url, "--dry-run", "--again")
		require.NoError(t, err)
		assert.Contains(t, out, "would replay 3 of 4 dead letters (0 skipped by filter, 0 errors, 1 without a valid mandator)\n")
	})

	t.Run("publish errors are counted and fail the run", func(t *testing.T) {
		require.NoError(t, js.DeleteStream(t.Context(), "LESSONS"))
		out, errOut, err := rpReplay(t, url, "--limit", "1", "--again")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "1 of the selected dead letters could not be republished")
		assert.Contains(t, out, "replayed 0 of 4 dead letters (0 skipped by filter, 1 errors, 1 without a valid mandator, 2 over --limit)\n")
		assert.Contains(t, errOut, "replay: seq 1 (zh-kanti, import_failed) to lessons.changes.zh-kanti: ")
	})

	t.Run("missing stream", func(t *testing.T) {
		_, _, err := rpReplay(t, url, "--deadletter-stream", "NOPE")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "replay: stream NOPE: ")
	})
}

// rpBridge runs the bridge engine against the simulator until the test ends.
func rpBridge(t *testing.T, js jetstream.JetStream, sim *jobmanagertest.Sim) {
	t.Helper()
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)
	jm, err := jobmanager.New(hs.URL, jobmanager.WithToken("rp-token"))
	require.NoError(t, err)
	b, err := consumer.New(js, jm, consumer.Config{
		PollSchedule:     []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
		PollJitter:       0.05,
		PollTimeout:      10 * time.Second,
		NotFoundGrace:    2 * time.Second,
		BatchLinger:      20 * time.Millisecond,
		SubmitBackoff:    10 * time.Millisecond,
		SubmitMaxBackoff: 50 * time.Millisecond,
		AckWait:          2 * time.Second,
		ShutdownGrace:    2 * time.Second,
		Logger:           zaptest.NewLogger(t),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("bridge did not stop")
		}
	})
	require.Eventually(t, b.Ready, 5*time.Second, 5*time.Millisecond, "bridge not ready")
}

// rpEvent returns a valid lesson.created event.
func rpEvent(lessonID, resource string) *schemas.LessonChange {
	start := time.Date(2025, 12, 23, 8, 0, 0, 0, time.UTC)
	return &schemas.LessonChange{
		SpecVersion: schemas.SpecVersion, ID: uuid.Must(uuid.NewV7()).String(), Source: "/test", Type: schemas.TypeLessonCreated,
		Data: schemas.LessonData{LessonID: lessonID, Start: start, End: start.Add(2 * time.Hour), Resource: resource, Group: "g1"},
	}
}

// rpSucceeded returns the event ids settled by succeeded outcomes.
func rpSucceeded(t *testing.T, js jetstream.JetStream) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, m := range rpMsgs(t, js, "LESSON_OUTCOMES", "") {
		var o schemas.Outcome
		require.NoError(t, json.Unmarshal(m.Data, &o))
		if o.Data.Status == schemas.StatusSucceeded {
			for _, id := range o.Data.EventIDs {
				ids[id] = true
			}
		}
	}
	return ids
}

func TestReplayEndToEnd(t *testing.T) {
	s := natstest.Start(t)
	_, js := s.Connect()
	sim := jobmanagertest.New(jobmanagertest.Config{Token: "rp-token"})
	rpBridge(t, js, sim)
	pub, err := publisher.New(js)
	require.NoError(t, err)
	publish := func(mandator string, evs ...*schemas.LessonChange) {
		for _, ev := range evs {
			_, err := pub.PublishChange(t.Context(), mandator, ev)
			require.NoError(t, err)
		}
	}
	waitDeadLetters := func(n int) {
		require.Eventually(t, func() bool { return len(rpMsgs(t, js, "LESSON_DEADLETTER", "")) == n },
			10*time.Second, 10*time.Millisecond, "want %d dead letters", n)
	}

	// JobManager does not know "Raum X" yet: the imports fail.
	sim.FailImport(jobmanagertest.Forever, "Fehler: Ressource 'Raum X' nicht gefunden")
	a1, a2, c1 := rpEvent("L-A1", "Raum X"), rpEvent("L-A2", "Raum X"), rpEvent("L-C1", "Raum X")
	publish("zh-kanti", a1, a2)
	publish("bern", c1)
	waitDeadLetters(3)
	sim.FailImport(0)
	// A submit refused with 422.
	sim.SubmitStatus(422, jobmanagertest.Forever, 0)
	r1 := rpEvent("L-R1", "Raum X")
	publish("zh-kanti", r1)
	waitDeadLetters(4)
	sim.SubmitStatus(422, 0, 0)
	// Two invalid events, one on a subject without a valid mandator.
	for _, subject := range []string{"lessons.changes.zh-kanti", "lessons.changes.a.b"} {
		_, err := js.Publish(t.Context(), subject, []byte(`{"specversion":"1.0"}`), jetstream.WithMsgID(uuid.NewString()))
		require.NoError(t, err)
	}
	waitDeadLetters(6)
	require.Empty(t, sim.Lessons("zh-kanti"))
	inputBefore := len(rpMsgs(t, js, "LESSONS", ""))

	// The operator looks first.
	out, _, err := rpReplay(t, s.URL(), "--dry-run", "--mandator", "zh-kanti")
	require.NoError(t, err)
	assert.Contains(t, out, "would replay 4 of 6 dead letters (2 skipped by filter, 0 errors)\n")
	assert.Regexp(t, `(?m)^seq=\d+ mandator=zh-kanti reason=import_failed batch=\d+ .*: Fehler: Ressource 'Raum X' nicht gefunden$`, out)
	assert.Regexp(t, `(?m)^seq=\d+ mandator=zh-kanti reason=rejected batch=- `, out)
	assert.Len(t, rpMsgs(t, js, "LESSONS", ""), inputBefore, "a dry run publishes nothing")

	// The cause is fixed in JobManager; replay zh-kanti's failed imports and rejects, well within
	// the input stream's duplicate window of the original publishes.
	out, errOut, err := rpReplay(t, s.URL(), "--mandator", "zh-kanti", "--reason", "import_failed,rejected")
	require.NoError(t, err, errOut)
	assert.Equal(t, strings.Join([]string{
		"replayed 3 of 6 dead letters (3 skipped by filter, 0 errors)",
		"  import_failed: 2 replayed, 1 skipped, 0 errors",
		"  invalid_event: 0 replayed, 2 skipped, 0 errors",
		"  rejected: 1 replayed, 0 skipped, 0 errors",
	}, "\n")+"\n", out)

	require.Eventually(t, func() bool {
		ok := rpSucceeded(t, js)
		return ok[a1.ID] && ok[a2.ID] && ok[r1.ID]
	}, 10*time.Second, 10*time.Millisecond, "replayed events not imported")
	lessons := sim.Lessons("zh-kanti")
	assert.Len(t, lessons, 3)
	for _, id := range []string{"L-A1", "L-A2", "L-R1"} {
		assert.Equal(t, "Raum X", lessons[id].RessourceName, id)
		assert.Equal(t, 1, sim.Creations("zh-kanti", id), id)
	}
	assert.Empty(t, sim.Lessons("bern"), "bern's dead letter was not selected")
	assert.False(t, rpSucceeded(t, js)[c1.ID])
	assert.Len(t, rpMsgs(t, js, "LESSONS", "lessons.changes.bern"), 1, "bern's event not republished")
	assert.Len(t, rpMsgs(t, js, "LESSONS", ""), inputBefore+3)
	assert.Len(t, rpMsgs(t, js, "LESSON_DEADLETTER", ""), 6, "replay deletes no dead letter and none were added")
}

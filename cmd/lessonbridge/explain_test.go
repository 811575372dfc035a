package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// explainFixture is an embedded server with the bridge's three streams and a publisher.
type explainFixture struct {
	t   *testing.T
	url string
	js  jetstream.JetStream
	pub *publisher.Publisher
	seq map[string]uint64 // input stream sequence by event id
}

// newExplainFixture creates the streams; inputMaxMsgs > 0 limits the input stream (retention).
func newExplainFixture(t *testing.T, inputMaxMsgs int64) *explainFixture {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect()
	ctx := context.Background()
	for _, sc := range []jetstream.StreamConfig{
		{Name: "LESSONS", Subjects: []string{"lessons.changes.>"}, MaxMsgs: inputMaxMsgs},
		{Name: "LESSON_OUTCOMES", Subjects: []string{"lessons.outcomes.>"}},
		{Name: "LESSON_DEADLETTER", Subjects: []string{"lessons.deadletter.>"}},
	} {
		if sc.MaxMsgs == 0 {
			sc.MaxMsgs = -1
		}
		_, err := js.CreateStream(ctx, sc)
		require.NoError(t, err)
	}
	pub, err := publisher.New(js)
	require.NoError(t, err)
	return &explainFixture{t: t, url: ns.URL(), js: js, pub: pub, seq: map[string]uint64{}}
}

// event publishes a lesson.created event and returns its body.
func (f *explainFixture) event(mandator, eventID, lessonID string) []byte {
	f.t.Helper()
	start := time.Date(2026, 2, 2, 8, 0, 0, 0, time.UTC)
	ev := schemas.LessonChange{SpecVersion: schemas.SpecVersion, ID: eventID, Source: "/test", Type: schemas.TypeLessonCreated,
		Data: schemas.LessonData{LessonID: lessonID, Start: start, End: start.Add(45 * time.Minute), Resource: "Raum 1.01"}}
	body, err := json.Marshal(ev)
	require.NoError(f.t, err)
	ack, err := f.pub.PublishRawChange(context.Background(), mandator, eventID, body)
	require.NoError(f.t, err)
	f.seq[eventID] = ack.Sequence
	return body
}

// outcome publishes an outcome of a JobManager batch and returns it.
func (f *explainFixture) outcome(mandator, status, batchID string, lessons, events, resubLessons, resubEvents []string, errs ...string) *schemas.Outcome {
	f.t.Helper()
	submitted := time.Now().UTC()
	now := time.Now().UTC()
	key := "b-" + uuid.Must(uuid.NewV7()).String()
	o := &schemas.Outcome{SpecVersion: schemas.SpecVersion, ID: key, Source: schemas.OutcomeSource, Type: "lesson.batch." + status,
		Time: now, Subject: batchID, DataContentType: "application/json",
		Data: schemas.OutcomeData{Status: status, BatchID: batchID, Mandator: mandator, Action: schemas.ActionCreate,
			ImportStatus: "LessonsCreated", ErrorMessages: []string{}, JobIDs: []string{"lb-" + now.Format("20060102") + "-" + uuid.Must(uuid.NewV7()).String()},
			LessonCount: len(lessons) + len(resubLessons), LessonIDs: lessons, EventIDs: events,
			ResubmittedLessonIDs: resubLessons, ResubmittedEventIDs: resubEvents,
			SubmittedAt: submitted, FinishedAt: now, Polls: 3}}
	if status == schemas.StatusFailed {
		o.Data.Reason, o.Data.ErrorClass, o.Data.ImportStatus, o.Data.ErrorMessages = schemas.ReasonImportFailed, schemas.ErrorClassData, "LessonsImportFailed", errs
	}
	_, err := f.pub.PublishOutcome(context.Background(), o)
	require.NoError(f.t, err)
	return o
}

func (f *explainFixture) deadLetter(mandator, eventID string, body []byte, batchID, errText string) {
	f.t.Helper()
	_, err := f.pub.PublishDeadLetter(context.Background(), publisher.DeadLetter{Mandator: mandator, Body: body,
		Reason: schemas.ReasonImportFailed, Error: errText, BatchID: batchID, Subject: "lessons.changes." + mandator, StreamSeq: f.seq[eventID], StoredAt: time.Now()})
	require.NoError(f.t, err)
}

// explain runs the command and returns its output and error.
func (f *explainFixture) explain(args ...string) (string, error) {
	f.t.Helper()
	var out, errOut bytes.Buffer
	err := runExplain(context.Background(), append([]string{"--nats-url", f.url, "--timeout", "20s"}, args...), &out, &errOut)
	return out.String(), err
}

// explainJSON runs the command with --json and decodes the report.
func (f *explainFixture) explainJSON(args ...string) *explainReport {
	f.t.Helper()
	out, err := f.explain(append(args, "--json")...)
	require.NoError(f.t, err, out)
	var r explainReport
	require.NoError(f.t, json.Unmarshal([]byte(out), &r), out)
	return &r
}

func whats(r *explainReport) []string {
	var s []string
	for _, e := range r.Timeline {
		s = append(s, e.What)
	}
	return s
}

// TestExplainImported: an imported lesson is found by each kind of id, with its whole story.
func TestExplainImported(t *testing.T) {
	f := newExplainFixture(t, 0)
	f.event("zh-kanti", "e-other", "L-9") // noise
	f.event("zh-kanti", "e-1", "L-1")
	o := f.outcome("zh-kanti", schemas.StatusSucceeded, "4711", []string{"L-1"}, []string{"e-1"}, []string{}, []string{})
	f.outcome("zh-kanti", schemas.StatusSucceeded, "4712", []string{"L-9"}, []string{"e-other"}, []string{}, []string{})

	out, err := f.explain("--mandator", "zh-kanti", "L-1")
	require.NoError(t, err)
	assert.Contains(t, out, "L-1 (matched as event, batch, lesson; mandator zh-kanti): imported: create batch 4711 succeeded")
	assert.Contains(t, out, "published  lesson.created lesson L-1 event e-1 on lessons.changes.zh-kanti")
	assert.Contains(t, out, "submitted  zh-kanti create batch 4711 (key "+o.ID+"): 1 lessons, JobIDs "+o.Data.JobIDs[0])
	assert.Contains(t, out, "polled     batch 4711 3 times; last ImportStatus LessonsCreated")
	assert.NotContains(t, out, "L-9", "another lesson's batch is not part of the story")

	for _, tt := range []struct{ name, id, kind string }{
		{"event id", "e-1", "settles the event"},
		{"batchId", "4711", "batchId"},
		{"JobID", o.Data.JobIDs[0], "JobID"},
		{"batch key", o.ID, "batch key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := f.explainJSON(tt.id)
			require.True(t, r.Found)
			require.Len(t, r.Outcomes, 1)
			assert.Equal(t, tt.kind, r.Outcomes[0].Match)
			assert.Equal(t, "4711", r.Outcomes[0].Outcome.Data.BatchID)
			require.Len(t, r.Events, 1, "the input event of the batch is found")
			assert.Equal(t, "e-1", r.Events[0].EventID)
			assert.Equal(t, []string{"published", "submitted", "polled", "outcome"}, whats(r))
			assert.True(t, strings.HasPrefix(r.Verdict, "imported"), r.Verdict)
		})
	}
	// A key carries its creation time: the outcome scan starts shortly before it, not at the start.
	r := f.explainJSON(o.ID)
	require.NotEmpty(t, r.Searched)
	assert.False(t, r.Searched[0].From.IsZero(), "the scan of a key starts at the key's time")
}

// TestExplainDeadLettered: a lesson whose batch failed shows the outcome, its dead letter, and the
// support form has what the vendor guide asks for.
func TestExplainDeadLettered(t *testing.T) {
	f := newExplainFixture(t, 0)
	body := f.event("zh-kanti", "e-2", "L-2")
	const jmErr = "Fehler: Ressource 'Raum 9.99' existiert nicht"
	o := f.outcome("zh-kanti", schemas.StatusFailed, "4800", []string{"L-2"}, []string{"e-2"}, []string{}, []string{}, jmErr)
	f.deadLetter("zh-kanti", "e-2", body, "4800", jmErr)

	r := f.explainJSON("--mandator", "zh-kanti", "L-2")
	assert.Equal(t, []string{"published", "submitted", "polled", "outcome", "deadletter"}, whats(r))
	require.Len(t, r.DeadLetters, 1)
	assert.Equal(t, "4800", r.DeadLetters[0].BatchID)
	assert.Equal(t, "e-2", r.DeadLetters[0].EventID)
	assert.Contains(t, r.Verdict, "not imported: create batch 4800 failed (import_failed, data)")
	assert.Contains(t, r.Verdict, "dead-lettered")

	// After a fix the dead letter is replayed (as lessonbridge replay does) and imported.
	msg := &nats.Msg{Subject: "lessons.changes.zh-kanti", Data: body, Header: nats.Header{}}
	msg.Header.Set(replayHeaderOf, "LESSON_DEADLETTER/1")
	_, err := f.js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(replayMsgID(1, "run1")))
	require.NoError(t, err)
	f.outcome("zh-kanti", schemas.StatusSucceeded, "4801", []string{"L-2"}, []string{"e-2"}, []string{}, []string{})
	r = f.explainJSON("--mandator", "zh-kanti", "L-2")
	assert.Equal(t, []string{"published", "submitted", "polled", "outcome", "deadletter", "replayed", "submitted", "polled", "outcome"}, whats(r))
	require.Len(t, r.Events, 2)
	assert.Equal(t, "LESSON_DEADLETTER/1", r.Events[1].ReplayOf)
	assert.Equal(t, "e-2", r.Events[1].EventID, "the replayed copy is the same event")
	assert.Contains(t, r.Verdict, "imported: create batch 4801 succeeded")

	out, err := f.explain("--support", "4800")
	require.NoError(t, err)
	for _, want := range []string{
		"Mandator:      zh-kanti\n",
		"BatchId:       4800\n",
		"Submitted at:  " + o.Data.SubmittedAt.Format(time.RFC3339Nano) + "\n",
		"Finished at:   " + o.Data.FinishedAt.Format(time.RFC3339Nano) + "\n",
		"ImportStatus:  LessonsImportFailed\n",
		"JobIDs:        " + o.Data.JobIDs[0] + "\n",
		"ErrorMessages:\n  " + jmErr + "\n",
		"LektionId L-2",
	} {
		assert.Contains(t, out, want)
	}
}

// TestExplainResubmittedByIsolation: a lesson that shared a failed batch with a bad one, went on into
// a later batch (resubmittedLessonIds) and was imported there.
func TestExplainResubmittedByIsolation(t *testing.T) {
	f := newExplainFixture(t, 0)
	bad := f.event("zh-kanti", "e-3", "L-3")
	f.event("zh-kanti", "e-4", "L-4")
	const jmErr = "Fehler: LektionId L-3: Ende vor Beginn"
	f.outcome("zh-kanti", schemas.StatusFailed, "4900", []string{"L-3"}, []string{"e-3"}, []string{"L-4"}, []string{"e-4"}, jmErr)
	f.deadLetter("zh-kanti", "e-3", bad, "4900", jmErr)
	f.outcome("zh-kanti", schemas.StatusSucceeded, "4901", []string{"L-4"}, []string{"e-4"}, []string{}, []string{})

	r := f.explainJSON("--mandator", "zh-kanti", "L-4")
	require.Len(t, r.Outcomes, 2)
	assert.Equal(t, "resubmitted the lesson", r.Outcomes[0].Match)
	assert.Equal(t, "settles the lesson", r.Outcomes[1].Match)
	assert.Contains(t, whats(r), "isolation")
	assert.Empty(t, r.DeadLetters, "the good lesson has no dead letter")
	assert.Contains(t, r.Verdict, "imported: create batch 4901 succeeded")
	out, err := f.explain("--mandator", "zh-kanti", "L-4")
	require.NoError(t, err)
	assert.Contains(t, out, "isolation  lessons L-4 (events 1) were not at fault and went on into a later batch")

	// Asked about the failed batch, explain follows the resubmitted events into the later batch.
	r = f.explainJSON("4900")
	require.Len(t, r.Outcomes, 2)
	assert.Equal(t, "batchId", r.Outcomes[0].Match)
	assert.Equal(t, "settles events resubmitted by an earlier batch", r.Outcomes[1].Match)
	assert.Equal(t, "4901", r.Outcomes[1].Outcome.Data.BatchID)
	require.Len(t, r.DeadLetters, 1)
	assert.Equal(t, "e-3", r.DeadLetters[0].EventID)
	assert.Len(t, r.Events, 2)
}

// TestExplainInFlight: a lesson whose batch the running bridge still polls; the bridge's /batches and
// JobManager's status say where it is.
func TestExplainInFlight(t *testing.T) {
	f := newExplainFixture(t, 0)
	f.event("zh-kanti", "e-5", "L-5")
	f.event("zh-kanti", "e-6", "L-6")
	// The bridge's consumer has taken e-5 (not acknowledged); e-6 waits in the stream.
	ctx := context.Background()
	cons, err := f.js.CreateOrUpdateConsumer(ctx, "LESSONS", jetstream.ConsumerConfig{Durable: "lessonbridge", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
	require.NoError(t, err)
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	for range batch.Messages() {
	}
	require.NoError(t, batch.Error())
	created := time.Now().UTC()
	jobID := "lb-" + created.Format("20060102") + "-" + uuid.Must(uuid.NewV7()).String()
	batches := []map[string]any{
		{"key": "b-" + uuid.Must(uuid.NewV7()).String(), "mandator": "zh-kanti", "action": "create", "batchId": "5000",
			"state": "polling", "created": created, "polls": 4, "lessons": 1, "events": 1, "lastStatus": "AwaitingLessonProcessing",
			"jobIds": []string{jobID}, "lessonIds": []string{"L-5"}, "eventIds": []string{"e-5"}},
		{"key": "b-other", "mandator": "zh-kanti", "action": "create", "batchId": "5001", "state": "polling", "created": created,
			"jobIds": []string{"lb-20260101-other"}},
	}
	bridge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/batches", r.URL.Path)
		_ = json.NewEncoder(w).Encode(batches)
	}))
	t.Cleanup(bridge.Close)
	jm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "Bearer jm-token", r.Header.Get("Authorization"))
		if r.URL.Path != "/zh-kanti/api/v2.0/jobs/batches/5000" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"BatchId":"5000","ImportStatus":"AwaitingLessonProcessing","LessonCount":1}`))
	}))
	t.Cleanup(jm.Close)

	r := f.explainJSON("--mandator", "zh-kanti", "L-5", "--bridge-url", bridge.URL, "--jobmanager-url", jm.URL, "--jobmanager-token", "jm-token")
	require.Len(t, r.InFlight, 1)
	assert.Equal(t, "5000", r.InFlight[0].BatchID)
	assert.Equal(t, "holds the lesson", r.InFlight[0].Match)
	assert.Contains(t, r.Verdict, "in flight: batch 5000")
	require.Len(t, r.JobManager, 1)
	assert.Equal(t, "AwaitingLessonProcessing", r.JobManager[0].ImportStatus)
	assert.Equal(t, []string{"published", "inflight", "held", "jobmanager"}, whats(r))

	// By JobID (what /batches of today's bridge reports), the text names the batch.
	out, err := f.explain(jobID, "--bridge-url", strings.TrimPrefix(bridge.URL, "http://"))
	require.NoError(t, err)
	assert.Contains(t, out, "inflight   in the bridge: zh-kanti create batch 5000")
	assert.Contains(t, out, "state polling, 4 polls, last status AwaitingLessonProcessing")
	assert.NotContains(t, out, "5001")

	// Without the bridge: published, not settled, and a bridge that does not answer is said so.
	bridge.Close()
	out, err = f.explain("--mandator", "zh-kanti", "L-5", "--bridge-url", bridge.URL)
	require.NoError(t, err)
	assert.Contains(t, out, "published, held by the bridge, no outcome yet")
	assert.Contains(t, out, "delivered to consumer lessonbridge and not acknowledged")
	assert.Contains(t, out, "is not reachable")
	out, err = f.explain("--mandator", "zh-kanti", "L-6")
	require.NoError(t, err)
	assert.Contains(t, out, "published, not yet delivered to the bridge")
	assert.Contains(t, out, "not yet delivered to consumer lessonbridge: 1 messages wait")
}

// TestExplainUnknown: an id nobody knows ends with an error and says what was searched; a stream
// that no longer holds its start says so.
func TestExplainUnknown(t *testing.T) {
	f := newExplainFixture(t, 2)
	for _, id := range []string{"e-a", "e-b", "e-c"} {
		f.event("zh-kanti", id, "L-"+id)
	}
	out, err := f.explain("--mandator", "zh-kanti", "L-0815")
	require.ErrorIs(t, err, errNothingFound)
	assert.Contains(t, out, "no trace of L-0815")
	assert.Contains(t, out, "LESSONS no longer holds the history before")
	assert.Contains(t, out, "searched LESSONS (lessons.changes.zh-kanti) from its first message: 2 messages")
}

func TestExplainArgs(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	o, err := parseExplainArgs([]string{"--mandator", "zh", "L-1", "--since", "2h", "--json"}, &bytes.Buffer{}, now)
	require.NoError(t, err)
	assert.Equal(t, "L-1", o.id)
	assert.True(t, o.jsonOut, "flags after the id are parsed too")
	assert.Equal(t, now.Add(-2*time.Hour), o.since)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no id", []string{"--mandator", "zh"}, "an id is required"},
		{"two ids", []string{"a", "b"}, "one id only, got 2: a b"},
		{"lesson without mandator", []string{"--kind", "lesson", "L-1"}, `--mandator (LESSONBRIDGE_EXPLAIN_MANDATOR) "": a lessonId is unique per mandator only`},
		{"bad kind", []string{"--kind", "lektion", "L-1"}, `--kind (LESSONBRIDGE_EXPLAIN_KIND) "lektion": must be one of`},
		{"bad since", []string{"--since", "yesterday", "L-1"}, `--since (LESSONBRIDGE_EXPLAIN_SINCE) "yesterday": not an RFC 3339 time`},
		{"bad mandator", []string{"--mandator", "zh.kanti", "L-1"}, `--mandator (LESSONBRIDGE_EXPLAIN_MANDATOR) "zh.kanti"`},
		{"token without url", []string{"--jobmanager-token", "x", "L-1"}, "--jobmanager-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseExplainArgs(tt.args, &bytes.Buffer{}, now)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestExplainMissingStreams: against a server without the bridge's streams, explain says so.
func TestExplainMissingStreams(t *testing.T) {
	ns := natstest.Start(t)
	var out bytes.Buffer
	err := runExplain(context.Background(), []string{"--nats-url", ns.URL(), "e-1"}, &out, &bytes.Buffer{})
	require.True(t, errors.Is(err, errNothingFound), "%v", err)
	assert.Contains(t, out.String(), "stream LESSON_OUTCOMES does not exist")
}

// TestDevExplainExample: the explain command dev prints works against dev's own run and tells the
// story of the lesson whose batch failed on purpose.
func TestDevExplainExample(t *testing.T) {
	clearRunEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	stdout := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runDev(ctx, []string{"--events", "20", "--http-addr", "127.0.0.1:0"}, stdout, &bytes.Buffer{})
	}()
	var line string
	require.Eventually(t, func() bool {
		for _, l := range strings.Split(stdout.String(), "\n") {
			if cmd, ok := strings.CutPrefix(l, "what happened to a lesson: lessonbridge "); ok {
				line = cmd
				return true
			}
		}
		return false
	}, 60*time.Second, 20*time.Millisecond, "dev printed no explain example:\n%s", stdout)
	var out bytes.Buffer
	err := run(ctx, strings.Fields(line), &out, &bytes.Buffer{})
	require.NoError(t, err, out.String())
	assert.Contains(t, out.String(), "matched as event, batch, lesson; mandator annex): not imported: create batch")
	assert.Contains(t, out.String(), "(import_failed, data)")
	assert.Contains(t, out.String(), "deadletter ")
	cancel()
	require.NoError(t, <-done)
	t.Log(out.String())
}

package publisher_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The embedded server and nats.go keep a few package-level goroutines alive after shutdown.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go.(*Conn).doReconnect"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"),
	)
}

// setup starts a server with the three streams of contract section 2 and returns a publisher.
func setup(t *testing.T) (jetstream.JetStream, *publisher.Publisher) {
	t.Helper()
	s := natstest.Start(t)
	_, js := s.Connect()
	ctx := t.Context()
	for name, subj := range map[string]string{
		"LESSONS":           "lessons.changes.>",
		"LESSON_OUTCOMES":   "lessons.outcomes.>",
		"LESSON_DEADLETTER": "lessons.deadletter.>",
	} {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Storage: jetstream.MemoryStorage})
		require.NoError(t, err)
	}
	p, err := publisher.New(js)
	require.NoError(t, err)
	return js, p
}

// lastMsg returns the stream's last stored message.
func lastMsg(t *testing.T, js jetstream.JetStream, stream string) *jetstream.RawStreamMsg {
	t.Helper()
	st, err := js.Stream(t.Context(), stream)
	require.NoError(t, err)
	info, err := st.Info(t.Context())
	require.NoError(t, err)
	require.NotZero(t, info.State.Msgs, "stream %s is empty", stream)
	m, err := st.GetMsg(t.Context(), info.State.LastSeq)
	require.NoError(t, err)
	return m
}

func msgCount(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	st, err := js.Stream(t.Context(), stream)
	require.NoError(t, err)
	info, err := st.Info(t.Context())
	require.NoError(t, err)
	return info.State.Msgs
}

func sampleOutcome(status string) *schemas.Outcome {
	return &schemas.Outcome{
		SpecVersion: schemas.SpecVersion, ID: "lb-outcome-12345", Source: schemas.OutcomeSource,
		Type: "lesson.batch." + status, Time: time.Date(2025, 12, 22, 16, 3, 10, 0, time.UTC), Subject: "12345",
		DataContentType: "application/json",
		Data: schemas.OutcomeData{
			Status: status, BatchID: "12345", Mandator: "zh-kanti", Action: schemas.ActionCreate,
			ImportStatus: "LessonsCreated", ErrorMessages: []string{}, JobIDs: []string{"lb-1"}, LessonCount: 1,
			LessonIDs: []string{"L-0001"}, EventIDs: []string{"e1"}, FinishedAt: time.Date(2025, 12, 22, 16, 3, 10, 0, time.UTC),
		},
	}
}

func TestPublishChange(t *testing.T) {
	js, p := setup(t)
	start := time.Date(2025, 12, 23, 8, 0, 0, 0, time.UTC)
	ev := &schemas.LessonChange{
		SpecVersion: schemas.SpecVersion, ID: "ev-1", Source: "/test", Type: schemas.TypeLessonCreated,
		Data: schemas.LessonData{LessonID: "L-0001", Start: start, End: start.Add(time.Hour), Resource: "Raum 1.01"},
	}
	ack, err := p.PublishChange(t.Context(), "zh-kanti", ev)
	require.NoError(t, err)
	assert.Equal(t, "LESSONS", ack.Stream)
	assert.False(t, ack.Duplicate)

	m := lastMsg(t, js, "LESSONS")
	assert.Equal(t, "lessons.changes.zh-kanti", m.Subject)
	assert.Equal(t, "ev-1", m.Header.Get(jetstream.MsgIDHeader))
	var got schemas.LessonChange
	require.NoError(t, json.Unmarshal(m.Data, &got))
	assert.Equal(t, *ev, got)
}

func TestPublishRawChange(t *testing.T) {
	js, p := setup(t)
	body := []byte("not json at all")
	ack, err := p.PublishRawChange(t.Context(), "demo", "raw-1", body)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), ack.Sequence)

	m := lastMsg(t, js, "LESSONS")
	assert.Equal(t, "lessons.changes.demo", m.Subject)
	assert.Equal(t, "raw-1", m.Header.Get(jetstream.MsgIDHeader))
	assert.Equal(t, body, m.Data)

	ack, err = p.PublishRawChange(t.Context(), "demo", "raw-1", body)
	require.NoError(t, err)
	assert.True(t, ack.Duplicate)
	assert.Equal(t, uint64(1), msgCount(t, js, "LESSONS"))
}

func TestPublishOutcome(t *testing.T) {
	tests := []struct{ status, subject string }{
		{schemas.StatusSucceeded, "lessons.outcomes.zh-kanti.succeeded"},
		{schemas.StatusFailed, "lessons.outcomes.zh-kanti.failed"},
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			js, p := setup(t)
			o := sampleOutcome(tt.status)
			ack, err := p.PublishOutcome(t.Context(), o)
			require.NoError(t, err)
			assert.False(t, ack.Duplicate)

			m := lastMsg(t, js, "LESSON_OUTCOMES")
			assert.Equal(t, tt.subject, m.Subject)
			assert.Equal(t, o.ID, m.Header.Get(jetstream.MsgIDHeader))
			var got schemas.Outcome
			require.NoError(t, json.Unmarshal(m.Data, &got))
			assert.Equal(t, *o, got)

			// The same outcome again (a re-publish after a crash) is stored once.
			ack2, err := p.PublishOutcome(t.Context(), o)
			require.NoError(t, err)
			assert.True(t, ack2.Duplicate)
			assert.Equal(t, ack.Sequence, ack2.Sequence)
			assert.Equal(t, uint64(1), msgCount(t, js, "LESSON_OUTCOMES"))
		})
	}
}

// storedAt is a stream timestamp for dead letters in tests.
var storedAt = time.Date(2025, 12, 22, 16, 0, 0, 123456789, time.UTC)

func TestPublishDeadLetter(t *testing.T) {
	js, p := setup(t)
	body := []byte(`{"specversion":"1.0","id":"x"}`)
	longErr := "line one\nline two\r\x00" + strings.Repeat("ä", 3000)
	dl := publisher.DeadLetter{
		Mandator: "zh-kanti", Body: body, Reason: schemas.ReasonInvalidEvent, Error: longErr,
		Subject: "lessons.changes.zh-kanti", StreamSeq: 42, StoredAt: storedAt,
	}
	ack, err := p.PublishDeadLetter(t.Context(), dl)
	require.NoError(t, err)
	assert.False(t, ack.Duplicate)

	m := lastMsg(t, js, "LESSON_DEADLETTER")
	assert.Equal(t, "lessons.deadletter.zh-kanti", m.Subject)
	assert.Equal(t, body, m.Data)
	assert.Equal(t, "lessonbridge-dl-lessons.changes.zh-kanti-42-1766419200123456789", m.Header.Get(jetstream.MsgIDHeader))
	_, truncated := m.Header[schemas.HeaderTruncated]
	assert.False(t, truncated, "a body that fits is not marked truncated")
	assert.Equal(t, schemas.ReasonInvalidEvent, m.Header.Get(schemas.HeaderReason))
	assert.Equal(t, "lessons.changes.zh-kanti", m.Header.Get(schemas.HeaderSubject))
	assert.Equal(t, "42", m.Header.Get(schemas.HeaderStreamSeq))
	_, hasBatch := m.Header[schemas.HeaderBatchID]
	assert.False(t, hasBatch, "empty batch id must omit the header")

	e := m.Header.Get(schemas.HeaderError)
	assert.True(t, strings.HasPrefix(e, "line one line two  "), e)
	assert.NotContains(t, e, "\n")
	assert.LessOrEqual(t, len(e), 4096)
	assert.Greater(t, len(e), 4000)
	assert.True(t, strings.HasSuffix(e, "…"))
	assert.True(t, json.Valid([]byte(`"`+e+`"`)), "cut on a rune boundary")

	// A failed batch's dead letter carries its batch id; a repeat is de-duplicated.
	dl.StreamSeq, dl.BatchID, dl.Reason, dl.Error = 43, "12346", schemas.ReasonImportFailed, "Fehler: Duplicate JobId"
	_, err = p.PublishDeadLetter(t.Context(), dl)
	require.NoError(t, err)
	m = lastMsg(t, js, "LESSON_DEADLETTER")
	assert.Equal(t, "12346", m.Header.Get(schemas.HeaderBatchID))
	assert.Equal(t, "Fehler: Duplicate JobId", m.Header.Get(schemas.HeaderError))
	ack, err = p.PublishDeadLetter(t.Context(), dl)
	require.NoError(t, err)
	assert.True(t, ack.Duplicate)
	assert.Equal(t, uint64(2), msgCount(t, js, "LESSON_DEADLETTER"))
}

func TestPublishChanges(t *testing.T) {
	js, p := setup(t)
	const n = 10_000
	changes := publisher.SampleEvents(n, "demo", 7, 0.05)
	var last, calls atomic.Int64
	monotonic := true
	counts, err := p.PublishChangesCounted(t.Context(), changes, 128, func(done int) {
		if int64(done) <= last.Load() {
			monotonic = false
		}
		last.Store(int64(done))
		calls.Add(1)
	})
	require.NoError(t, err)
	assert.Equal(t, int64(n), last.Load())
	assert.True(t, monotonic, "progress must only grow")
	assert.Equal(t, publisher.Counts{Stored: n}, counts)
	assert.Equal(t, uint64(n), msgCount(t, js, "LESSONS"))

	// The first and last message are stored in order with their ids.
	st, err := js.Stream(t.Context(), "LESSONS")
	require.NoError(t, err)
	for _, seq := range []uint64{1, n} {
		m, err := st.GetMsg(t.Context(), seq)
		require.NoError(t, err)
		assert.Equal(t, changes[seq-1].ID, m.Header.Get(jetstream.MsgIDHeader))
		assert.Equal(t, changes[seq-1].Body, m.Data)
	}

	// Publishing a part again stores nothing new and reports duplicates.
	counts, err = p.PublishChangesCounted(t.Context(), changes[:100], 0, nil)
	require.NoError(t, err)
	assert.Equal(t, publisher.Counts{Duplicates: 100}, counts)
	assert.Equal(t, uint64(n), msgCount(t, js, "LESSONS"))
}

func TestRejectsBadArguments(t *testing.T) {
	js, p := setup(t)
	ctx := t.Context()
	okOutcome := sampleOutcome(schemas.StatusSucceeded)
	withOutcome := func(f func(o *schemas.Outcome)) *schemas.Outcome {
		o := *okOutcome
		f(&o)
		return &o
	}
	dl := func(f func(d *publisher.DeadLetter)) publisher.DeadLetter {
		d := publisher.DeadLetter{Mandator: "m", Reason: "invalid_event", Subject: "lessons.changes.m", StreamSeq: 1, StoredAt: storedAt}
		f(&d)
		return d
	}
	ev := &schemas.LessonChange{ID: "e1", Data: schemas.LessonData{Mandator: "other"}}

	tests := []struct {
		name    string
		publish func() error
		names   string // the error must name this value
	}{
		{"empty mandator", func() error { _, err := p.PublishRawChange(ctx, "", "id", nil); return err }, `""`},
		{"dot in mandator", func() error { _, err := p.PublishRawChange(ctx, "a.b", "id", nil); return err }, `"a.b"`},
		{"wildcard mandator", func() error { _, err := p.PublishRawChange(ctx, "*", "id", nil); return err }, `"*"`},
		{"gt mandator", func() error { _, err := p.PublishRawChange(ctx, "a>", "id", nil); return err }, `"a>"`},
		{"space in mandator", func() error { _, err := p.PublishRawChange(ctx, "a b", "id", nil); return err }, `"a b"`},
		{"long mandator", func() error {
			_, err := p.PublishRawChange(ctx, strings.Repeat("x", 65), "id", nil)
			return err
		}, strings.Repeat("x", 65)},
		{"empty id", func() error { _, err := p.PublishRawChange(ctx, "m", "", nil); return err }, "empty message id"},
		{"newline in id", func() error { _, err := p.PublishRawChange(ctx, "m", "a\nb", nil); return err }, `"a\nb"`},
		{"data.mandator mismatch", func() error { _, err := p.PublishChange(ctx, "m", ev); return err }, `"other"`},
		{"nil event", func() error { _, err := p.PublishChange(ctx, "m", nil); return err }, "nil event"},
		{"outcome status", func() error {
			_, err := p.PublishOutcome(ctx, withOutcome(func(o *schemas.Outcome) { o.Data.Status = "done" }))
			return err
		}, `"done"`},
		{"outcome mandator", func() error {
			_, err := p.PublishOutcome(ctx, withOutcome(func(o *schemas.Outcome) { o.Data.Mandator = "zh.kanti" }))
			return err
		}, `"zh.kanti"`},
		{"outcome id", func() error {
			_, err := p.PublishOutcome(ctx, withOutcome(func(o *schemas.Outcome) { o.ID = "" }))
			return err
		}, "empty message id"},
		{"deadletter mandator", func() error {
			_, err := p.PublishDeadLetter(ctx, dl(func(d *publisher.DeadLetter) { d.Mandator = "a>b" }))
			return err
		}, `"a>b"`},
		{"deadletter reason", func() error {
			_, err := p.PublishDeadLetter(ctx, dl(func(d *publisher.DeadLetter) { d.Reason = "" }))
			return err
		}, "without reason"},
		{"deadletter origin", func() error {
			_, err := p.PublishDeadLetter(ctx, dl(func(d *publisher.DeadLetter) { d.StreamSeq = 0 }))
			return err
		}, "stream sequence"},
		{"deadletter stored at", func() error {
			_, err := p.PublishDeadLetter(ctx, dl(func(d *publisher.DeadLetter) { d.StoredAt = time.Time{} }))
			return err
		}, "StoredAt"},
		{"deadletter mandator with a dot", func() error {
			_, err := p.PublishDeadLetter(ctx, dl(func(d *publisher.DeadLetter) { d.Mandator = "_invalid.other" }))
			return err
		}, `"_invalid.other"`},
		{"batch with one bad mandator", func() error {
			return p.PublishChanges(ctx, []publisher.RawChange{{Mandator: "m", ID: "1"}, {Mandator: "m m", ID: "2"}}, 0, nil)
		}, `"m m"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.publish()
			require.Error(t, err)
			assert.ErrorIs(t, err, publisher.ErrInvalid)
			assert.Contains(t, err.Error(), tt.names)
		})
	}
	for _, stream := range []string{"LESSONS", "LESSON_OUTCOMES", "LESSON_DEADLETTER"} {
		assert.Zero(t, msgCount(t, js, stream), "nothing published to %s", stream)
	}
}

func TestWithSubjects(t *testing.T) {
	s := natstest.Start(t)
	_, js := s.Connect()

	for _, bad := range []publisher.Subjects{
		{Changes: "", Outcomes: "o", DeadLetter: "d"},
		{Changes: "c.*", Outcomes: "o", DeadLetter: "d"},
		{Changes: "c", Outcomes: "o.>", DeadLetter: "d"},
		{Changes: "c", Outcomes: "o", DeadLetter: "dead letter"},
		{Changes: "c..x", Outcomes: "o", DeadLetter: "d"},
		{Changes: "c.", Outcomes: "o", DeadLetter: "d"},
	} {
		_, err := publisher.New(js, publisher.WithSubjects(bad))
		assert.ErrorIs(t, err, publisher.ErrInvalid, "%+v", bad)
	}

	custom := publisher.Subjects{Changes: "acme.in", Outcomes: "acme.out", DeadLetter: "acme.dlq"}
	p, err := publisher.New(js, publisher.WithSubjects(custom))
	require.NoError(t, err)
	assert.Equal(t, custom, p.Subjects())
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "ACME", Subjects: []string{"acme.>"}, Storage: jetstream.MemoryStorage})
	require.NoError(t, err)

	_, err = p.PublishRawChange(t.Context(), "m", "1", []byte("{}"))
	require.NoError(t, err)
	_, err = p.PublishOutcome(t.Context(), sampleOutcome(schemas.StatusFailed))
	require.NoError(t, err)
	_, err = p.PublishDeadLetter(t.Context(), publisher.DeadLetter{Mandator: "m", Reason: "r", Subject: "acme.in.m", StreamSeq: 1, StoredAt: storedAt})
	require.NoError(t, err)

	st, err := js.Stream(t.Context(), "ACME")
	require.NoError(t, err)
	var subjects []string
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		require.NoError(t, err)
		subjects = append(subjects, m.Subject)
	}
	assert.Equal(t, []string{"acme.in.m", "acme.out.zh-kanti.failed", "acme.dlq.m"}, subjects)

	_, err = publisher.New(nil)
	assert.ErrorIs(t, err, publisher.ErrInvalid)
}

func TestNoStreamFailsFast(t *testing.T) {
	s := natstest.Start(t)
	_, js := s.Connect()
	p, err := publisher.New(js)
	require.NoError(t, err)
	ctx := context.Background() // no deadline: the publisher's default applies, but no stream must fail sooner

	tests := []struct {
		name    string
		publish func() error
	}{
		{"change", func() error { _, err := p.PublishRawChange(ctx, "m", "1", []byte("{}")); return err }},
		{"outcome", func() error { _, err := p.PublishOutcome(ctx, sampleOutcome(schemas.StatusSucceeded)); return err }},
		{"deadletter", func() error {
			_, err := p.PublishDeadLetter(ctx, publisher.DeadLetter{Mandator: "m", Reason: "r", Subject: "s", StreamSeq: 1, StoredAt: storedAt})
			return err
		}},
		{"changes", func() error { return p.PublishChanges(ctx, publisher.SampleEvents(50, "m", 1, 0), 8, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			began := time.Now()
			err := tt.publish()
			require.Error(t, err)
			assert.True(t, errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders), "%v", err)
			assert.Less(t, time.Since(began), 5*time.Second)
		})
	}
}

func TestPublishChangesStopsOnCancel(t *testing.T) {
	_, p := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	var seen atomic.Int64
	err := p.PublishChanges(ctx, publisher.SampleEvents(5000, "m", 1, 0), 16, func(done int) {
		if seen.Add(1) == 100 {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, seen.Load(), int64(5000))
}

// TestDeadLetterIDSurvivesStreamRecreation is issue 9 finding 11: after the input stream is deleted and
// re-created its sequences start again at 1, and a dead letter of a new message at an old sequence was
// dropped by the dead-letter stream as a duplicate of the old letter (id from subject and sequence only).
func TestDeadLetterIDSurvivesStreamRecreation(t *testing.T) {
	js, p := setup(t)
	old := publisher.DeadLetter{Mandator: "m", Reason: schemas.ReasonInvalidEvent, Error: "old", Body: []byte("old"),
		Subject: "lessons.changes.m", StreamSeq: 1, StoredAt: storedAt}
	ack, err := p.PublishDeadLetter(t.Context(), old)
	require.NoError(t, err)
	require.False(t, ack.Duplicate)

	again, err := p.PublishDeadLetter(t.Context(), old)
	require.NoError(t, err)
	assert.True(t, again.Duplicate, "the same message dead-lettered twice (a crash in between) is de-duplicated")

	recreated := old
	recreated.Body, recreated.Error, recreated.StoredAt = []byte("new"), "new", storedAt.Add(time.Hour)
	ack, err = p.PublishDeadLetter(t.Context(), recreated)
	require.NoError(t, err)
	assert.False(t, ack.Duplicate, "another message at the same subject and sequence is not a duplicate")
	assert.Equal(t, []byte("new"), lastMsg(t, js, "LESSON_DEADLETTER").Data)
	assert.NotEqual(t, old.MsgID(), recreated.MsgID())
}

func TestDeadLetterInvalidMandatorSubject(t *testing.T) {
	js, p := setup(t)
	_, err := p.PublishDeadLetter(t.Context(), publisher.DeadLetter{Mandator: publisher.InvalidMandator,
		Reason: schemas.ReasonInvalidEvent, Error: "no mandator", Subject: "lessons.changes", StreamSeq: 3, StoredAt: storedAt})
	require.NoError(t, err)
	assert.Equal(t, "lessons.deadletter._invalid.mandator", lastMsg(t, js, "LESSON_DEADLETTER").Subject)
}

// TestDeadLetterTooLarge is issue 9 finding 2's trigger: a dead letter larger than the server's
// max_payload failed on every try (and was retried forever). Now it is published with its headers, a
// cut body and Lessonbridge-Truncated (contract section 5).
func TestDeadLetterTooLarge(t *testing.T) {
	s := natstest.StartWith(t, func(o *server.Options) { o.MaxPayload = 8 << 10 })
	_, js := s.Connect()
	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "LESSON_DEADLETTER",
		Subjects: []string{"lessons.deadletter.>"}, Storage: jetstream.MemoryStorage})
	require.NoError(t, err)
	p, err := publisher.New(js)
	require.NoError(t, err)

	body := []byte(strings.Repeat("x", 20<<10))
	dl := publisher.DeadLetter{Mandator: "m", Reason: schemas.ReasonImportFailed, Error: strings.Repeat("e", 5000),
		BatchID: "77", Body: body, Subject: "lessons.changes.m", StreamSeq: 9, StoredAt: storedAt}
	_, err = p.PublishDeadLetter(t.Context(), dl)
	require.NoError(t, err)
	m := lastMsg(t, js, "LESSON_DEADLETTER")
	assert.Equal(t, "20480", m.Header.Get(schemas.HeaderTruncated))
	assert.Equal(t, "77", m.Header.Get(schemas.HeaderBatchID))
	assert.Equal(t, schemas.ReasonImportFailed, m.Header.Get(schemas.HeaderReason))
	assert.NotEmpty(t, m.Data)
	assert.Less(t, len(m.Data), len(body))
	assert.Equal(t, body[:len(m.Data)], m.Data, "the body is cut, not changed")

	// A body that fits exactly as it is stays whole on the same server.
	dl.Body, dl.StreamSeq = []byte(strings.Repeat("y", 1000)), 10
	_, err = p.PublishDeadLetter(t.Context(), dl)
	require.NoError(t, err)
	m = lastMsg(t, js, "LESSON_DEADLETTER")
	assert.Len(t, m.Data, 1000)
	assert.Empty(t, m.Header.Get(schemas.HeaderTruncated))
}

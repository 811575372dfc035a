package consumer

import (
	"encoding/json"
	"fmt"
	"github.com/nats-io/nats.go/jetstream"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/schemas"
)

func TestSuccessGroupsIntoJobsAndAcks(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, nil)
	h.start()
	evs := []*schemas.LessonChange{
		event(schemas.TypeLessonCreated, "L-1", "math"),
		event(schemas.TypeLessonCreated, "L-2", "math"),
		event(schemas.TypeLessonCreated, "L-3", "art"),
		event(schemas.TypeLessonCreated, "L-4", ""),
	}
	evs[0].Data.Attributes = map[string]json.RawMessage{"Bemerkung": json.RawMessage(`"Doppellektion"`)}
	h.publish("zh-kanti", evs...)
	os := h.waitEvents(len(evs), 5*time.Second)
	h.waitDrained(5 * time.Second)

	require.Len(t, os, 1, "one linger window, one batch")
	o := os[0].Data
	assert.Equal(t, schemas.StatusSucceeded, o.Status)
	assert.Equal(t, "LessonsCreated", o.ImportStatus)
	assert.Equal(t, schemas.ActionCreate, o.Action)
	assert.NotEmpty(t, o.BatchID)
	assert.Len(t, o.JobIDs, 3, "math, art and the ungrouped lessons are three jobs")
	for _, id := range o.JobIDs {
		assert.Regexp(t, `^lb-\d{8}-[0-9a-f-]{36}$`, id)
	}
	assert.ElementsMatch(t, []string{"L-1", "L-2", "L-3", "L-4"}, o.LessonIDs)
	assert.Equal(t, 4, o.LessonCount)
	assert.GreaterOrEqual(t, o.Polls, 1)
	for _, l := range []string{"L-1", "L-2", "L-3", "L-4"} {
		assert.Equal(t, 1, h.sim.Creations("zh-kanti", l), l)
	}
	assert.Empty(t, h.streamMsgs("LESSON_DEADLETTER"))
}

func TestAttributesReachJobManager(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, nil)
	h.start()
	ev := event(schemas.TypeLessonCreated, "L-1", "")
	ev.Data.Attributes = map[string]json.RawMessage{"Bemerkung": json.RawMessage(`"Doppellektion"`)}
	h.publish("m1", ev)
	h.waitEvents(1, 5*time.Second)
	stored := h.sim.Lessons("m1")["L-1"]
	assert.JSONEq(t, `"Doppellektion"`, string(stored.Extra["Bemerkung"]))
	assert.Equal(t, "2025-12-23T08:00:00Z", stored.Beginn)
}

func deadLetters(h *harness) []*jetstream.RawStreamMsg { return h.streamMsgs("LESSON_DEADLETTER") }

func TestImportFailedDeadLettersAndTerminates(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{Resources: []string{"Raum 1.01"}}, nil)
	h.start()
	bad := event(schemas.TypeLessonCreated, "L-9", "")
	bad.Data.Resource = "Besenkammer"
	h.publish("m1", bad)
	os := h.waitEvents(1, 5*time.Second)
	h.waitDrained(5 * time.Second)
	o := os[0].Data
	assert.Equal(t, schemas.StatusFailed, o.Status)
	assert.Equal(t, schemas.ReasonImportFailed, o.Reason)
	assert.Equal(t, schemas.ErrorClassData, o.ErrorClass)
	assert.Equal(t, "LessonsImportFailed", o.ImportStatus)
	require.NotEmpty(t, o.ErrorMessages)
	assert.Contains(t, o.ErrorMessages[0], "Besenkammer")
	assert.Equal(t, "lesson.batch.failed", os[0].Type)

	dls := deadLetters(h)
	require.Len(t, dls, 1)
	dl := dls[0]
	assert.Equal(t, "lessons.deadletter.m1", dl.Subject)
	assert.Equal(t, schemas.ReasonImportFailed, dl.Header.Get(schemas.HeaderReason))
	assert.Equal(t, o.BatchID, dl.Header.Get(schemas.HeaderBatchID))
	assert.Equal(t, "lessons.changes.m1", dl.Header.Get(schemas.HeaderSubject))
	assert.Equal(t, "1", dl.Header.Get(schemas.HeaderStreamSeq))
	assert.Contains(t, dl.Header.Get(schemas.HeaderError), "Besenkammer")
	decoded, err := schemas.Decode(dl.Data, "m1")
	require.NoError(t, err, "the dead letter carries the original bytes")
	assert.Equal(t, bad.ID, decoded.ID)
	assert.Equal(t, 0, h.sim.Creations("m1", "L-9"))
}

func TestFailureReasons(t *testing.T) {
	tests := []struct {
		name     string
		simCfg   jobmanagertest.Config
		mod      func(*Config)
		arrange  func(*jobmanagertest.Sim)
		reason   string
		class    string
		hasBatch bool
		minPolls int
	}{
		{name: "rejected on 4xx", arrange: func(s *jobmanagertest.Sim) { s.SubmitStatus(422, 1, 0) },
			reason: schemas.ReasonRejected, class: schemas.ErrorClassData},
		{name: "submit gave up", arrange: func(s *jobmanagertest.Sim) { s.SubmitStatus(503, jobmanagertest.Forever, 0) },
			mod:    func(c *Config) { c.SubmitMaxAttempts = 3 },
			reason: schemas.ReasonSubmitGaveUp, class: schemas.ErrorClassTechnical},
		{name: "404 past the grace", simCfg: jobmanagertest.Config{NotFoundLag: time.Hour},
			mod:    func(c *Config) { c.NotFoundGrace = 300 * time.Millisecond },
			reason: schemas.ReasonBatchUnknown, class: schemas.ErrorClassTechnical, hasBatch: true, minPolls: 3},
		{name: "poll timeout", arrange: func(s *jobmanagertest.Sim) { s.Hold(true) },
			mod:    func(c *Config) { c.PollTimeout = 300 * time.Millisecond },
			reason: schemas.ReasonPollTimeout, class: schemas.ErrorClassTechnical, hasBatch: true, minPolls: 3},
		{name: "technical import failure", arrange: func(s *jobmanagertest.Sim) { s.FailImport(1) },
			reason: schemas.ReasonImportFailed, class: schemas.ErrorClassTechnical, hasBatch: true, minPolls: 1},
		{name: "lost 202 then duplicate is in doubt", arrange: func(s *jobmanagertest.Sim) { s.LoseSubmitResponse(1, jobmanagertest.LoseWith502) },
			reason: schemas.ReasonInDoubt, class: schemas.ErrorClassTechnical, hasBatch: true, minPolls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.simCfg, tt.mod)
			if tt.arrange != nil {
				tt.arrange(h.sim)
			}
			h.start()
			ev := event(schemas.TypeLessonCreated, "L-1", "")
			h.publish("m1", ev)
			os := h.waitEvents(1, 10*time.Second)
			h.waitDrained(5 * time.Second)
			require.Len(t, os, 1)
			o := os[0].Data
			assert.Equal(t, schemas.StatusFailed, o.Status)
			assert.Equal(t, tt.reason, o.Reason, "outcome %+v", o)
			assert.Equal(t, tt.class, o.ErrorClass)
			assert.Equal(t, tt.hasBatch, o.BatchID != "", "batchId %q", o.BatchID)
			assert.GreaterOrEqual(t, o.Polls, tt.minPolls)
			assert.NotEmpty(t, o.ErrorMessages)
			assert.Equal(t, []string{ev.ID}, o.EventIDs)
			dls := deadLetters(h)
			require.Len(t, dls, 1)
			assert.Equal(t, tt.reason, dls[0].Header.Get(schemas.HeaderReason))
			assert.Empty(t, h.sim.JobIDConflicts("m1"), "a JobID is never reused for another job")
		})
	}
}

func TestTransientSubmitErrorsRetryWithSameJobIDs(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, nil)
	h.sim.SubmitStatus(503, 2, 0)
	h.start()
	h.publish("m1", event(schemas.TypeLessonCreated, "L-1", "g"))
	os := h.waitEvents(1, 5*time.Second)
	require.Equal(t, schemas.StatusSucceeded, os[0].Data.Status)
	ids := h.sim.JobIDs("m1")
	require.Len(t, ids, 3, "two refused submits and one accepted")
	assert.Equal(t, ids[0], ids[1])
	assert.Equal(t, ids[0], ids[2])
	assert.Equal(t, []string{ids[0]}, os[0].Data.JobIDs)
	assert.Empty(t, h.sim.JobIDConflicts("m1"))

	// 429 with Retry-After is honoured: the retry waits at least that long.
	h.sim.SubmitStatus(429, 1, time.Second)
	t0 := time.Now()
	h.publish("m1", event(schemas.TypeLessonUpdated, "L-1", "g"))
	os = h.waitEvents(2, 5*time.Second)
	assert.GreaterOrEqual(t, time.Since(t0), time.Second)
	assert.Equal(t, schemas.StatusSucceeded, os[1].Data.Status)
	assert.Equal(t, 1, h.sim.Requests()[jobmanagertest.RequestKey{Kind: jobmanagertest.KindSubmit, Code: 429}])
}

func TestNotFoundInsideGraceThenSuccess(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{NotFoundLag: 100 * time.Millisecond}, nil)
	h.start()
	h.publish("m1", event(schemas.TypeLessonCreated, "L-1", ""))
	os := h.waitEvents(1, 5*time.Second)
	assert.Equal(t, schemas.StatusSucceeded, os[0].Data.Status)
	assert.Positive(t, h.sim.Requests()[jobmanagertest.RequestKey{Kind: jobmanagertest.KindStatus, Code: 404}])
	assert.Greater(t, os[0].Data.Polls, 1)
}

func TestPerLessonOrderCreateUpdateDelete(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{ProcessingDelay: 30 * time.Millisecond}, nil)
	// Every event is in the stream before the bridge starts, so that all five creates arrive within
	// one linger however slowly the publishes go (publishing to a running bridge, a loaded CI
	// machine cut them into 4-5 batches).
	createInputStream(t, h.js)
	for i := range 5 {
		l := fmt.Sprintf("L-%d", i)
		c, u, d := event(schemas.TypeLessonCreated, l, ""), event(schemas.TypeLessonUpdated, l, ""), event(schemas.TypeLessonDeleted, l, "")
		u.Data.Resource = "Raum 2.02"
		h.publish("m1", c, u, d)
	}
	h.start()
	os := h.waitEvents(15, 10*time.Second)
	h.waitDrained(5 * time.Second)
	for _, o := range os {
		assert.Equal(t, schemas.StatusSucceeded, o.Data.Status, o.Data.ErrorMessages)
	}
	for i := range 5 {
		l := fmt.Sprintf("L-%d", i)
		var actions []string
		for _, a := range h.sim.History("m1", l) {
			actions = append(actions, a.Action)
		}
		assert.Equal(t, []string{"create", "update", "delete"}, actions, l)
	}
	// One batch per action: the gate lets all five lessons move together.
	assert.Len(t, os, 3)
}

func TestSameLessonSameActionIsCoalesced(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) { c.BatchLinger = 200 * time.Millisecond })
	h.start()
	h.publish("m1", event(schemas.TypeLessonCreated, "L-1", ""))
	os := h.waitEvents(1, 5*time.Second)
	require.Len(t, os, 1)
	u1, u2 := event(schemas.TypeLessonUpdated, "L-1", ""), event(schemas.TypeLessonUpdated, "L-1", "")
	u1.Data.Resource, u2.Data.Resource = "Raum A", "Raum B"
	h.publish("m1", u1, u2)
	os = h.waitEvents(3, 5*time.Second)
	require.Len(t, os, 2)
	o := os[1].Data
	assert.Equal(t, []string{"L-1"}, o.LessonIDs)
	assert.Equal(t, []string{u1.ID, u2.ID}, o.EventIDs, "both events are settled by the one outcome")
	assert.Equal(t, "Raum B", h.sim.Lessons("m1")["L-1"].RessourceName, "the latest wins")
	assert.Len(t, h.sim.History("m1", "L-1"), 2)
}

func TestNothingAckedBeforeTerminalAndHeldPastAckWait(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) { c.AckWait = 400 * time.Millisecond })
	h.sim.Hold(true)
	h.start()
	for i := range 5 {
		h.publish("m1", event(schemas.TypeLessonCreated, fmt.Sprintf("L-%d", i), ""))
	}
	h.waitPolled(2)
	// Hold the batch for three AckWaits: heartbeats must keep every message alive, nothing acked.
	for range 6 {
		time.Sleep(200 * time.Millisecond) // observing that nothing happens over time; there is no event to await
		ci := h.consumerInfo()
		assert.Equal(t, 5, ci.NumAckPending, "held messages stay unacknowledged")
		assert.Zero(t, ci.NumRedelivered, "heartbeats keep held messages from redelivery")
		assert.Empty(t, h.outcomes())
	}
	h.sim.Hold(false)
	os := h.waitEvents(5, 5*time.Second)
	h.waitDrained(5 * time.Second)
	assert.Equal(t, schemas.StatusSucceeded, os[0].Data.Status)
	assert.Zero(t, h.consumerInfo().NumRedelivered)
}

func TestTechnicalFailureResubmittedAsNewBatchWhenOptedIn(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) {
		c.TechnicalRetries = 2
		c.TechnicalRetryDelay = 20 * time.Millisecond
	})
	h.sim.FailImport(1) // one technical failure ("Datenbank nicht erreichbar"), then JobManager recovers
	h.start()
	ev := event(schemas.TypeLessonCreated, "L-1", "")
	h.publish("m1", ev)
	os := h.waitEvents(1, 5*time.Second)
	require.Len(t, os, 1)
	assert.Equal(t, schemas.StatusSucceeded, os[0].Data.Status)
	ids := h.sim.JobIDs("m1")
	require.Len(t, ids, 2)
	assert.NotEqual(t, ids[0], ids[1], "a resubmission after a failed import is a new job with a new JobID")
	assert.Equal(t, []string{ids[1]}, os[0].Data.JobIDs)

	// Out of retries: the batch fails for manual clarification.
	h.sim.FailImport(3)
	ev2 := event(schemas.TypeLessonCreated, "L-2", "")
	h.publish("m1", ev2)
	os = h.waitEvents(2, 5*time.Second)
	h.waitDrained(5 * time.Second) // dead letters come after the outcome, before the Term
	o := os[1].Data
	assert.Equal(t, schemas.ReasonImportFailed, o.Reason)
	assert.Equal(t, schemas.ErrorClassTechnical, o.ErrorClass)
	assert.Len(t, h.sim.JobIDs("m1"), 5, "first try and two retries")
	assert.Len(t, deadLetters(h), 1)
}

func TestNATSRestartWhileBatchInFlight(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) { c.AckWait = time.Second })
	h.sim.Hold(true)
	h.start()
	evs := []*schemas.LessonChange{event(schemas.TypeLessonCreated, "L-1", ""), event(schemas.TypeLessonCreated, "L-2", "")}
	h.publish("m1", evs...)
	h.waitPolled(1)
	h.srv.Restart()
	h.sim.Hold(false)
	os := h.waitEvents(2, 15*time.Second)
	h.waitDrained(10 * time.Second)
	require.Len(t, os, 1)
	assert.Equal(t, schemas.StatusSucceeded, os[0].Data.Status)
	assert.Equal(t, 1, h.sim.Submits())
	assert.Equal(t, 1, h.sim.Creations("m1", "L-1"))
}

func TestHoldLimitPausesPulling(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) {
		c.MaxHeld = 20
		c.PullBatch = 5
		c.BatchMaxLessons = 10
	})
	h.sim.Hold(true)
	h.start()
	for i := range 100 {
		h.publish("m1", event(schemas.TypeLessonCreated, fmt.Sprintf("L-%d", i), ""))
	}
	require.Eventually(t, func() bool { return h.consumerInfo().NumAckPending >= 20 }, 5*time.Second, 5*time.Millisecond)
	for range 5 {
		time.Sleep(50 * time.Millisecond) // observing that pulling stays paused; no event to await
		ci := h.consumerInfo()
		assert.LessOrEqual(t, ci.NumAckPending, 20+2*5, "at most the hold limit plus what one pull had buffered")
		assert.GreaterOrEqual(t, int(ci.NumPending), 100-30, "the rest stays in the stream")
	}
	h.sim.Hold(false)
	os := h.waitEvents(100, 20*time.Second)
	h.waitDrained(5 * time.Second)
	assert.Len(t, eventSettlements(os), 100)
	assert.Zero(t, h.consumerInfo().NumRedelivered)
}

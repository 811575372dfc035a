package consumer

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

func TestMain(m *testing.M) {
	verifyRecordEncoding = true // every kept record encoding is checked against a full one
	goleak.VerifyTestMain(m,
		// nats-server and nats.go keep a few process-wide goroutines.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).expireMsgs"),
	)
}

func TestPoisonEventsAreDeadLetteredWhileValidOnesFlow(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) { c.Mandators = []string{"m1", "m2"} })
	h.start()
	valid := event(schemas.TypeLessonCreated, "L-ok", "")
	poison := []struct {
		subject string
		body    string
		field   string
	}{
		{"lessons.changes.m1", `not json at all`, "(body)"},
		{"lessons.changes.m1", ``, "(body)"},
		{"lessons.changes.m1", `[1,2]`, "(body)"},
		{"lessons.changes.m1", `{"specversion":"1.0","id":"p1","source":"/x","type":"lesson.created","data":{"start":"2025-12-23T08:00:00Z","end":"2025-12-23T10:00:00Z","resource":"R"}}`, "data.lessonId"},
		{"lessons.changes.m1", `{"specversion":"1.0","id":"p2","source":"/x","type":"lesson.created","data":{"lessonId":"P-2","start":"2025-12-23T08:00:00Z","end":"2025-12-23T07:00:00Z","resource":"R"}}`, "data.end"},
		{"lessons.changes.m1", `{"specversion":"1.0","id":"p3","source":"/x","type":"lesson.moved","data":{"lessonId":"P-3"}}`, "type"},
		{"lessons.changes.m1", `{"specversion":"0.3","id":"p4","source":"/x","type":"lesson.deleted","data":{"lessonId":"P-4"}}`, "specversion"},
		{"lessons.changes.m1", `{"specversion":"1.0","id":"p5","source":"/x","type":"lesson.updated","data":{"lessonId":"P-5","start":"2025-12-23T08:00:00Z","end":"2025-12-23T10:00:00Z"}}`, "data.resource"},
		{"lessons.changes.m1", `{"specversion":"1.0","id":"p6","source":"/x","type":"lesson.created","data":{"lessonId":"P-6","start":"23.12.2025 08:00","end":"2025-12-23T10:00:00Z","resource":"R"}}`, "data.start"},
		{"lessons.changes.m1", `{"specversion":"1.0","id":"p7","source":"/x","type":"lesson.deleted","data":{"lessonId":"P-7","mandator":"m2"}}`, "data.mandator"},
		{"lessons.changes.m1", `{"specversion":"1.0","id":"p8","source":"/x","type":"lesson.deleted","data":"P-8"}`, "data"},
		{"lessons.changes.m1.extra", `{"specversion":"1.0","id":"p9","source":"/x","type":"lesson.deleted","data":{"lessonId":"P-9"}}`, "subject"},
		{"lessons.changes.m3", `{"specversion":"1.0","id":"p10","source":"/x","type":"lesson.deleted","data":{"lessonId":"P-10"}}`, "allow-list"},
	}
	for i, p := range poison {
		h.publishRaw(p.subject, []byte(p.body))
		if i == 5 {
			h.publish("m1", valid)
		}
	}
	valid2 := event(schemas.TypeLessonCreated, "L-ok2", "")
	h.publish("m2", valid2)

	os := h.waitEvents(2, 5*time.Second)
	h.waitDrained(5 * time.Second)
	for _, o := range os {
		assert.Equal(t, schemas.StatusSucceeded, o.Data.Status)
	}
	dls := deadLetters(h)
	require.Len(t, dls, len(poison))
	bySeq := map[string]string{}
	for _, d := range dls {
		assert.Equal(t, schemas.ReasonInvalidEvent, d.Header.Get(schemas.HeaderReason))
		bySeq[d.Header.Get(schemas.HeaderSubject)+"|"+string(d.Data)] = d.Header.Get(schemas.HeaderError)
	}
	for _, p := range poison {
		msg, ok := bySeq[p.subject+"|"+p.body]
		if assert.True(t, ok, "no dead letter for %s", p.body) {
			assert.Contains(t, msg, p.field, "the reason names the field")
		}
	}
	for _, d := range dls {
		if d.Header.Get(schemas.HeaderSubject) == "lessons.changes.m1.extra" {
			assert.Equal(t, "lessons.deadletter._invalid.mandator", d.Subject, "a subject without a valid mandator")
		}
	}
}

func TestEveryValidEventSettledExactlyOnce(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{ProcessingDelay: 5 * time.Millisecond}, func(c *Config) { c.BatchMaxLessons = 40 })
	h.start()
	changes := publisher.SampleEvents(400, "m1", 7, 0.05)
	require.NoError(t, h.pub.PublishChanges(context.Background(), changes, 256, nil))
	invalid := 0
	validIDs := map[string]bool{}
	for _, c := range changes {
		if _, err := schemas.Decode(c.Body, "m1"); err != nil {
			invalid++
		} else {
			validIDs[c.ID] = true
		}
	}
	require.Positive(t, invalid)
	os := h.waitEvents(len(validIDs), 20*time.Second)
	h.waitDrained(5 * time.Second)
	settled := eventSettlements(os)
	for id := range validIDs {
		assert.Equal(t, 1, settled[id], "event %s", id)
	}
	assert.Len(t, settled, len(validIDs))
	assert.Len(t, deadLetters(h), invalid)
	for _, o := range os {
		assert.Equal(t, schemas.StatusSucceeded, o.Data.Status, o.Data.ErrorMessages)
		assert.LessOrEqual(t, o.Data.LessonCount, 40)
	}
	for l, n := range h.sim.State().Mandators["m1"].Creations {
		assert.LessOrEqual(t, n, 1, "lesson %s created twice", l)
	}
}

// crash stops a bridge the hard way: a tiny shutdown grace leaves its in-flight batches open in the
// ledger and their messages unacknowledged, as a killed process would.
func (h *harness) crash() {
	h.bridge.cfg.ShutdownGrace = time.Millisecond
	h.stop()
}

func TestRestartResumesAcceptedBatchWithoutResubmit(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) { c.AckWait = 500 * time.Millisecond })
	h.sim.Hold(true)
	h.start()
	evs := []*schemas.LessonChange{event(schemas.TypeLessonCreated, "L-1", ""), event(schemas.TypeLessonCreated, "L-2", "")}
	h.publish("m1", evs...)
	h.waitPolled(1)
	h.crash()
	require.Empty(t, h.outcomes())
	submits := h.sim.Submits()

	h.sim.Hold(false)
	h.start()
	os := h.waitEvents(2, 10*time.Second)
	h.waitDrained(5 * time.Second)
	require.Len(t, os, 1)
	assert.Equal(t, schemas.StatusSucceeded, os[0].Data.Status)
	assert.Equal(t, submits, h.sim.Submits(), "an accepted batch is never resubmitted")
	assert.Equal(t, 1, h.sim.Creations("m1", "L-1"))
	assert.Eventually(t, func() bool {
		keys, _ := h.bridge.topo.ledger.Keys(context.Background())
		return len(keys) == 0
	}, 10*time.Second, 20*time.Millisecond, "the ledger record goes once the ack floor passed its messages")
}

func TestCrashBetweenSubmitAndLedgerIsInDoubt(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) { c.AckWait = 500 * time.Millisecond })
	abandoned := make(chan string, 1)
	h.cfg.Hooks.AfterSubmit = func(batchID string) error {
		abandoned <- batchID
		return errors.New("simulated crash")
	}
	h.start()
	ev := event(schemas.TypeLessonCreated, "L-1", "")
	h.publish("m1", ev)
	first := <-abandoned
	h.crash()

	h.cfg.Hooks.AfterSubmit = nil
	h.start()
	os := h.waitEvents(1, 10*time.Second)
	h.waitDrained(5 * time.Second)
	require.Len(t, os, 1)
	o := os[0].Data
	assert.Equal(t, schemas.ReasonInDoubt, o.Reason)
	assert.Equal(t, schemas.ErrorClassTechnical, o.ErrorClass)
	assert.NotEqual(t, first, o.BatchID, "the resubmit got a batch of its own")
	assert.Equal(t, 1, h.sim.Creations("m1", "L-1"), "the first submit went through; the lesson exists once")
	ids := h.sim.JobIDs("m1")
	require.Len(t, ids, 2)
	assert.Equal(t, ids[0], ids[1], "the resubmit reused the recorded JobID")
	assert.Empty(t, h.sim.JobIDConflicts("m1"))
}

func TestShutdownNaksUnsubmittedMessages(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) { c.BatchLinger = time.Hour; c.AckWait = 30 * time.Second })
	h.start()
	for i := range 3 {
		h.publish("m1", event(schemas.TypeLessonCreated, fmt.Sprintf("L-%d", i), ""))
	}
	require.Eventually(t, func() bool { return h.consumerInfo().NumAckPending == 3 }, 5*time.Second, 10*time.Millisecond)
	h.stop()
	// Nakked messages are redeliverable at once, long before the 30 s AckWait.
	c, err := h.js.Consumer(context.Background(), "LESSONS", "lessonbridge")
	require.NoError(t, err)
	batch, err := c.Fetch(3, jetstream.FetchMaxWait(3*time.Second))
	require.NoError(t, err)
	n := 0
	for m := range batch.Messages() {
		md, err := m.Metadata()
		require.NoError(t, err)
		assert.EqualValues(t, 2, md.NumDelivered)
		n++
	}
	assert.Equal(t, 3, n)
	assert.Zero(t, h.sim.Submits())
}

// TestCrashWhileSettlingFinishesTheSameOutcome: a crash after the outcome was published but before
// the acks. The restart finishes the batch from its settling record: no resubmit, no second outcome.
// Isolation is off here: the whole batch fails (isolate_test.go covers a split's crash).
func TestCrashWhileSettlingFinishesTheSameOutcome(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{Resources: []string{"Raum 1.01"}}, func(c *Config) {
		c.AckWait = 500 * time.Millisecond
		c.IsolateOff = true
	})
	abandoned := make(chan string, 1)
	h.cfg.Hooks.AfterOutcome = func(key string) error {
		abandoned <- key
		return errors.New("simulated crash")
	}
	h.start()
	good, bad := event(schemas.TypeLessonCreated, "L-1", ""), event(schemas.TypeLessonCreated, "L-2", "")
	bad.Data.Resource = "Besenkammer" // the batch fails: dead letters must follow after the restart
	h.publish("m1", good, bad)
	key := <-abandoned
	h.crash()
	require.Len(t, h.outcomes(), 1, "the outcome was published before the crash")
	require.Empty(t, deadLetters(h))
	submits := h.sim.Submits()

	h.cfg.Hooks.AfterOutcome = nil
	h.start()
	h.waitDrained(10 * time.Second)
	require.Eventually(t, func() bool { return len(deadLetters(h)) == 2 }, 5*time.Second, 10*time.Millisecond)
	os := h.outcomes()
	require.Len(t, os, 1, "the repeat of the outcome was de-duplicated")
	assert.Equal(t, key, os[0].ID)
	assert.Equal(t, schemas.ReasonImportFailed, os[0].Data.Reason)
	assert.Equal(t, submits, h.sim.Submits(), "a settling batch is never resubmitted")
	assert.Eventually(t, func() bool {
		keys, _ := h.bridge.topo.ledger.Keys(context.Background())
		return len(keys) == 0
	}, 10*time.Second, 20*time.Millisecond, "the ledger record goes once the ack floor passed its messages")
}

package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// killable runs a bridge on a connection of its own, so that the test can cut it like a SIGKILL:
// nothing it still wanted to say (Nak, Ack, ledger writes) reaches the server.
func (h *harness) startKillable() (kill func()) {
	h.t.Helper()
	nc, js := h.srv.Connect()
	b, err := New(js, h.jm, h.cfg)
	require.NoError(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	require.Eventually(h.t, b.Ready, 5*time.Second, 5*time.Millisecond)
	h.bridge = b
	return func() {
		nc.Close()
		b.cfg.ShutdownGrace = time.Millisecond
		cancel()
		<-done
	}
}

// TestNewEventsWaitForADeadInstancesMessages: a create held (not yet submitted, so not in the ledger)
// by an instance that dies comes back only after AckWait; an update of the same lesson published
// meanwhile must not overtake it.
func TestNewEventsWaitForADeadInstancesMessages(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) {
		c.AckWait = 600 * time.Millisecond
		c.BatchLinger = time.Hour // the create stays pending in its group
	})
	kill := h.startKillable()
	create := event(schemas.TypeLessonCreated, "L-1", "")
	h.publish("m1", create)
	require.Eventually(t, func() bool { return h.consumerInfo().NumAckPending == 1 }, 5*time.Second, 5*time.Millisecond)
	kill()

	h.cfg.BatchLinger = 20 * time.Millisecond
	h.start()
	update := event(schemas.TypeLessonUpdated, "L-1", "")
	update.Data.Resource = "Raum 7"
	h.publish("m1", update)

	os := h.waitEvents(2, 10*time.Second)
	h.waitDrained(5 * time.Second)
	for _, o := range os {
		assert.Equal(t, schemas.StatusSucceeded, o.Data.Status, o.Data.ErrorMessages)
	}
	var actions []string
	for _, a := range h.sim.History("m1", "L-1") {
		actions = append(actions, a.Action)
	}
	assert.Equal(t, []string{"create", "update"}, actions)
	assert.Equal(t, "Raum 7", h.sim.Lessons("m1")["L-1"].RessourceName)
}

// TestNormalStartDoesNotWait: with nothing outstanding, the barrier opens after one consumer-info
// round trip, even with a backlog of first deliveries.
func TestNormalStartDoesNotWait(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) { c.AckWait = 30 * time.Second })
	h.start() // creates the streams
	h.stop()
	for i := range 300 {
		h.publish("m1", event(schemas.TypeLessonCreated, fmt.Sprintf("L-%d", i), ""))
	}
	t0 := time.Now()
	h.start()
	h.waitEvents(300, 10*time.Second)
	assert.Less(t, time.Since(t0), 5*time.Second, "no AckWait-long barrier on a clean start")
}

// settlingB1 is another instance's record b-1 in state settling (its outcome decided): lesson
// L-1's event at stream seq 1.
func settlingB1(t *testing.T) []byte {
	t.Helper()
	v, err := json.Marshal(&record{Version: recordVersion, Key: "b-1", Mandator: "m1", Action: schemas.ActionCreate, State: stateSettling,
		BatchID: "4711", Verdict: &verdict{ImportStatus: "LessonsCreated", LessonCount: 1},
		Jobs: []recordJob{{JobID: "lb-20260101-x", Seqs: seqList{1}, Lessons: []string{"L-1"}}}, Seqs: seqList{1}})
	require.NoError(t, err)
	return v
}

// TestBarrierDoesNotCountWhatALiveOwnerMaySettle is simulation seeds 147, 2455, 5554 and 8786: a
// live instance's settling batch has its message (seq 1) redelivered here (its heartbeats did not
// reach the server), and its owner's ack lands after that (the server takes an ack by stream
// sequence from any delivery). The barrier took NumAckPending less everything held here for the
// messages outstanding elsewhere, so seq 1, no longer counted by the server, stood in for seq 2,
// which really was out (its delivery lost on the way): the barrier opened and L-2's update (seq 3)
// went to JobManager before its create. A held message that a live owner may settle does not
// count as held here now: the barrier waits for seq 2.
func TestBarrierDoesNotCountWhatALiveOwnerMaySettle(t *testing.T) {
	b1 := rawRecord{key: "b-1", rev: 5, value: settlingB1(t)}
	d := newCoreDriverWith(t, nil, facts{}, []rawRecord{b1, liveEntryOf(t, "live-a", 6, 5, "b-1")},
		consumerInfo{numAckPending: 2, delivered: 2, deliveredC: 2})
	d.deliverC(schemas.TypeLessonCreated, "L-1", 1, 3, 2) // b-1's message, redelivered here: parked, the barrier asks
	d.deliverC(schemas.TypeLessonUpdated, "L-2", 3, 4, 1) // L-2's update; its create (seq 2) is out
	// The server: seq 2 and 3 pending; seq 1 was acked by its owner after it was redelivered here.
	d.answer(d.expect(effConsumerInfo), result{info: consumerInfo{numAckPending: 2, delivered: 3, deliveredC: 4}})
	require.Equal(t, barrierWaiting, d.c.barrier.state, "seq 2 is outstanding")
	assert.Equal(t, 1, d.c.barrier.outstanding)
	d.advance(d.c.cfg.BatchLinger)
	d.none(effLedgerCreate)

	d.deliverC(schemas.TypeLessonCreated, "L-2", 2, 5, 2) // the create is back
	require.Equal(t, barrierOpen, d.c.barrier.state)
	d.relist(1, b1, liveEntryOf(t, "live-a", 8, 7, "b-1")) // the ledger read for the redeliveries
	d.advance(d.c.cfg.BatchLinger)
	create := d.expect(effLedgerCreate)
	r, err := parseRecord(create.key, create.value)
	require.NoError(t, err)
	assert.Equal(t, seqList{2}, r.Seqs, "L-2's create goes first; its update waits behind it")
	d.none(effLedgerCreate)
}

package consumer

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// coreDriver drives a bare core by hand: the tests below answer its effects one by one.
type coreDriver struct {
	t    *testing.T
	c    *core
	now  time.Time
	effs []effect
	seq  uint64
}

func newCoreDriver(t *testing.T, mod func(*Config)) *coreDriver {
	return newCoreDriverWith(t, mod, facts{}, nil, consumerInfo{})
}

// newCoreDriverWith starts a core on the given consumer facts, ledger records and consumer info.
func newCoreDriverWith(t *testing.T, mod func(*Config), f facts, recs []rawRecord, info consumerInfo) *coreDriver {
	cfg := fastConfig()
	cfg.Logger = zaptest.NewLogger(t)
	if mod != nil {
		mod(&cfg)
	}
	cfg = cfg.Defaults()
	require.NoError(t, cfg.Validate())
	d := &coreDriver{t: t, c: newCore(cfg, newMetrics(), rand.New(rand.NewPCG(1, 2))), now: time.Unix(1_700_000_000, 0)}
	if f.AckWait == 0 {
		f.AckWait = cfg.AckWait
	}
	if f.MaxAckPending == 0 {
		f.MaxAckPending = cfg.MaxHeld + 2*cfg.PullBatch
	}
	d.c.start(d.now, f)
	d.answer(d.expect(effLedgerList), result{records: recs})
	d.answer(d.expect(effConsumerInfo), result{info: info})
	d.expect(effStartPulling)
	return d
}

// collect moves the core's new effects into d.effs.
func (d *coreDriver) collect() { d.effs = append(d.effs, d.c.take()...) }

// expect returns (and removes) the first pending effect of kind k, failing the test when none.
func (d *coreDriver) expect(k effKind) effect {
	d.t.Helper()
	d.collect()
	for i, e := range d.effs {
		if e.kind == k {
			d.effs = append(d.effs[:i], d.effs[i+1:]...)
			return e
		}
	}
	d.t.Fatalf("no %v effect among %v", k, d.kinds())
	return effect{}
}

// expectLast returns (and removes) the last pending effect of kind k.
func (d *coreDriver) expectLast(k effKind) effect {
	d.t.Helper()
	d.collect()
	for i := len(d.effs) - 1; i >= 0; i-- {
		if e := d.effs[i]; e.kind == k {
			d.effs = append(d.effs[:i], d.effs[i+1:]...)
			return e
		}
	}
	d.t.Fatalf("no %v effect among %v", k, d.kinds())
	return effect{}
}

// none asserts that no effect of kind k is pending.
func (d *coreDriver) none(k effKind) {
	d.t.Helper()
	d.collect()
	for _, e := range d.effs {
		assert.NotEqual(d.t, k, e.kind, "unexpected %v effect", k)
	}
}

func (d *coreDriver) kinds() []string {
	var out []string
	for _, e := range d.effs {
		out = append(out, e.kind.String())
	}
	return out
}

func (d *coreDriver) answer(e effect, r result) {
	r.id = e.id
	d.c.complete(d.now, r)
	d.collect()
}

func (d *coreDriver) advance(dt time.Duration) {
	d.now = d.now.Add(dt)
	d.c.tick(d.now)
	d.collect()
}

// deliver hands the core a valid event of lesson as a first delivery.
func (d *coreDriver) deliver(typ, lesson string) *item {
	d.t.Helper()
	d.seq++
	return d.deliverSeq(typ, lesson, d.seq, 1)
}

func (d *coreDriver) deliverSeq(typ, lesson string, seq, delivered uint64) *item {
	d.t.Helper()
	body, err := json.Marshal(event(typ, lesson, ""))
	require.NoError(d.t, err)
	it := decodeItem(&d.c.cfg, rawMsg{reply: fmt.Sprintf("$JS.ACK.%d", seq), subject: "lessons.changes.m1", data: body,
		seq: seq, numDelivered: delivered, stored: d.now})
	require.NoError(d.t, it.err)
	d.c.deliver(d.now, it)
	d.collect()
	return it
}

// reload answers a ledger re-read with r and the consumer info that follows it (ack floor 0).
func (d *coreDriver) reload(r result) {
	d.t.Helper()
	d.answer(d.expect(effLedgerList), r)
	d.answer(d.expect(effConsumerInfo), result{})
}

// acceptedBatch delivers one event and answers its ledger create and submit: the core then asks to
// record "accepted".
func (d *coreDriver) acceptedBatch() effect {
	d.t.Helper()
	d.deliver(schemas.TypeLessonCreated, "L-1")
	d.advance(d.c.cfg.BatchLinger)
	d.answer(d.expect(effLedgerCreate), result{rev: 1})
	d.answer(d.expect(effSubmit), result{status: &jobmanager.BatchStatus{BatchID: "4711"}})
	return d.expect(effLedgerUpdate)
}

// TestLedgerUpdateTimeoutIsNotATakeover is finding 4: a KV update that timed out without applying
// (the record still has the revision we expected) is tried again, not taken for another instance's
// takeover; the same value there means it did apply; another revision with another value is a
// takeover and the batch is left alone.
func TestLedgerUpdateTimeoutIsNotATakeover(t *testing.T) {
	timeout := fmt.Errorf("nats: timeout")
	t.Run("not applied: tried again", func(t *testing.T) {
		d := newCoreDriver(t, nil)
		up := d.acceptedBatch()
		d.answer(up, result{kind: errTransient, err: timeout})
		get := d.expect(effLedgerGet)
		d.answer(get, result{rev: 1, value: []byte(`{"v":1,"state":"recorded"}`)})
		d.advance(time.Second)
		again := d.expect(effLedgerUpdate)
		assert.Equal(t, up.value, again.value)
		assert.Equal(t, uint64(1), again.rev, "compare-and-swap on the same revision")
		d.answer(again, result{rev: 2})
		assert.Len(t, d.c.batches, 1, "the batch is still ours")
		assert.Zero(t, metricValue(t, d.c.m.takenOver))
	})
	t.Run("applied: ours", func(t *testing.T) {
		d := newCoreDriver(t, nil)
		up := d.acceptedBatch()
		d.answer(up, result{kind: errTransient, err: timeout})
		d.answer(d.expect(effLedgerGet), result{rev: 2, value: up.value})
		d.advance(time.Second)
		d.none(effLedgerUpdate)
		d.expect(effPoll)
		for _, bt := range d.c.batches {
			assert.Equal(t, uint64(2), bt.ledgerRev)
		}
	})
	t.Run("read back older than ours: a stale read, read again", func(t *testing.T) {
		// Seen as a suspect in TestClusterLeaderLoss/ledger: a KV get answered by a follower that lags
		// after a leader change returns an older revision. Another instance's write would be newer.
		d := newCoreDriver(t, nil)
		d.answer(d.acceptedBatch(), result{rev: 2})
		d.advance(time.Second)
		d.answer(d.expect(effPoll), result{status: &jobmanager.BatchStatus{BatchID: "4711", ImportStatus: jobmanager.StatusLessonsCreated}})
		up := d.expect(effLedgerUpdate) // the verdict, on revision 2
		require.Equal(t, uint64(2), up.rev)
		d.answer(up, result{kind: errTransient, err: timeout})
		d.answer(d.expect(effLedgerGet), result{rev: 1, value: []byte(`{"v":1,"state":"recorded"}`)})
		assert.Len(t, d.c.batches, 1, "the batch is still ours")
		assert.Zero(t, metricValue(t, d.c.m.takenOver))
		d.advance(time.Second)
		again := d.expect(effLedgerUpdate)
		assert.Equal(t, up.value, again.value)
		assert.Equal(t, uint64(2), again.rev)
		d.answer(again, result{rev: 3})
		d.expect(effPublishOutcome)
	})
	t.Run("changed by someone else: taken over", func(t *testing.T) {
		d := newCoreDriver(t, nil)
		up := d.acceptedBatch()
		d.answer(up, result{kind: errConflict, err: fmt.Errorf("wrong last sequence")})
		d.answer(d.expect(effLedgerGet), result{rev: 2, value: []byte(`{"v":1,"state":"settling"}`)})
		assert.Empty(t, d.c.batches)
		assert.Empty(t, d.c.lessons, "the gate no longer holds the lesson")
		assert.Equal(t, 1.0, metricValue(t, d.c.m.takenOver))
		d.none(effAck)
	})
}

// TestGateInvariantIsAsserted: a second batch of a lesson in flight is a bug, not a state.
func TestGateInvariantIsAsserted(t *testing.T) {
	d := newCoreDriver(t, nil)
	d.acceptedBatch()
	k := lessonKey{"m1", "L-1"}
	assert.Panics(t, func() { d.c.hold(k, &batch{key: "b-other"}) })
}

// TestUnknownLedgerVersionStops is finding 8: a record of a format this bridge does not know stops
// the bridge with an error naming the record, instead of letting its messages be resubmitted.
func TestUnknownLedgerVersionStops(t *testing.T) {
	cfg := fastConfig()
	cfg.Logger = zaptest.NewLogger(t)
	cfg = cfg.Defaults()
	c := newCore(cfg, newMetrics(), rand.New(rand.NewPCG(1, 2)))
	c.start(time.Unix(0, 0), facts{AckWait: cfg.AckWait})
	list := c.take()
	require.Len(t, list, 1)
	c.complete(time.Unix(0, 0), result{id: list[0].id, records: []rawRecord{{key: "b-x", rev: 3, value: []byte(`{"v":7,"key":"b-x"}`)}}})
	effs := c.take()
	require.NotEmpty(t, effs)
	assert.Equal(t, effFatal, effs[len(effs)-1].kind)
	require.ErrorIs(t, c.fatal, ErrLedgerFormat)
	assert.Contains(t, c.fatal.Error(), "b-x")
	assert.Contains(t, c.fatal.Error(), "version 7")

	// Records written before versioning have no "v" and the same fields: read as version 1.
	r, err := parseRecord("b-y", []byte(`{"key":"b-y","state":"accepted","batchId":"1","jobs":[],"seqs":"1-3"}`))
	require.NoError(t, err)
	assert.Equal(t, seqList{1, 2, 3}, r.Seqs)
}

// toOutcome delivers creates of the given lessons and runs their batch (JobManager batch 4711) to
// the given terminal status, up to its confirmed outcome (ledger revisions 1, 2, 3).
func (d *coreDriver) toOutcome(status jobmanager.ImportStatus, msgs []string, lessons ...string) {
	d.t.Helper()
	for _, l := range lessons {
		d.deliver(schemas.TypeLessonCreated, l)
	}
	d.advance(d.c.cfg.BatchLinger)
	d.answer(d.expect(effLedgerCreate), result{rev: 1})
	d.answer(d.expect(effSubmit), result{status: &jobmanager.BatchStatus{BatchID: "4711"}})
	d.answer(d.expect(effLedgerUpdate), result{rev: 2})
	d.advance(time.Second)
	d.answer(d.expect(effPoll), result{status: &jobmanager.BatchStatus{BatchID: "4711", ImportStatus: status, ErrorMessages: msgs}})
	d.answer(d.expect(effLedgerUpdate), result{rev: 3})
	d.answer(d.expect(effPublishOutcome), result{})
}

// settleOne delivers events of the given lessons, runs their batch to the given terminal status
// and returns the effect asking for the final acks.
func (d *coreDriver) settleOne(status jobmanager.ImportStatus, msgs []string, lessons ...string) effect {
	d.t.Helper()
	d.toOutcome(status, msgs, lessons...)
	if status == jobmanager.StatusLessonsImportFailed {
		for range lessons {
			get := d.expect(effGetBody)
			d.answer(get, result{data: []byte("{}")})
			d.answer(d.expect(effPublishDeadLetter), result{})
		}
	}
	return d.expect(effAck)
}

// TestRecordGoesOnlyWhenEveryAckIsConfirmed is finding 1: a confirmed last ack says nothing about
// the earlier ones (a consumer leader change drops acks). The unconfirmed ones are sent again and
// the ledger record is deleted only when every ack is confirmed.
func TestRecordGoesOnlyWhenEveryAckIsConfirmed(t *testing.T) {
	d := newCoreDriver(t, nil)
	ack := d.settleOne(jobmanager.StatusLessonsCreated, nil, "L-1", "L-2", "L-3")
	require.Len(t, ack.acks, 3)
	last := ack.acks[2].seq
	d.answer(ack, result{acked: []uint64{last}})
	d.none(effLedgerDelete)
	d.advance(time.Second)
	again := d.expect(effAck)
	assert.ElementsMatch(t, []ackRef{ack.acks[0], ack.acks[1]}, again.acks, "only the unconfirmed ones again")
	d.answer(again, result{acked: []uint64{ack.acks[0].seq, ack.acks[1].seq}})
	d.none(effLedgerDelete)
	// Confirmed is not yet replicated on a cluster: the record goes once the ack floor passes.
	d.advance(floorCheckEvery)
	d.answer(d.expect(effConsumerInfo), result{info: consumerInfo{ackFloor: last}})
	del := d.expect(effLedgerDelete)
	assert.Equal(t, uint64(3), del.rev)
}

// TestConfirmedAckLostAtLeaderChange is finding 1 as seen on a three-node cluster
// (TestClusterLeaderLoss/consumer): every ack of a batch was confirmed, the consumer leader was
// killed before it replicated them, and the new leader redelivered the messages. Deleting the record
// on confirmed acks made them new events, imported a second time. Now the record waits for the ack
// floor, and a redelivery in between is acknowledged again, never submitted.
func TestConfirmedAckLostAtLeaderChange(t *testing.T) {
	d := newCoreDriver(t, nil)
	ack := d.settleOne(jobmanager.StatusLessonsCreated, nil, "L-1", "L-2")
	seqs := []uint64{ack.acks[0].seq, ack.acks[1].seq}
	d.answer(ack, result{acked: seqs})
	d.none(effLedgerDelete)
	assert.Empty(t, d.c.batches, "the batch is released at once: later events of its lessons go on")

	d.advance(floorCheckEvery)
	d.answer(d.expect(effConsumerInfo), result{info: consumerInfo{ackFloor: seqs[0] - 1}})
	d.none(effLedgerDelete)

	// The new consumer leader redelivers one message whose confirmed ack it never got.
	d.deliverSeq(schemas.TypeLessonCreated, "L-2", seqs[1], 2)
	again := d.expect(effAck)
	assert.Equal(t, []ackRef{ack.acks[1]}, again.acks)
	assert.Equal(t, ackAck, again.body)
	d.answer(again, result{acked: []uint64{seqs[1]}})
	d.advance(d.c.cfg.BatchLinger)
	d.none(effLedgerCreate)
	d.none(effLedgerList)
	d.none(effSubmit)

	d.advance(floorCheckEvery)
	d.answer(d.expect(effConsumerInfo), result{info: consumerInfo{ackFloor: seqs[1]}})
	d.expect(effLedgerDelete)
	assert.Empty(t, d.c.floorWaits)
}

// TestSettledRecordWaitsForTheFloorBounded: one message held by a long batch keeps the ack floor
// down; a settled record does not wait for it forever.
func TestSettledRecordWaitsForTheFloorBounded(t *testing.T) {
	d := newCoreDriver(t, nil)
	ack := d.settleOne(jobmanager.StatusLessonsCreated, nil, "L-1")
	d.answer(ack, result{acked: []uint64{ack.acks[0].seq}})
	for waited := time.Duration(0); waited <= d.c.floorMaxWait(); waited += floorCheckEvery {
		d.advance(floorCheckEvery)
		d.answer(d.expect(effConsumerInfo), result{info: consumerInfo{ackFloor: 0}})
		d.collect()
		for _, e := range d.effs {
			if e.kind == effLedgerDelete {
				assert.Greater(t, waited+floorCheckEvery, d.c.floorMaxWait(), "deleted before the bound")
				return
			}
		}
	}
	d.expect(effLedgerDelete)
}

// TestAcksNeverConfirmedKeepTheRecord: when the rounds are spent the batch lets go of its messages
// but keeps its record, so that messages coming back are settled from it, not submitted again.
func TestAcksNeverConfirmedKeepTheRecord(t *testing.T) {
	d := newCoreDriver(t, nil)
	ack := d.settleOne(jobmanager.StatusLessonsCreated, nil, "L-1")
	for range ackRounds {
		d.answer(ack, result{})
		d.advance(10 * time.Second)
		if d.c.batches[ack.key] == nil {
			break
		}
		ack = d.expect(effAck)
	}
	d.none(effLedgerDelete)
	assert.Empty(t, d.c.batches)
	assert.Empty(t, d.c.bySeq)
}

// TestPermanentDeadLetterErrorIsNotRetried is finding 2: a dead letter the server refuses for good
// (such as one over max_payload) is not retried forever; the event is terminated and counted.
func TestPermanentDeadLetterErrorIsNotRetried(t *testing.T) {
	d := newCoreDriver(t, nil)
	d.seq++
	it := decodeItem(&d.c.cfg, rawMsg{reply: "$JS.ACK.x", subject: "lessons.changes.m1", data: []byte("not json"), seq: d.seq, numDelivered: 1, stored: d.now})
	d.c.deliver(d.now, it)
	dl := d.expect(effPublishDeadLetter)
	d.answer(dl, result{kind: errPermanent, err: fmt.Errorf("nats: maximum payload exceeded")})
	term := d.expect(effSignal)
	assert.Equal(t, termWith(schemas.ReasonInvalidEvent), term.body)
	d.advance(time.Minute)
	d.none(effPublishDeadLetter)
	assert.Equal(t, 1.0, metricValue(t, d.c.m.deadLetterRefused))
	assert.Empty(t, d.c.bySeq)
}

// TestHeartbeatFollowsTheConsumersAckWait is finding 3: an existing consumer's real AckWait wins
// over the flag, and the heartbeat is derived from it.
func TestHeartbeatFollowsTheConsumersAckWait(t *testing.T) {
	d := newCoreDriverWith(t, func(c *Config) { c.AckWait = 30 * time.Second }, facts{AckWait: 900 * time.Millisecond}, nil, consumerInfo{})
	assert.Equal(t, 300*time.Millisecond, d.c.heartbeat)
	d.deliver(schemas.TypeLessonCreated, "L-1")
	d.advance(300 * time.Millisecond)
	beat := d.expect(effBeat)
	assert.Equal(t, ackProgress, beat.body)
}

// TestGetMsgTimeoutIsRetried is finding 5: only a message the stream really no longer has yields
// a dead letter without its body; a timeout is asked again.
func TestGetMsgTimeoutIsRetried(t *testing.T) {
	d := newCoreDriver(t, nil)
	d.toOutcome(jobmanager.StatusLessonsImportFailed, []string{"LektionId L-1: Ressource unbekannt"}, "L-1")
	d.answer(d.expect(effGetBody), result{kind: errTransient, err: fmt.Errorf("nats: timeout")})
	d.none(effPublishDeadLetter)
	d.advance(time.Second)
	d.answer(d.expect(effGetBody), result{data: []byte(`{"original":true}`)})
	dl := d.expect(effPublishDeadLetter)
	assert.Equal(t, []byte(`{"original":true}`), dl.deadLetter.Body)

	d2 := newCoreDriver(t, nil)
	d2.toOutcome(jobmanager.StatusLessonsImportFailed, []string{"x"}, "L-1")
	d2.answer(d2.expect(effGetBody), result{kind: errNotFound, err: fmt.Errorf("message not found")})
	dl = d2.expect(effPublishDeadLetter)
	assert.Empty(t, dl.deadLetter.Body)
	assert.Contains(t, dl.deadLetter.Error, "not in stream")
}

// TestPullingGoesOnAtTheHoldLimit is finding 6: with a consumer whose MaxAckPending bounds what the
// server delivers, the core never stops pulling (a paused client loses its pin to a standby); with
// an unbounded one it still pauses.
func TestPullingGoesOnAtTheHoldLimit(t *testing.T) {
	mod := func(c *Config) { c.MaxHeld, c.PullBatch, c.BatchLinger = 3, 1, time.Hour }
	d := newCoreDriver(t, mod)
	for i := range 5 {
		d.deliver(schemas.TypeLessonCreated, fmt.Sprintf("L-%d", i))
	}
	d.none(effStopPulling)

	u := newCoreDriverWith(t, mod, facts{MaxAckPending: -1}, nil, consumerInfo{})
	for i := range 3 {
		u.deliver(schemas.TypeLessonCreated, fmt.Sprintf("L-%d", i))
	}
	u.expect(effStopPulling)
}

// TestTakeoverActsOnTheCurrentRecord is finding 7: a record read as "recorded" at start that
// another instance moved to "accepted" meanwhile is polled, not submitted again, when its message
// comes back: the ledger is read again before the record is acted on.
func TestTakeoverActsOnTheCurrentRecord(t *testing.T) {
	rec := func(state batchState, batchID string) []byte {
		r := &record{Version: recordVersion, Key: "b-1", Mandator: "m1", Action: schemas.ActionCreate, State: state, BatchID: batchID,
			Jobs: []recordJob{{JobID: "lb-20260101-x", Seqs: seqList{1}, Lessons: []string{"L-1"}}}, Seqs: seqList{1}}
		v, err := json.Marshal(r)
		require.NoError(t, err)
		return v
	}
	d := newCoreDriverWith(t, nil, facts{}, []rawRecord{{key: "b-1", rev: 5, value: rec(stateRecorded, "")}}, consumerInfo{numAckPending: 1, delivered: 1})
	d.deliverSeq(schemas.TypeLessonCreated, "L-1", 1, 2)
	d.answer(d.expect(effConsumerInfo), result{info: consumerInfo{numAckPending: 1, delivered: 1}}) // the barrier: it is ours
	accepted := result{records: []rawRecord{{key: "b-1", rev: 9, value: rec(stateAccepted, "4711")}}}
	d.reload(accepted)
	d.none(effSubmit)
	d.ownerGone(accepted, "b-1")
	d.advance(time.Second)
	poll := d.expect(effPoll)
	assert.Equal(t, "4711", poll.batchID)
}

// ownerGone lets the owner wait of a recovered batch pass (owner liveness) with the ledger as
// ledger has it, no live instance naming the batch, and answers the record's claim.
func (d *coreDriver) ownerGone(ledger result, key string) {
	d.t.Helper()
	has := func(k effKind) bool { return slices.ContainsFunc(d.effs, func(e effect) bool { return e.kind == k }) }
	for end := d.now.Add(3 * d.c.ownerWait()); d.now.Before(end) && !has(effLedgerUpdate); {
		d.advance(d.c.heartbeat)
		if has(effLedgerList) { // a listing issued before the wait was over does not count: then another
			d.answer(d.expect(effLedgerList), ledger)
			d.answer(d.expectLast(effConsumerInfo), result{}) // the listing's, not a recovery check's
		}
	}
	claim := d.expect(effLedgerUpdate)
	require.Equal(d.t, key, claim.key)
	d.answer(claim, result{rev: claim.rev + 100})
}

// TestJobManagerUnauthorizedOpensTheBreaker is finding 9: a 401 is a global condition, not the
// batch's fault: submits stop but for one probe with backoff, the bridge reports not ready with the
// reason, nothing is given up, and it resumes by itself.
func TestJobManagerUnauthorizedOpensTheBreaker(t *testing.T) {
	d := newCoreDriver(t, func(c *Config) { c.SubmitMaxAttempts = 2 })
	d.deliver(schemas.TypeLessonCreated, "L-1")
	d.advance(d.c.cfg.BatchLinger)
	d.answer(d.expect(effLedgerCreate), result{rev: 1})
	unauthorized := &jobmanager.Error{Op: "submit", StatusCode: 401}
	for range 6 {
		d.answer(d.expect(effSubmit), result{err: unauthorized})
		ready, reason := d.c.health()
		assert.False(t, ready)
		assert.Equal(t, "jobmanager: unauthorized", reason)
		d.none(effSubmit)
		d.advance(time.Second)
	}
	d.none(effPublishOutcome)
	assert.Equal(t, 1.0, metricValue(t, d.c.m.breakerOpen))
	assert.Equal(t, 1.0, metricValue(t, d.c.m.authFailing), "the alerting gauge says why")
	d.answer(d.expect(effSubmit), result{status: &jobmanager.BatchStatus{BatchID: "1"}})
	ready, _ := d.c.health()
	assert.True(t, ready)
	assert.Zero(t, metricValue(t, d.c.m.breakerOpen))
	assert.Zero(t, metricValue(t, d.c.m.authFailing))
	d.expect(effLedgerUpdate)
}

// TestBarrierDoesNotWaitOrHangOnAFailedInfo is finding 10: with nothing outstanding at start the
// first events go straight to the gate; a consumer-info call that fails while re-armed is asked
// again shortly instead of holding everything for the whole window.
func TestBarrierDoesNotWaitOrHangOnAFailedInfo(t *testing.T) {
	d := newCoreDriver(t, nil)
	d.deliver(schemas.TypeLessonCreated, "L-1")
	d.none(effConsumerInfo)
	assert.Equal(t, barrierOpen, d.c.barrier.state)
	d.advance(d.c.cfg.BatchLinger)
	d.expect(effLedgerCreate)

	e := newCoreDriver(t, nil)
	e.advance(time.Second) // idle for longer than a heartbeat: the next arrival re-arms the barrier
	e.deliver(schemas.TypeLessonCreated, "L-1")
	info := e.expect(effConsumerInfo)
	e.answer(info, result{kind: errTransient, err: fmt.Errorf("nats: timeout")})
	e.advance(barrierRetry)
	info = e.expect(effConsumerInfo)
	e.answer(info, result{info: consumerInfo{numAckPending: 1, delivered: 1}})
	assert.Equal(t, barrierOpen, e.c.barrier.state, "the only outstanding message is ours")
	e.advance(e.c.cfg.BatchLinger)
	e.expect(effLedgerCreate)
}

// TestStopDuringStartEnds: a stop while the ledger is still being read ends the core (found by
// simulation seed 98: the done effect was swallowed and Run would never have returned).
func TestStopDuringStartEnds(t *testing.T) {
	cfg := fastConfig()
	cfg.Logger = zaptest.NewLogger(t)
	cfg = cfg.Defaults()
	c := newCore(cfg, newMetrics(), rand.New(rand.NewPCG(1, 2)))
	c.start(time.Unix(0, 0), facts{AckWait: cfg.AckWait})
	c.take()
	c.stop(time.Unix(0, 0))
	effs := c.take()
	require.NotEmpty(t, effs)
	assert.Equal(t, effDone, effs[len(effs)-1].kind)
}

// TestRefreshedRecordDetachesMessagesMovedToAChild was found by the simulation (seeds 968 and 3184,
// with the final acks sent as plain publishes; see BENCHMARKS.md): a record recovered as "accepted"
// that its owner split meanwhile (failure isolation) names fewer messages when it is read again. A
// message of the part moved to a child that had come back to the parent stayed attached to it and
// was counted as one of its messages: the parent resumed without the message it still waited for,
// and the one that had come back was neither settled nor routed to its child. Now it is detached
// and routed to the child's record after a ledger read.
func TestRefreshedRecordDetachesMessagesMovedToAChild(t *testing.T) {
	enc := func(r *record) []byte {
		v, err := json.Marshal(r)
		require.NoError(t, err)
		return v
	}
	jobs := []recordJob{{JobID: "lb-20260101-a", Seqs: seqList{1}, Lessons: []string{"L-1"}}, {JobID: "lb-20260101-b", Seqs: seqList{2}, Lessons: []string{"L-2"}}}
	snapshot := &record{Version: recordVersion, Key: "b-1", Mandator: "m1", Action: schemas.ActionCreate, State: stateAccepted, BatchID: "4711",
		Jobs: jobs, Seqs: seqList{1, 2}}
	current := *snapshot
	current.State, current.Seqs = stateSettling, seqList{1}
	msgs := []string{"Fehler: Ressource unbekannt (JobID lb-20260101-a, LektionId L-1)"}
	decision := planTwoLessons(t, 1, 2, msgs)
	require.Len(t, decision.Parts, 1)
	current.Verdict = &verdict{Reason: schemas.ReasonImportFailed, ErrorClass: schemas.ErrorClassData, ImportStatus: string(jobmanager.StatusLessonsImportFailed),
		ErrorMessages: msgs, LessonCount: 2, Polls: 1, Split: &split{Decision: decision, Children: []splitChild{{Key: "b-2", JobIDs: []string{"lb-20260101-c"}, Seqs: seqList{2}}},
			ResubmittedEventIDs: []string{"ev-2"}, ResubmittedLessonIDs: []string{"L-2"}}}
	child := &record{Version: recordVersion, Key: "b-2", Mandator: "m1", Action: schemas.ActionCreate, State: stateAccepted, BatchID: "4712",
		Jobs: []recordJob{{JobID: "lb-20260101-c", Seqs: seqList{2}, Lessons: []string{"L-2"}}}, Seqs: seqList{2}, Parent: "b-1", Root: "b-1",
		Isolation: &decision.Parts[0].State}

	d := newCoreDriverWith(t, nil, facts{}, []rawRecord{{key: "b-1", rev: 5, value: enc(snapshot)}}, consumerInfo{numAckPending: 2, delivered: 2})
	d.deliverSeq(schemas.TypeLessonCreated, "L-2", 2, 2)                                            // comes back to the snapshot, which names it
	d.answer(d.expect(effConsumerInfo), result{info: consumerInfo{numAckPending: 1, delivered: 2}}) // the barrier: it is ours
	require.Equal(t, 1, len(d.c.recovering["b-1"].items))

	// The recovery window passes without seq 1: the record is read again and is now a split parent.
	d.advance(2*d.c.ackWait + d.c.heartbeat)
	d.answer(d.expect(effConsumerInfo), result{info: consumerInfo{numAckPending: 2, delivered: 2}})
	d.answer(d.expect(effLedgerGet), result{rev: 9, value: enc(&current)})
	d.none(effPublishOutcome) // the parent still waits for seq 1; it must not settle without it
	assert.Empty(t, d.c.recovering["b-1"].items, "seq 2 is no longer the parent's")

	// seq 2 goes to its child's record once the ledger has been read.
	ledger := result{records: []rawRecord{{key: "b-1", rev: 9, value: enc(&current)}, {key: "b-2", rev: 11, value: enc(child)}}}
	d.reload(ledger)
	d.reload(ledger) // the child resumes from its record as it is now
	d.ownerGone(ledger, "b-2")
	d.advance(time.Second)
	poll := d.expect(effPoll)
	assert.Equal(t, "4712", poll.batchID)
	d.none(effSubmit)
}

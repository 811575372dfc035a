package consumer

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/lessonbridge/lessonbridge/schemas"
)

// recordedB1 is another instance's record b-1: recorded (submit not known to be accepted), one
// job lb-20260101-x with lesson L-1's event at stream seq 1.
func recordedB1(t *testing.T) []byte {
	t.Helper()
	v, err := json.Marshal(&record{Version: recordVersion, Key: "b-1", Mandator: "m1", Action: schemas.ActionCreate, State: stateRecorded,
		Jobs: []recordJob{{JobID: "lb-20260101-x", Seqs: seqList{1}, Lessons: []string{"L-1"}}}, Seqs: seqList{1}})
	require.NoError(t, err)
	return v
}

// liveEntryOf is instance key's liveness entry at revision rev, naming batches, its own writes
// having landed up to kvRev.
func liveEntryOf(t *testing.T, key string, rev, kvRev uint64, batches ...string) rawRecord {
	t.Helper()
	v, err := json.Marshal(liveValue{Version: liveVersion, Key: key, Rev: kvRev, Batches: batches})
	require.NoError(t, err)
	return rawRecord{key: key, rev: rev, value: v}
}

// relist answers the ledger listing that is due with recs and the consumer info after it.
func (d *coreDriver) relist(floor uint64, recs ...rawRecord) {
	d.t.Helper()
	d.answer(d.expect(effLedgerList), result{records: recs})
	d.answer(d.expectLast(effConsumerInfo), result{info: consumerInfo{ackFloor: floor}})
}

// TestLiveOwnersRecordedBatchIsNotTakenOver is simulation seed 2956 (and 1824, 2801, 3335; CI's
// TestClusterLeaderLoss/consumer/2-instances): a consumer outage longer than AckWait redelivers all
// of a live instance's recorded batch to this one. It used to resubmit the batch at once with its
// JobIDs (JobManager: "Duplicate JobId"), settle it in_doubt and free its lesson while the owner's
// batch was in flight. Now it waits while the owner's liveness entry moves and names the batch;
// when the record goes and the ack floor has passed its messages (the owner settled it, its acks
// landed), the messages are dropped: no submit, no second outcome, and only then does a newer event
// of the lesson go to JobManager.
func TestLiveOwnersRecordedBatchIsNotTakenOver(t *testing.T) {
	b1 := rawRecord{key: "b-1", rev: 5, value: recordedB1(t)}
	// The barrier is open (nothing was outstanding at start): a message that a live owner's entry
	// names, held at a closed barrier, would not count as held here (TestBarrierDoesNotCountWhatALiveOwnerMaySettle).
	d := newCoreDriverWith(t, nil, facts{}, []rawRecord{b1, liveEntryOf(t, "live-a", 6, 5, "b-1")}, consumerInfo{})
	d.deliverSeq(schemas.TypeLessonCreated, "L-1", 1, 2)   // the owner's message, redelivered here
	d.relist(0, b1, liveEntryOf(t, "live-a", 8, 7, "b-1")) // the resume's ledger read
	d.none(effSubmit)
	d.none(effLedgerUpdate)

	d.deliverSeq(schemas.TypeLessonUpdated, "L-1", 2, 1) // a newer change of the lesson waits behind the batch
	d.advance(d.c.ownerWait())
	d.relist(0, b1, liveEntryOf(t, "live-a", 12, 11, "b-1")) // the owner's entry moved and names it: alive
	d.none(effSubmit)
	d.none(effLedgerCreate)

	// The owner settled it: its acks landed (the floor passed seq 1), its record and entry are gone.
	d.advance(d.c.ownerWait())
	d.relist(1)
	d.none(effSubmit)
	d.none(effPublishOutcome)
	d.none(effAck)
	assert.Zero(t, metricValue(t, d.c.m.resubmits), "never resubmitted")
	assert.Nil(t, d.c.batches["b-1"])
	assert.Nil(t, d.c.bySeq[1], "the settled message is dropped")

	d.advance(d.c.cfg.BatchLinger)
	create := d.expect(effLedgerCreate) // the lesson is free: the newer change goes in a batch of its own
	r, err := parseRecord(create.key, create.value)
	require.NoError(t, err)
	assert.Equal(t, seqList{2}, r.Seqs)
}

// TestDeadOwnersRecordedBatchIsTakenOver: an owner whose liveness entry does not move for the
// owner wait is dead; its recorded batch is claimed (a compare-and-swap write of the record) and
// resubmitted with its JobIDs, and the dead entry is removed. An entry of another live instance
// that does not name the batch counts only once its own writes have landed at or above the
// record's revision (it may have been written before that instance had the batch): until then the
// taker looks again.
func TestDeadOwnersRecordedBatchIsTakenOver(t *testing.T) {
	b1 := rawRecord{key: "b-1", rev: 5, value: recordedB1(t)}
	dead := liveEntryOf(t, "live-a", 6, 5, "b-1")
	d := newCoreDriverWith(t, nil, facts{}, []rawRecord{b1, dead}, consumerInfo{})
	d.deliverSeq(schemas.TypeLessonCreated, "L-1", 1, 2)
	d.relist(0, b1, dead)
	d.none(effSubmit)

	d.advance(d.c.ownerWait())
	d.relist(0, b1, dead, liveEntryOf(t, "live-b", 20, 3)) // a new instance, its writes below the record's revision
	d.none(effSubmit)
	d.none(effLedgerUpdate)

	d.advance(d.c.ownerWait())
	d.relist(0, b1, dead, liveEntryOf(t, "live-b", 22, 21, "b-7"))
	gone := d.expect(effLedgerDelete)
	assert.Equal(t, "live-a", gone.key)
	assert.Equal(t, uint64(6), gone.rev)
	claim := d.expect(effLedgerUpdate)
	assert.Equal(t, "b-1", claim.key)
	assert.Equal(t, uint64(5), claim.rev, "compare-and-swap on the revision it watched")
	d.none(effSubmit) // not before the claim landed
	d.answer(claim, result{rev: 23})
	sub := d.expect(effSubmit)
	assert.Equal(t, []string{"lb-20260101-x"}, []string{sub.jobs[0].JobID}, "resubmitted with its JobIDs")
	assert.Equal(t, 1.0, metricValue(t, d.c.m.ownerDead))
}

// TestLivenessEntryNamesTheBatchesWorkedOn: an instance with batches puts its liveness entry every
// heartbeat (the batches it works on, the highest revision its writes landed at) and deletes it
// when it has none left; one with nothing writes nothing.
func TestLivenessEntryNamesTheBatchesWorkedOn(t *testing.T) {
	idle := newCoreDriver(t, nil)
	idle.advance(3 * idle.c.heartbeat)
	idle.none(effLedgerPut)

	d := newCoreDriver(t, nil)
	up := d.acceptedBatch() // its record landed at revision 1
	d.advance(d.c.heartbeat)
	put := d.expect(effLedgerPut)
	assert.True(t, strings.HasPrefix(put.key, livePrefix), put.key)
	var v liveValue
	require.NoError(t, json.Unmarshal(put.value, &v))
	assert.Equal(t, liveVersion, v.Version)
	assert.Equal(t, put.key, v.Key)
	assert.Equal(t, []string{up.key}, v.Batches)
	assert.Equal(t, uint64(1), v.Rev)
	d.answer(put, result{rev: 2})

	// Taken over by another instance: nothing left here, the entry goes.
	d.answer(up, result{kind: errConflict, err: assert.AnError})
	d.answer(d.expect(effLedgerGet), result{rev: 3, value: []byte(`{"v":2,"state":"settling"}`)})
	require.Empty(t, d.c.batches)
	d.advance(d.c.heartbeat)
	del := d.expect(effLedgerDelete)
	assert.Equal(t, put.key, del.key)
	assert.Equal(t, uint64(2), del.rev)
	d.none(effLedgerPut)
}

// TestUnreadableLivenessEntryStops: a liveness entry of another format stops the bridge with
// ErrLedgerFormat naming the key, as a record would.
func TestUnreadableLivenessEntryStops(t *testing.T) {
	cfg := fastConfig()
	cfg.Logger = zaptest.NewLogger(t)
	cfg = cfg.Defaults()
	d := &coreDriver{t: t, now: time.Unix(1_700_000_000, 0), c: newCore(cfg, newMetrics(), rand.New(rand.NewPCG(1, 2)))}
	d.c.start(d.now, facts{AckWait: cfg.AckWait})
	d.answer(d.expect(effLedgerList), result{records: []rawRecord{{key: "live-x", rev: 1, value: []byte(`{"v":9,"key":"live-x"}`)}}})
	require.ErrorIs(t, d.c.fatal, ErrLedgerFormat)
	assert.Contains(t, d.c.fatal.Error(), "live-x")
}

// TestGoneRecordWaitsForTheAckFloor (simulation seed 3297): a recovered record that is gone when
// its messages are back was settled by its owner (its messages at or below the ack floor) or never
// submitted (above it); when the consumer info after the listing fails, neither is assumed: it is
// asked again, and the settled message is dropped, not resubmitted.
func TestGoneRecordWaitsForTheAckFloor(t *testing.T) {
	b1 := rawRecord{key: "b-1", rev: 5, value: recordedB1(t)}
	d := newCoreDriverWith(t, nil, facts{}, []rawRecord{b1}, consumerInfo{numAckPending: 1, delivered: 1})
	d.deliverSeq(schemas.TypeLessonCreated, "L-1", 1, 2)
	d.answer(d.expect(effConsumerInfo), result{info: consumerInfo{numAckPending: 1, delivered: 1}})
	d.answer(d.expect(effLedgerList), result{}) // gone
	d.answer(d.expectLast(effConsumerInfo), result{kind: errTransient, err: assert.AnError})
	d.none(effSubmit)
	d.none(effLedgerCreate)
	d.advance(d.c.heartbeat)
	d.relist(1)
	d.none(effSubmit)
	assert.Nil(t, d.c.bySeq[1], "settled by its owner: dropped")
	assert.Empty(t, d.c.batches)
}

package consumer

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/schemas"
)

// TestRedeliveryWaitsWhenTheAckFloorIsUnknown is simulation seed 7477 (found with this round's barrier rule for held redeliveries in place): a
// redelivered message that no record names is told "settled" (at or below the ack floor: its
// record gone because it was) from "new" by the consumer info after the ledger read. When that
// consumer info failed it was admitted as new, and a message that the instance that took its batch
// over had acknowledged was imported a second time. It waits for the next read now.
func TestRedeliveryWaitsWhenTheAckFloorIsUnknown(t *testing.T) {
	d := newCoreDriver(t, nil)
	d.deliverSeq(schemas.TypeLessonCreated, "L-1", 1, 2) // redelivered; no record here names it
	d.answer(d.expect(effLedgerList), result{})
	d.answer(d.expectLast(effConsumerInfo), result{kind: errTransient, err: assert.AnError})
	d.advance(d.c.cfg.BatchLinger)
	d.none(effLedgerCreate)
	require.NotNil(t, d.c.bySeq[1], "it waits")

	d.advance(d.c.heartbeat)
	d.relist(1) // the next read: at or below the ack floor, settled
	d.advance(d.c.cfg.BatchLinger)
	d.none(effLedgerCreate)
	assert.Nil(t, d.c.bySeq[1], "settled elsewhere: dropped")
}

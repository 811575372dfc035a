package consumer

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
)

func TestLedgerWritesAreIdempotentAndDetectConflicts(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, nil)
	b := h.start()
	ctx := context.Background()
	r := &record{Key: "b-test", Mandator: "m1", Action: "create", State: stateRecorded, Seqs: []uint64{1, 2}}

	rev, err := b.ledgerCreate(ctx, r)
	require.NoError(t, err)
	again, err := b.ledgerCreate(ctx, r)
	require.NoError(t, err, "a repeated create of the same value (a timed-out write that happened) is ours")
	assert.Equal(t, rev, again)

	r.State, r.BatchID = stateAccepted, "12345"
	rev2, err := b.ledgerUpdate(ctx, r, rev)
	require.NoError(t, err)
	again, err = b.ledgerUpdate(ctx, r, rev)
	require.NoError(t, err, "a repeated update with the old revision but the same value is ours")
	assert.Equal(t, rev2, again)

	other := *r
	other.BatchID = "99999"
	_, err = b.ledgerUpdate(ctx, &other, rev)
	var perm permanent
	require.True(t, errors.As(err, &perm), "a record changed by someone else is a conflict, not retried: %v", err)
}

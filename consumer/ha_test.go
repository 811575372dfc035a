package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// TestStandbyTakesOverOpenBatches runs two bridges on one pinned priority group: one works, the
// other waits. The worker dies with a batch in flight and an update of the same lesson queued behind
// it; the standby takes the batch over from the ledger (polling, no resubmit) and applies the update
// only after the create: per-lesson order holds across the takeover.
func TestStandbyTakesOverOpenBatches(t *testing.T) {
	const ackWait = time.Second
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) {
		c.AckWait = ackWait
		c.PriorityGroup = "lessonbridge"
		c.PinnedTTL = 500 * time.Millisecond
	})
	h.sim.Hold(true)
	first := h.start()

	_, js2 := h.srv.Connect()
	cfg2 := h.cfg
	cfg2.Logger = h.cfg.Logger.With(zap.String("instance", "standby"))
	standby, err := New(js2, h.jm, cfg2)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- standby.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, standby.Ready, 5*time.Second, 5*time.Millisecond)

	create, update := event(schemas.TypeLessonCreated, "L-1", ""), event(schemas.TypeLessonUpdated, "L-1", "")
	update.Data.Resource = "Raum 9"
	h.publish("m1", create, update)
	var active *Bridge
	require.Eventually(t, func() bool {
		for _, b := range []*Bridge{first, standby} {
			if bs := b.Batches(); len(bs) == 1 && bs[0].BatchID != "" {
				active = b
				return true
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond)
	other := standby
	if active == standby {
		other = first
	}
	assert.Empty(t, other.Batches(), "exactly one instance works the lessons")
	submits := h.sim.Submits()

	// Kill the active instance (its batch stays open in the ledger), then let JobManager finish.
	killedAt := time.Now()
	if active == first {
		h.crash()
	} else {
		standby.cfg.ShutdownGrace = time.Millisecond
		cancel()
		require.NoError(t, <-done)
		done <- nil
	}
	h.sim.Hold(false)

	os := h.waitEvents(2, ackWait+10*time.Second)
	took := time.Since(killedAt)
	t.Logf("takeover settled both events %v after the kill", took)
	assert.Less(t, took, ackWait+10*time.Second)
	require.Len(t, os, 2)
	assert.Equal(t, []string{create.ID}, os[0].Data.EventIDs)
	assert.Equal(t, []string{update.ID}, os[1].Data.EventIDs)
	for _, o := range os {
		assert.Equal(t, schemas.StatusSucceeded, o.Data.Status, o.Data.ErrorMessages)
	}
	assert.Equal(t, submits+1, h.sim.Submits(), "the create batch was taken over, not resubmitted; only the update was submitted")
	var actions []string
	for _, a := range h.sim.History("m1", "L-1") {
		actions = append(actions, a.Action)
	}
	assert.Equal(t, []string{"create", "update"}, actions)
	assert.Equal(t, "Raum 9", h.sim.Lessons("m1")["L-1"].RessourceName)
	h.waitDrained(5 * time.Second)
}

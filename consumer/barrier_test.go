package consumer

import (
	"context"
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

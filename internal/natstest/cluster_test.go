package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClusterKillMovesLeadership starts three nodes, makes an R3 stream, kills its leader and checks
// that another node takes over, the stream keeps its messages and takes new ones through a client
// that was connected to the killed node, and that the killed node comes back.
func TestClusterKillMovesLeadership(t *testing.T) {
	c := StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, js := c.Connect(0)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "s.1", []byte("one"))
	require.NoError(t, err)

	leader := c.WaitStreamLeader("S", 10*time.Second)
	var client int
	for i, n := range c.Nodes {
		if n == leader {
			client = i
		}
	}
	_, jsOnLeader := c.Connect(client)
	start := time.Now()
	leader.Kill()
	assert.False(t, leader.Running())
	next := c.WaitStreamLeader("S", 30*time.Second)
	t.Logf("stream leader %s killed; %s leads after %v", leader.Name, next.Name, time.Since(start))
	assert.NotSame(t, leader, next)

	_, err = jsOnLeader.Publish(ctx, "s.2", []byte("two"), jetstream.WithRetryAttempts(50), jetstream.WithRetryWait(100*time.Millisecond))
	require.NoError(t, err, "a client of the killed node reconnects to another one")
	replicas, _, err := StreamReplicas(ctx, jsOnLeader, "S")
	require.NoError(t, err)
	assert.Equal(t, 3, replicas)
	assert.Len(t, StreamMsgs(t, jsOnLeader, "S"), 2)

	leader.Restart()
	c.WaitReady(30 * time.Second)
	assert.True(t, leader.Running())
}

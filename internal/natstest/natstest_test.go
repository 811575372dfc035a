package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRestartKeepsStreams(t *testing.T) {
	s := Start(t)
	_, js := s.Connect()
	ctx := context.Background()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "t.a", []byte("x"))
	require.NoError(t, err)
	s.Restart()
	_, js2 := s.Connect()
	st, err := js2.Stream(ctx, "T")
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, info.State.Msgs)
}

// TestCeilingAcksEverythingAndWaitsForTheDrain: the benchmarks' ceiling consumes and acks every
// stored message and returns only when the consumer has nothing pending or unacknowledged; too few
// messages end in an error naming the count, not a hang.
func TestCeilingAcksEverythingAndWaitsForTheDrain(t *testing.T) {
	s := Start(t)
	_, js := s.Connect()
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "C", Subjects: []string{"c.>"}})
	require.NoError(t, err)
	for range 250 {
		_, err := js.Publish(ctx, "c.x", []byte("x"))
		require.NoError(t, err)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	took, err := Ceiling(cons, 250, 100, 10*time.Second)
	require.NoError(t, err)
	assert.Positive(t, took)
	ci, err := cons.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, ci.NumPending)
	assert.Zero(t, ci.NumAckPending)
	assert.EqualValues(t, 250, ci.AckFloor.Stream)

	more, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "d", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	_, err = Ceiling(more, 300, 100, 200*time.Millisecond)
	require.ErrorContains(t, err, "250 of 300 acked")
}

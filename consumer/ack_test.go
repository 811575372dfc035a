package consumer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
)

// The runner's final-ack round: all but the last ack fire and forget, the last a request whose
// answer confirms the round; across a reconnect none counts as confirmed (the old connection's
// buffer may have been lost).
func TestAckRoundConfirmsAllOrNone(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "ACKS", Subjects: []string{"acks.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	cons, err := js.CreateOrUpdateConsumer(ctx, "ACKS", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
	require.NoError(t, err)
	fetch := func(n int) []ackRef {
		t.Helper()
		for i := range n {
			_, err := js.Publish(ctx, fmt.Sprintf("acks.%d", i), []byte("x"))
			require.NoError(t, err)
		}
		var refs []ackRef
		for len(refs) < n {
			batch, err := cons.Fetch(n-len(refs), jetstream.FetchMaxWait(5*time.Second))
			require.NoError(t, err)
			for m := range batch.Messages() {
				md, err := m.Metadata()
				require.NoError(t, err)
				refs = append(refs, ackRef{m.Reply(), md.Sequence.Stream})
			}
			require.NoError(t, batch.Error())
		}
		return refs
	}
	b := &Bridge{nc: nc}

	refs := fetch(50)
	assert.Len(t, b.ackConfirmed(ctx, refs, ackAck), 50, "one answered round confirms every ack in it")
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, info.NumAckPending)
	assert.Equal(t, uint64(50), info.AckFloor.Stream)

	refs = fetch(20)
	srv.Stop()
	require.Eventually(t, func() bool { return nc.Status() == nats.RECONNECTING }, 10*time.Second, time.Millisecond)
	done := make(chan []uint64, 1)
	go func() { done <- b.ackConfirmed(ctx, refs, ackAck) }()
	// Restart once the whole round is in the reconnect buffer: more bytes than 20 plain acks means
	// the last one, the request, is there too (its PUB also names the inbox).
	plain := 0
	for _, r := range refs {
		plain += len("PUB  4\r\n+ACK\r\n") + len(r.reply)
	}
	require.Eventually(t, func() bool { n, _ := nc.Buffered(); return n > plain }, 10*time.Second, time.Millisecond)
	srv.Restart()
	assert.Empty(t, <-done, "a round sent across a reconnect is not taken as confirmed")
	assert.Len(t, b.ackConfirmed(ctx, refs, ackAck), 20, "sent again on the new connection, the round is confirmed")
	info, err = cons.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, info.NumAckPending)
	assert.Equal(t, uint64(70), info.AckFloor.Stream)
}

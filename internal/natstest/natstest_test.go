package natstest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
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

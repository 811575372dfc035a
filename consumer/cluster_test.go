package consumer_test

// Tests of the topology the bridge creates (replicas, limits, the ledger's size) and of the bridge
// on a three-node NATS cluster losing the leader of its input stream, consumer or ledger. They use
// only the exported API, so that they hold whatever the engine looks like inside.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

const clusterToken = "cluster-token"

// quickConfig has millisecond timings so that a whole flow runs in well under a second.
func quickConfig(t testing.TB) consumer.Config {
	return consumer.Config{
		PollSchedule:     []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
		PollJitter:       0.05,
		PollTimeout:      30 * time.Second,
		NotFoundGrace:    5 * time.Second,
		BatchLinger:      20 * time.Millisecond,
		BatchMaxLessons:  20,
		SubmitBackoff:    10 * time.Millisecond,
		SubmitMaxBackoff: 100 * time.Millisecond,
		AckWait:          3 * time.Second,
		ShutdownGrace:    2 * time.Second,
		PinnedTTL:        time.Second,
		Logger:           zaptest.NewLogger(t),
	}
}

// newSim serves the JobManager simulator over HTTP and returns it with a client.
func newSim(t testing.TB) (*jobmanagertest.Sim, *jobmanager.Client) {
	t.Helper()
	sim := jobmanagertest.New(jobmanagertest.Config{Token: clusterToken})
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)
	jm, err := jobmanager.New(hs.URL, jobmanager.WithToken(clusterToken))
	require.NoError(t, err)
	return sim, jm
}

// instance is a running bridge.
type instance struct {
	b      *consumer.Bridge
	cancel context.CancelFunc
	done   chan error
}

func startBridge(t testing.TB, js jetstream.JetStream, jm consumer.JobManager, cfg consumer.Config) *instance {
	t.Helper()
	b, err := consumer.New(js, jm, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{b: b, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- b.Run(ctx) }()
	require.Eventually(t, func() bool {
		select {
		case err := <-in.done:
			in.done <- err
			return true
		default:
			return b.Ready()
		}
	}, 15*time.Second, 5*time.Millisecond, "bridge not ready")
	select {
	case err := <-in.done:
		t.Fatalf("bridge stopped at start: %v", err)
	default:
	}
	t.Cleanup(func() { in.stop(t) })
	return in
}

// running fails the test if the bridge's Run has returned.
func (in *instance) running(t testing.TB) {
	t.Helper()
	select {
	case err := <-in.done:
		in.done <- err
		t.Errorf("bridge Run returned while it should be working: %v", err)
	default:
	}
}

func (in *instance) stop(t testing.TB) {
	if in.cancel == nil {
		return
	}
	in.cancel()
	select {
	case err := <-in.done:
		assert.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Error("bridge did not stop")
	}
	in.cancel = nil
}

func change(typ, lessonID string) *schemas.LessonChange {
	start := time.Date(2026, 1, 12, 8, 0, 0, 0, time.UTC)
	ev := &schemas.LessonChange{
		SpecVersion: "1.0", ID: uuid.Must(uuid.NewV7()).String(), Source: "/cluster-test", Type: typ,
		Data: schemas.LessonData{LessonID: lessonID},
	}
	if typ != schemas.TypeLessonDeleted {
		ev.Data.Start, ev.Data.End, ev.Data.Resource = start, start.Add(time.Hour), "Raum 1.01"
	}
	return ev
}

// publishRetrying publishes ev until JetStream confirms it (the same Nats-Msg-Id every time, so a
// publish that timed out but was stored is not stored twice).
func publishRetrying(t testing.TB, pub *publisher.Publisher, mandator string, ev *schemas.LessonChange) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := pub.PublishChange(ctx, mandator, ev)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("publish %s: %v", ev.ID, err)
			return
		}
		time.Sleep(50 * time.Millisecond) // a retry interval, not synchronisation
	}
}

// streamMsgCount returns how many messages the stream holds.
func streamMsgCount(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

// settledEvents reads every outcome and returns how often each event id was settled.
func settledEvents(t testing.TB, js jetstream.JetStream) (map[string]int, []*schemas.Outcome) {
	t.Helper()
	counts := map[string]int{}
	var outs []*schemas.Outcome
	for _, m := range natstest.StreamMsgs(t, js, "LESSON_OUTCOMES") {
		o := &schemas.Outcome{}
		require.NoError(t, json.Unmarshal(m.Data, o))
		outs = append(outs, o)
		for _, id := range o.Data.EventIDs {
			counts[id]++
		}
	}
	return counts, outs
}

// TestLedgerKeepsNoSettledBatches settles many batches and checks that the ledger bucket's stream
// holds nothing for them once the marker TTL has passed. (Before: one delete marker per settled
// batch stayed in the stream forever; this test failed with 12 messages left.)
func TestLedgerKeepsNoSettledBatches(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	sim, jm := newSim(t)
	cfg := quickConfig(t)
	cfg.BatchMaxLessons = 2
	cfg.LedgerMarkerTTL = time.Second
	in := startBridge(t, js, jm, cfg)

	pub, err := publisher.New(js)
	require.NoError(t, err)
	const n = 24
	for i := range n {
		publishRetrying(t, pub, "m1", change(schemas.TypeLessonCreated, fmt.Sprintf("L-%d", i)))
	}
	require.Eventually(t, func() bool { c, _ := settledEvents(t, js); return len(c) == n }, 10*time.Second, 10*time.Millisecond)
	_, outs := settledEvents(t, js)
	require.GreaterOrEqual(t, len(outs), n/2, "at least %d batches", n/2)
	require.Eventually(t, func() bool { return len(in.b.Batches()) == 0 }, 5*time.Second, 5*time.Millisecond)

	st := bucketStream(t, js, "lessonbridge_ledger")
	assert.True(t, st.Config.AllowMsgTTL, "the bridge creates its bucket with the server's marker TTL")
	assert.Equal(t, time.Second, st.Config.SubjectDeleteMarkerTTL)
	require.Eventually(t, func() bool { return streamMsgCount(t, js, "KV_lessonbridge_ledger") == 0 },
		10*time.Second, 20*time.Millisecond, "the ledger's stream still holds markers of settled batches")
	in.running(t)
	for i := range n {
		assert.Equal(t, 1, sim.Creations("m1", fmt.Sprintf("L-%d", i)))
	}
}

// TestLedgerWithoutMarkerTTLIsPurged: a bucket made by hand (or by an older bridge) without a marker
// TTL is used as it is, and settled records are purged from its stream instead.
func TestLedgerWithoutMarkerTTLIsPurged(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	_, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "lessonbridge_ledger", History: 1})
	require.NoError(t, err)
	_, jm := newSim(t)
	cfg := quickConfig(t)
	cfg.BatchMaxLessons = 2
	in := startBridge(t, js, jm, cfg)

	pub, err := publisher.New(js)
	require.NoError(t, err)
	const n = 10
	for i := range n {
		publishRetrying(t, pub, "m1", change(schemas.TypeLessonCreated, fmt.Sprintf("L-%d", i)))
	}
	require.Eventually(t, func() bool { c, _ := settledEvents(t, js); return len(c) == n }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return len(in.b.Batches()) == 0 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return streamMsgCount(t, js, "KV_lessonbridge_ledger") == 0 },
		5*time.Second, 10*time.Millisecond, "settled records are purged from a bucket without marker TTL")
	assert.False(t, bucketStream(t, js, "lessonbridge_ledger").Config.AllowMsgTTL, "an existing bucket is not changed")
}

func bucketStream(t testing.TB, js jetstream.JetStream, bucket string) *jetstream.StreamInfo {
	t.Helper()
	s, err := js.Stream(context.Background(), "KV_"+bucket)
	require.NoError(t, err)
	return s.CachedInfo()
}

// TestInvalidClusterConfig: bad replicas or limits stop Run with an error naming field and value.
func TestInvalidClusterConfig(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	_, jm := newSim(t)
	tests := []struct {
		name string
		mod  func(*consumer.Config)
		want string
	}{
		{"replicas", func(c *consumer.Config) { c.Replicas = 7 }, "Replicas 7: must be 1-5"},
		{"input max age", func(c *consumer.Config) { c.InputMaxAge = time.Minute }, "InputMaxAge 1m0s: must be at least"},
		{"outcome max age", func(c *consumer.Config) { c.OutcomeMaxAge = time.Hour }, "OutcomeMaxAge 1h0m0s: must be at least 24h0m0s"},
		{"dead-letter max age", func(c *consumer.Config) { c.DeadLetterMaxAge = time.Hour }, "DeadLetterMaxAge 1h0m0s"},
		{"marker ttl", func(c *consumer.Config) { c.LedgerMarkerTTL = 10 * time.Millisecond }, "LedgerMarkerTTL 10ms: must be at least 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := quickConfig(t)
			tt.mod(&cfg)
			b, err := consumer.New(js, jm, cfg)
			require.NoError(t, err)
			err = b.Run(context.Background())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	_, err := js.Stream(context.Background(), "LESSONS")
	assert.ErrorIs(t, err, jetstream.ErrStreamNotFound, "nothing is created with a bad config")
}

// TestClusterTopology: on a three-node cluster with Replicas 3 the bridge creates its streams,
// consumer and bucket with three replicas and the default max ages; an existing input stream with
// one replica is used as it is, with one clear warning; CheckLeaders is satisfied.
func TestClusterTopology(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	_, js := c.Connect(0)
	ctx := context.Background()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LESSONS", Subjects: []string{"lessons.changes.>"}, Replicas: 1})
	require.NoError(t, err)
	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "lessonbridge_ledger", History: 1, Replicas: 1})
	require.NoError(t, err)
	_, jm := newSim(t)
	cfg := quickConfig(t)
	cfg.Replicas = 3
	core, logs := observer.New(zap.InfoLevel)
	cfg.Logger = zap.New(core)
	startBridge(t, js, jm, cfg)

	for stream, age := range map[string]time.Duration{"LESSON_OUTCOMES": consumer.DefaultOutcomeMaxAge,
		"LESSON_DEADLETTER": consumer.DefaultDeadLetterMaxAge} {
		s, err := js.Stream(ctx, stream)
		require.NoError(t, err)
		assert.Equal(t, 3, s.CachedInfo().Config.Replicas, stream)
		assert.Equal(t, age, s.CachedInfo().Config.MaxAge, stream)
	}
	in, err := js.Stream(ctx, "LESSONS")
	require.NoError(t, err)
	assert.Equal(t, 1, in.CachedInfo().Config.Replicas, "an existing stream is not changed")
	assert.Zero(t, in.CachedInfo().Config.MaxAge, "an existing stream is not changed")
	warns := logs.FilterMessageSnippet("existing stream has fewer replicas than configured").All()
	require.Len(t, warns, 1)
	assert.Equal(t, zap.WarnLevel, warns[0].Level)
	assert.Equal(t, "LESSONS", warns[0].ContextMap()["stream"])
	assert.EqualValues(t, 1, warns[0].ContextMap()["streamReplicas"])
	assert.EqualValues(t, 3, warns[0].ContextMap()["replicas"])
	lw := logs.FilterMessageSnippet("existing ledger bucket has fewer replicas than configured").All()
	require.Len(t, lw, 1)
	assert.Equal(t, zap.WarnLevel, lw[0].Level)
	assert.Equal(t, "lessonbridge_ledger", lw[0].ContextMap()["ledgerBucket"])
	assert.EqualValues(t, 1, lw[0].ContextMap()["bucketReplicas"])
	assert.Equal(t, 1, bucketStream(t, js, "lessonbridge_ledger").Config.Replicas, "an existing bucket is not changed")
	assert.Equal(t, 1, logs.FilterMessageSnippet("has no marker TTL; settled records are purged").Len())
	require.NoError(t, consumer.CheckLeaders(ctx, js, cfg))
}

// TestCreatedInputStreamLimits: a created input stream gets Replicas and the default max age.
func TestCreatedInputStreamLimits(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	_, jm := newSim(t)
	cfg := quickConfig(t)
	startBridge(t, js, jm, cfg)
	s, err := js.Stream(context.Background(), "LESSONS")
	require.NoError(t, err)
	assert.Equal(t, consumer.DefaultInputMaxAge, s.CachedInfo().Config.MaxAge)
	assert.Equal(t, 1, s.CachedInfo().Config.Replicas)
	require.NoError(t, consumer.CheckLeaders(context.Background(), js, cfg), "a single server leads its own streams")
}

// TestCheckLeadersWithoutQuorum: with two of three nodes down JetStream has no leader for the
// input stream; CheckLeaders says so, and is satisfied again once a node is back.
func TestCheckLeadersWithoutQuorum(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	_, js := c.Connect(0)
	_, jm := newSim(t)
	cfg := quickConfig(t)
	cfg.Replicas = 3
	in := startBridge(t, js, jm, cfg)
	ctx := context.Background()
	require.NoError(t, consumer.CheckLeaders(ctx, js, cfg))
	st := bucketStream(t, js, "lessonbridge_ledger")
	assert.Equal(t, 3, st.Config.Replicas, "the ledger bucket is created with Replicas")
	assert.True(t, st.Config.AllowMsgTTL)
	cons, err := js.Consumer(ctx, "LESSONS", "lessonbridge")
	require.NoError(t, err)
	require.NotNil(t, cons.CachedInfo().Cluster)
	assert.Len(t, cons.CachedInfo().Cluster.Replicas, 2, "the consumer has the input stream's three replicas (a leader and two more)")

	c.Nodes[1].Kill()
	c.Nodes[2].Kill()
	check := func() error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return consumer.CheckLeaders(cctx, js, cfg)
	}
	require.Eventually(t, func() bool { err = check(); return err != nil }, 30*time.Second, 50*time.Millisecond)
	t.Logf("without quorum: %v", err)
	assert.Regexp(t, `input stream LESSONS|consumer lessonbridge on LESSONS|ledger bucket lessonbridge_ledger`, err.Error())

	c.Nodes[1].Restart()
	require.Eventually(t, func() bool { err = check(); return err == nil }, 60*time.Second, 100*time.Millisecond,
		"no leaders after a node came back: %v", err)
	in.running(t)
}

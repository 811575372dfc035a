package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
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

func TestClusterFlagDefaults(t *testing.T) {
	clearRunEnv(t)
	s, errs := parseRunFlags(t, "--jobmanager-url", "http://jm:8080").settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	c := s.Bridge
	assert.Equal(t, 1, c.Replicas)
	assert.Equal(t, consumer.DefaultInputMaxAge, c.InputMaxAge)
	assert.Equal(t, consumer.DefaultOutcomeMaxAge, c.OutcomeMaxAge)
	assert.Equal(t, consumer.DefaultDeadLetterMaxAge, c.DeadLetterMaxAge)
	assert.Equal(t, consumer.DefaultLedgerMarkerTTL, c.LedgerMarkerTTL)
}

func TestClusterFlagsFromEnvironment(t *testing.T) {
	clearRunEnv(t)
	t.Setenv("LESSONBRIDGE_REPLICAS", "3")
	t.Setenv("LESSONBRIDGE_OUTCOME_MAX_AGE", "0")
	s, errs := parseRunFlags(t, "--jobmanager-url", "http://jm:8080", "--input-max-age", "48h",
		"--deadletter-max-age", "4320h", "--ledger-marker-ttl", "30s").settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	c := s.Bridge
	assert.Equal(t, 3, c.Replicas)
	assert.Equal(t, 48*time.Hour, c.InputMaxAge)
	assert.Equal(t, time.Duration(-1), c.OutcomeMaxAge, "0 means no limit")
	assert.Equal(t, 180*24*time.Hour, c.DeadLetterMaxAge)
	assert.Equal(t, 30*time.Second, c.LedgerMarkerTTL)
}

func TestClusterFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--replicas", "0"}, `--replicas (LESSONBRIDGE_REPLICAS) "0": must be 1-5`},
		{[]string{"--replicas", "6"}, `--replicas (LESSONBRIDGE_REPLICAS) "6": must be 1-5`},
		{[]string{"--replicas", "three"}, `--replicas (LESSONBRIDGE_REPLICAS) "three": not an integer`},
		{[]string{"--input-max-age", "30m"}, `--input-max-age (LESSONBRIDGE_INPUT_MAX_AGE) "30m": must be at least 1h21m0s`},
		{[]string{"--poll-timeout", "2h", "--input-max-age", "3h"}, `--input-max-age (LESSONBRIDGE_INPUT_MAX_AGE) "3h": must be at least 4h21m0s`},
		{[]string{"--outcome-max-age", "12h"}, `--outcome-max-age (LESSONBRIDGE_OUTCOME_MAX_AGE) "12h": must be at least 24h0m0s`},
		{[]string{"--deadletter-max-age", "-1h"}, `--deadletter-max-age (LESSONBRIDGE_DEADLETTER_MAX_AGE) "-1h": must not be negative`},
		{[]string{"--deadletter-max-age", "90d"}, `--deadletter-max-age (LESSONBRIDGE_DEADLETTER_MAX_AGE) "90d": not a duration`},
		{[]string{"--ledger-marker-ttl", "100ms"}, `--ledger-marker-ttl (LESSONBRIDGE_LEDGER_MARKER_TTL) "100ms": must be at least 1s`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			clearRunEnv(t)
			_, errs := parseRunFlags(t, append([]string{"--jobmanager-url", "http://jm:8080"}, tt.args...)...).settings(fstest.MapFS{})
			require.Len(t, errs, 1, errorTexts(errs))
			assert.Contains(t, errs[0].Error(), tt.want)
		})
	}
}

func TestClusterSettingsLogged(t *testing.T) {
	clearRunEnv(t)
	s, errs := parseRunFlags(t, "--jobmanager-url", "http://jm:8080", "--replicas", "3").settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	fields := map[string]any{}
	for _, f := range s.logFields() {
		switch f.Key {
		case "replicas":
			fields[f.Key] = f.Integer
		case "inputMaxAge", "outcomeMaxAge", "deadLetterMaxAge", "ledgerMarkerTtl":
			fields[f.Key] = time.Duration(f.Integer)
		}
	}
	assert.Equal(t, map[string]any{"replicas": int64(3), "inputMaxAge": consumer.DefaultInputMaxAge,
		"outcomeMaxAge": consumer.DefaultOutcomeMaxAge, "deadLetterMaxAge": consumer.DefaultDeadLetterMaxAge,
		"ledgerMarkerTtl": consumer.DefaultLedgerMarkerTTL}, fields)
}

// TestConnectNATSClusterURLs: --nats-url takes several URLs; the first one down does not keep the
// bridge from connecting, and when the node it is connected to goes the connection moves to another
// one by itself.
func TestConnectNATSClusterURLs(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	urls := "nats://127.0.0.1:1," + c.URLs() // port 1: refused
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := connectNATS(ctx, natsSettings{URL: urls}, "test", zap.New(core), nil)
	require.NoError(t, err)
	defer nc.Close()
	require.True(t, nc.IsConnected())
	first := nc.ConnectedServerName()
	var victim *natstest.Node
	for _, n := range c.Nodes {
		if n.Name == first {
			victim = n
		}
	}
	require.NotNil(t, victim, "connected to %q", first)
	victim.Kill()
	require.Eventually(t, func() bool { return nc.IsConnected() && nc.ConnectedServerName() != first }, 20*time.Second, 10*time.Millisecond)
	// The reconnect handler runs on the client's callback goroutine, after the state changed.
	require.Eventually(t, func() bool { return logs.FilterMessage("nats reconnected").Len() > 0 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, logs.FilterMessage("nats reconnected").Len())
}

// TestReadyzFollowsJetStreamLeaders: /readyz is not ready while JetStream has no leader for the
// input stream or ledger (two of three nodes down) and ready again, without a restart, once a node
// is back; the answer never waits for JetStream.
func TestReadyzFollowsJetStreamLeaders(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	_, js := c.Connect(0)
	sim := jobmanagertest.New(jobmanagertest.Config{})
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)
	jm, err := jobmanager.New(hs.URL)
	require.NoError(t, err)
	log := zaptest.NewLogger(t)
	cfg := consumer.Config{Replicas: 3, AckWait: 2 * time.Second, Logger: log}
	bridge, err := consumer.New(js, jm, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bridge.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, bridge.Ready, 15*time.Second, 5*time.Millisecond)

	api, err := newHTTPAPI(bridge, bridge.Metrics(), js.Conn().IsConnected, nil, "")
	require.NoError(t, err)
	core, logs := observer.New(zap.InfoLevel)
	w := newLeaderWatch(js, cfg, zap.New(core))
	w.every, w.timeout = 50*time.Millisecond, 500*time.Millisecond
	w.reconnect = nil // this test is about readiness; TestLeaderWatchLeavesACutOffServer about reconnecting
	require.NoError(t, w.serve(api))
	t.Cleanup(w.start(ctx))
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)

	readyz := func() (int, string, time.Duration) {
		start := time.Now()
		code, body := get(t, srv.URL+"/readyz")
		return code, body, time.Since(start)
	}
	var code int
	var body string
	require.Eventually(t, func() bool { code, body, _ = readyz(); return code == http.StatusOK }, 10*time.Second, 20*time.Millisecond, body)
	assert.Contains(t, body, `"jetstream":"leaders present"`)

	c.Nodes[1].Kill()
	c.Nodes[2].Kill()
	var took time.Duration
	require.Eventually(t, func() bool { code, body, took = readyz(); return code == http.StatusServiceUnavailable },
		30*time.Second, 20*time.Millisecond)
	t.Logf("not ready: %s", body)
	assert.Less(t, took, 400*time.Millisecond, "the handler answers from the cached check")
	// The leader check names what has no leader: the server answers without one ("no JetStream
	// leader for ...") or does not answer about it (": no answer from JetStream").
	assert.Regexp(t, `"jetstream":"consumer: (no JetStream leader for )?(input stream LESSONS|consumer lessonbridge on LESSONS|ledger bucket lessonbridge_ledger)`, body)
	assert.Contains(t, body, `"nats":"connected"`)
	assert.Equal(t, 1, logs.FilterMessageSnippet("JetStream has no leader").Len())
	_, metrics := get(t, srv.URL+"/metrics")
	assert.Contains(t, metrics, "lessonbridge_jetstream_leaders 0")

	c.Nodes[1].Restart()
	require.Eventually(t, func() bool { code, body, _ = readyz(); return code == http.StatusOK }, 60*time.Second, 50*time.Millisecond,
		"not ready again: %s", body)
	assert.Equal(t, 1, logs.FilterMessageSnippet("JetStream leaders back").Len())
	_, metrics = get(t, srv.URL+"/metrics")
	assert.Contains(t, metrics, "lessonbridge_jetstream_leaders 1")
	select {
	case err := <-done:
		t.Fatalf("bridge stopped: %v", err)
	default:
	}
}

// TestLeaderWatchReconnectSchedule: the watch moves the connection only after leaders were present
// once and have been missing for reconnectAfter, then after doubling waits up to reconnectMax, and
// forgets all that when they are back.
func TestLeaderWatchReconnectSchedule(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	reconnects := 0
	core, logs := observer.New(zap.InfoLevel)
	w := &leaderWatch{reconnect: func() error { reconnects++; return nil }, reconnectAfter: 10 * time.Second,
		reconnectMax: 30 * time.Second, now: func() time.Time { return now }, log: zap.New(core),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_leaders"})}
	missing := errors.New("no leader")
	at := func(d time.Duration, err error) int {
		now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(d)
		w.record(err)
		return reconnects
	}
	assert.Equal(t, 0, at(0, missing), "before the topology existed")
	assert.Equal(t, 0, at(20*time.Second, missing), "before the topology existed")
	assert.Equal(t, 0, at(21*time.Second, nil))
	assert.Equal(t, 0, at(22*time.Second, missing), "missing since 22s")
	assert.Equal(t, 0, at(31*time.Second, missing))
	assert.Equal(t, 1, at(32*time.Second, missing), "missing for reconnectAfter")
	assert.Equal(t, 1, at(51*time.Second, missing))
	assert.Equal(t, 2, at(52*time.Second, missing), "then after twice the wait")
	assert.Equal(t, 2, at(81*time.Second, missing))
	assert.Equal(t, 3, at(82*time.Second, missing), "at most reconnectMax apart")
	assert.Equal(t, 4, at(112*time.Second, missing))
	assert.Equal(t, 4, at(113*time.Second, nil))
	assert.Equal(t, 4, at(114*time.Second, missing), "back to the first wait")
	assert.Equal(t, 4, at(123*time.Second, missing))
	assert.Equal(t, 5, at(124*time.Second, missing))
	assert.Equal(t, 5, logs.FilterMessageSnippet("reconnecting to another server").Len())
}

// TestLeaderWatchLeavesACutOffServer: the bridge's own server is cut off from the rest of the
// cluster while its connection stays up. Without help the bridge would wait there until the
// partition heals; the watch moves it to another server and the work goes on.
func TestLeaderWatchLeavesACutOffServer(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	meta := c.MetaLeader()
	require.GreaterOrEqual(t, meta, 0)
	victimIdx, observerIdx := (meta+1)%3, (meta+2)%3
	victim := c.Nodes[victimIdx]
	_, adminJS := c.Connect(observerIdx)
	sim := jobmanagertest.New(jobmanagertest.Config{})
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)
	jm, err := jobmanager.New(hs.URL)
	require.NoError(t, err)
	cfg := consumer.Config{Replicas: 3, AckWait: 3 * time.Second, BatchLinger: 20 * time.Millisecond,
		PollSchedule: []time.Duration{10 * time.Millisecond}, Logger: zaptest.NewLogger(t)}

	nc, js := c.Connect(victimIdx)
	bridge, err := consumer.New(js, jm, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bridge.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, bridge.Ready, 15*time.Second, 5*time.Millisecond)
	// Every leader away from the node that will be cut off.
	c.MoveStreamLeader(adminJS, "LESSONS", c.Nodes[meta])
	c.MoveConsumerLeader(adminJS, "LESSONS", "lessonbridge", c.Nodes[meta])
	c.MoveStreamLeader(adminJS, "KV_lessonbridge_ledger", c.Nodes[meta])
	c.MoveStreamLeader(adminJS, "LESSON_OUTCOMES", c.Nodes[meta])

	core, logs := observer.New(zap.InfoLevel)
	w := newLeaderWatch(js, cfg, zap.New(core))
	w.every, w.timeout, w.reconnectAfter = 100*time.Millisecond, 500*time.Millisecond, 2*time.Second
	t.Cleanup(w.start(ctx))
	require.Eventually(t, func() bool { return w.Err() == nil }, 10*time.Second, 10*time.Millisecond)

	pub, err := publisher.New(adminJS)
	require.NoError(t, err)
	publish := func(typ string, n int) {
		for i := range n {
			ev := &schemas.LessonChange{SpecVersion: "1.0", ID: uuid.Must(uuid.NewV7()).String(), Source: "/test", Type: typ,
				Data: schemas.LessonData{LessonID: fmt.Sprintf("L-%d", i), Start: time.Date(2026, 1, 12, 8, 0, 0, 0, time.UTC),
					End: time.Date(2026, 1, 12, 9, 0, 0, 0, time.UTC), Resource: "Raum " + typ}}
			_, err := pub.PublishChange(context.Background(), "m1", ev)
			require.NoError(t, err)
		}
	}
	settled := func() int {
		n := 0
		for _, b := range sim.Batches("m1") {
			if b.ImportStatus == "LessonsCreated" {
				n += b.LessonCount
			}
		}
		return n
	}
	publish(schemas.TypeLessonCreated, 10)
	require.Eventually(t, func() bool { return settled() == 10 }, 20*time.Second, 10*time.Millisecond)

	victim.Partition()
	t.Cleanup(victim.Heal)
	cutAt := time.Now()
	publish(schemas.TypeLessonUpdated, 10)
	require.Eventually(t, func() bool { return settled() == 20 }, 45*time.Second, 20*time.Millisecond,
		"the bridge stayed on the cut-off server")
	t.Logf("work went on %v after the bridge's server was cut off", time.Since(cutAt).Round(time.Millisecond))
	assert.NotEqual(t, victim.Name, nc.ConnectedServerName())
	assert.GreaterOrEqual(t, logs.FilterMessageSnippet("reconnecting to another server").Len(), 1)
	for i := range 10 {
		assert.Equal(t, 1, sim.Creations("m1", fmt.Sprintf("L-%d", i)))
	}
	select {
	case err := <-done:
		t.Fatalf("bridge stopped: %v", err)
	default:
	}
}

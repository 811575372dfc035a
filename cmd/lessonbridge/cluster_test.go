package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
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
	nc, err := connectNATS(ctx, natsSettings{URL: urls}, "test", zap.New(core))
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
	api.registry.MustRegister(w.gauge)
	api.leaders = w.Err
	wctx, wcancel := context.WithCancel(ctx)
	wdone := make(chan struct{})
	go func() { defer close(wdone); w.run(wctx) }()
	t.Cleanup(func() { wcancel(); <-wdone })
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
	assert.Regexp(t, `"jetstream":"consumer: (input stream LESSONS|consumer lessonbridge on LESSONS|ledger bucket lessonbridge_ledger)`, body)
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

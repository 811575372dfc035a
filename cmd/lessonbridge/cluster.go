package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/consumer"
)

// clusterFlags are `run`'s flags for running on a NATS cluster: the replicas and limits of what the
// bridge creates (contract sections 2 and 7). Kept as text, like runFlags.
type clusterFlags struct {
	Replicas         string
	InputMaxAge      string
	OutcomeMaxAge    string
	DeadLetterMaxAge string
	LedgerMarkerTTL  string
}

func (f *clusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.Replicas, "replicas", "1", "replicas of the streams, consumer and ledger bucket the bridge creates (1-5; 3 on a three-node cluster); existing ones are used as they are")
	fs.StringVar(&f.InputMaxAge, "input-max-age", "168h", "max age of an input stream the bridge creates; events older than this are dropped even if unsettled (0: no limit)")
	fs.StringVar(&f.OutcomeMaxAge, "outcome-max-age", "720h", "max age of an outcome stream the bridge creates, at least 24h (0: no limit)")
	fs.StringVar(&f.DeadLetterMaxAge, "deadletter-max-age", "2160h", "max age of a dead-letter stream the bridge creates, at least 24h (0: no limit)")
	fs.StringVar(&f.LedgerMarkerTTL, "ledger-marker-ttl", "1m", "how long a settled batch's removal marker stays in a ledger bucket the bridge creates, at least 1s")
}

// apply checks the values and sets them on c, whose other fields (poll timeout, ack wait) are set
// already. A max age of 0 means no limit (the engine's -1).
func (f clusterFlags) apply(c *consumer.Config, bad func(name, value, why string)) {
	n, err := strconv.Atoi(strings.TrimSpace(f.Replicas))
	switch {
	case err != nil:
		bad("replicas", f.Replicas, "not an integer")
	case n < 1 || n > 5:
		bad("replicas", f.Replicas, "must be 1-5 (JetStream's limit)")
	default:
		c.Replicas = n
	}
	maxAge := func(name, v string, min time.Duration, why string) time.Duration {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		switch {
		case err != nil:
			bad(name, v, "not a duration (use Go syntax such as 720h; 0 for no limit)")
		case d < 0:
			bad(name, v, "must not be negative (0 for no limit)")
		case d == 0:
			return -1
		case d < min:
			bad(name, v, fmt.Sprintf("must be at least %v (%s), or 0 for no limit", min, why))
		}
		return d
	}
	c.InputMaxAge = maxAge("input-max-age", f.InputMaxAge, c.MinInputMaxAge(),
		"twice a batch's life: --poll-timeout, the submit retry budget and --ack-wait")
	c.OutcomeMaxAge = maxAge("outcome-max-age", f.OutcomeMaxAge, 24*time.Hour, "the outcome de-duplication window")
	c.DeadLetterMaxAge = maxAge("deadletter-max-age", f.DeadLetterMaxAge, 24*time.Hour, "the dead-letter de-duplication window")
	ttl, err := time.ParseDuration(strings.TrimSpace(f.LedgerMarkerTTL))
	switch {
	case err != nil:
		bad("ledger-marker-ttl", f.LedgerMarkerTTL, "not a duration (use Go syntax such as 1m)")
	case ttl < time.Second:
		bad("ledger-marker-ttl", f.LedgerMarkerTTL, "must be at least 1s (the server's smallest message TTL)")
	default:
		c.LedgerMarkerTTL = ttl
	}
}

// clusterLogFields describes the cluster settings for the start-up line.
func clusterLogFields(c consumer.Config) []zap.Field {
	return []zap.Field{zap.Int("replicas", c.Replicas), zap.Duration("inputMaxAge", c.InputMaxAge),
		zap.Duration("outcomeMaxAge", c.OutcomeMaxAge), zap.Duration("deadLetterMaxAge", c.DeadLetterMaxAge),
		zap.Duration("ledgerMarkerTtl", c.LedgerMarkerTTL)}
}

// Leader checks: how often and how long, and how long leaders may be missing before the bridge
// moves its connection to another server: longer than a JetStream election (4-9 s after the leader
// went silent) plus a check, so that an election alone never causes a reconnect.
const (
	leaderCheckEvery      = 2 * time.Second
	leaderCheckTimeout    = 2 * time.Second
	leaderReconnectAfter  = 15 * time.Second
	leaderReconnectMaxGap = 2 * time.Minute
)

// leaderWatch asks JetStream in the background whether the input stream, the consumer and the
// ledger have a leader (consumer.CheckLeaders) and keeps the last answer for /readyz, which never
// waits for it. It logs each change once and exports it as a gauge.
//
// When leaders stay missing for reconnectAfter although they were present before, the server the
// bridge is connected to may be cut off from the rest of the cluster (a network partition of that
// node: the connection itself is fine, so the client would never leave it). Then the watch makes the
// client reconnect, which tries the other servers first; if leaders are still missing it tries again
// after twice the wait, at most every reconnectMaxGap.
type leaderWatch struct {
	check          func(ctx context.Context) error
	reconnect      func() error // nil: never
	every          time.Duration
	timeout        time.Duration
	reconnectAfter time.Duration
	reconnectMax   time.Duration
	now            func() time.Time
	log            *zap.Logger
	gauge          prometheus.Gauge

	mu        sync.Mutex
	last      error // nil: leaders present
	checked   bool
	wasOK     bool      // leaders were present once: the bridge's topology exists
	since     time.Time // leaders missing since (after wasOK)
	wait      time.Duration
	nextForce time.Time
}

func newLeaderWatch(js jetstream.JetStream, cfg consumer.Config, log *zap.Logger) *leaderWatch {
	nc := js.Conn()
	return &leaderWatch{
		check: func(ctx context.Context) error { return consumer.CheckLeaders(ctx, js, cfg) },
		reconnect: func() error {
			if len(nc.Servers()) < 2 {
				return fmt.Errorf("no other server known")
			}
			return nc.ForceReconnect()
		},
		every:          leaderCheckEvery,
		timeout:        leaderCheckTimeout,
		reconnectAfter: leaderReconnectAfter,
		reconnectMax:   leaderReconnectMaxGap,
		now:            time.Now,
		log:            log,
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lessonbridge_jetstream_leaders",
			Help: "1 while JetStream has a leader for the input stream, the consumer and the ledger bucket; 0 while one is missing (a cluster electing, or too many nodes down)."}),
	}
}

// Err is the last answer: nil when every leader was present, else why not.
func (w *leaderWatch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.checked {
		return fmt.Errorf("JetStream leaders not checked yet")
	}
	return w.last
}

// run checks at once and then every w.every until ctx ends.
func (w *leaderWatch) run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, w.timeout)
		err := w.check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		w.record(err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *leaderWatch) record(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := !w.checked || (err == nil) != (w.last == nil)
	w.checked, w.last = true, err
	w.maybeReconnect(err, changed)
	if err == nil {
		w.gauge.Set(1)
	} else {
		w.gauge.Set(0)
	}
	switch {
	case !changed:
	case err == nil && w.wasOK:
		w.log.Info("JetStream leaders back for the input stream, consumer and ledger; ready again")
	case err == nil:
		w.wasOK = true
	case w.wasOK:
		w.log.Warn("JetStream has no leader for what the bridge needs; not ready until it has", zap.Error(err))
	}
}

// serve makes the watch's answer part of api's /readyz and its gauge part of api's metrics.
func (w *leaderWatch) serve(api *httpAPI) error {
	if err := api.registry.Register(w.gauge); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	api.leaders.Store(w) // atomic: the endpoints may be serving already
	return nil
}

// start runs the watch until ctx ends or the returned stop is called; stop waits for it.
func (w *leaderWatch) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx) }()
	return func() { cancel(); <-done }
}

// maybeReconnect moves the connection when leaders have been missing for w.wait (see leaderWatch).
// w.mu is held.
func (w *leaderWatch) maybeReconnect(err error, changed bool) {
	now := w.now()
	switch {
	case err == nil:
		w.since, w.wait, w.nextForce = time.Time{}, 0, time.Time{}
		return
	case !w.wasOK || w.reconnect == nil:
		return
	case changed || w.since.IsZero():
		w.since, w.wait = now, w.reconnectAfter
		w.nextForce = now.Add(w.wait)
		return
	case now.Before(w.nextForce):
		return
	}
	rerr := w.reconnect()
	w.log.Warn("JetStream leaders missing from this server's view; reconnecting to another server (it may be cut off from the cluster)",
		zap.Duration("missingFor", now.Sub(w.since)), zap.NamedError("leaders", err), zap.NamedError("reconnectError", rerr))
	w.wait = min(2*w.wait, w.reconnectMax)
	w.nextForce = now.Add(w.wait)
}

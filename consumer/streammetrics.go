package consumer

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// otherMandator is the label value that stands for every mandator beyond the top ones.
const otherMandator = "other"

// StreamCollectorOptions tunes NewStreamCollector; the zero value is usable.
type StreamCollectorOptions struct {
	// TTL is how long one round of server queries is reused by later scrapes (default 15s).
	TTL time.Duration
	// Timeout bounds one round of server queries (default 2s); a scrape never waits longer.
	Timeout time.Duration
	// TopMandators is how many mandators get their own label value when the configuration has no
	// mandator allow-list (default 20); the rest are summed as "other".
	TopMandators int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// NewStreamCollector returns a Prometheus collector of what the NATS server knows about the
// bridge's consumer and streams, asked on scrape (cached for opts.TTL, each query bounded by
// opts.Timeout, concurrent scrapes sharing one round):
//
//	lessonbridge_consumer_pending_messages       messages in the input stream not yet delivered to the bridge (lag)
//	lessonbridge_consumer_ack_pending_messages   messages delivered and not yet acknowledged
//	lessonbridge_consumer_redelivered_messages   delivered more than once and not yet acknowledged
//	lessonbridge_outcomes_stored{mandator,status} outcome events the outcome stream holds
//	lessonbridge_deadletters_stored{mandator}    dead letters the dead-letter stream holds
//	lessonbridge_stream_info_up                  1 when the last round of queries succeeded
//	lessonbridge_poll_timeout_seconds            the configured PollTimeout (for alert rules)
//	lessonbridge_max_held_messages               the configured MaxHeld (for alert rules)
//
// The mandator label is bounded: the configuration's Mandators allow-list when it has one (others
// are "other"), otherwise the opts.TopMandators mandators with the most stored messages plus
// "other". The stored counts shrink when the streams' limits remove old messages: they are gauges,
// read them with delta() or deriv(), not rate(). A failed query keeps the last values and sets
// lessonbridge_stream_info_up to 0. cfg is defaulted like New does; nothing is contacted before
// the first scrape.
func NewStreamCollector(js jetstream.JetStream, cfg Config, opts StreamCollectorOptions) prometheus.Collector {
	cfg = cfg.Defaults()
	if opts.TTL <= 0 {
		opts.TTL = 15 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.TopMandators <= 0 {
		opts.TopMandators = 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	const ns = "lessonbridge"
	return &streamCollector{
		js: js, cfg: cfg, opts: opts,
		pending: prometheus.NewDesc(ns+"_consumer_pending_messages",
			"Messages in the input stream not yet delivered to the bridge's consumer (NumPending: the lag).", nil, nil),
		ackPending: prometheus.NewDesc(ns+"_consumer_ack_pending_messages",
			"Messages delivered to the bridge's consumer and not yet acknowledged (NumAckPending).", nil, nil),
		redelivered: prometheus.NewDesc(ns+"_consumer_redelivered_messages",
			"Messages delivered more than once and not yet acknowledged (NumRedelivered).", nil, nil),
		outcomes: prometheus.NewDesc(ns+"_outcomes_stored",
			"Outcome events the outcome stream holds, by mandator (bounded: allow-list or top mandators, rest \"other\") and status.",
			[]string{"mandator", "status"}, nil),
		deadLetters: prometheus.NewDesc(ns+"_deadletters_stored",
			"Dead letters the dead-letter stream holds, by mandator (bounded like outcomes_stored).", []string{"mandator"}, nil),
		up: prometheus.NewDesc(ns+"_stream_info_up",
			"1 when the last consumer and stream info requests to NATS succeeded, else 0.", nil, nil),
		pollTimeout: prometheus.NewDesc(ns+"_poll_timeout_seconds",
			"The configured poll timeout: a batch older than this should have settled (poll_timeout).", nil, nil),
		maxHeld: prometheus.NewDesc(ns+"_max_held_messages",
			"The configured hold limit: at it the bridge pauses pulling.", nil, nil),
	}
}

type streamCollector struct {
	js   jetstream.JetStream
	cfg  Config
	opts StreamCollectorOptions

	pending, ackPending, redelivered, outcomes, deadLetters, up, pollTimeout, maxHeld *prometheus.Desc

	mu      sync.Mutex // held during a round of queries: concurrent scrapes share it
	fetched time.Time
	last    streamSnapshot
}

// streamSnapshot is one round of answers.
type streamSnapshot struct {
	ok                                bool
	pending, ackPending, redelivered  float64
	outcomes                          map[[2]string]float64 // {mandator, status}
	deadLetters                       map[string]float64
	haveConsumer, haveOut, haveDLetts bool
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.ackPending, c.redelivered, c.outcomes, c.deadLetters, c.up, c.pollTimeout, c.maxHeld} {
		ch <- d
	}
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	up := 0.0
	if s.ok {
		up = 1
	}
	gauge(c.up, up)
	gauge(c.pollTimeout, c.cfg.PollTimeout.Seconds())
	gauge(c.maxHeld, float64(c.cfg.MaxHeld))
	if s.haveConsumer {
		gauge(c.pending, s.pending)
		gauge(c.ackPending, s.ackPending)
		gauge(c.redelivered, s.redelivered)
	}
	if s.haveOut {
		for k, v := range s.outcomes {
			gauge(c.outcomes, v, k[0], k[1])
		}
	}
	if s.haveDLetts {
		for m, v := range s.deadLetters {
			gauge(c.deadLetters, v, m)
		}
	}
}

// snapshot returns the cached answers, asking the server again when they are older than the TTL.
func (c *streamCollector) snapshot() streamSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	if !c.fetched.IsZero() && now.Sub(c.fetched) < c.opts.TTL {
		return c.last
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	next := c.last
	next.ok = true
	if ci, err := c.consumerInfo(ctx); err == nil {
		next.pending, next.ackPending, next.redelivered = float64(ci.NumPending), float64(ci.NumAckPending), float64(ci.NumRedelivered)
		next.haveConsumer = true
	} else {
		next.ok = false
	}
	// lessons.outcomes.<mandator>.<status>
	if subj, err := c.subjects(ctx, c.cfg.OutcomeStream, c.cfg.OutcomesPrefix+".>"); err == nil {
		per := map[string]map[string]float64{}
		for s, n := range subj {
			rest, ok := strings.CutPrefix(s, c.cfg.OutcomesPrefix+".")
			m, status, ok2 := strings.Cut(rest, ".")
			if !ok || !ok2 {
				continue
			}
			if per[m] == nil {
				per[m] = map[string]float64{}
			}
			per[m][status] += float64(n)
		}
		keep := c.keptMandators(per)
		next.outcomes = map[[2]string]float64{}
		for m, byStatus := range per {
			if !keep[m] {
				m = otherMandator
			}
			for st, n := range byStatus {
				next.outcomes[[2]string{m, st}] += n
			}
		}
		next.haveOut = true
	} else {
		next.ok = false
	}
	// lessons.deadletter.<mandator> (and lessons.deadletter._invalid.mandator)
	if subj, err := c.subjects(ctx, c.cfg.DeadLetterStream, c.cfg.DeadLetterPrefix+".>"); err == nil {
		per := map[string]map[string]float64{}
		for s, n := range subj {
			m, ok := strings.CutPrefix(s, c.cfg.DeadLetterPrefix+".")
			if !ok {
				continue
			}
			m, _, _ = strings.Cut(m, ".")
			if per[m] == nil {
				per[m] = map[string]float64{"": 0}
			}
			per[m][""] += float64(n)
		}
		keep := c.keptMandators(per)
		next.deadLetters = map[string]float64{}
		for m, v := range per {
			if !keep[m] {
				m = otherMandator
			}
			next.deadLetters[m] += v[""]
		}
		next.haveDLetts = true
	} else {
		next.ok = false
	}
	c.last, c.fetched = next, now
	return next
}

func (c *streamCollector) consumerInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	cons, err := c.js.Consumer(ctx, c.cfg.InputStream, c.cfg.ConsumerName)
	if err != nil {
		return nil, err
	}
	return cons.CachedInfo(), nil
}

// subjects returns the message count per subject of stream.
func (c *streamCollector) subjects(ctx context.Context, stream, filter string) (map[string]uint64, error) {
	st, err := c.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}

// keptMandators is the set of mandators that get their own label value: those of the allow-list,
// or the TopMandators with the most messages (ties by name).
func (c *streamCollector) keptMandators(per map[string]map[string]float64) map[string]bool {
	keep := map[string]bool{}
	if len(c.cfg.Mandators) > 0 {
		for _, m := range c.cfg.Mandators {
			keep[m] = true
		}
		return keep
	}
	type mc struct {
		m string
		n float64
	}
	all := make([]mc, 0, len(per))
	for m, byStatus := range per {
		var n float64
		for _, v := range byStatus {
			n += v
		}
		all = append(all, mc{m, n})
	}
	slices.SortFunc(all, func(a, b mc) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return strings.Compare(a.m, b.m)
	})
	for i, x := range all {
		if i == c.opts.TopMandators {
			break
		}
		keep[x.m] = true
	}
	return keep
}

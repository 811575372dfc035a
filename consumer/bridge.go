package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/publisher"
)

// JobManager is the part of *jobmanager.Client the bridge uses.
type JobManager interface {
	Submit(ctx context.Context, mandator string, action jobmanager.Action, jobs []jobmanager.Job) (*jobmanager.BatchStatus, error)
	Batch(ctx context.Context, mandator, batchID string) (*jobmanager.BatchStatus, error)
}

// Bridge is the engine's runner: it consumes lesson changes and executes what the core (see core)
// decides — JetStream, KV and JobManager calls on worker goroutines — and feeds the results back to
// the core, from one loop goroutine. Create it with New and start it with Run; a Bridge runs once.
type Bridge struct {
	cfg     Config
	js      jetstream.JetStream
	nc      *nats.Conn
	jm      JobManager
	pub     *publisher.Publisher
	log     *zap.Logger
	now     func() time.Time
	ackWait time.Duration
	metrics *Metrics
	topo    *topology
	core    *core
	traces  *batchTraces
	pinID   atomic.Pointer[string] // the Nats-Pin-Id our messages last came with (priority group)

	// Intake: filled by the Consume callback, drained by the loop.
	inMu  sync.Mutex
	inQ   []*item
	inSig chan struct{}

	results chan result
	workers sync.WaitGroup
	cc      jetstream.ConsumeContext

	snapshot atomic.Pointer[[]BatchInfo]
	health   atomic.Pointer[healthState]
	started  atomic.Bool
}

type healthState struct {
	ready  bool
	reason string
}

// New returns a bridge for the given JetStream context and JobManager client. cfg is defaulted and
// validated; nothing is contacted before Run.
func New(js jetstream.JetStream, jm JobManager, cfg Config) (*Bridge, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if js == nil || jm == nil {
		return nil, errors.New("consumer: New needs a JetStream context and a JobManager client")
	}
	pub, err := publisher.New(js, publisher.WithSubjects(publisher.Subjects{
		Changes: cfg.ChangesPrefix, Outcomes: cfg.OutcomesPrefix, DeadLetter: cfg.DeadLetterPrefix}))
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	m := newMetrics()
	b := &Bridge{
		cfg:     cfg,
		js:      js,
		nc:      js.Conn(),
		jm:      jm,
		pub:     pub,
		log:     cfg.Logger,
		now:     cfg.Now,
		ackWait: cfg.AckWait,
		metrics: m,
		inSig:   make(chan struct{}, 1),
		results: make(chan result, 1024),
		core:    newCore(cfg, m, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))),
		traces:  newBatchTraces(cfg.Tracing),
	}
	empty := []BatchInfo{}
	b.snapshot.Store(&empty)
	b.health.Store(&healthState{reason: "starting"})
	return b, nil
}

// Metrics returns the bridge's Prometheus collectors (register them where you serve /metrics).
func (b *Bridge) Metrics() *Metrics { return b.metrics }

// Ready reports whether the bridge is pulling and able to work: see Health.
func (b *Bridge) Ready() bool { return b.health.Load().ready }

// Health reports whether the bridge is ready and, when it is not, why: "starting", "stopping", or
// "jobmanager: unauthorized" / "jobmanager: unreachable" while the circuit breaker towards
// JobManager is open (messages stay held; submits and polls resume by themselves). Safe to call from
// any goroutine.
func (b *Bridge) Health() (ready bool, reason string) {
	h := b.health.Load()
	return h.ready, h.reason
}

// Batches returns a snapshot of the batches the bridge is working on, oldest first. It is safe to
// call from any goroutine; the snapshot is refreshed by the engine at most a few times a second.
func (b *Bridge) Batches() []BatchInfo { return *b.snapshot.Load() }

// Run ensures the topology, recovers open batches from the ledger and works until ctx is done. Then
// it stops pulling, returns unsubmitted messages (Nak), gives in-flight batches up to
// Config.ShutdownGrace to settle and returns. Batches still open then are resumed from the ledger by
// the next start. Run returns nil after a shutdown caused by ctx, and an error when the bridge had
// to stop (an unknown ledger record format, NATS refusing writes past their retry budget).
func (b *Bridge) Run(ctx context.Context) (err error) {
	if !b.started.CompareAndSwap(false, true) {
		return errors.New("consumer: Run called twice")
	}
	topo, err := b.ensureTopology(ctx)
	if err != nil {
		return err
	}
	b.topo = topo
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		cancelWork()
		if b.cc != nil {
			b.cc.Stop()
		}
		b.workers.Wait()
		b.health.Store(&healthState{reason: "stopped"})
		if err == nil {
			b.log.Info("bridge stopped")
		}
	}()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("consumer: engine stopped: %v", p)
			b.log.Error("engine stopped", zap.Error(err))
		}
	}()
	c := b.core
	c.start(b.now(), facts{AckWait: b.ackWait, MaxAckPending: topo.consumer.CachedInfo().Config.MaxAckPending})
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	stop := ctx.Done()
	lastSnap, lastSnapBatches := time.Time{}, -1
	for {
		if done, err := b.execute(workCtx, c.take()); done {
			return err
		}
		now := b.now()
		ready, reason := c.health()
		if h := b.health.Load(); h.ready != ready || h.reason != reason {
			b.health.Store(&healthState{ready: ready, reason: reason})
		}
		if now.Sub(lastSnap) > 200*time.Millisecond || len(c.batches) != lastSnapBatches {
			list, oldest := c.snapshot()
			b.snapshot.Store(&list)
			age := 0.0
			if !oldest.IsZero() {
				age = now.Sub(oldest).Seconds()
			}
			b.metrics.oldestAge.Set(age)
			lastSnap, lastSnapBatches = now, len(c.batches)
		}
		wait := time.Hour
		if d := c.nextDeadline(); !d.IsZero() {
			wait = max(d.Sub(now), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-stop:
			stop = nil // once is enough: a closed channel would keep the loop spinning
			c.stop(b.now())
		case <-b.inSig:
			b.drainIntake()
		case r := <-b.results:
			b.drainIntake() // messages the client delivered before this result go first
			c.complete(b.now(), r)
			for i := 0; i < 256; i++ {
				select {
				case r := <-b.results:
					c.complete(b.now(), r)
					continue
				default:
				}
				break
			}
		case <-timer.C:
			c.tick(b.now())
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// drainIntake hands what the Consume callback queued to the core.
func (b *Bridge) drainIntake() {
	b.inMu.Lock()
	q := b.inQ
	b.inQ = nil
	b.inMu.Unlock()
	now := b.now() // one instant for what arrived together: a linger does not cut it apart
	for _, it := range q {
		if it == pinLostMark {
			b.core.lostPin(now)
			continue
		}
		b.core.deliver(now, it)
	}
}

// pinLostMark in the intake queue says that the server moved the pin away (a pull answered "pin ID
// mismatch"), in order with the messages that arrived before.
var pinLostMark = &item{}

// onMsg is the Consume callback: decode and hand over, never block.
func (b *Bridge) onMsg(msg jetstream.Msg) {
	if b.cfg.PriorityGroup != "" {
		if h := msg.Headers(); h != nil {
			if pin := h.Get("Nats-Pin-Id"); pin != "" {
				if mine := b.pinID.Load(); mine == nil || *mine != pin {
					b.pinID.Store(&pin)
				}
			}
		}
	}
	raw := rawMsg{reply: msg.Reply(), subject: msg.Subject(), data: msg.Data()}
	if md, err := msg.Metadata(); err == nil {
		raw.seq, raw.cseq, raw.numDelivered, raw.stored = md.Sequence.Stream, md.Sequence.Consumer, md.NumDelivered, md.Timestamp
	}
	b.enqueue(decodeItem(&b.cfg, raw))
}

// enqueue hands an arrived item (or pinLostMark) to the loop, never blocking.
func (b *Bridge) enqueue(it *item) {
	b.inMu.Lock()
	b.inQ = append(b.inQ, it)
	b.inMu.Unlock()
	select {
	case b.inSig <- struct{}{}:
	default:
	}
}

// Consume's pull requests keep nats.go's defaults (30 s, idle heartbeat 15 s). nats.go can lose
// track of a pull request (nats-io/nats.go#1622: the server has no waiting pull while the client
// still counts one); delivery then stops until two heartbeats are missed and the client pulls again,
// 30 s (lessonbridge_pull_stalls_total). Shorter pulls (2 s, 500 ms heartbeat) bounded that to 1 s in
// the black-box benchmark, but with them TestClusterLeaderLoss/consumer/2-instances and TestChaos
// applied lessons' changes out of order (BENCHMARKS.md), so they are not used. (That was before
// lost deliveries, silent pin moves and heartbeat leases were handled: worth measuring again.) The
// stall was seen in 3 of 21 benchmark runs while every final ack was a request of its own, and in
// none of 36 once a batch's acks were confirmed by one request (ackConfirmed).
func (b *Bridge) startConsume() error {
	opts := []jetstream.PullConsumeOpt{
		jetstream.PullMaxMessages(b.cfg.PullBatch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				b.metrics.pullStalls.Inc()
				b.log.Info("no heartbeat from the server for the pull request; pulling again", zap.Error(err))
				return
			}
			if errors.Is(err, jetstream.ErrPinIDMismatch) {
				b.pinID.Store(nil)
				b.enqueue(pinLostMark) // in order with the messages that came before
				return
			}
			b.log.Debug("consume", zap.Error(err))
		}),
	}
	if b.cfg.PriorityGroup != "" {
		opts = append(opts, jetstream.PullPriorityGroup(b.cfg.PriorityGroup))
	}
	cc, err := b.topo.consumer.Consume(b.onMsg, opts...)
	if err != nil {
		return fmt.Errorf("consumer: consume %s: %w", b.cfg.ConsumerName, err)
	}
	b.cc = cc
	return nil
}

// execute runs effects: the quick ones here, the rest on workers that post their results. It
// returns true when the core is done (with its fatal error, if any).
func (b *Bridge) execute(workCtx context.Context, effs []effect) (bool, error) {
	for _, e := range effs {
		switch e.kind {
		case effFatal:
			return true, e.err
		case effDone:
			return true, nil
		case effStartPulling:
			if err := b.startConsume(); err != nil {
				b.log.Error("start pulling", zap.Error(err))
			}
		case effStopPulling:
			cc := b.cc
			b.cc = nil
			b.goWork(func() {
				if cc != nil {
					// Drain, not Stop: messages in the client buffer still reach the callback.
					cc.Drain()
					select {
					case <-cc.Closed():
					case <-time.After(5 * time.Second):
						b.log.Warn("consumer did not drain within 5s; its buffered messages return after AckWait")
					}
				}
				b.post(workCtx, result{id: e.id})
			})
		case effSignal:
			b.goWork(func() {
				for _, a := range e.acks {
					_ = b.nc.Publish(a.reply, e.body) // fire and forget
				}
			})
		default:
			b.goWork(func() {
				r := b.perform(workCtx, e)
				if r == nil || workCtx.Err() != nil {
					return // abandoned (a hook), or shutting down
				}
				r.id = e.id
				b.post(workCtx, *r)
			})
		}
	}
	return false, nil
}

// post hands a result to the loop, unless the bridge is stopping.
func (b *Bridge) post(workCtx context.Context, r result) {
	select {
	case b.results <- r:
	case <-workCtx.Done():
	}
}

func (b *Bridge) goWork(fn func()) {
	b.workers.Add(1)
	go func() {
		defer b.workers.Done()
		fn()
	}()
}

const opTimeout = 10 * time.Second

// perform executes one I/O effect. A nil result means: abandoned, as a crash would.
func (b *Bridge) perform(workCtx context.Context, e effect) *result {
	ctx, cancel := context.WithTimeout(workCtx, opTimeout)
	defer cancel()
	kv := b.topo.ledger
	switch e.kind {
	case effLedgerList:
		recs, err := b.listLedger(ctx)
		return &result{kind: natsKind(err), err: err, records: recs}
	case effLedgerGet:
		en, err := kv.Get(ctx, e.key)
		if err != nil {
			return &result{kind: natsKind(err), err: err}
		}
		return &result{rev: en.Revision(), value: en.Value()}
	case effLedgerCreate:
		rev, err := kv.Create(ctx, e.key, e.value)
		return &result{kind: natsKind(err), err: err, rev: rev}
	case effLedgerUpdate:
		rev, err := kv.Update(ctx, e.key, e.value, e.rev)
		return &result{kind: natsKind(err), err: err, rev: rev}
	case effLedgerDelete:
		err := kv.Delete(ctx, e.key, jetstream.LastRevision(e.rev))
		return &result{kind: natsKind(err), err: err}
	case effLedgerPut:
		rev, err := kv.Put(ctx, e.key, e.value)
		return &result{kind: natsKind(err), err: err, rev: rev}
	case effSubmit:
		sctx, step := b.traces.submit(workCtx, e)
		t0 := time.Now()
		st, err := b.jm.Submit(sctx, e.mandator, e.action, e.jobs)
		step.End(batchIDOf(st), importStatusOf(st), err)
		if err == nil {
			b.traces.accepted(e.key, st.BatchID)
		}
		b.metrics.submitLatency.Observe(time.Since(t0).Seconds())
		b.metrics.jmResponses.WithLabelValues("submit", statusLabel(err)).Inc()
		if err == nil && b.cfg.Hooks.AfterSubmit != nil {
			if herr := b.cfg.Hooks.AfterSubmit(st.BatchID); herr != nil {
				b.log.Warn("batch abandoned by hook after submit", zap.String("batchKey", e.key), zap.String("batchId", st.BatchID), zap.Error(herr))
				return nil
			}
		}
		return &result{err: err, status: st}
	case effPoll:
		pctx, step := b.traces.poll(workCtx, e)
		t0 := time.Now()
		st, err := b.jm.Batch(pctx, e.mandator, e.batchID)
		step.End(e.batchID, importStatusOf(st), err)
		b.metrics.pollLatency.Observe(time.Since(t0).Seconds())
		b.metrics.jmResponses.WithLabelValues("status", statusLabel(err)).Inc()
		return &result{err: err, status: st}
	case effPublishOutcome:
		o := e.outcome
		if tp := b.traces.traceParent(e.key); tp != "" && o.TraceParent == "" {
			cp := *o
			cp.TraceParent = tp
			o = &cp
		}
		_, err := b.pub.PublishOutcome(ctx, o)
		if err == nil {
			b.traces.end(e.key, o)
		}
		if err == nil && b.cfg.Hooks.AfterOutcome != nil {
			if herr := b.cfg.Hooks.AfterOutcome(e.key); herr != nil {
				b.log.Warn("batch abandoned by hook after its outcome", zap.String("batchKey", e.key), zap.Error(herr))
				return nil
			}
		}
		return &result{kind: natsKind(err), err: err}
	case effPublishDeadLetter:
		_, err := b.pub.PublishDeadLetter(ctx, e.deadLetter)
		return &result{kind: natsKind(err), err: err}
	case effGetBody:
		m, err := b.topo.input.GetMsg(ctx, e.seq)
		if err != nil {
			return &result{kind: natsKind(err), err: err}
		}
		return &result{data: m.Data}
	case effAck:
		return &result{acked: b.ackConfirmed(ctx, e.acks, e.body)}
	case effBeat:
		// Every InProgress but the last fire and forget, the last one a request: the server
		// answers it after the others, which it processes in order on this connection.
		last := len(e.acks) - 1
		for _, a := range e.acks[:last] {
			_ = b.nc.Publish(a.reply, e.body)
		}
		bctx, bcancel := context.WithTimeout(ctx, max(b.core.heartbeat, 100*time.Millisecond))
		defer bcancel()
		if _, err := b.nc.RequestWithContext(bctx, e.acks[last].reply, e.body); err != nil {
			return &result{kind: errTransient, err: err}
		}
		return &result{}
	case effConsumerInfo:
		info, err := b.topo.consumer.Info(ctx)
		if err != nil {
			return &result{kind: errTransient, err: err}
		}
		ci := consumerInfo{numAckPending: info.NumAckPending, delivered: info.Delivered.Stream, deliveredC: info.Delivered.Consumer, ackFloor: info.AckFloor.Stream}
		// The pin can move without a pull of ours being answered "pin ID mismatch" (none was
		// waiting: nats-io/nats.go#1622); the consumer's state names the pinned client.
		if mine := b.pinID.Load(); mine != nil {
			for _, g := range info.PriorityGroups {
				if g.Group == b.cfg.PriorityGroup && g.PinnedClientID != "" && g.PinnedClientID != *mine {
					ci.pinLost = b.pinID.CompareAndSwap(mine, nil)
				}
			}
		}
		return &result{info: ci}
	}
	return &result{kind: errPermanent, err: fmt.Errorf("consumer: unknown effect %v", e.kind)}
}

// natsKind classifies a NATS error for the core.
func natsKind(err error) errKind {
	var api *jetstream.APIError
	switch {
	case err == nil:
		return errNone
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrMsgNotFound):
		return errNotFound
	case errors.Is(err, jetstream.ErrKeyExists):
		return errConflict
	case errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
		return errConflict
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, publisher.ErrInvalid):
		return errPermanent
	}
	return errTransient
}

func (b *Bridge) listLedger(ctx context.Context) ([]rawRecord, error) {
	lister, err := b.topo.ledger.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list ledger: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []rawRecord
	for _, k := range keys {
		e, err := b.topo.ledger.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ledger record %s: %w", k, err)
		}
		out = append(out, rawRecord{key: k, value: e.Value(), rev: e.Revision()})
	}
	return out, nil
}

// ackConfirmed sends body (Ack or Term) for every ref: all but the last fire and forget, the last
// one a request. The server processes a connection's messages in order and answers the request
// after the others, so its answer confirms them all, unless the connection was re-established in
// between (what the old one still buffered may be lost): then none counts as confirmed. It returns
// the stream sequences confirmed within ctx (or 5s): all of them or none. On a cluster a consumer
// leader change can still lose an ack the answer seems to confirm; the ack-floor wait covers that
// (awaitAckFloor).
func (b *Bridge) ackConfirmed(ctx context.Context, refs []ackRef, body []byte) []uint64 {
	if len(refs) == 0 {
		return nil
	}
	before := b.nc.Stats().Reconnects
	last := len(refs) - 1
	for _, a := range refs[:last] {
		if err := b.nc.Publish(a.reply, body); err != nil {
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := b.nc.RequestWithContext(ctx, refs[last].reply, body); err != nil || b.nc.Stats().Reconnects != before {
		return nil
	}
	acked := make([]uint64, len(refs))
	for i, a := range refs {
		acked[i] = a.seq
	}
	return acked
}

func sortStrings(s []string) { sort.Strings(s) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

// Bridge is the engine: it consumes lesson changes, groups them into JobManager batches, submits and
// polls them, publishes outcomes and acknowledges the input. Create it with New and start it with
// Run; a Bridge runs once.
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

	// Intake: filled by the Consume callback, drained by the loop.
	inMu  sync.Mutex
	inQ   []*item
	inSig chan struct{}

	// results carries closures from workers; the loop runs them, so only the loop touches its state.
	results chan func()
	workers sync.WaitGroup
	submitS chan struct{} // semaphores
	pollS   chan struct{}

	// Loop-owned state.
	bySeq    map[uint64]*item
	lessons  map[lessonKey]*lessonState
	groups   map[groupKey]*group
	batches  map[string]*batch
	polls    pollHeap
	pollsRun int
	nextBeat time.Time
	cc       jetstream.ConsumeContext
	paused   bool
	stopping bool

	recovering   map[string]*recovering
	recoverBySeq map[uint64]*recovering
	limbo        []*item // redelivered messages waiting for a ledger reload
	barrier      barrier
	reloading    bool
	floorProbe   bool            // consumer info for recovered records under way
	settledKeys  map[string]bool // batch keys settled here since the last ledger read began

	snapshot atomic.Pointer[[]BatchInfo]
	ready    atomic.Bool
	started  atomic.Bool
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
	b := &Bridge{
		cfg:          cfg,
		js:           js,
		nc:           js.Conn(),
		jm:           jm,
		pub:          pub,
		log:          cfg.Logger,
		now:          cfg.Now,
		ackWait:      cfg.AckWait,
		metrics:      newMetrics(),
		inSig:        make(chan struct{}, 1),
		results:      make(chan func(), 1024),
		submitS:      make(chan struct{}, cfg.MaxConcurrentSubmits),
		pollS:        make(chan struct{}, cfg.MaxConcurrentPolls),
		bySeq:        map[uint64]*item{},
		lessons:      map[lessonKey]*lessonState{},
		groups:       map[groupKey]*group{},
		batches:      map[string]*batch{},
		recovering:   map[string]*recovering{},
		recoverBySeq: map[uint64]*recovering{},
		settledKeys:  map[string]bool{},
	}
	empty := []BatchInfo{}
	b.snapshot.Store(&empty)
	return b, nil
}

// Metrics returns the bridge's Prometheus collectors (register them where you serve /metrics).
func (b *Bridge) Metrics() *Metrics { return b.metrics }

// Ready reports whether the bridge has bound its consumer and is pulling or able to pull.
func (b *Bridge) Ready() bool { return b.ready.Load() }

// Batches returns a snapshot of the batches the bridge is working on, oldest first. It is safe to
// call from any goroutine; the snapshot is refreshed by the engine at most a few times a second.
func (b *Bridge) Batches() []BatchInfo { return *b.snapshot.Load() }

// Run ensures the topology, recovers open batches from the ledger and works until ctx is done. Then
// it stops pulling, returns unsubmitted messages (Nak), gives in-flight batches up to
// Config.ShutdownGrace to settle and returns. Batches still open then are resumed from the ledger by
// the next start. Run returns nil after a shutdown caused by ctx.
func (b *Bridge) Run(ctx context.Context) error {
	if !b.started.CompareAndSwap(false, true) {
		return errors.New("consumer: Run called twice")
	}
	topo, err := b.ensureTopology(ctx)
	if err != nil {
		return err
	}
	b.topo = topo
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	if err := b.recover(ctx); err != nil {
		return err
	}
	if err := b.startConsume(); err != nil {
		return err
	}
	b.ready.Store(true)
	b.log.Info("bridge started", zap.String("stream", b.cfg.InputStream), zap.String("consumer", b.cfg.ConsumerName),
		zap.Duration("ackWait", b.ackWait), zap.Int("maxHeld", b.cfg.MaxHeld))

	b.nextBeat = b.now().Add(b.cfg.Heartbeat)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var graceEnd <-chan time.Time
	lastSnap, lastSnapBatches := time.Time{}, 0
	stop := ctx.Done()
	for {
		select {
		case <-stop:
			stop = nil // once is enough: a closed channel would keep the loop spinning
			b.beginShutdown(workCtx)
			graceEnd = time.After(b.cfg.ShutdownGrace)
		case <-graceEnd:
			b.log.Warn("shutdown grace over; open batches resume from the ledger at next start", zap.Int("batches", len(b.batches)))
			return b.finish(cancelWork)
		case <-b.inSig:
			b.drainIntake(workCtx)
		case fn := <-b.results:
			fn()
		case <-timer.C:
		}
		now := b.now()
		b.onTime(workCtx, now)
		if b.stopping && len(b.batches) == len(b.recovering) {
			return b.finish(cancelWork)
		}
		if !b.stopping {
			b.flowControl()
		}
		if now.Sub(lastSnap) > 200*time.Millisecond || len(b.batches) != lastSnapBatches {
			b.publishSnapshot(now)
			lastSnap, lastSnapBatches = now, len(b.batches)
		}
		timer.Reset(b.nextWake(now))
	}
}

func (b *Bridge) finish(cancelWork context.CancelFunc) error {
	cancelWork()
	done := make(chan struct{})
	go func() { b.workers.Wait(); close(done) }()
	for {
		select {
		case <-done:
			b.ready.Store(false)
			b.log.Info("bridge stopped")
			return nil
		case fn := <-b.results:
			_ = fn // the loop is over: results of cancelled workers are dropped
		}
	}
}

func (b *Bridge) startConsume() error {
	opts := []jetstream.PullConsumeOpt{
		jetstream.PullMaxMessages(b.cfg.PullBatch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
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

// flowControl stops pulling at the hold limit and resumes below 90% of it, so that the Consume
// callback never blocks and no message waits in the client buffer.
func (b *Bridge) flowControl() {
	held := len(b.bySeq)
	b.metrics.held.Set(float64(held))
	switch {
	case !b.paused && held >= b.cfg.MaxHeld:
		b.cc.Drain() // what the client buffered still reaches the callback: held, not left to expire
		b.paused = true
		b.log.Info("hold limit reached; pulling paused", zap.Int("held", held))
	case b.paused && held < b.cfg.MaxHeld*9/10:
		if err := b.startConsume(); err != nil {
			b.log.Error("resume pulling", zap.Error(err))
			return
		}
		b.paused = false
		b.log.Info("pulling resumed", zap.Int("held", held))
	}
}

func (b *Bridge) beginShutdown(workCtx context.Context) {
	b.stopping = true
	b.ready.Store(false)
	if !b.paused {
		// Drain, not Stop: messages in the client buffer still reach the callback and are nakked
		// below, instead of waiting out AckWait.
		b.cc.Drain()
		select {
		case <-b.cc.Closed():
		case <-time.After(5 * time.Second):
			b.log.Warn("consumer did not drain within 5s; its buffered messages return after AckWait")
		}
	}
	// Messages that never reached a submit go back at once; those queued behind an in-flight batch
	// of the same lesson stay until AckWait so that no other instance overtakes that batch.
	b.drainIntake(workCtx)
	nak := 0
	for _, it := range b.limbo {
		_ = b.signal(it, ackNak)
		delete(b.bySeq, it.seq)
		nak++
	}
	b.limbo = nil
	for _, it := range b.barrier.parked {
		_ = b.signal(it, ackNak)
		delete(b.bySeq, it.seq)
		nak++
	}
	b.barrier.parked = nil
	for k, st := range b.lessons {
		if st.inflight != nil {
			continue
		}
		for _, it := range st.all() {
			_ = b.signal(it, ackNak)
			delete(b.bySeq, it.seq)
			nak++
		}
		delete(b.lessons, k)
	}
	b.groups = map[groupKey]*group{}
	b.log.Info("shutting down: pulling stopped", zap.Int("nakked", nak), zap.Int("batchesInFlight", len(b.batches)))
}

// nextWake is how long the loop may sleep before something is due.
func (b *Bridge) nextWake(now time.Time) time.Duration {
	next := b.nextBeat
	for _, g := range b.groups {
		if g.deadline.Before(next) {
			next = g.deadline
		}
	}
	if b.barrier.state == barrierWaiting && b.barrier.deadline.Before(next) {
		next = b.barrier.deadline
	}
	if d := b.nextRecoveryDeadline(); !d.IsZero() && d.Before(next) {
		next = d
	}
	if len(b.polls) > 0 && b.polls[0].nextPoll.Before(next) {
		next = b.polls[0].nextPoll
	}
	d := next.Sub(now)
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

// onTime runs whatever is due: linger flushes, polls and heartbeats.
func (b *Bridge) onTime(workCtx context.Context, now time.Time) {
	if !b.stopping {
		for k, g := range b.groups {
			if !now.Before(g.deadline) {
				b.cut(workCtx, k, g)
			}
		}
	}
	b.expireRecovery(workCtx, now)
	b.expireBarrier(workCtx, now)
	b.startDuePolls(workCtx, now)
	if !now.Before(b.nextBeat) {
		b.heartbeat()
		b.nextBeat = now.Add(b.cfg.Heartbeat)
	}
}

// heartbeat sends InProgress for every held message, off the loop.
func (b *Bridge) heartbeat() {
	if len(b.bySeq) == 0 {
		return
	}
	replies := make([]string, 0, len(b.bySeq))
	for _, it := range b.bySeq {
		replies = append(replies, it.reply)
	}
	b.metrics.heartbeats.Add(float64(len(replies)))
	b.workers.Add(1)
	go func() {
		defer b.workers.Done()
		for _, r := range replies {
			_ = b.nc.Publish(r, ackProgress) // fire and forget
		}
	}()
}

// post hands a closure to the loop. Workers call it once per result.
func (b *Bridge) post(fn func()) { b.results <- fn }

// jitter spreads d by ±PollJitter. It is called from the loop and from submit workers, so it uses
// the goroutine-safe top-level source.
func (b *Bridge) jitter(d time.Duration) time.Duration {
	j := b.cfg.PollJitter
	if j == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 - j + 2*j*rand.Float64()))
}

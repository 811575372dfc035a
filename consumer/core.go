package consumer

import (
	"cmp"
	"container/heap"
	"slices"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// core is the engine's state machine. It is synchronous and deterministic: it has no goroutines,
// does no I/O and reads no clock. Time comes in with every input; randomness (batch keys, JobIDs,
// poll jitter) comes from the injected source. Every state decision of the bridge is taken here;
// the runner (Bridge) only executes the effects the core asks for and feeds the results back, in the
// manner of etcd-io/raft's Node/Ready.
//
// Inputs (methods, each with the current time):
//
//	start(now, facts)    the topology is bound: the consumer's real AckWait and MaxAckPending
//	deliver(now, item)   a message arrived (first delivery or redelivery), decoded by decodeItem
//	complete(now, res)   an effect finished: res.id names it, res.kind says how it failed
//	tick(now)            time passed; due timers fire
//	lostPin(now)         the server pinned another instance of the priority group
//	stop(now)            shut down
//
// Effects (take them with take(); each effect with an id expects exactly one complete):
//
//	effLedgerList, effLedgerGet, effLedgerCreate, effLedgerUpdate, effLedgerDelete
//	effLedgerPut                              a plain put (this instance's liveness entry)
//	effSubmit, effPoll                        JobManager
//	effPublishOutcome, effPublishDeadLetter   JetStream publishes with Nats-Msg-Id
//	effGetBody                                GetMsg of a failed event's original body
//	effAck                                    final Ack/Term of many messages; the last one confirmed,
//	                                          which confirms them all, or none is (all or nothing)
//	effSignal                                 fire-and-forget Nak / Term / InProgress
//	effBeat                                   InProgress for every held message; the last one confirmed
//	effConsumerInfo                           NumAckPending, Delivered, AckFloor
//	effStartPulling, effStopPulling           Consume / Drain
//	effFatal, effDone                         Run returns (with the error)
//
// The life of the bridge, read top-down (state: event -> next state [effects]):
//
//	boot:        start               -> listing   [ledgerList]
//	listing:     list ok             -> probing   [consumerInfo]; records indexed as recovering
//	             list fails (budget) -> fatal;     a record of unknown version -> fatal
//	probing:     info                -> running   [startPulling]; barrier open when nothing outstanding,
//	                                               else waiting for that many redeliveries
//	running:     stop                -> draining  [stopPulling]
//	draining:    pulling stopped     -> grace     [nak of everything not in a batch]
//	grace:       no batch left, or ShutdownGrace over -> done [done]
//
// A message (item), read top-down:
//
//	arrived    invalid              -> dead-lettering [getBody?, publishDeadLetter] -> Term -> gone
//	           seq of a recovering record -> attached; all back -> the record resumes (re-read first)
//	           redelivered, unknown -> limbo [ledgerList]; then attached or admitted
//	           barrier not open     -> parked; admitted in stream order when it opens (through a
//	                                   ledger read when its window ran out)
//	           the pin is lost      -> everything not in a batch: Nak (the pinned instance gets it)
//	           otherwise            -> gate
//	gate       lesson free          -> pending in its group (coalesced with a pending same-action event)
//	           lesson busy          -> waiting behind it, in publish order
//	group      BatchMaxLessons, BatchMaxBytes or BatchLinger -> cut into a batch
//
// A batch, read top-down (failure isolation, issue 10, adds "splitting": the child batches' records
// are created before the parent's outcome; see settle):
//
//	recorded    [ledgerCreate] ok            -> submitting [submit] (at most MaxConcurrentSubmits)
//	submitting  202 + BatchId                -> accepted [ledgerUpdate], polls scheduled
//	            data error (4xx)             -> settling (rejected)
//	            technical error              -> submitting again after backoff, same JobIDs, budget
//	            budget spent                 -> settling (submit_gave_up)
//	            401/403 or JobManager unreachable -> breaker open; the batch waits, budget untouched
//	accepted    poll: LessonsCreated         -> settling (succeeded)
//	            poll: LessonsImportFailed    -> settling (import_failed / in_doubt), or recorded again
//	                                            with new JobIDs (TechnicalRetries)
//	            poll: 404 past NotFoundGrace -> settling (batch_unknown)
//	            PollTimeout                  -> settling (poll_timeout); breaker time does not count
//	settling    [ledgerUpdate verdict] -> [publishOutcome] -> [deadLetters] -> [ack, every one confirmed]
//	            -> [ledgerDelete] -> released (the lessons' waiting events enter the gate)
//	            ledger CAS conflict on the verdict -> taken over: released without acks
//	            acks not all confirmed within budget -> released, record kept: the messages come
//	            back and are settled from the record (never resubmitted)
//
// Global conditions:
//
//	breaker     a 401/403, or breakerTransportRun transport failures in a row without a success:
//	            open; no submit or poll but one probe, with backoff; reported by health; closes on
//	            the first answer from JobManager
//	heartbeat   InProgress for every held message every min(Heartbeat, real AckWait/3)
//	flow        held >= MaxHeld: with a consumer whose MaxAckPending bounds delivery, keep pulling
//	            (the pin stays, the server throttles); otherwise stop pulling until below 90%
//
// Retried NATS operations (ledger, publishes, GetMsg, consumer info) have a budget; when it is
// spent the bridge stops with an error (effFatal) instead of retrying forever or guessing: its open
// batches resume from the ledger at the next start.
type core struct {
	cfg       Config
	log       *zap.Logger
	m         *Metrics
	rnd       randSource
	now       time.Time
	ackWait   time.Duration
	heartbeat time.Duration
	bounded   bool // the consumer's MaxAckPending bounds what the server delivers

	out     []effect
	nextID  uint64
	pending map[uint64]func(result)
	timers  timerHeap
	timerN  uint64

	bySeq    map[uint64]*item
	lessons  map[lessonKey]*lessonState
	groups   map[groupKey]*group
	batches  map[string]*batch
	polls    pollHeap
	pollsRun int
	submitQ  []*batch
	subsRun  int

	recovering   map[string]*recovering
	recoverBySeq map[uint64]*recovering
	limbo        []*item
	barrier      barrier
	reloading    bool
	floorProbe   bool
	settledKeys  map[string]bool
	floorWaits   map[string]*floorWait // settled here, record kept until the ack floor passes (settle.go)
	floorWaitN   uint64
	floorTimer   bool

	breaker   breaker
	drainHeld []*item                // arrived while pulling is being stopped: nakked when it stopped
	goneRC    []*recovering          // resumed, but their record was gone: routed after the next ledger read
	missed    map[lessonKey][]*batch // recovered batches that found their lesson in flight here

	leaseAt time.Time // when the last confirmed heartbeat round was sent (see leaseEnd)

	// Owner liveness (liveness.go).
	liveKey      string // this incarnation's liveness entry
	liveRev      uint64 // its revision as last written (0: none)
	livePuts     int    // puts of it in flight
	liveDeleting bool   // its delete is out
	kvRev        uint64 // the highest revision this instance's own ledger writes landed at
	// ownerCheckOff: liveness entries are written but not used (the simulation's A/B of the
	// owner check, LESSONBRIDGE_SIM_OWNER_OFF); never set outside tests.
	ownerCheckOff bool
	live          map[string]liveEntry // the other instances' entries, as the last ledger listing had them
	liveAt        time.Time            // when that listing was issued
	namedBy       map[uint64]string    // stream sequence -> the key of the record naming it, in that listing
	liveSeen      map[string]liveSeen  // since when each entry has had its revision

	phase   phase
	paused  bool
	fatal   error
	outage  time.Duration // total time the breaker was open
	readyAt time.Time
}

type phase int

const (
	phaseBoot phase = iota
	phaseListing
	phaseProbing
	phaseRunning
	phaseDraining
	phaseGrace
	phaseDone
)

// randSource is where the core's randomness comes from (math/rand/v2's *rand.Rand fits).
type randSource interface {
	Uint64() uint64
	Float64() float64
}

// facts are what the runner learnt binding the topology.
type facts struct {
	AckWait       time.Duration // the consumer's real AckWait
	MaxAckPending int           // the consumer's real MaxAckPending (<= 0: unlimited)
}

type effKind int

const (
	effLedgerList effKind = iota + 1
	effLedgerGet
	effLedgerCreate
	effLedgerUpdate
	effLedgerDelete
	effLedgerPut
	effSubmit
	effPoll
	effPublishOutcome
	effPublishDeadLetter
	effGetBody
	effAck
	effSignal
	effBeat
	effConsumerInfo
	effStartPulling
	effStopPulling
	effFatal
	effDone
)

var effNames = map[effKind]string{effLedgerList: "ledgerList", effLedgerGet: "ledgerGet", effLedgerCreate: "ledgerCreate",
	effLedgerUpdate: "ledgerUpdate", effLedgerDelete: "ledgerDelete", effLedgerPut: "ledgerPut", effSubmit: "submit", effPoll: "poll",
	effPublishOutcome: "publishOutcome", effPublishDeadLetter: "publishDeadLetter", effGetBody: "getBody", effAck: "ack",
	effSignal: "signal", effBeat: "beat", effConsumerInfo: "consumerInfo", effStartPulling: "startPulling", effStopPulling: "stopPulling",
	effFatal: "fatal", effDone: "done"}

func (k effKind) String() string { return effNames[k] }

// effect is one thing the core asks the runner to do. Only the fields of its kind are set.
type effect struct {
	id   uint64 // 0: no result expected (signal, startPulling, fatal, done)
	kind effKind

	key   string // ledger key; batch key of submit/poll/outcome
	value []byte // ledger value
	rev   uint64 // ledger revision to compare (update, delete)

	mandator string
	action   jobmanager.Action
	jobs     []jobmanager.Job
	batchID  string
	// traceparents of the batch's input events (submit; for the runner's batch span)
	traceparents []string

	outcome    *schemas.Outcome
	deadLetter publisher.DeadLetter
	seq        uint64 // getBody

	acks []ackRef // ack, signal
	body []byte   // ack-protocol body

	err error // fatal
}

// ackRef names a held message for the ack protocol: its reply subject and stream sequence.
type ackRef struct {
	reply string
	seq   uint64
}

// errKind is how an effect failed, as the core needs to know it.
type errKind int

const (
	errNone      errKind = iota
	errTransient         // may be retried: a timeout, no responders, a 5xx, a lost answer
	errNotFound          // ledger key or stream message does not exist
	errConflict          // ledger: the key exists (create) or has another revision (update, delete)
	errPermanent         // retrying cannot help (max_payload, a bad request)
)

// result is the answer to one effect.
type result struct {
	id   uint64
	kind errKind
	err  error

	rev     uint64                  // ledger create/update/get
	value   []byte                  // ledger get
	records []rawRecord             // ledger list
	status  *jobmanager.BatchStatus // submit, poll
	info    consumerInfo            // consumerInfo
	data    []byte                  // getBody
	acked   []uint64                // ack: the stream sequences whose ack the server confirmed
}

type rawRecord struct {
	key   string
	value []byte
	rev   uint64
}

type consumerInfo struct {
	numAckPending int
	delivered     uint64 // Delivered.Stream
	deliveredC    uint64 // Delivered.Consumer: the last delivery's consumer sequence
	pinLost       bool   // the consumer names another pinned client than the one our messages came to
	ackFloor      uint64 // AckFloor.Stream
}

func newCore(cfg Config, m *Metrics, rnd randSource) *core {
	return &core{
		cfg: cfg, log: cfg.Logger, m: m, rnd: rnd, ackWait: cfg.AckWait, heartbeat: cfg.Heartbeat,
		pending:      map[uint64]func(result){},
		bySeq:        map[uint64]*item{},
		lessons:      map[lessonKey]*lessonState{},
		groups:       map[groupKey]*group{},
		batches:      map[string]*batch{},
		recovering:   map[string]*recovering{},
		recoverBySeq: map[uint64]*recovering{},
		settledKeys:  map[string]bool{},
		floorWaits:   map[string]*floorWait{},
		missed:       map[lessonKey][]*batch{},
		live:         map[string]liveEntry{},
		liveSeen:     map[string]liveSeen{},
	}
}

// take returns the effects produced since the last call.
func (c *core) take() []effect {
	out := c.out
	c.out = nil
	return out
}

// do emits an effect; then runs with its result.
func (c *core) do(e effect, then func(result)) {
	if c.phase == phaseDone {
		return
	}
	if then != nil {
		c.nextID++
		e.id = c.nextID
		c.pending[e.id] = then
	}
	c.out = append(c.out, e)
}

func (c *core) setNow(now time.Time) {
	if now.After(c.now) {
		c.now = now
	}
}

// start binds the core to the consumer in use and begins: the ledger is read first.
func (c *core) start(now time.Time, f facts) {
	c.setNow(now)
	if f.AckWait > 0 {
		c.ackWait = f.AckWait
	}
	// Finding 3: the heartbeat follows the consumer's real AckWait, not the flag.
	if hb := c.ackWait / 3; hb < c.heartbeat || c.heartbeat <= 0 {
		c.heartbeat = hb
	}
	c.bounded = f.MaxAckPending > 0 && f.MaxAckPending <= c.cfg.MaxHeld+2*c.cfg.PullBatch
	c.phase = phaseListing
	c.liveKey = livePrefix + c.newUUID()
	c.readLedger("read ledger", func(recs []*record, revs []uint64) {
		n := c.indexRecords(recs, revs)
		c.m.ledgerRecords.Set(float64(n))
		c.phase = phaseProbing
		c.probeAtStart()
	})
	c.after(c.heartbeat, c.beat)
	c.after(10*c.ackWait, c.sweepLedger)
	c.pump()
}

// deliver takes a message that arrived.
func (c *core) deliver(now time.Time, it *item) {
	c.setNow(now)
	c.fire()
	if c.phase == phaseDone {
		return
	}
	c.intake(it)
	c.pump()
}

// lostPin says the server moved the pin of the priority group to another instance (a pull was
// answered "pin ID mismatch").
//
// The new pinned instance gets the events that arrive from now on, newer ones of the lessons this
// one holds among them. What this one holds and has not recorded in a batch (pending in a group,
// waiting behind a batch, parked at the barrier, waiting for a ledger read) goes back at once
// (Nak): the server redelivers it to the pinned instance, in stream order, where its barrier counts
// it back. Batches already cut go on here; the pinned instance sees their records in the ledger
// and keeps their lessons until they settle (barrier, indexRecords). A batch whose record has not
// landed yet (a KV write hanging through a leader's loss) it cannot see: the events behind such a
// batch stay here until the record lands (handBackUnbatched, handBackKept).
func (c *core) lostPin(now time.Time) {
	c.setNow(now)
	c.fire()
	c.pinMoved("the pin moved to another instance; events not yet in a batch handed back to it (Nak)")
	c.pump()
}

// pinMoved hands back what is held outside a batch when another instance got the pin. Events
// waiting behind a batch whose ledger record has not landed yet stay (keepBehindUnrecorded).
func (c *core) pinMoved(why string) {
	if c.phase == phaseRunning {
		c.m.pinLost.Inc()
		c.handBackUnbatched(why, true)
	}
}

// handBackUnbatched naks, in stream order, every held event that is not in a batch (pending,
// waiting behind a batch, parked at the barrier, waiting for a ledger read) and arms the barrier
// again: another instance may get newer events of those lessons, and they must reach it first.
//
// With keepBehindUnrecorded (the pin moved; our messages are still leased) the events waiting
// behind a batch of ours whose ledger record has not landed (in the gate, or parked at the
// barrier) stay: the pinned instance cannot see
// that batch (its KV write may hang for seconds through a leader's loss) and would import them
// before it. They go back once the record has landed (handBackKept: the pinned instance's ledger
// read then keeps the lesson behind it), or when the batch is done without one (release). A lapsed
// lease hands back everything: those messages may be elsewhere already.
func (c *core) handBackUnbatched(why string, keepBehindUnrecorded bool) {
	keep := func(st *lessonState) bool {
		return keepBehindUnrecorded && st != nil && st.pending == nil && st.inflight != nil && !st.inflight.dead &&
			st.inflight.state == stateRecorded && st.inflight.ledgerRev == 0
	}
	var back []*item
	kept := 0
	for _, it := range c.takeParked() { // parked at the barrier: in stream order, after the batch's
		if st := c.lessons[lessonKey{it.mandator, it.ev.Data.LessonID}]; keep(st) {
			st.waiting = append(st.waiting, it)
			continue
		}
		back = append(back, it)
	}
	back = append(back, c.limbo...)
	c.limbo = nil
	for k, st := range c.lessons {
		if keep(st) {
			slices.SortFunc(st.waiting, func(a, b *item) int { return cmp.Compare(a.seq, b.seq) })
			st.handBack = true
			kept += len(st.waiting)
			continue
		}
		back = append(back, st.all()...)
		st.pending, st.waiting = nil, nil
		if st.inflight == nil {
			delete(c.lessons, k)
		}
	}
	c.groups = map[groupKey]*group{}
	c.handBack(back)
	br := &c.barrier
	br.gen++
	br.state, br.regap = barrierUnprobed, false
	c.log.Info(why, zap.Int("handedBack", len(back)), zap.Int("keptBehindUnrecordedBatches", kept), zap.Int("batchesInFlight", len(c.batches)))
}

// complete feeds an effect's result back.
func (c *core) complete(now time.Time, r result) {
	c.setNow(now)
	c.fire()
	fn := c.pending[r.id]
	if fn == nil {
		return
	}
	delete(c.pending, r.id)
	if r.info.pinLost {
		// Moved without telling us (no pull of ours was waiting to be answered "pin ID mismatch").
		c.pinMoved("the consumer names another pinned instance; events not yet in a batch handed back to it (Nak)")
	}
	fn(r)
	c.pump()
}

// tick lets time pass.
func (c *core) tick(now time.Time) {
	c.setNow(now)
	c.fire()
	c.pump()
}

// nextDeadline is when the core next needs a tick (zero: nothing scheduled).
func (c *core) nextDeadline() time.Time {
	if len(c.timers) == 0 {
		return time.Time{}
	}
	return c.timers[0].at
}

// fail stops the bridge with err.
func (c *core) fail(err error) {
	if c.phase == phaseDone {
		return
	}
	c.log.Error("bridge stops", zap.Error(err))
	c.fatal = err
	c.do(effect{kind: effFatal, err: err}, nil)
	c.phase = phaseDone
}

// health is whether the bridge is ready and, if not, why.
func (c *core) health() (bool, string) {
	switch {
	case c.phase < phaseRunning:
		return false, "starting"
	case c.phase > phaseRunning:
		return false, "stopping"
	case c.breaker.open:
		return false, "jobmanager: " + c.breaker.reason
	}
	return true, ""
}

// timers: one heap for every deadline of the core.
type timer struct {
	at time.Time
	n  uint64
	fn func()
}

type timerHeap []timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].n < h[j].n
	}
	return h[i].at.Before(h[j].at)
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

func (c *core) after(d time.Duration, fn func()) { c.at(c.now.Add(d), fn) }

func (c *core) at(t time.Time, fn func()) {
	c.timerN++
	heap.Push(&c.timers, timer{at: t, n: c.timerN, fn: fn})
}

// fire runs every due timer, in deadline order.
func (c *core) fire() {
	for len(c.timers) > 0 && !c.timers[0].at.After(c.now) && c.phase != phaseDone {
		t := heap.Pop(&c.timers).(timer)
		t.fn()
	}
}

// NATS operations: retried with backoff from 100ms to 5s, at most natsAttempts times (about two
// minutes), then the caller decides (usually: stop the bridge).
const natsAttempts = 30

// retry issues mk() until it succeeds, fails in a way retrying cannot help (not transient), or the
// budget is spent; then done gets the last result.
func (c *core) retry(what string, log *zap.Logger, mk func() effect, done func(result)) {
	wait := 100 * time.Millisecond
	attempt := 0
	var issue func()
	issue = func() {
		attempt++
		c.do(mk(), func(r result) {
			if r.kind != errTransient || attempt >= natsAttempts || c.phase == phaseDone {
				if r.kind == errTransient {
					log.Error(what+": giving up", zap.Int("attempts", attempt), zap.Error(r.err))
				}
				done(r)
				return
			}
			if attempt == 1 || attempt%10 == 0 {
				log.Warn(what+": will retry", zap.Int("attempt", attempt), zap.Error(r.err))
			}
			c.after(wait, issue)
			wait = min(wait*2, 5*time.Second)
		})
	}
	issue()
}

// jitter spreads d by ±PollJitter.
func (c *core) jitter(d time.Duration) time.Duration {
	j := c.cfg.PollJitter
	if j == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 - j + 2*j*c.rnd.Float64()))
}

// window is the barrier's and the recovery's wait for messages outstanding elsewhere: the server
// redelivers an expired message within about an AckWait, and looks for them about once per AckWait.
func (c *core) window() time.Duration { return 2*c.ackWait + c.heartbeat }

// newUUID is a UUIDv7 from the core's clock and random source.
func (c *core) newUUID() string { return uuid.UUID(c.uuidV7()).String() }

func (c *core) uuidV7() (u [16]byte) {
	ms := uint64(c.now.UnixMilli())
	for i := range 6 {
		u[i] = byte(ms >> (40 - 8*i))
	}
	r1, r2 := c.rnd.Uint64(), c.rnd.Uint64()
	u[6], u[7] = byte(r1), byte(r1>>8)
	for i := range 8 {
		u[8+i] = byte(r2 >> (8 * i))
	}
	u[6] = 0x70 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return u
}

// newJobID returns <prefix>-<YYYYMMDD>-<UUIDv7>.
func (c *core) newJobID() string { return jobID(c.cfg.JobIDPrefix, c.now, c.uuidV7()) }

// pump starts what may start now: submits and polls within their concurrency and the breaker, and
// flow control; and ends a shutdown that has nothing left.
func (c *core) pump() {
	if c.phase == phaseDone {
		return
	}
	c.pumpSubmits()
	c.pumpPolls()
	if c.phase == phaseRunning {
		c.flowControl()
	}
	if c.phase == phaseGrace && !c.working() {
		c.finish()
	}
}

// working reports whether a batch this instance works on is open (recovered records it only
// watches do not count: they resume from the ledger).
func (c *core) working() bool {
	for k, bt := range c.batches {
		if c.recovering[k] == nil && !bt.awaiting {
			return true
		}
	}
	return false
}

// flowControl: see "flow" in the type's doc.
func (c *core) flowControl() {
	held := len(c.bySeq)
	c.m.held.Set(float64(held))
	if c.bounded {
		return // Finding 6: never stop pulling; MaxAckPending throttles and the pin stays
	}
	switch {
	case !c.paused && held >= c.cfg.MaxHeld:
		c.paused = true
		c.m.paused.Set(1)
		c.do(effect{kind: effStopPulling}, func(result) {})
		c.log.Info("hold limit reached; pulling paused", zap.Int("held", held))
	case c.paused && held < c.cfg.MaxHeld*9/10:
		c.paused = false
		c.m.paused.Set(0)
		c.do(effect{kind: effStartPulling}, nil)
		c.log.Info("pulling resumed", zap.Int("held", held))
	}
}

// beat sends InProgress for every held message and schedules the next.
func (c *core) beat() {
	if n := len(c.bySeq); n > 0 {
		refs := make([]ackRef, 0, n)
		for _, it := range c.bySeq {
			refs = append(refs, ackRef{it.reply, it.seq})
		}
		slices.SortFunc(refs, func(a, b ackRef) int { return cmp.Compare(a.seq, b.seq) })
		c.m.heartbeats.Add(float64(len(refs)))
		sent := c.now
		c.do(effect{kind: effBeat, acks: refs, body: ackProgress}, func(r result) {
			if r.kind == errNone {
				c.renewLease(sent)
			}
		})
	} else {
		c.leaseAt = c.now // nothing held: nothing to lose; what arrives carries its own time
	}
	c.writeLiveness()
	c.after(c.heartbeat, c.beat)
}

// The lease: a held message is ours while the server last heard of it (its delivery, or a
// confirmed heartbeat round, which the server processes in order on our connection) less than
// AckWait ago. When heartbeats do not reach the server for that long (our node or the consumer's
// leader gone, a long disconnect), it may have delivered our messages to another instance, which
// does not see a batch of ours whose ledger record was not there when it read the ledger. So a
// new batch's record must be written while its messages are leased (record, batch.go), and a
// lease that lapsed hands back what is not in a recorded batch (simulation: consumer outages;
// TestClusterLeaderLoss/consumer imported such a batch twice).

// leaseEnd is when the lease of it runs out: AckWait after the last confirmed heartbeat round was
// sent (the server stamps it later still), less a tenth for clocks; or AckWait after it arrived
// here, less a heartbeat (the server sent it earlier, by the network and our intake queue).
func (c *core) leaseEnd(it *item) time.Time {
	end := time.Unix(0, it.arrived).Add(c.ackWait - c.heartbeat)
	if e := c.leaseAt.Add(c.ackWait - c.ackWait/10); e.After(end) {
		end = e
	}
	return end
}

// leased reports whether every message of bt is leased now.
func (c *core) leased(bt *batch) bool {
	for _, it := range bt.items {
		if !c.now.Before(c.leaseEnd(it)) {
			return false
		}
	}
	return true
}

// renewLease takes a confirmed heartbeat round sent at sent. When some held message's lease ran
// out before it was sent, the server may have redelivered it elsewhere meanwhile: what is not in
// a recorded batch goes back, and batches whose record is still being written are abandoned when
// it lands.
func (c *core) renewLease(sent time.Time) {
	lapsed := false
	for _, it := range c.bySeq {
		if !it.acked && !sent.Before(c.leaseEnd(it)) {
			lapsed = true
			break
		}
	}
	if sent.After(c.leaseAt) {
		c.leaseAt = sent
	}
	if !lapsed || c.phase != phaseRunning {
		return
	}
	c.m.leaseLapsed.Inc()
	for _, bt := range c.batches {
		if bt.state == stateRecorded && bt.ledgerRev == 0 && bt.attempts == 0 && bt.subAttempts == 0 {
			bt.suspect = true
		}
	}
	c.handBackUnbatched("heartbeats did not reach the server for longer than AckWait; events not in a recorded batch handed back (Nak)", false)
}

// signal sends one ack-protocol message for items, fire and forget.
func (c *core) signal(body []byte, items ...*item) {
	if len(items) == 0 {
		return
	}
	refs := make([]ackRef, len(items))
	for i, it := range items {
		refs[i] = ackRef{it.reply, it.seq}
	}
	c.do(effect{kind: effSignal, acks: refs, body: body}, nil)
}

// handBack sends held items back to the server (Nak, in stream order) and forgets them here.
func (c *core) handBack(items []*item) {
	slices.SortFunc(items, func(a, b *item) int { return cmp.Compare(a.seq, b.seq) })
	for _, it := range items {
		delete(c.bySeq, it.seq)
	}
	c.signal(ackNak, items...)
}

// stop begins the shutdown: stop pulling, nak what never reached a batch, give batches
// ShutdownGrace to settle.
func (c *core) stop(now time.Time) {
	c.setNow(now)
	c.fire()
	if c.phase >= phaseDraining {
		return
	}
	if c.phase < phaseRunning {
		c.finish() // not pulling yet: nothing to give back
		return
	}
	c.phase = phaseDraining
	c.do(effect{kind: effStopPulling}, func(result) { c.drained() })
	c.pump()
}

func (c *core) drained() {
	c.phase = phaseGrace
	// Messages that never reached a submit go back at once; those queued behind an in-flight batch
	// of the same lesson stay until AckWait so that no other instance overtakes that batch.
	nak := c.drainHeld
	c.drainHeld = nil
	nak = append(nak, c.limbo...)
	c.limbo = nil
	nak = append(nak, c.takeParked()...)
	for k, st := range c.lessons {
		if st.inflight != nil {
			continue
		}
		nak = append(nak, st.all()...)
		delete(c.lessons, k)
	}
	c.handBack(nak)
	c.groups = map[groupKey]*group{}
	c.submitQ = c.submitQ[:0:0]
	for _, bt := range c.batches {
		if bt.state == stateRecorded && bt.queued {
			bt.queued = false // not submitted: resumed from the ledger at the next start
		}
	}
	c.log.Info("shutting down: pulling stopped", zap.Int("nakked", len(nak)), zap.Int("batchesInFlight", len(c.batches)))
	c.after(c.cfg.ShutdownGrace, func() {
		if c.phase == phaseGrace {
			c.log.Warn("shutdown grace over; open batches resume from the ledger at next start", zap.Int("batches", len(c.batches)))
			c.finish()
		}
	})
}

func (c *core) finish() {
	c.phase = phaseDone
	c.out = append(c.out, effect{kind: effDone})
}

// breaker is the global circuit breaker towards JobManager (finding 9).
type breaker struct {
	open      bool
	reason    string
	since     time.Time
	probing   bool // one call is out as the probe
	nextProbe time.Time
	backoff   time.Duration
	transRun  int // transport failures in a row
}

// breakerTransportRun transport failures in a row, with no JobManager answer between, count as
// "JobManager unreachable".
const breakerTransportRun = 3

// jmAnswered tells the breaker how a JobManager call ended. It returns true when the error is a
// global condition (the caller must not count it against the batch).
func (c *core) jmAnswered(err error) bool {
	br := &c.breaker
	var reason string
	switch {
	case err == nil:
	case jobmanager.Classify(err) == jobmanager.ClassAuth:
		reason = "unauthorized"
		c.m.authFailing.Set(1)
	case statusLabel(err) == "transport":
		br.transRun++
		if br.transRun >= breakerTransportRun || br.open {
			reason = "unreachable"
		}
	}
	if reason != "unauthorized" && (err == nil || statusLabel(err) != "transport") {
		c.m.authFailing.Set(0) // JobManager answered, and not with an authentication failure
	}
	if err == nil || (statusLabel(err) != "transport" && reason == "") {
		br.transRun = 0
		if br.open {
			d := c.now.Sub(br.since)
			c.outage += d
			c.log.Info("JobManager answers again; submits and polls resume", zap.String("was", br.reason), zap.Duration("after", d))
			c.m.breakerOpen.Set(0)
			*br = breaker{}
		}
		br.probing = false
		return false
	}
	br.probing = false
	if reason == "" {
		return false
	}
	if !br.open {
		br.open, br.reason, br.since, br.backoff = true, reason, c.now, c.cfg.SubmitBackoff
		c.m.breakerOpen.Set(1)
		c.m.breakerTrips.WithLabelValues(reason).Inc()
		c.log.Error("JobManager unavailable; submits and polls stop, messages stay held; probing with backoff",
			zap.String("reason", reason), zap.Error(err))
	} else {
		br.reason = reason
		br.backoff = min(br.backoff*2, c.cfg.SubmitMaxBackoff)
	}
	br.nextProbe = c.now.Add(br.backoff)
	c.after(br.backoff, func() {})
	return true
}

// jmMayCall reports whether a JobManager call may start now; while the breaker is open one call
// at a time is let through as a probe, after its backoff.
func (c *core) jmMayCall() bool {
	br := &c.breaker
	if !br.open {
		return true
	}
	if br.probing || c.now.Before(br.nextProbe) {
		return false
	}
	br.probing = true
	return true
}

// elapsed is the time since t without the time the breaker was open.
func (c *core) elapsed(t time.Time, outageAt time.Duration) time.Duration {
	out := c.outage - outageAt
	if c.breaker.open {
		out += c.now.Sub(c.breaker.since)
	}
	return c.now.Sub(t) - out
}

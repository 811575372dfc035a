package consumer

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/internal/isolation"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// batchState is where a batch is in its life (see core's doc).
type batchState string

const (
	stateRecorded batchState = "recorded" // ledger record written, submit not (known to be) accepted
	stateAccepted batchState = "accepted" // JobManager answered 202 with a BatchId: polling
	stateSettling batchState = "settling" // terminal; outcome, dead letters and acks under way
)

// batch is one submit request and everything that follows from it.
type batch struct {
	key      string // ledger key and outcome id, unique per batch
	mandator string
	action   schemas.Action
	jobs     []jobmanager.Job
	jobSeqs  [][]uint64 // stream sequences of each job's lessons' effective events
	lessons  []*pendingLesson
	items    []*item // every held message this batch settles
	log      *zap.Logger

	state       batchState
	batchID     string
	created     time.Time
	submittedAt time.Time
	acceptedAt  time.Time
	attempts    int
	ambiguous   bool // an earlier attempt may have reached JobManager
	polls       int
	lastStatus  jobmanager.ImportStatus
	lessonCount int
	nextPoll    time.Time
	heapIndex   int
	ledgerRev   uint64
	keepTail    bool   // encodeRecord may keep the encoding of the jobs and messages (recTail)
	recTail     []byte // that encoding, once the first write built it
	techRetries int    // technical-failure resubmissions as new batches so far

	queued      bool          // waiting for a submit slot (or the breaker)
	submitting  bool          // a submit is out
	subAttempts int           // attempts of the current submission
	subStart    time.Time     // when the current submission began
	subOutage   time.Duration // core.outage then
	subWait     time.Duration // next backoff
	accOutage   time.Duration // core.outage when accepted
	dead        bool          // settled or given up: late results are ignored
	verdict     *verdict      // set once settling
	partial     bool          // settles only part of its record's messages: the record stays
	replaces    string        // key of the record this batch resubmits as new

	// Failure isolation (isolate.go).
	iso       *isolation.State // the isolation State of a child batch; nil for an original batch
	parent    string           // key of the failed batch this one resubmits part of
	root      string           // key of the original batch of its isolation
	split     *split           // set when this batch failed and was split
	kids      []*batch         // child batches not yet started (settle starts them)
	followUps []string         // keys of the child batches of its split
	rebuilt   bool             // recovered from a record rebuilt from its parent's verdict
	// keepLessons: released while shutting down with its lessons still held (isolate.go)
	keepLessons bool
	// suspect: its lease lapsed while its first record was being written (core.go renewLease)
	suspect bool
	// foreign: a recovered record this instance watches and does not work on (yet): not named in
	// its liveness entry (liveness.go)
	foreign bool
	// awaiting: a recovered record whose messages all came back, waiting to see whether its owner
	// is alive (liveness.go awaitOwner)
	awaiting bool
	// fromRecord: recovered from a ledger record this process did not write (another instance's,
	// or an earlier incarnation's); its owner may still be settling it (barrier.go heldUpTo)
	fromRecord bool
}

// setLogger gives the batch a child logger: every line of a batch carries batchKey, mandator,
// action and batchId (empty until JobManager accepted the batch).
func (bt *batch) setLogger(base *zap.Logger) {
	bt.log = base.With(zap.String("batchKey", bt.key), zap.String("batchId", bt.batchID),
		zap.String("mandator", bt.mandator), zap.String("action", string(bt.action)))
}

// cut turns a pending group into a batch and starts its ledger record and submit.
func (c *core) cut(gk groupKey, g *group) {
	delete(c.groups, gk)
	if len(g.lessons) == 0 {
		return
	}
	bt := &batch{
		key:      "b-" + c.newUUID(),
		mandator: gk.mandator,
		action:   gk.action,
		lessons:  g.lessons,
		state:    stateRecorded,
		created:  c.now,
		keepTail: true,
	}
	// One job per data.group, in order of first appearance. Each job's lessons and sequences are
	// ranges of one array each, filled in the lessons' order.
	n := len(g.lessons)
	jobOf := make([]int, n)
	var perJob []int
	jobIdx := make(map[string]int, 8)
	nItems := 0
	for i, p := range g.lessons {
		grp := p.eff.ev.Data.Group
		j, ok := jobIdx[grp]
		if !ok {
			j = len(perJob)
			jobIdx[grp] = j
			perJob = append(perJob, 0)
		}
		jobOf[i] = j
		perJob[j]++
		nItems += len(p.items)
	}
	bt.jobs = make([]jobmanager.Job, len(perJob))
	bt.jobSeqs = make([][]uint64, len(perJob))
	lessons := make([]jobmanager.Lesson, n)
	seqs := make([]uint64, n)
	off := 0
	for j, k := range perJob {
		bt.jobs[j] = jobmanager.Job{JobID: c.newJobID(), LektionList: lessons[off : off : off+k]}
		bt.jobSeqs[j] = seqs[off : off : off+k]
		off += k
	}
	bt.items = make([]*item, 0, nItems)
	times := formatTimes(g.lessons)
	for i, p := range g.lessons {
		j := jobOf[i]
		ev := p.eff.ev
		bt.jobSeqs[j] = append(bt.jobSeqs[j], p.eff.seq)
		bt.jobs[j].LektionList = append(bt.jobs[j].LektionList, jobmanager.Lesson{LektionID: ev.Data.LessonID,
			Beginn: times.get(2 * i), Ende: times.get(2*i + 1), RessourceName: ev.Data.Resource, Extra: ev.Data.Attributes})
		bt.items = append(bt.items, p.items...)
		st := p.st
		if st == nil {
			st = c.lessons[p.key]
		}
		st.pending = nil
		holdState(st, p.key, bt)
	}
	bt.setLogger(c.log)
	c.batches[bt.key] = bt
	c.m.inFlight.Set(float64(len(c.batches)))
	c.record(bt, 0)
}

// jobID formats <prefix>-<YYYYMMDD>-<UUIDv7> (the day in UTC) in one allocation.
func jobID(prefix string, now time.Time, u [16]byte) string {
	var a [128]byte
	b := append(a[:0], prefix...)
	b = append(b, '-')
	b = now.UTC().AppendFormat(b, "20060102")
	for _, part := range [...][]byte{u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]} {
		b = append(b, '-')
		b = hex.AppendEncode(b, part)
	}
	return string(b)
}

// lessonTimes are the start and end times of a cut's lessons as toLesson formats them, in one
// string: one allocation per batch instead of two per lesson.
type lessonTimes struct {
	s    string
	ends []int // ends[2i] and ends[2i+1]: where lesson i's start and end end in s
}

// formatTimes formats the effective events' data.start and data.end (RFC 3339 with nanoseconds,
// empty when zero) of lessons.
func formatTimes(lessons []*pendingLesson) lessonTimes {
	var b strings.Builder
	b.Grow(2 * len(lessons) * len("2006-01-02T15:04:05Z"))
	var scratch [64]byte
	ends := make([]int, 0, 2*len(lessons))
	for _, p := range lessons {
		for _, t := range [2]time.Time{p.eff.ev.Data.Start, p.eff.ev.Data.End} {
			if !t.IsZero() {
				b.Write(t.AppendFormat(scratch[:0], time.RFC3339Nano))
			}
			ends = append(ends, b.Len())
		}
	}
	return lessonTimes{s: b.String(), ends: ends}
}

// get returns the k-th formatted time.
func (lt lessonTimes) get(k int) string {
	lo := 0
	if k > 0 {
		lo = lt.ends[k-1]
	}
	return lt.s[lo:lt.ends[k]]
}

// record creates bt's ledger record, then queues its submit.
func (c *core) record(bt *batch, delay time.Duration) {
	c.ledgerWrite(bt, "ledger record", func() {
		if bt.suspect || !c.leased(bt) {
			c.abandon(bt)
			return
		}
		if delay > 0 {
			c.after(delay, func() { c.queueSubmit(bt) })
			return
		}
		c.queueSubmit(bt)
	})
}

// handBackKept sends back (Nak, in stream order) the events kept behind bt since the pin moved
// while its record was being written (handBackUnbatched): the record is in the ledger now
// (ledgerWrite, any first write of a batch: a new batch, a resubmission as new, a rebuilt child),
// so the pinned instance, reading it, keeps their lesson behind bt.
func (c *core) handBackKept(bt *batch) {
	var back []*item
	for _, p := range bt.lessons {
		st := c.lessons[p.key]
		if st == nil || st.inflight != bt || !st.handBack {
			continue
		}
		st.handBack = false
		back = append(back, st.waiting...)
		st.waiting = nil
	}
	if len(back) == 0 {
		return
	}
	bt.log.Info("record in the ledger; the events kept behind the batch since the pin moved go back (Nak)", zap.Int("handedBack", len(back)))
	c.handBack(back)
}

// abandon gives up a batch whose record landed after its messages' lease ran out: another
// instance may have them and, not seeing the record when it read the ledger, import them. The
// record goes, the messages go back (Nak; a copy another instance holds is not disturbed), and so
// does everything else not in a recorded batch.
func (c *core) abandon(bt *batch) {
	bt.log.Warn("batch not submitted: its record was written after its messages' lease ran out (heartbeats did not reach the server); record removed, messages handed back",
		zap.Int("events", len(bt.items)))
	c.m.leaseLapsed.Inc()
	items := slices.Clone(bt.items)
	c.handBackUnbatched("events not in a recorded batch handed back with it (Nak)", false)
	c.deleteRecordOf(bt.key, bt.ledgerRev, bt.log, func() {})
	c.released(bt, true)
	c.signal(ackNak, items...)
}

// resubmitAsNew turns a batch that failed with a technical error into a new batch: new key, new
// JobIDs, same lessons and messages, submitted after TechnicalRetryDelay.
func (c *core) resubmitAsNew(bt *batch, msgs []string) {
	old, oldBatch, oldRev := bt.key, bt.batchID, bt.ledgerRev
	bt.techRetries++
	bt.replaces = old
	bt.key = "b-" + c.newUUID()
	for i := range bt.jobs {
		bt.jobs[i].JobID = c.newJobID()
	}
	bt.dropTail()
	bt.state, bt.batchID, bt.polls, bt.lastStatus, bt.ledgerRev = stateRecorded, "", 0, "", 0
	bt.ambiguous = false
	delete(c.batches, old)
	if c.reloading {
		c.settledKeys[old] = true
	}
	c.batches[bt.key] = bt
	bt.setLogger(c.log)
	bt.log.Warn("technical import failure; resubmitting as a new batch with new JobIDs",
		zap.String("failedBatchId", oldBatch), zap.Strings("errorMessages", msgs), zap.Int("retry", bt.techRetries),
		zap.Int("of", c.cfg.TechnicalRetries), zap.Duration("after", c.cfg.TechnicalRetryDelay))
	c.m.techResubmits.Inc()
	// The new record first, then the old one goes: a crash in between leaves both, and the old
	// one's messages attach to whichever record is read first; its JobIDs are never resubmitted
	// once it was accepted.
	c.ledgerWrite(bt, "ledger record", func() {
		c.deleteRecordOf(old, oldRev, bt.log, func() {})
		c.after(c.cfg.TechnicalRetryDelay, func() { c.queueSubmit(bt) })
	})
}

func (bt *batch) jobIDs() []string {
	ids := make([]string, len(bt.jobs))
	for i, j := range bt.jobs {
		ids[i] = j.JobID
	}
	return ids
}

func (bt *batch) lessonCountLocal() int {
	n := 0
	for _, j := range bt.jobs {
		n += len(j.LektionList)
	}
	return n
}

func (c *core) queueSubmit(bt *batch) {
	if bt.dead || c.batches[bt.key] != bt || c.phase >= phaseGrace {
		return
	}
	bt.queued = true
	bt.subAttempts, bt.subStart, bt.subOutage, bt.subWait = 0, c.now, c.outage, c.cfg.SubmitBackoff
	c.submitQ = append(c.submitQ, bt)
}

// pumpSubmits starts queued submits within MaxConcurrentSubmits and the breaker.
func (c *core) pumpSubmits() {
	for len(c.submitQ) > 0 && c.subsRun < c.cfg.MaxConcurrentSubmits {
		bt := c.submitQ[0]
		if bt.dead || !bt.queued {
			c.submitQ = c.submitQ[1:]
			continue
		}
		if !c.jmMayCall() {
			return
		}
		c.submitQ = c.submitQ[1:]
		bt.queued = false
		c.submitOnce(bt)
	}
}

func (c *core) submitOnce(bt *batch) {
	c.subsRun++
	bt.submitting = true
	bt.subAttempts++
	var tps []string
	if c.cfg.Tracing.Enabled() {
		for _, it := range bt.items {
			if it.ev != nil && it.ev.TraceParent != "" {
				tps = append(tps, it.ev.TraceParent)
			}
		}
	}
	c.do(effect{kind: effSubmit, key: bt.key, mandator: bt.mandator, action: jobmanager.Action(bt.action), jobs: bt.jobs, traceparents: tps},
		func(r result) {
			c.subsRun--
			bt.submitting = false
			c.onSubmit(bt, r)
		})
}

// onSubmit decides what a submit answer means.
func (c *core) onSubmit(bt *batch, r result) {
	global := c.jmAnswered(r.err)
	if bt.dead || c.batches[bt.key] != bt {
		return
	}
	if r.err == nil {
		bt.attempts += bt.subAttempts
		bt.state = stateAccepted
		bt.batchID = r.status.BatchID
		bt.submittedAt, bt.acceptedAt, bt.accOutage = c.now, c.now, c.outage
		bt.lastStatus = r.status.ImportStatus
		bt.setLogger(c.log)
		bt.log.Info("batch accepted", zap.Int("jobs", len(bt.jobs)), zap.Int("lessons", bt.lessonCountLocal()),
			zap.Int("events", len(bt.items)), zap.Int("attempts", bt.attempts), zap.String("importStatus", string(bt.lastStatus)))
		c.ledgerWrite(bt, "ledger update", func() { c.schedulePoll(bt, 0) })
		return
	}
	if c.phase >= phaseGrace {
		return // shutting down: the record resumes the batch at the next start
	}
	class := jobmanager.Classify(r.err)
	if jobmanager.Ambiguous(r.err) {
		bt.ambiguous = true
	}
	if global {
		bt.subAttempts-- // Finding 9: a global condition is not the batch's fault
		bt.queued = true
		c.submitQ = append([]*batch{bt}, c.submitQ...)
		return
	}
	if class == jobmanager.ClassData {
		bt.attempts += bt.subAttempts
		bt.log.Error("batch not accepted", zap.String("reason", schemas.ReasonRejected), zap.Int("attempts", bt.attempts), zap.Error(r.err))
		c.settle(bt, outcomeFor(bt, schemas.ReasonRejected, schemas.ErrorClassData, "", errorText(r.err)))
		return
	}
	wait := c.jitter(bt.subWait)
	if bt.subAttempts >= c.cfg.SubmitMaxAttempts || c.elapsed(bt.subStart, bt.subOutage)+wait > c.cfg.SubmitMaxElapsed {
		bt.attempts += bt.subAttempts
		bt.log.Error("batch not accepted", zap.String("reason", schemas.ReasonSubmitGaveUp), zap.Int("attempts", bt.attempts), zap.Error(r.err))
		c.settle(bt, outcomeFor(bt, schemas.ReasonSubmitGaveUp, schemas.ErrorClassTechnical, "", errorText(r.err)))
		return
	}
	var je *jobmanager.Error
	if errors.As(r.err, &je) && je.RetryAfter > wait {
		wait = je.RetryAfter
	}
	bt.log.Warn("submit failed; retrying with the same JobIDs", zap.Int("attempt", bt.subAttempts),
		zap.Stringer("class", class), zap.Duration("wait", wait), zap.Error(r.err))
	bt.subWait = min(bt.subWait*2, c.cfg.SubmitMaxBackoff)
	c.after(wait, func() {
		if bt.dead || c.batches[bt.key] != bt || c.phase >= phaseGrace {
			return
		}
		bt.queued = true
		c.submitQ = append(c.submitQ, bt)
	})
}

func statusLabel(err error) string {
	if err == nil {
		return "2xx"
	}
	var je *jobmanager.Error
	if errors.As(err, &je) && je.StatusCode != 0 {
		return fmt.Sprint(je.StatusCode)
	}
	return "transport"
}

func errorText(err error) []string {
	if err == nil {
		return nil
	}
	return []string{err.Error()}
}

// containsAll reports whether every JobID of ours is named in dups.
func containsAll(dups, ours []string) bool {
	set := map[string]bool{}
	for _, d := range dups {
		set[strings.ToLower(d)] = true
	}
	for _, id := range ours {
		if !set[strings.ToLower(id)] {
			return false
		}
	}
	return len(ours) > 0
}

package consumer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/internal/isolation"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// recordVersion is the ledger record format this bridge writes and reads (finding 8). A record of
// another version stops the bridge with an error naming the key: resubmitting its messages under
// new JobIDs would import them twice.
//
// Version 2 (failure isolation) adds a child batch's Isolation, Parent and Root and a split
// parent's Verdict.Split; version 1 records are read as version 2 records without them.
const recordVersion = 2

// ErrLedgerFormat is wrapped by the error a ledger record of an unknown format stops the bridge with.
var ErrLedgerFormat = errors.New("consumer: ledger record format")

// record is a batch's crash-recovery entry in the ledger bucket (key: the batch key). It is written
// before the submit and updated with compare-and-swap at each state change; it names the messages by
// stream sequence, not by content, so it stays small.
type record struct {
	// Version is the record format (recordVersion). Records written before the format was versioned
	// have none and are read as version 1, which has the same fields.
	Version     int            `json:"v,omitempty"`
	Key         string         `json:"key"`
	Mandator    string         `json:"mandator"`
	Action      schemas.Action `json:"action"`
	State       batchState     `json:"state"`
	BatchID     string         `json:"batchId,omitempty"`
	Created     time.Time      `json:"created"`
	SubmittedAt time.Time      `json:"submittedAt,omitzero"`
	AcceptedAt  time.Time      `json:"acceptedAt,omitzero"`
	Attempts    int            `json:"attempts,omitempty"`
	// Verdict is set once the batch is settling: a restart finishes it with the same outcome.
	Verdict *verdict `json:"verdict,omitempty"`
	// Replaces names the record of the batch this one resubmits as new (TechnicalRetries): written
	// before that one is deleted, so a crash in between leaves both, and the older one is void.
	Replaces string `json:"replaces,omitempty"`
	// Isolation is the isolation State of a child batch of failure isolation; Parent the key of
	// the failed batch it resubmits part of, Root the key of the original batch.
	Isolation *isolation.State `json:"isolation,omitempty"`
	Parent    string           `json:"parent,omitempty"`
	Root      string           `json:"root,omitempty"`
	// Jobs and Seqs come last: a batch's later writes keep their encoding from the first
	// (encodeRecord). Neither is empty in a record of a batch.
	Jobs []recordJob `json:"jobs,omitempty"`
	Seqs seqList     `json:"seqs,omitempty"` // every message the batch settles

	rebuilt bool // rebuilt from its parent's verdict, not (yet) in the ledger
}

// verdict is what a settling batch's outcome says beyond what the batch itself holds (its JobIDs,
// lessons and events): enough to publish the same outcome again after a crash. Its id is the batch
// key, so a repeat is de-duplicated by JetStream.
type verdict struct {
	Reason        string    `json:"reason,omitempty"`
	ErrorClass    string    `json:"errorClass,omitempty"`
	ImportStatus  string    `json:"importStatus,omitempty"`
	ErrorMessages []string  `json:"errorMessages,omitempty"`
	LessonCount   int       `json:"lessonCount"`
	Polls         int       `json:"polls"`
	FinishedAt    time.Time `json:"finishedAt"`
	// Split is the failure isolation step of a failed batch (isolate.go): written before any
	// child record, so a crash after it rebuilds the missing children.
	Split *split `json:"split,omitempty"`
}

func verdictOf(o *schemas.Outcome) *verdict {
	d := o.Data
	return &verdict{Reason: d.Reason, ErrorClass: d.ErrorClass, ImportStatus: d.ImportStatus,
		ErrorMessages: d.ErrorMessages, LessonCount: d.LessonCount, Polls: d.Polls, FinishedAt: d.FinishedAt}
}

// outcome rebuilds the outcome of a settling batch from its verdict.
func (v *verdict) outcome(bt *batch) *schemas.Outcome {
	bt.polls, bt.lessonCount = v.Polls, v.LessonCount
	bt.split = v.Split
	o := outcomeFor(bt, v.Reason, v.ErrorClass, v.ImportStatus, v.ErrorMessages)
	o.Time, o.Data.FinishedAt = v.FinishedAt, v.FinishedAt
	return o
}

// recordJob is a job by JobID and the stream sequences of its lessons' effective events, in order.
type recordJob struct {
	JobID   string   `json:"jobId"`
	Seqs    seqList  `json:"seqs"`
	Lessons []string `json:"lessons"` // lessonIds, so the gate holds them before the messages are back
}

func (bt *batch) record() *record {
	r := bt.recordHead()
	r.Jobs, r.Seqs = bt.recordJobs()
	return r
}

// recordHead is bt's record without its jobs and sequences.
func (bt *batch) recordHead() *record {
	return &record{Version: recordVersion, Verdict: bt.verdict, Replaces: bt.replaces, Key: bt.key, Mandator: bt.mandator, Action: bt.action, State: bt.state, BatchID: bt.batchID,
		Created: bt.created, SubmittedAt: bt.submittedAt, AcceptedAt: bt.acceptedAt, Attempts: bt.attempts,
		Isolation: bt.iso, Parent: bt.parent, Root: bt.root}
}

func (bt *batch) recordJobs() ([]recordJob, seqList) {
	jobs := make([]recordJob, 0, len(bt.jobs))
	for i, j := range bt.jobs {
		rj := recordJob{JobID: j.JobID, Seqs: bt.jobSeqs[i], Lessons: make([]string, 0, len(j.LektionList))}
		for _, l := range j.LektionList {
			rj.Lessons = append(rj.Lessons, l.LektionID)
		}
		jobs = append(jobs, rj)
	}
	seqs := make(seqList, 0, len(bt.items))
	for _, it := range bt.items {
		seqs = append(seqs, it.seq)
	}
	return jobs, seqs
}

// verifyRecordEncoding makes encodeRecord check every encoding it builds from a kept tail against
// json.Marshal(bt.record()) (the tests of this package set it).
var verifyRecordEncoding bool

// encodeRecord is json.Marshal(bt.record()), byte for byte. A batch cut here writes its record up
// to three times (recorded, accepted, settling) and its jobs and messages do not change in between,
// so the encoding of those (most of the record: a lessonId per lesson) is kept from the first write
// (bt.recTail) and the rest encoded again. Only batches that cut built keep it (bt.keepTail); the
// places that change a batch's jobs or messages afterwards (a split, a recovery) clear it.
func (bt *batch) encodeRecord() ([]byte, error) {
	if !bt.keepTail {
		return json.Marshal(bt.record())
	}
	if bt.recTail == nil {
		jobs, seqs := bt.recordJobs()
		t, err := json.Marshal(recordTail{Jobs: jobs, Seqs: seqs})
		if err != nil {
			return nil, err
		}
		bt.recTail = t
	}
	head, err := json.Marshal(bt.recordHead())
	if err != nil {
		return nil, err
	}
	v := head
	if len(bt.recTail) > 2 { // {"jobs":...,"seqs":...}: its members go after the head's
		v = make([]byte, 0, len(head)+len(bt.recTail))
		v = append(v, head[:len(head)-1]...)
		v = append(v, ',')
		v = append(v, bt.recTail[1:]...)
	}
	if verifyRecordEncoding {
		full, err := json.Marshal(bt.record())
		if err != nil || !bytes.Equal(full, v) {
			panic(fmt.Sprintf("consumer: kept record encoding of %s differs:\n%s\n%s (%v)", bt.key, v, full, err))
		}
	}
	return v, nil
}

// recordTail is the last members of a record, as encodeRecord keeps them.
type recordTail struct {
	Jobs []recordJob `json:"jobs,omitempty"`
	Seqs seqList     `json:"seqs,omitempty"`
}

// dropTail makes the next record write of bt encode its jobs and messages again: they changed.
func (bt *batch) dropTail() { bt.keepTail, bt.recTail = false, nil }

// parseRecord decodes one ledger value.
func parseRecord(key string, v []byte) (*record, error) {
	r := &record{}
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("%w: record %s is not readable (%v); check the batch and remove the record by hand", ErrLedgerFormat, key, err)
	}
	if r.Version == 0 {
		r.Version = 1
	}
	if r.Version != 1 && r.Version != recordVersion {
		return nil, fmt.Errorf("%w: record %s has version %d, this bridge reads versions 1 to %d; run a bridge that knows it, or check the batch and remove the record by hand",
			ErrLedgerFormat, key, r.Version, recordVersion)
	}
	if r.Key != key {
		return nil, fmt.Errorf("%w: record under key %s names key %q", ErrLedgerFormat, key, r.Key)
	}
	return r, nil
}

func (c *core) parseRecords(raw []rawRecord) ([]*record, []uint64, error) {
	var recs []*record
	var revs []uint64
	for _, e := range raw {
		r, err := parseRecord(e.key, e.value)
		if err != nil {
			return nil, nil, err
		}
		recs = append(recs, r)
		revs = append(revs, e.rev)
	}
	// Failure isolation: a split parent settles only the messages it kept; a child whose record
	// is missing (a crash between the parent's verdict and the child's record) is rebuilt from
	// the parent's verdict.
	have := map[string]bool{}
	for _, r := range recs {
		have[r.Key] = true
	}
	for _, r := range recs {
		narrowSplit(r)
	}
	// A message named by a record in the ledger is that record's: a missing child one of whose
	// messages another record names has run (a technical resubmission replaced it, or it split
	// again) and is not rebuilt (simulation seed 8744: the rebuilt child settled an event that its
	// replacement had settled already).
	_, _, claimed := indexListing(recs)
	for _, r := range recs[:len(recs):len(recs)] {
		kids, err := rebuildChildren(r, have)
		if err != nil {
			return nil, nil, err
		}
		for _, k := range kids {
			if slices.ContainsFunc(k.Seqs, func(s uint64) bool { return claimed[s] }) {
				c.log.Info("child batch of a failure isolation has run (another record names its messages); not rebuilt",
					zap.String("batchKey", k.Key), zap.String("parentBatchKey", r.Key))
				continue
			}
			have[k.Key] = true
			recs = append(recs, k)
			revs = append(revs, 0)
		}
	}
	return recs, revs, nil
}

// ledgerWrite writes bt's record: a create when it has none yet, else a compare-and-swap update on
// its revision. Finding 4: a write that failed (timeout) or conflicted is read back: our value
// there means it happened; the revision we expected still there (or no key, for a create) means
// it did not, and it is tried again; anything else means another instance changed the record (a
// takeover): bt is released without acks, its messages left to that instance.
func (c *core) ledgerWrite(bt *batch, what string, then func()) {
	v, err := bt.encodeRecord()
	if err != nil {
		c.fail(fmt.Errorf("consumer: encode ledger record %s: %w", bt.key, err))
		return
	}
	prev := bt.ledgerRev
	attempt := 0
	wait := 100 * time.Millisecond
	var try func()
	retryLater := func(cause error) {
		if attempt >= natsAttempts {
			c.fail(fmt.Errorf("consumer: %s %s: %w", what, bt.key, cause))
			return
		}
		if attempt == 1 || attempt%10 == 0 {
			bt.log.Warn(what+": will retry", zap.Int("attempt", attempt), zap.Error(cause))
		}
		c.after(wait, try)
		wait = min(wait*2, 5*time.Second)
	}
	try = func() {
		attempt++
		e := effect{kind: effLedgerCreate, key: bt.key, value: v}
		if prev != 0 {
			e = effect{kind: effLedgerUpdate, key: bt.key, value: v, rev: prev}
		}
		c.do(e, func(r result) {
			if bt.dead {
				return
			}
			switch r.kind {
			case errNone:
				bt.ledgerRev = r.rev
				c.noteRev(r.rev)
				c.landed(bt, prev)
				then()
				return
			case errPermanent:
				c.fail(fmt.Errorf("consumer: %s %s: %w", what, bt.key, r.err))
				return
			}
			cause := r.err
			c.do(effect{kind: effLedgerGet, key: bt.key}, func(g result) {
				if bt.dead {
					return
				}
				switch {
				case g.kind == errNone && bytes.Equal(g.value, v):
					bt.ledgerRev = g.rev // it happened
					c.noteRev(g.rev)
					c.landed(bt, prev)
					then()
				case g.kind == errNone && prev != 0 && g.rev == prev, g.kind == errNotFound && prev == 0:
					retryLater(cause) // it did not happen
				case g.kind == errNone && prev != 0 && g.rev < prev:
					// Older than what we wrote before: a stale read (a KV get may be answered by a
					// follower that lags, e.g. after a leader change), not another instance's write,
					// which would be newer. Read again later.
					retryLater(fmt.Errorf("%v; read back revision %d, older than ours (%d)", cause, g.rev, prev))
				case g.kind == errNone || g.kind == errNotFound:
					bt.log.Error("batch taken over by another instance; leaving its messages to it",
						zap.String("write", what), zap.Uint64("expectedRevision", prev), zap.Uint64("foundRevision", g.rev), zap.Error(cause))
					c.m.takenOver.Inc()
					c.released(bt, true)
				default:
					retryLater(fmt.Errorf("%v; reading it back: %w", cause, g.err))
				}
			})
		})
	}
	try()
}

// landed takes a ledger write of bt that landed: its first one (prev 0) lets the events kept
// behind it since the pin moved go back, unless its messages' lease ran out meanwhile (then record
// abandons the batch, and they go back with it).
func (c *core) landed(bt *batch, prev uint64) {
	if prev == 0 && !bt.suspect && c.leased(bt) {
		c.handBackKept(bt)
	}
}

// recovering is a ledger record of a batch this process did not start (found at start, or after a
// takeover from a dead instance) whose messages are coming back. Its batch holds the gate for the
// recorded lessons at once, so events behind them wait (per-lesson order across crashes).
type recovering struct {
	rec      *record
	rev      uint64
	bt       *batch
	items    map[uint64]*item
	deadline time.Time

	// Owner liveness (awaitOwner): the other instances' liveness revisions at the last look, when
	// that was, since when the batch is watched, and how many looks so far.
	ownerBase map[string]liveEntry
	ownerAt   time.Time
	since     time.Time
	waits     int
}

// indexRecords registers records of batches this process does not work on and returns how many.
func (c *core) indexRecords(recs []*record, revs []uint64) int {
	n := 0
	deadline := c.now.Add(c.window())
	replaced := map[string]bool{}
	for _, r := range recs {
		if r.Replaces != "" {
			replaced[r.Replaces] = true
		}
	}
	for i, r := range recs {
		if c.batches[r.Key] != nil || c.settledKeys[r.Key] || c.floorWaits[r.Key] != nil {
			continue // ours: working on it, or settled it after the ledger was read
		}
		if replaced[r.Key] {
			// Its batch was resubmitted as new by the record that names it; that one settles the
			// messages. This one was to be deleted.
			c.log.Info("ledger record replaced by a resubmission; removing it", zap.String("batchKey", r.Key))
			c.deleteRecordOf(r.Key, revs[i], c.log, func() {})
			continue
		}
		bt := &batch{key: r.Key, mandator: r.Mandator, action: r.Action, state: r.State, batchID: r.BatchID,
			created: r.Created, submittedAt: r.SubmittedAt, acceptedAt: r.AcceptedAt, attempts: r.Attempts,
			ledgerRev: revs[i], ambiguous: true, verdict: r.Verdict, accOutage: c.outage, fromRecord: true,
			iso: r.Isolation, parent: r.Parent, root: r.Root, rebuilt: r.rebuilt, foreign: true, replaces: r.Replaces}
		if r.rebuilt {
			bt.ambiguous = false // never submitted: its record did not exist
		}
		resubmitted := map[string]bool{}
		if r.Verdict != nil && r.Verdict.Split != nil {
			bt.split = r.Verdict.Split
			for _, ch := range bt.split.Children {
				bt.followUps = append(bt.followUps, ch.Key)
			}
			for _, l := range bt.split.ResubmittedLessonIDs {
				resubmitted[l] = true
			}
		}
		bt.setLogger(c.log)
		backHere := r.rebuilt && slices.ContainsFunc(r.Seqs, func(s uint64) bool { return c.bySeq[s] != nil })
		for _, j := range r.Jobs {
			bt.jobs = append(bt.jobs, jobmanager.Job{JobID: j.JobID})
			for _, l := range j.Lessons {
				if resubmitted[l] {
					continue // a child batch settles it
				}
				k := lessonKey{r.Mandator, l}
				bt.lessons = append(bt.lessons, &pendingLesson{key: k})
				if r.State == stateSettling {
					continue // never reaches JobManager again: holds no lesson
				}
				if st := c.lessons[k]; r.rebuilt && st != nil && !backHere {
					// A rebuilt child whose lesson is busy here and none of whose messages is: most
					// likely the child settled and removed its record long ago (its parent's record
					// waits for the ack floor) and newer events of the lesson moved on. It takes the
					// lesson only if its messages come back (resumeFrom). With one of its messages
					// here it never ran (simulation seed 4950): it goes first, as any record.
					continue
				}
				if st := c.lessons[k]; st != nil && st.inflight == nil && st.pending != nil {
					// Newer events of the lesson are pending here (admitted while the other
					// instance's batch was not in the ledger we read): they wait behind it.
					bt.log.Info("lesson of a recovered record is pending here; its events wait behind the record",
						zap.String("lessonId", l))
					c.unpend(st)
				}
				if st := c.lessons[k]; st != nil && st.inflight != nil {
					bt.log.Warn("lesson of a recovered record is in flight here already; the record holds it when that batch lets go",
						zap.String("lessonId", l), zap.String("inFlightBatchKey", st.inflight.key))
					c.m.orderRisk.Inc()
					c.missed[k] = append(c.missed[k], bt) // it takes the lesson over when that batch lets go
					continue
				}
				c.hold(k, bt)
			}
		}
		rc := &recovering{rec: r, rev: revs[i], bt: bt, items: map[uint64]*item{}, deadline: deadline}
		for _, s := range r.Seqs {
			c.recoverBySeq[s] = rc
		}
		c.batches[r.Key] = bt
		c.recovering[r.Key] = rc
		n++
		if r.rebuilt {
			bt.log.Warn("child batch of a failure isolation rebuilt from its parent's verdict; waiting for its messages",
				zap.String("parentBatchKey", r.Parent), zap.Int("events", len(r.Seqs)))
		} else {
			bt.log.Info("open batch found in ledger; waiting for its messages", zap.String("state", string(r.State)),
				zap.Int("events", len(r.Seqs)))
		}
		if r.State == stateSettling && len(r.Seqs) == 0 && bt.split != nil {
			if owner := c.namedLive(r.Key); owner != "" {
				// Its owner is settling it (starting the children, then publishing the outcome):
				// settled and removed from here, its record was gone under the owner, which took
				// that for a takeover and let its children's messages go without acks (simulation
				// seed 5057, with an intermediate build of this round). Looked at again after the
				// recovery window.
				bt.log.Info("a split that kept no lesson at fault is being settled by its owner; not settled here",
					zap.String("owner", owner))
			} else {
				// A split that kept no lesson at fault: no message comes back to it, its outcome goes now.
				c.forgetRecovery(rc)
				c.resumeFrom(rc)
			}
		}
	}
	if n > 0 {
		c.at(deadline, c.expireRecovery)
	}
	c.m.inFlight.Set(float64(len(c.batches)))
	return n
}

// indexListing indexes a ledger listing: each record's position by key, the keys that a record
// replaces, and the messages that some record names.
func indexListing(recs []*record) (at map[string]int, replaced map[string]bool, named map[uint64]bool) {
	at, replaced, named = map[string]int{}, map[string]bool{}, map[uint64]bool{}
	for i, r := range recs {
		at[r.Key] = i
		if r.Replaces != "" {
			replaced[r.Replaces] = true
		}
		for _, q := range r.Seqs {
			named[q] = true
		}
	}
	return at, replaced, named
}

// reconcile brings the recovered records up to date with a fresh read of the ledger: one that is
// gone was settled by its owner (its lessons are free, what came back of it is settled without a
// record: the outcome is de-duplicated by its id); one that changed is acted on as it is now.
// A record that a fresh one replaces (a resubmission as new) is void: its placeholder goes and
// the messages that came back to it are returned, to attach to the replacing record. The batches of
// records that are gone are returned too, to be let go after the fresh records are indexed: a
// record that replaced one (a technical resubmission by its live owner, under a new key) takes
// its lessons over without a moment in which they are free (simulation seed 70).
func (c *core) reconcile(recs []*record, revs []uint64, floor uint64, floorOK bool) (orphans []*item, letGo []*batch, later []*recovering) {
	now, replaced, named := indexListing(recs)
	for _, k := range sortedKeys(c.recovering) {
		rc := c.recovering[k]
		i, ok := now[k]
		if ok && recs[i].rebuilt && !rc.rec.rebuilt {
			// Its record is gone and the listing has it only rebuilt from its split parent's
			// verdict (the parent's record waits for the ack floor): the child ran; gone, as
			// below. Taken for the rebuilt record, the messages of it held here completed it and
			// it was submitted again with its JobIDs (simulation seed 11695: "Duplicate JobId",
			// an in_doubt outcome beside the child's own).
			ok = false
		}
		renamed := false
		for q := range rc.items {
			renamed = renamed || named[q]
		}
		switch {
		case !ok && rc.bt.rebuilt:
			// Rebuilt from a parent's verdict that is gone now: never submitted, its messages are
			// new events again.
			c.forgetRecovery(rc)
			rc.bt.log.Info("rebuilt child record's parent is gone; its messages are admitted as new events")
			orphans = append(orphans, rc.back()...)
			letGo = append(letGo, rc.bt)
		case replaced[k] || (!ok && renamed):
			c.forgetRecovery(rc)
			rc.bt.log.Info("recovered record was replaced by a resubmission; its messages go to the new record")
			orphans = append(orphans, rc.back()...)
			letGo = append(letGo, rc.bt)
		case !ok && len(rc.items) > 0:
			c.forgetRecovery(rc)
			if c.finishGone(rc, floor, floorOK) {
				later = append(later, rc)
			}
		case !ok:
			c.forgetRecovery(rc)
			rc.bt.log.Info("recovered record is gone from the ledger (settled by its owner, or replaced)")
			letGo = append(letGo, rc.bt)
		case revs[i] != rc.rev:
			orphans = append(orphans, c.refresh(rc, recs[i], revs[i])...)
		}
	}
	return orphans, letGo, later
}

// attachRecovered takes a message that belongs to a recovered record; when the record's messages are
// all back, the batch resumes.
func (c *core) attachRecovered(it *item) bool {
	rc := c.recoverBySeq[it.seq]
	if rc == nil {
		return false
	}
	rc.items[it.seq] = it
	if len(rc.items) == len(rc.rec.Seqs) {
		c.resume(rc)
	}
	return true
}

// parkRedelivered holds a redelivered message that no batch of ours knows until the ledger has been
// read again: it may belong to a batch of an instance that died (a takeover).
func (c *core) parkRedelivered(it *item) {
	c.limbo = append(c.limbo, it)
	c.reload()
}

// readLedger lists every ledger record (retried within the NATS budget) and hands them, parsed and
// with their revisions, to then; a read that fails past its budget or an unreadable record stops
// the bridge.
func (c *core) readLedger(what string, then func(recs []*record, revs []uint64)) {
	var issued time.Time
	c.retry(what, c.log, func() effect { issued = c.now; return effect{kind: effLedgerList} }, func(r result) {
		if r.kind != errNone {
			c.fail(fmt.Errorf("consumer: read ledger bucket %s: %w", c.cfg.LedgerBucket, r.err))
			return
		}
		raw, err := c.splitListing(r.records, issued)
		if err != nil {
			c.fail(err)
			return
		}
		recs, revs, err := c.parseRecords(raw)
		if err != nil {
			c.fail(err)
			return
		}
		c.namedBy = make(map[uint64]string, len(c.namedBy))
		for _, r := range recs {
			for _, s := range r.Seqs {
				c.namedBy[s] = r.Key
			}
		}
		then(recs, revs)
	})
}

// reload reads the ledger again (once at a time) and then routes what waits for it: the limbo,
// and recovered batches whose record was gone when they resumed.
func (c *core) reload() {
	if c.reloading {
		return
	}
	c.reloading = true
	clear(c.settledKeys)
	c.readLedger("reload ledger", func(recs []*record, revs []uint64) {
		// The ack floor after the listing: a message at or below it was settled, whatever the
		// listing says (its record may be gone because it was; simulation seed 1332: a message
		// redelivered by a new consumer leader, then acked by the instance that had it, was
		// imported again here).
		c.do(effect{kind: effConsumerInfo}, func(ci result) {
			floor := uint64(0)
			if ci.kind == errNone {
				floor = ci.info.ackFloor
			}
			c.reloaded(recs, revs, floor, ci.kind == errNone)
		})
	})
}

// reloaded is reload's second half, with the ledger read and the consumer's ack floor after it.
//
// A record that is gone with messages back is told "settled by its owner" from "never submitted"
// by the ack floor; when the consumer info failed, such records wait for the next read.
func (c *core) reloaded(recs []*record, revs []uint64, floor uint64, floorOK bool) {
	c.reloading = false
	defer clear(c.settledKeys)
	orphans, letGo, later := c.reconcile(recs, revs, floor, floorOK)
	at, replaced, named := indexListing(recs)
	gone := c.goneRC
	c.goneRC = nil
	for _, rc := range gone {
		if rc.bt.dead {
			continue
		}
		if i, ok := at[rc.rec.Key]; ok && !replaced[rc.rec.Key] && !(recs[i].rebuilt && !rc.rec.rebuilt) { // rebuilt only: gone (reconcile)
			if revs[i] != rc.rev {
				orphans = append(orphans, c.refresh(rc, recs[i], revs[i])...)
			}
			c.resumeFrom(rc)
			continue
		}
		renamed := replaced[rc.rec.Key]
		for q := range rc.items {
			renamed = renamed || named[q]
		}
		if renamed { // resubmitted as new under another record: its messages go there
			orphans = append(orphans, rc.back()...)
			c.released(rc.bt, true)
			continue
		}
		if c.finishGone(rc, floor, floorOK) {
			later = append(later, rc)
		}
	}
	if len(later) > 0 {
		c.goneRC = append(c.goneRC, later...)
		c.after(c.heartbeat, c.reload)
	}
	if n := c.indexRecords(recs, revs); n > 0 {
		c.log.Warn("taking over open batches of another instance", zap.Int("batches", n))
	}
	for _, bt := range letGo {
		c.released(bt, true)
	}
	parked := append(orphans, c.limbo...)
	c.limbo = nil
	for i, it := range parked {
		if c.phase != phaseRunning {
			c.limbo = append(c.limbo, parked[i:]...) // drained() naks what is held
			break
		}
		switch {
		case floorOK && it.seq <= floor && c.recoverBySeq[it.seq] != nil && c.recoverBySeq[it.seq].bt.rebuilt:
			// A rebuilt child's message at or below the ack floor was settled: the child ran
			// (its record went after its acks landed) and its parent's record, which waits for
			// the floor, had it rebuilt. Attached, it would complete the child, which would be
			// submitted again with its JobIDs ("Duplicate JobId": an in_doubt outcome beside the
			// child's own; simulation seeds 11695 and 15255: the message had waited in the limbo
			// for this read while the child's acks landed).
			if c.bySeq[it.seq] == it {
				delete(c.bySeq, it.seq)
			}
			c.log.Info("redelivered message of a rebuilt child is at or below the ack floor (the child ran and settled it); dropped",
				zap.Uint64("streamSeq", it.seq), zap.String("batchKey", c.recoverBySeq[it.seq].bt.key))
		case c.attachRecovered(it):
		case len(c.limbo) > 0 || (!floorOK && it.redelivered):
			// Without the ack floor a redelivered message that no record names may have been
			// settled (its record gone because it was): it waits for the next read, and what came
			// after it waits behind it (simulation seed 7477, found with this round's barrier
			// rule for held redeliveries: a message that the instance that took its batch over
			// had acknowledged, imported again).
			c.limbo = append(c.limbo, it)
		case it.seq <= floor:
			if c.bySeq[it.seq] == it {
				delete(c.bySeq, it.seq)
			}
			c.log.Info("redelivered message is at or below the ack floor (settled); dropped", zap.Uint64("streamSeq", it.seq))
		default:
			c.admit(it)
		}
	}
	if len(c.limbo) > 0 && c.phase == phaseRunning {
		c.log.Warn("consumer info after the ledger read failed; redelivered messages wait for the next read",
			zap.Int("waiting", len(c.limbo)))
		c.after(c.heartbeat, c.reload)
	}
}

// sweepLedger removes orphaned records, every 10 x AckWait: records no instance works on whose
// messages are all at or below the consumer's ack floor (settled), older than the recovery window.
// A process killed with a record create in flight can have it land after the next process read
// the ledger; that one imports the messages as new, and nothing would ever read the record again
// (TestChaos left one behind).
func (c *core) sweepLedger() {
	if c.phase != phaseRunning {
		if c.phase < phaseRunning {
			c.after(10*c.ackWait, c.sweepLedger)
		}
		return
	}
	c.readLedger("sweep ledger", func(recs []*record, revs []uint64) {
		c.sweepLive()
		c.do(effect{kind: effConsumerInfo}, func(ci result) {
			c.after(10*c.ackWait, c.sweepLedger)
			if ci.kind != errNone || c.phase != phaseRunning {
				return
			}
			for i, r := range recs {
				if c.batches[r.Key] != nil || c.floorWaits[r.Key] != nil || c.recovering[r.Key] != nil || r.rebuilt {
					continue
				}
				if c.now.Sub(r.Created) < c.window() || len(r.Seqs) == 0 ||
					slices.ContainsFunc(r.Seqs, func(s uint64) bool { return s > ci.info.ackFloor }) {
					continue
				}
				c.log.Info("removing an orphaned ledger record: all its messages were acknowledged",
					zap.String("batchKey", r.Key), zap.String("state", string(r.State)), zap.Uint64("ackFloor", ci.info.ackFloor))
				c.deleteRecordOf(r.Key, revs[i], c.log, func() {})
			}
		})
	})
}

// expireRecovery looks at records whose messages did not all come back within the recovery window.
// Messages can be late for many reasons (a NATS restart, the start-up barrier, a slow redelivery), so
// the window alone decides nothing: the consumer's ack floor does. A missing message at or below it
// was acked or terminated (the batch was settling when the process died); one above it is still on
// its way, and the record waits another AckWait.
func (c *core) expireRecovery() {
	if c.floorProbe || c.phase == phaseDone {
		return
	}
	var keys []string
	for k, rc := range c.recovering {
		if !c.now.Before(rc.deadline) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	sortStrings(keys)
	c.floorProbe = true
	c.do(effect{kind: effConsumerInfo}, func(info result) {
		// The records as they are now: one that is gone was settled by its owner (or by us) after it
		// was indexed; one that changed is acted on as it is now (finding 7).
		cur := map[string]*result{}
		left := len(keys)
		for _, k := range keys {
			c.do(effect{kind: effLedgerGet, key: k}, func(g result) {
				cur[k] = &g
				left--
				if left > 0 {
					return
				}
				c.floorProbe = false
				if info.kind != errNone {
					c.log.Warn("consumer info for recovered batches", zap.Error(info.err))
					c.postponeRecovery()
					return
				}
				c.applyAckFloor(info.info.ackFloor, cur)
			})
		}
	})
}

func (c *core) postponeRecovery() {
	for _, rc := range c.recovering {
		if !c.now.Before(rc.deadline) {
			rc.deadline = c.now.Add(c.ackWait)
		}
	}
	c.after(c.ackWait, c.expireRecovery)
}

// applyAckFloor finishes the due records whose missing messages are all at or below floor, and
// forgets those that are gone from the ledger.
func (c *core) applyAckFloor(floor uint64, cur map[string]*result) {
	later, reread := false, false
	defer func() {
		if reread {
			c.reload()
		}
	}()
	for _, k := range sortedKeys(c.recovering) {
		rc := c.recovering[k]
		if c.now.Before(rc.deadline) {
			continue
		}
		g := cur[k]
		if g != nil && g.kind == errNone && g.rev != rc.rev {
			r, err := parseRecord(k, g.value)
			if err != nil {
				c.fail(err)
				return
			}
			for _, it := range c.refresh(rc, r, g.rev) {
				c.parkRedelivered(it) // a child batch's message: the ledger read finds its record
			}
			if r.State == stateSettling && r.Verdict != nil && r.Verdict.Split != nil && len(r.Verdict.Split.Children) > 0 {
				// It split (its owner is starting the children): the single-key read does not show
				// the children's records. The lessons it resubmits stay held until a ledger read has
				// indexed them, which then take them over when it lets go; letting it go now (its
				// own messages may all be settled: a split that kept no lesson at fault) freed them
				// while a child was in flight at JobManager (simulation seed 7094, found with this
				// round's barrier rule for held redeliveries: two batches of a lesson at once).
				rc.bt.log.Info("recovered record split since it was read; the ledger is read for its children before it is let go",
					zap.Int("children", len(r.Verdict.Split.Children)))
				rc.deadline = c.now.Add(c.ackWait)
				reread, later = true, true
				continue
			}
		}
		if g != nil && g.kind == errNotFound && !rc.bt.rebuilt {
			if len(rc.items) > 0 {
				// Gone with messages back: settled by its owner (finish from the snapshot, the outcome
				// is de-duplicated by its id) or resubmitted as new under another record (its messages
				// go there). Only the whole ledger tells (simulation seed 7574: such a record was
				// polled and its batch resubmitted a second time).
				c.forgetRecovery(rc)
				c.goneRC = append(c.goneRC, rc)
				reread = true
				continue
			}
			// Settled by its owner, or replaced by a resubmission under another key: only the whole
			// ledger tells, and the replacement must take its lessons over (reconcile).
			reread, later = true, true
			rc.deadline = c.now.Add(c.ackWait)
			continue
		}
		if len(rc.rec.Seqs) == 0 && rc.rec.State == stateSettling && rc.bt.split != nil && rc.bt.verdict != nil {
			// A split that kept no lesson at fault (indexRecords): its owner settles it while a live
			// entry names it; when none does, its outcome goes from here.
			if c.namedLive(k) != "" {
				rc.deadline = c.now.Add(c.ackWait)
				later = true
				continue
			}
			c.forgetRecovery(rc)
			c.resumeFrom(rc)
			continue
		}
		waiting := 0
		for _, s := range rc.rec.Seqs {
			if rc.items[s] == nil && s > floor {
				waiting++
			}
		}
		if waiting > 0 && rc.rec.State == stateSettling && rc.bt.verdict != nil && len(rc.items) > 0 && c.namedLive(k) != "" {
			// Another instance's liveness entry names it: its owner is settling it and may not have
			// published the outcome yet. An outcome published from the part that came back would
			// name only that part, and the owner's (same id) would be de-duplicated away (simulation
			// seed 7344: the others terminated without an outcome). The owner's acks move the floor.
			rc.deadline = c.now.Add(c.ackWait)
			later = true
			continue
		}
		if waiting > 0 && rc.rec.State == stateSettling && rc.bt.verdict != nil && len(rc.items) > 0 {
			// Its outcome is decided: settle what came back now. Holding it would keep the ack floor
			// from passing the missing ones, which may have been acked long ago. The record stays
			// (partial) until the floor shows the missing ones acknowledged.
			rc.bt.log.Info("settling the messages of a settling record that came back; the others are still out",
				zap.Int("waiting", waiting), zap.Int("back", len(rc.items)), zap.Uint64("ackFloor", floor))
			rc.bt.partial = true
			c.forgetRecovery(rc)
			c.resumeFrom(rc)
			continue
		}
		if waiting > 0 && rc.rec.State == stateSettling && rc.bt.split != nil && len(rc.items) == 0 && c.namedLive(k) == "" {
			// A split parent that turned settling while it was recovered here keeps the lessons it
			// resubmits held for its children (refresh). None of its own messages came back within
			// the window and no live instance names it: its children are in the ledger by now (their
			// records, rebuilt ones, or ones that ran) and hold their lessons themselves. Holding
			// them here would keep newer events of them, and with them the ack floor that the
			// record waits for, from moving (simulation seeds 1081, 3345, 6084 and 6683, found with
			// this round's barrier rule for held redeliveries: not quiet at the end, the floor
			// stuck below an event waiting behind the parent).
			rc.bt.log.Info("split parent settling; none of its messages came back and no live instance names it: the lessons it resubmits go to its children",
				zap.Int("waiting", waiting), zap.Uint64("ackFloor", floor))
			for _, p := range rc.bt.lessons {
				c.unhold(p.key, rc.bt)
			}
		}
		if waiting > 0 && rc.bt.rebuilt && len(rc.items) == 0 {
			// A rebuilt child none of whose messages came back within the window: it settled
			// before (its messages acknowledged above a floor that lags), or another instance
			// holds them. Holding its lessons would keep newer events of them, and with them the
			// ack floor, from moving: the lessons go; it takes them again if its messages come.
			for _, p := range rc.bt.lessons {
				c.unhold(p.key, rc.bt)
			}
		}
		if waiting > 0 {
			rc.deadline = c.now.Add(c.ackWait)
			later = true
			rc.bt.log.Info("recovered batch still waits for its messages", zap.Int("waiting", waiting),
				zap.Int("back", len(rc.items)), zap.Uint64("ackFloor", floor))
			continue
		}
		if len(rc.items) > 0 {
			c.resume(rc)
			continue
		}
		c.forgetRecovery(rc)
		bt := rc.bt
		bt.log.Info("removing the ledger record of a settled batch (all its messages were acknowledged)")
		c.deleteRecordOf(rc.rec.Key, rc.rev, bt.log, func() {})
		c.released(bt, true)
	}
	if later {
		c.after(c.ackWait, c.expireRecovery)
	}
}

// holdRebuilt takes the lessons of a rebuilt child whose messages came back, unless it holds them
// already (see indexRecords and applyAckFloor): a free lesson at once, a busy one when the batch or
// entry there lets go (counted as an order risk: newer events of the lesson were admitted first).
func (c *core) holdRebuilt(bt *batch) {
	for _, p := range bt.lessons {
		st := c.lessons[p.key]
		if st != nil && st.inflight == nil {
			c.unpend(st) // newer events pending here wait behind the child
		}
		switch {
		case st == nil || st.inflight == nil:
			c.hold(p.key, bt)
		case st.inflight == bt:
		default:
			bt.log.Warn("lesson of a rebuilt child batch is busy here; the child holds it when that lets go",
				zap.String("lessonId", p.key.lessonID))
			c.m.orderRisk.Inc()
			c.missed[p.key] = append(c.missed[p.key], bt)
		}
	}
}

// finishGone acts on a recovered record that is gone from the ledger while messages of it came
// back: settled by its owner (dropSettled: the ack floor passed every one of them) or finished here
// from the snapshot (ledgerRev 0; its outcome de-duplicated). Settled by its owner or never
// submitted only the ack floor tells: without one (floorOK false) a record not yet settling is
// left for the next read (wait).
func (c *core) finishGone(rc *recovering, floor uint64, floorOK bool) (wait bool) {
	if !floorOK && rc.bt.state != stateSettling {
		return true
	}
	if c.dropSettled(rc, floor) {
		return false
	}
	rc.bt.ledgerRev = 0
	c.resumeFrom(rc)
	return false
}

// dropSettled lets go of a recovered record that is gone from the ledger when every message that
// came back to it is at or below the consumer's ack floor (read after the listing): its owner
// settled it and its acknowledgements landed after the messages were redelivered here (a consumer
// outage). Resubmitting it with its JobIDs would only get "Duplicate JobId" and a second outcome
// (simulation seed 2956: settled in_doubt beside the owner's succeeded outcome).
func (c *core) dropSettled(rc *recovering, floor uint64) bool {
	if len(rc.items) == 0 || rc.bt.rebuilt || c.ownerCheckOff {
		return false
	}
	for s := range rc.items {
		if s > floor {
			return false
		}
	}
	rc.bt.log.Info("recovered record is gone and every message of it that came back is at or below the ack floor: settled by its owner; dropped",
		zap.Int("events", len(rc.items)), zap.Uint64("ackFloor", floor))
	for s, it := range rc.items {
		if c.bySeq[s] == it {
			delete(c.bySeq, s)
		}
	}
	c.released(rc.bt, true)
	return true
}

// back returns the messages of rc that came back, in the record's order.
func (rc *recovering) back() []*item {
	var out []*item
	for _, s := range rc.rec.Seqs {
		if it := rc.items[s]; it != nil {
			out = append(out, it)
		}
	}
	return out
}

func (c *core) forgetRecovery(rc *recovering) {
	delete(c.recovering, rc.rec.Key)
	for _, s := range rc.rec.Seqs {
		if c.recoverBySeq[s] == rc {
			delete(c.recoverBySeq, s)
		}
	}
}

// resume turns a recovered record whose messages came back into a working batch. Finding 7: it acts
// on the record as it is now, not on the snapshot it was indexed from: the record is read again,
// and a newer revision (another instance moved the batch on meanwhile) replaces the snapshot.
func (c *core) resume(rc *recovering) {
	c.forgetRecovery(rc)
	if rc.bt.ledgerRev == 0 {
		c.resumeFrom(rc)
		return
	}
	// The whole ledger, not just this key: it may have been resubmitted as new under another
	// record (which names it in Replaces) or settled by its owner (gone).
	c.goneRC = append(c.goneRC, rc)
	c.reload()
}

// refresh replaces a recovered record's snapshot by its current revision. The current record may
// name fewer messages than the snapshot (failure isolation moved some to child batches whose records
// this instance has not read yet): those that came back are detached and returned, to be routed
// after a ledger read, and the messages the record names now are the ones the batch waits for.
func (c *core) refresh(rc *recovering, cur *record, rev uint64) (stray []*item) {
	bt := rc.bt
	bt.log.Warn("ledger record changed since it was read; acting on the current one",
		zap.String("was", string(rc.rec.State)), zap.String("now", string(cur.State)),
		zap.Uint64("readRevision", rc.rev), zap.Uint64("currentRevision", rev))
	narrowSplit(cur)
	named := make(map[uint64]bool, len(cur.Seqs))
	for _, s := range cur.Seqs {
		named[s] = true
		if _, taken := c.recoverBySeq[s]; !taken {
			c.recoverBySeq[s] = rc
		}
	}
	for _, s := range rc.rec.Seqs {
		if named[s] {
			continue
		}
		if c.recoverBySeq[s] == rc {
			delete(c.recoverBySeq, s)
		}
		if it := rc.items[s]; it != nil {
			delete(rc.items, s)
			stray = append(stray, it)
		}
	}
	rc.rec, rc.rev = cur, rev
	bt.state, bt.batchID, bt.acceptedAt, bt.submittedAt, bt.verdict = cur.State, cur.BatchID, cur.AcceptedAt, cur.SubmittedAt, cur.Verdict
	bt.attempts, bt.ledgerRev = cur.Attempts, rev
	bt.iso, bt.parent, bt.root, bt.rebuilt, bt.replaces = cur.Isolation, cur.Parent, cur.Root, cur.rebuilt, cur.Replaces
	if cur.Verdict != nil && cur.Verdict.Split != nil {
		bt.split = cur.Verdict.Split
	}
	bt.setLogger(c.log)
	if cur.State == stateSettling {
		var resubmitted []string
		if cur.Verdict != nil && cur.Verdict.Split != nil {
			resubmitted = cur.Verdict.Split.ResubmittedLessonIDs
		}
		for _, p := range bt.lessons {
			if slices.Contains(resubmitted, p.key.lessonID) {
				// Its split resubmits the lesson in a child batch, which may not be in the ledger
				// we read: it stays held until the record goes, then passes to the child
				// (simulation seed 2444: a newer event of it was submitted beside the child).
				continue
			}
			c.unhold(p.key, bt) // a settling batch never reaches JobManager again
		}
	}
	return stray
}

func (c *core) resumeFrom(rc *recovering) {
	r, bt := rc.rec, rc.bt
	byLesson := map[lessonKey]*pendingLesson{}
	for _, p := range bt.lessons {
		p.items = nil // built again: a batch that waited for its owner comes through here again
		byLesson[p.key] = p
	}
	complete := len(rc.items) == len(r.Seqs)
	bt.dropTail()
	bt.jobs, bt.jobSeqs, bt.items = bt.jobs[:0], nil, nil
	for _, j := range r.Jobs {
		job := jobmanager.Job{JobID: j.JobID}
		var seqs []uint64
		for _, s := range j.Seqs {
			it := rc.items[s]
			if it == nil || it.ev == nil {
				complete = false
				continue
			}
			job.LektionList = append(job.LektionList, toLesson(it.ev))
			seqs = append(seqs, s)
			if p := byLesson[lessonKey{it.mandator, it.ev.Data.LessonID}]; p != nil {
				p.eff = it
			}
		}
		bt.jobs = append(bt.jobs, job)
		bt.jobSeqs = append(bt.jobSeqs, seqs)
	}
	for _, s := range r.Seqs {
		it := rc.items[s]
		if it == nil {
			continue
		}
		bt.items = append(bt.items, it)
		if it.ev == nil {
			continue
		}
		if p := byLesson[lessonKey{it.mandator, it.ev.Data.LessonID}]; p != nil {
			p.items = append(p.items, it)
		}
	}
	// A recorded batch that came back whole would be resubmitted, an accepted one polled and
	// settled here: not while a live instance works on it (owner liveness, liveness.go). When none
	// does, the record is claimed first (a compare-and-swap write of it).
	bt.awaiting = false
	claim := false
	if watch := complete && (bt.state == stateRecorded || bt.state == stateAccepted); watch && bt.foreign && !bt.rebuilt && bt.ledgerRev != 0 && !c.ownerCheckOff {
		if c.awaitOwner(rc) {
			bt.awaiting = true
			for _, it := range bt.items {
				it.watched = true
			}
			return
		}
		claim = true
	}
	bt.foreign = false // works on it now
	for _, it := range bt.items {
		it.watched = false
	}
	switch {
	case bt.state == stateSettling && bt.verdict != nil:
		if len(bt.items) < len(r.Seqs) {
			// Some of its messages are still out (an ack or term that never landed): the record
			// must stay to settle them when they come back, never as new events.
			bt.partial = true
		}
		c.settle(bt, bt.verdict.outcome(bt))
	case bt.state == stateAccepted:
		bt.log.Info("resuming an accepted batch: polling, never resubmitting", zap.Int("events", len(bt.items)), zap.Bool("claimRecord", claim))
		bt.accOutage = c.outage
		if claim {
			c.claim(rc, func() { c.schedulePoll(bt, 0) })
			return
		}
		c.schedulePoll(bt, 0)
	case complete && bt.rebuilt:
		bt.log.Info("submitting a child batch of a failure isolation rebuilt from its parent's verdict, after creating its record",
			zap.Int("events", len(bt.items)))
		c.holdRebuilt(bt)
		bt.state, bt.ledgerRev = stateRecorded, 0
		c.record(bt, 0)
	case complete:
		bt.log.Warn("resubmitting a recorded batch with its JobIDs; a duplicate answer means the first submit went through",
			zap.Int("events", len(bt.items)))
		c.m.resubmits.Inc()
		bt.state = stateRecorded
		if claim {
			c.claim(rc, func() { c.queueSubmit(bt) })
			return
		}
		c.queueSubmit(bt)
	default:
		bt.state = stateRecorded
		bt.log.Error("recorded batch came back incomplete; not resubmitted", zap.Int("events", len(bt.items)), zap.Int("recorded", len(r.Seqs)))
		c.settle(bt, outcomeFor(bt, schemas.ReasonInDoubt, schemas.ErrorClassTechnical, "",
			[]string{fmt.Sprintf("only %d of %d events of the recorded batch came back after a restart", len(bt.items), len(r.Seqs))}))
	}
}

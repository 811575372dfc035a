package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// record is a batch's crash-recovery entry in the ledger bucket (key: the batch key). It is written
// before the submit and updated with compare-and-swap at each state change; it names the messages by
// stream sequence, not by content, so it stays small.
type record struct {
	Key         string         `json:"key"`
	Mandator    string         `json:"mandator"`
	Action      schemas.Action `json:"action"`
	State       batchState     `json:"state"`
	BatchID     string         `json:"batchId,omitempty"`
	Jobs        []recordJob    `json:"jobs"`
	Seqs        seqList        `json:"seqs"` // every message the batch settles
	Created     time.Time      `json:"created"`
	SubmittedAt time.Time      `json:"submittedAt,omitzero"`
	AcceptedAt  time.Time      `json:"acceptedAt,omitzero"`
	Attempts    int            `json:"attempts,omitempty"`
	// Verdict is set once the batch is settling: a restart finishes it with the same outcome.
	Verdict *verdict `json:"verdict,omitempty"`
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
}

func verdictOf(o *schemas.Outcome) *verdict {
	d := o.Data
	return &verdict{Reason: d.Reason, ErrorClass: d.ErrorClass, ImportStatus: d.ImportStatus,
		ErrorMessages: d.ErrorMessages, LessonCount: d.LessonCount, Polls: d.Polls, FinishedAt: d.FinishedAt}
}

// outcome rebuilds the outcome of a settling batch from its verdict.
func (v *verdict) outcome(bt *batch) *schemas.Outcome {
	bt.polls, bt.lessonCount = v.Polls, v.LessonCount
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
	r := &record{Key: bt.key, Mandator: bt.mandator, Action: bt.action, State: bt.state, BatchID: bt.batchID,
		Created: bt.created, SubmittedAt: bt.submittedAt, AcceptedAt: bt.acceptedAt, Attempts: bt.attempts}
	for i, j := range bt.jobs {
		rj := recordJob{JobID: j.JobID, Seqs: bt.jobSeqs[i]}
		for _, l := range j.LektionList {
			rj.Lessons = append(rj.Lessons, l.LektionID)
		}
		r.Jobs = append(r.Jobs, rj)
	}
	for _, it := range bt.items {
		r.Seqs = append(r.Seqs, it.seq)
	}
	return r
}

// ledgerCreate writes a new record. Writes are idempotent: a KV write that timed out may still have
// happened, so when the retry finds the key already holding exactly this value, that revision is ours.
func (b *Bridge) ledgerCreate(ctx context.Context, r *record) (uint64, error) {
	v, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	rev, err := b.topo.ledger.Create(ctx, r.Key, v)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return b.ledgerAlreadyWritten(ctx, r.Key, v, err)
	}
	return rev, err
}

// ledgerUpdate replaces a record by compare-and-swap on rev (see ledgerCreate for idempotence).
func (b *Bridge) ledgerUpdate(ctx context.Context, r *record, rev uint64) (uint64, error) {
	v, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	newRev, err := b.topo.ledger.Update(ctx, r.Key, v, rev)
	if err != nil {
		return b.ledgerAlreadyWritten(ctx, r.Key, v, err)
	}
	return newRev, nil
}

func (b *Bridge) ledgerAlreadyWritten(ctx context.Context, key string, v []byte, cause error) (uint64, error) {
	e, err := b.topo.ledger.Get(ctx, key)
	if err == nil && bytes.Equal(e.Value(), v) {
		return e.Revision(), nil
	}
	if err == nil {
		// Someone else changed the record: another instance took the batch over. Retrying cannot help.
		return 0, permanent{fmt.Errorf("ledger record %s changed by someone else: %w", key, cause)}
	}
	return 0, fmt.Errorf("ledger record %s: %w", key, cause)
}

// permanent marks an error that retry must not retry.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// recovering is a ledger record of a batch this process did not start (found at start, or after a
// takeover from a dead instance) whose messages are coming back. Its batch holds the gate for the
// recorded lessons at once, so events behind them wait (per-lesson order across crashes).
type recovering struct {
	rec      *record
	rev      uint64
	bt       *batch
	items    map[uint64]*item
	deadline time.Time
}

// loadLedger reads every record of the ledger bucket.
func (b *Bridge) loadLedger(ctx context.Context) ([]*record, []uint64, error) {
	lister, err := b.topo.ledger.ListKeys(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("consumer: list ledger: %w", err)
	}
	var recs []*record
	var revs []uint64
	for key := range lister.Keys() {
		e, err := b.topo.ledger.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("consumer: ledger record %s: %w", key, err)
		}
		r := &record{}
		if err := json.Unmarshal(e.Value(), r); err != nil || r.Key != key {
			b.log.Error("unreadable ledger record left alone", zap.String("batchKey", key), zap.Error(err))
			continue
		}
		recs = append(recs, r)
		revs = append(revs, e.Revision())
	}
	return recs, revs, nil
}

// recover loads the open records of the ledger at start. Their messages return after AckWait (they
// were never acked) and are attached by stream sequence; see attachRecovered.
func (b *Bridge) recover(ctx context.Context) error {
	recs, revs, err := b.loadLedger(ctx)
	if err != nil {
		return err
	}
	n := b.indexRecords(recs, revs)
	b.metrics.ledgerRecords.Set(float64(n))
	return nil
}

// indexRecords registers records of batches this process does not work on and returns how many.
func (b *Bridge) indexRecords(recs []*record, revs []uint64) int {
	n := 0
	deadline := b.now().Add(2*b.ackWait + b.cfg.Heartbeat)
	for i, r := range recs {
		if b.batches[r.Key] != nil || b.settledKeys[r.Key] {
			continue // ours: working on it, or settled it after the ledger was read
		}
		bt := &batch{key: r.Key, mandator: r.Mandator, action: r.Action, state: r.State, batchID: r.BatchID,
			created: r.Created, submittedAt: r.SubmittedAt, acceptedAt: r.AcceptedAt, attempts: r.Attempts,
			ledgerRev: revs[i], ambiguous: true}
		bt.setLogger(b.log)
		for _, j := range r.Jobs {
			bt.jobs = append(bt.jobs, jobmanager.Job{JobID: j.JobID})
			for _, l := range j.Lessons {
				k := lessonKey{r.Mandator, l}
				bt.lessons = append(bt.lessons, &pendingLesson{key: k})
				st := b.lessons[k]
				if st == nil {
					st = &lessonState{}
					b.lessons[k] = st
				}
				st.inflight = bt
			}
		}
		rc := &recovering{rec: r, rev: revs[i], bt: bt, items: map[uint64]*item{}, deadline: deadline}
		for _, s := range r.Seqs {
			b.recoverBySeq[s] = rc
		}
		b.batches[r.Key] = bt
		b.recovering[r.Key] = rc
		n++
		bt.log.Info("open batch found in ledger; waiting for its messages", zap.String("state", string(r.State)),
			zap.Int("events", len(r.Seqs)))
	}
	b.metrics.inFlight.Set(float64(len(b.batches)))
	return n
}

// attachRecovered takes a message that belongs to a recovered record; when the record's messages are
// all back, the batch resumes: polling when it was accepted (never resubmitted), resubmitting with
// the same JobIDs when it was only recorded (in doubt if JobManager then names them duplicates).
func (b *Bridge) attachRecovered(workCtx context.Context, it *item) bool {
	rc := b.recoverBySeq[it.seq]
	if rc == nil {
		return false
	}
	rc.items[it.seq] = it
	if len(rc.items) == len(rc.rec.Seqs) {
		b.resume(workCtx, rc)
	}
	return true
}

// parkRedelivered holds a redelivered message that no batch of ours knows until the ledger has been
// read again: it may belong to a batch of an instance that died (a takeover).
func (b *Bridge) parkRedelivered(workCtx context.Context, it *item) {
	b.limbo = append(b.limbo, it)
	if b.reloading {
		return
	}
	b.reloading = true
	clear(b.settledKeys)
	b.workers.Add(1)
	go func() {
		defer b.workers.Done()
		type snapshot struct {
			recs []*record
			revs []uint64
		}
		snap, err := retry(workCtx, b, "reload ledger", func(ctx context.Context) (snapshot, error) {
			recs, revs, err := b.loadLedger(ctx)
			return snapshot{recs, revs}, err
		})
		if err != nil {
			return
		}
		recs, revs := snap.recs, snap.revs
		b.post(func() {
			b.reloading = false
			defer clear(b.settledKeys)
			if n := b.indexRecords(recs, revs); n > 0 {
				b.log.Warn("taking over open batches of another instance", zap.Int("batches", n))
			}
			parked := b.limbo
			b.limbo = nil
			for _, it := range parked {
				if !b.attachRecovered(workCtx, it) {
					b.admit(workCtx, it)
				}
			}
		})
	}()
}

// expireRecovery looks at records whose messages did not all come back within the recovery window.
// Messages can be late for many reasons (a NATS restart, the start-up barrier, a slow redelivery), so
// the window alone decides nothing: the consumer's ack floor does. A missing message at or below it
// was acked or terminated (the batch was settling when the process died); one above it is still on
// its way, and the record waits another AckWait.
func (b *Bridge) expireRecovery(workCtx context.Context, now time.Time) {
	if b.floorProbe {
		return
	}
	due := false
	for _, rc := range b.recovering {
		if !now.Before(rc.deadline) {
			due = true
			break
		}
	}
	if !due {
		return
	}
	var keys []string
	for k, rc := range b.recovering {
		if !now.Before(rc.deadline) {
			keys = append(keys, k)
		}
	}
	b.floorProbe = true
	b.workers.Add(1)
	go func() {
		defer b.workers.Done()
		ctx, cancel := context.WithTimeout(workCtx, 10*time.Second)
		defer cancel()
		info, err := b.topo.consumer.Info(ctx)
		// A record that is gone was settled by its owner (or by us) after it was indexed.
		gone := map[string]bool{}
		for _, k := range keys {
			if _, gerr := b.topo.ledger.Get(ctx, k); errors.Is(gerr, jetstream.ErrKeyNotFound) {
				gone[k] = true
			}
		}
		b.post(func() {
			b.floorProbe = false
			if err != nil {
				b.log.Warn("consumer info for recovered batches", zap.Error(err))
				b.postponeRecovery(b.now())
				return
			}
			b.applyAckFloor(workCtx, info.AckFloor.Stream, gone)
		})
	}()
}

func (b *Bridge) postponeRecovery(now time.Time) {
	for _, rc := range b.recovering {
		if !now.Before(rc.deadline) {
			rc.deadline = now.Add(b.ackWait)
		}
	}
}

// applyAckFloor finishes the due records whose missing messages are all at or below floor, and
// forgets those that are gone from the ledger.
func (b *Bridge) applyAckFloor(workCtx context.Context, floor uint64, gone map[string]bool) {
	now := b.now()
	for _, rc := range b.recovering {
		if now.Before(rc.deadline) {
			continue
		}
		if gone[rc.rec.Key] {
			if len(rc.items) > 0 {
				// Settle what came back without a ledger record: the outcome is de-duplicated by its id.
				rc.bt.ledgerRev = 0
				b.resume(workCtx, rc)
				continue
			}
			b.forgetRecovery(rc)
			rc.bt.log.Info("recovered record is gone from the ledger (settled by its owner)")
			b.dropPlaceholder(workCtx, rc.bt)
			continue
		}
		waiting := 0
		for _, s := range rc.rec.Seqs {
			if rc.items[s] == nil && s > floor {
				waiting++
			}
		}
		if waiting > 0 {
			rc.deadline = now.Add(b.ackWait)
			rc.bt.log.Info("recovered batch still waits for its messages", zap.Int("waiting", waiting),
				zap.Int("back", len(rc.items)), zap.Uint64("ackFloor", floor))
			continue
		}
		if len(rc.items) > 0 {
			b.resume(workCtx, rc)
			continue
		}
		b.forgetRecovery(rc)
		ctx, cancel := context.WithTimeout(workCtx, 5*time.Second)
		err := b.topo.ledger.Delete(ctx, rc.rec.Key, jetstream.LastRevision(rc.rev))
		cancel()
		rc.bt.log.Info("ledger record of a settled batch removed (all its messages were acknowledged)", zap.Error(err))
		b.dropPlaceholder(workCtx, rc.bt)
	}
}

// dropPlaceholder removes a recovered batch that has nothing to do and frees its lessons.
func (b *Bridge) dropPlaceholder(workCtx context.Context, bt *batch) {
	delete(b.batches, bt.key)
	for _, p := range bt.lessons {
		b.release(workCtx, p.key)
	}
}

func (b *Bridge) nextRecoveryDeadline() time.Time {
	var next time.Time
	for _, rc := range b.recovering {
		if next.IsZero() || rc.deadline.Before(next) {
			next = rc.deadline
		}
	}
	return next
}

func (b *Bridge) forgetRecovery(rc *recovering) {
	delete(b.recovering, rc.rec.Key)
	for _, s := range rc.rec.Seqs {
		if b.recoverBySeq[s] == rc {
			delete(b.recoverBySeq, s)
		}
	}
}

// resume turns a recovered record whose messages came back into a working batch.
func (b *Bridge) resume(workCtx context.Context, rc *recovering) {
	b.forgetRecovery(rc)
	r, bt := rc.rec, rc.bt
	byLesson := map[lessonKey]*pendingLesson{}
	for _, p := range bt.lessons {
		byLesson[p.key] = p
	}
	complete := len(rc.items) == len(r.Seqs)
	bt.jobs = bt.jobs[:0]
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
	switch {
	case bt.state == stateSettling && r.Verdict != nil:
		b.settle(workCtx, bt, r.Verdict.outcome(bt))
	case bt.state == stateAccepted:
		bt.log.Info("resuming an accepted batch: polling, never resubmitting", zap.Int("events", len(bt.items)))
		b.schedulePoll(bt, b.now(), 0)
	case complete:
		bt.log.Warn("resubmitting a recorded batch with its JobIDs; a duplicate answer means the first submit went through",
			zap.Int("events", len(bt.items)))
		b.metrics.resubmits.Inc()
		bt.state = stateRecorded
		b.startSubmit(workCtx, bt)
	default:
		bt.log.Error("recorded batch came back incomplete; not resubmitted", zap.Int("events", len(bt.items)), zap.Int("recorded", len(r.Seqs)))
		b.settle(workCtx, bt, outcomeFor(bt, schemas.ReasonInDoubt, schemas.ErrorClassTechnical, "",
			[]string{fmt.Sprintf("only %d of %d events of the recorded batch came back after a restart", len(bt.items), len(r.Seqs))}))
	}
}

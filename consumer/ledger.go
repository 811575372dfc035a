package consumer

import (
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
	Seqs        []uint64       `json:"seqs"` // every message the batch settles
	Created     time.Time      `json:"created"`
	SubmittedAt time.Time      `json:"submittedAt,omitzero"`
	AcceptedAt  time.Time      `json:"acceptedAt,omitzero"`
	Attempts    int            `json:"attempts,omitempty"`
}

// recordJob is a job by JobID and the stream sequences of its lessons' effective events, in order.
type recordJob struct {
	JobID string   `json:"jobId"`
	Seqs  []uint64 `json:"seqs"`
}

func (bt *batch) record() *record {
	r := &record{Key: bt.key, Mandator: bt.mandator, Action: bt.action, State: bt.state, BatchID: bt.batchID,
		Created: bt.created, SubmittedAt: bt.submittedAt, AcceptedAt: bt.acceptedAt, Attempts: bt.attempts}
	for i, j := range bt.jobs {
		r.Jobs = append(r.Jobs, recordJob{JobID: j.JobID, Seqs: bt.jobSeqs[i]})
	}
	for _, it := range bt.items {
		r.Seqs = append(r.Seqs, it.seq)
	}
	return r
}

func (b *Bridge) ledgerCreate(ctx context.Context, r *record) (uint64, error) {
	v, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	return b.topo.ledger.Create(ctx, r.Key, v)
}

func (b *Bridge) ledgerUpdate(ctx context.Context, r *record, rev uint64) (uint64, error) {
	v, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	return b.topo.ledger.Update(ctx, r.Key, v, rev)
}

// recovering is a ledger record found at start whose messages are coming back (redelivered).
type recovering struct {
	rec   *record
	rev   uint64
	items map[uint64]*item
}

// recover loads the open records of the ledger. Their messages return after AckWait (they were never
// acked) and are attached by stream sequence; see attachRecovered.
func (b *Bridge) recover(ctx, workCtx context.Context) error {
	b.recoverBySeq = map[uint64]*recovering{}
	lister, err := b.topo.ledger.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("consumer: list ledger: %w", err)
	}
	n := 0
	for key := range lister.Keys() {
		e, err := b.topo.ledger.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("consumer: ledger record %s: %w", key, err)
		}
		r := &record{}
		if err := json.Unmarshal(e.Value(), r); err != nil || r.Key != key {
			b.log.Error("unreadable ledger record left alone", zap.String("batchKey", key), zap.Error(err))
			continue
		}
		rc := &recovering{rec: r, rev: e.Revision(), items: map[uint64]*item{}}
		for _, s := range r.Seqs {
			b.recoverBySeq[s] = rc
		}
		n++
		b.log.Info("open batch found in ledger", zap.String("batchKey", key), zap.String("batchId", r.BatchID),
			zap.String("state", string(r.State)), zap.Int("events", len(r.Seqs)))
	}
	b.metrics.ledgerRecords.Set(float64(n))
	if n > 0 {
		b.recoverDeadline = b.now().Add(2*b.ackWait + b.cfg.Heartbeat)
	}
	return nil
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

// expireRecovery resumes records whose messages did not all come back within the recovery window:
// the missing ones were acked before the crash (a batch that was settling) or are gone.
func (b *Bridge) expireRecovery(workCtx context.Context, now time.Time) {
	if b.recoverDeadline.IsZero() || now.Before(b.recoverDeadline) {
		return
	}
	b.recoverDeadline = time.Time{}
	seen := map[*recovering]bool{}
	for _, rc := range b.recoverBySeq {
		if seen[rc] {
			continue
		}
		seen[rc] = true
		if len(rc.items) == 0 {
			ctx, cancel := context.WithTimeout(workCtx, 5*time.Second)
			err := b.topo.ledger.Delete(ctx, rc.rec.Key)
			cancel()
			b.log.Info("ledger record without open messages removed (its batch had settled)", zap.String("batchKey", rc.rec.Key),
				zap.String("batchId", rc.rec.BatchID), zap.Error(err))
			b.forgetRecovery(rc)
			continue
		}
		b.resume(workCtx, rc)
	}
}

func (b *Bridge) forgetRecovery(rc *recovering) {
	for _, s := range rc.rec.Seqs {
		if b.recoverBySeq[s] == rc {
			delete(b.recoverBySeq, s)
		}
	}
}

func (b *Bridge) resume(workCtx context.Context, rc *recovering) {
	b.forgetRecovery(rc)
	r := rc.rec
	bt := &batch{key: r.Key, mandator: r.Mandator, action: r.Action, state: r.State, batchID: r.BatchID,
		created: r.Created, submittedAt: r.SubmittedAt, acceptedAt: r.AcceptedAt, attempts: r.Attempts,
		ledgerRev: rc.rev, recovered: true, ambiguous: true}
	bt.log = b.log.With(zap.String("batchKey", bt.key), zap.String("mandator", bt.mandator), zap.String("action", string(bt.action)))
	if bt.batchID != "" {
		bt.log = bt.log.With(zap.String("batchId", bt.batchID))
	}
	// Lessons and jobs come back from the effective events, in the recorded order.
	byLesson := map[lessonKey]*pendingLesson{}
	complete := len(rc.items) == len(r.Seqs)
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
			p := &pendingLesson{key: lessonKey{it.mandator, it.ev.Data.LessonID}, eff: it}
			byLesson[p.key] = p
			bt.lessons = append(bt.lessons, p)
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
		k := lessonKey{it.mandator, it.ev.Data.LessonID}
		if p := byLesson[k]; p != nil {
			p.items = append(p.items, it)
		}
	}
	for _, p := range bt.lessons {
		st := b.lessons[p.key]
		if st == nil {
			st = &lessonState{}
			b.lessons[p.key] = st
		}
		st.inflight = bt
	}
	b.batches[bt.key] = bt
	b.metrics.inFlight.Set(float64(len(b.batches)))
	switch {
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

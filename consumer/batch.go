package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// batchState is where a batch is in its life (design: "A batch's life").
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
	techRetries int           // technical-failure resubmissions as new batches so far
	submitAfter time.Duration // wait before the next submit (a technical-failure resubmission)
}

// setLogger gives the batch a child logger: every line of a batch carries batchKey, mandator,
// action and batchId (empty until JobManager accepted the batch).
func (bt *batch) setLogger(base *zap.Logger) {
	bt.log = base.With(zap.String("batchKey", bt.key), zap.String("batchId", bt.batchID),
		zap.String("mandator", bt.mandator), zap.String("action", string(bt.action)))
}

// newJobID returns <prefix>-<YYYYMMDD>-<UUIDv7>.
func newJobID(prefix string, now time.Time) string {
	return prefix + "-" + now.UTC().Format("20060102") + "-" + uuid.Must(uuid.NewV7()).String()
}

// cut turns a pending group into a batch and starts its submit.
func (b *Bridge) cut(workCtx context.Context, gk groupKey, g *group) {
	delete(b.groups, gk)
	if len(g.lessons) == 0 {
		return
	}
	now := b.now()
	bt := &batch{
		key:      "b-" + uuid.Must(uuid.NewV7()).String(),
		mandator: gk.mandator,
		action:   gk.action,
		lessons:  g.lessons,
		state:    stateRecorded,
		created:  now,
	}
	jobIdx := map[string]int{}
	for _, p := range g.lessons {
		grp := p.eff.ev.Data.Group
		i, ok := jobIdx[grp]
		if !ok {
			i = len(bt.jobs)
			jobIdx[grp] = i
			bt.jobs = append(bt.jobs, jobmanager.Job{JobID: newJobID(b.cfg.JobIDPrefix, now)})
			bt.jobSeqs = append(bt.jobSeqs, nil)
		}
		bt.jobSeqs[i] = append(bt.jobSeqs[i], p.eff.seq)
		bt.jobs[i].LektionList = append(bt.jobs[i].LektionList, toLesson(p.eff.ev))
		bt.items = append(bt.items, p.items...)
		st := b.lessons[p.key]
		st.pending = nil
		st.inflight = bt
	}
	bt.setLogger(b.log)
	b.batches[bt.key] = bt
	b.metrics.inFlight.Set(float64(len(b.batches)))
	b.startSubmit(workCtx, bt)
}

// resubmitAsNew turns a batch that failed with a technical error into a new batch: new key, new
// JobIDs, same lessons and messages, submitted after TechnicalRetryDelay.
func (b *Bridge) resubmitAsNew(workCtx context.Context, bt *batch, msgs []string) {
	old, oldBatch, oldRev := bt.key, bt.batchID, bt.ledgerRev
	now := b.now()
	bt.techRetries++
	bt.key = "b-" + uuid.Must(uuid.NewV7()).String()
	for i := range bt.jobs {
		bt.jobs[i].JobID = newJobID(b.cfg.JobIDPrefix, now)
	}
	bt.state, bt.batchID, bt.polls, bt.lastStatus, bt.ledgerRev = stateRecorded, "", 0, "", 0
	bt.ambiguous, bt.submitAfter = false, b.cfg.TechnicalRetryDelay
	delete(b.batches, old)
	if b.reloading {
		b.settledKeys[old] = true
	}
	b.batches[bt.key] = bt
	bt.setLogger(b.log)
	bt.log.Warn("technical import failure; resubmitting as a new batch with new JobIDs",
		zap.String("failedBatchId", oldBatch), zap.Strings("errorMessages", msgs), zap.Int("retry", bt.techRetries),
		zap.Int("of", b.cfg.TechnicalRetries), zap.Duration("after", bt.submitAfter))
	b.metrics.techResubmits.Inc()
	b.workers.Add(1)
	go func() {
		defer b.workers.Done()
		ctx, cancel := context.WithTimeout(workCtx, 5*time.Second)
		defer cancel()
		_ = b.topo.ledger.Delete(ctx, old, jetstream.LastRevision(oldRev))
	}()
	b.startSubmit(workCtx, bt)
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

// submitResult is what a submit worker reports.
type submitResult struct {
	status    *jobmanager.BatchStatus
	err       error // final error when not accepted
	reason    string
	class     string
	attempts  int
	ambiguous bool
	rev       uint64
	at        time.Time
}

// startSubmit records the batch in the ledger and submits it, retrying transient errors with the same
// JobIDs, then reports to the loop.
func (b *Bridge) startSubmit(workCtx context.Context, bt *batch) {
	rec := bt.record()
	mandator, action, jobs, ambiguous := bt.mandator, bt.action, bt.jobs, bt.ambiguous
	prevRev := bt.ledgerRev
	log := bt.log
	delay := bt.submitAfter
	bt.submitAfter = 0
	b.workers.Add(1)
	go func() {
		defer b.workers.Done()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-workCtx.Done():
				return
			}
		}
		select {
		case b.submitS <- struct{}{}:
		case <-workCtx.Done():
			return
		}
		defer func() { <-b.submitS }()
		rev := prevRev
		if rev == 0 {
			var err error
			rev, err = retry(workCtx, b, "ledger record", func(ctx context.Context) (uint64, error) {
				return b.ledgerCreate(ctx, rec)
			})
			if err != nil {
				return
			}
		}
		res := b.submitWithRetry(workCtx, log, mandator, jobmanager.Action(action), jobs)
		res.ambiguous = res.ambiguous || ambiguous
		res.rev = rev
		if res.status != nil && b.cfg.Hooks.AfterSubmit != nil {
			if err := b.cfg.Hooks.AfterSubmit(res.status.BatchID); err != nil {
				log.Warn("batch abandoned by hook after submit", zap.String("batchId", res.status.BatchID), zap.Error(err))
				return
			}
		}
		if res.status != nil {
			rec.State = stateAccepted
			rec.BatchID = res.status.BatchID
			rec.SubmittedAt, rec.AcceptedAt = res.at, res.at
			rec.Attempts = res.attempts
			if newRev, err := retry(workCtx, b, "ledger update", func(ctx context.Context) (uint64, error) {
				return b.ledgerUpdate(ctx, rec, rev)
			}); err == nil {
				res.rev = newRev
			}
		}
		if workCtx.Err() != nil && res.status == nil && res.reason == "" {
			return
		}
		b.post(func() { b.onSubmitted(workCtx, bt, res) })
	}()
}

func (b *Bridge) submitWithRetry(workCtx context.Context, log *zap.Logger, mandator string, action jobmanager.Action, jobs []jobmanager.Job) submitResult {
	start := time.Now()
	wait := b.cfg.SubmitBackoff
	var res submitResult
	for {
		res.attempts++
		t0 := time.Now()
		st, err := b.jm.Submit(workCtx, mandator, action, jobs)
		b.metrics.submitLatency.Observe(time.Since(t0).Seconds())
		b.metrics.jmResponses.WithLabelValues("submit", statusLabel(err)).Inc()
		if err == nil {
			res.status, res.at = st, b.now()
			return res
		}
		if workCtx.Err() != nil {
			return submitResult{}
		}
		class := jobmanager.Classify(err)
		if jobmanager.Ambiguous(err) {
			res.ambiguous = true
		}
		if class == jobmanager.ClassData {
			res.err, res.reason, res.class = err, schemas.ReasonRejected, schemas.ErrorClassData
			return res
		}
		if res.attempts >= b.cfg.SubmitMaxAttempts || time.Since(start)+wait > b.cfg.SubmitMaxElapsed {
			res.err, res.reason, res.class = err, schemas.ReasonSubmitGaveUp, schemas.ErrorClassTechnical
			return res
		}
		d := b.jitter(wait)
		var je *jobmanager.Error
		if errors.As(err, &je) && je.RetryAfter > d {
			d = je.RetryAfter
		}
		log.Warn("submit failed; retrying with the same JobIDs", zap.Int("attempt", res.attempts),
			zap.Stringer("class", class), zap.Duration("wait", d), zap.Error(err))
		select {
		case <-workCtx.Done():
			return submitResult{}
		case <-time.After(d):
		}
		wait = min(wait*2, b.cfg.SubmitMaxBackoff)
	}
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

// onSubmitted runs in the loop with a submit worker's result.
func (b *Bridge) onSubmitted(workCtx context.Context, bt *batch, res submitResult) {
	bt.attempts += res.attempts
	bt.ambiguous = res.ambiguous
	bt.ledgerRev = res.rev
	if res.status == nil {
		bt.log.Error("batch not accepted", zap.String("reason", res.reason), zap.String("errorClass", res.class),
			zap.Int("attempts", bt.attempts), zap.Error(res.err))
		b.settle(workCtx, bt, outcomeFor(bt, res.reason, res.class, "", errorText(res.err)))
		return
	}
	bt.state = stateAccepted
	bt.batchID = res.status.BatchID
	bt.submittedAt, bt.acceptedAt = res.at, res.at
	bt.lastStatus = res.status.ImportStatus
	bt.setLogger(b.log)
	bt.log.Info("batch accepted", zap.Int("jobs", len(bt.jobs)), zap.Int("lessons", bt.lessonCountLocal()),
		zap.Int("events", len(bt.items)), zap.Int("attempts", bt.attempts), zap.String("importStatus", string(bt.lastStatus)))
	b.schedulePoll(bt, b.now(), 0)
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

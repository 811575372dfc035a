package consumer

import (
	"container/heap"
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// pollHeap orders accepted batches by their next poll: one scheduler for all batches.
type pollHeap []*batch

func (h pollHeap) Len() int           { return len(h) }
func (h pollHeap) Less(i, j int) bool { return h[i].nextPoll.Before(h[j].nextPoll) }
func (h pollHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex, h[j].heapIndex = i, j
}
func (h *pollHeap) Push(x any) {
	bt := x.(*batch)
	bt.heapIndex = len(*h)
	*h = append(*h, bt)
}
func (h *pollHeap) Pop() any {
	old := *h
	n := len(old)
	bt := old[n-1]
	old[n-1] = nil
	bt.heapIndex = -1
	*h = old[:n-1]
	return bt
}

// schedulePoll puts bt on the heap for its next poll: the schedule's wait for this poll (the last
// repeats), jittered, but not before retryAfter.
func (b *Bridge) schedulePoll(bt *batch, now time.Time, retryAfter time.Duration) {
	s := b.cfg.PollSchedule
	d := b.jitter(s[min(bt.polls, len(s)-1)])
	if retryAfter > d {
		d = retryAfter
	}
	bt.nextPoll = now.Add(d)
	heap.Push(&b.polls, bt)
}

// startDuePolls starts a poll for every due batch, as far as the poll concurrency allows.
func (b *Bridge) startDuePolls(workCtx context.Context, now time.Time) {
	for len(b.polls) > 0 && !b.polls[0].nextPoll.After(now) && b.pollsRun < b.cfg.MaxConcurrentPolls {
		bt := heap.Pop(&b.polls).(*batch)
		b.pollsRun++
		bt.polls++
		mandator, id := bt.mandator, bt.batchID
		b.workers.Add(1)
		go func() {
			defer b.workers.Done()
			t0 := time.Now()
			st, err := b.jm.Batch(workCtx, mandator, id)
			b.metrics.pollLatency.Observe(time.Since(t0).Seconds())
			b.metrics.jmResponses.WithLabelValues("status", statusLabel(err)).Inc()
			if workCtx.Err() != nil {
				return
			}
			b.post(func() {
				b.pollsRun--
				b.onPoll(workCtx, bt, st, err)
			})
		}()
	}
}

// onPoll decides what a status answer means for the batch.
func (b *Bridge) onPoll(workCtx context.Context, bt *batch, st *jobmanager.BatchStatus, err error) {
	now := b.now()
	age := now.Sub(bt.acceptedAt)
	if err != nil {
		var je *jobmanager.Error
		var retryAfter time.Duration
		if errors.As(err, &je) {
			retryAfter = je.RetryAfter
		}
		if errors.Is(err, jobmanager.ErrNotFound) {
			if age >= b.cfg.NotFoundGrace {
				bt.log.Error("batch unknown to JobManager past the grace period", zap.Duration("grace", b.cfg.NotFoundGrace), zap.Int("polls", bt.polls))
				b.settle(workCtx, bt, outcomeFor(bt, schemas.ReasonBatchUnknown, schemas.ErrorClassTechnical, "",
					[]string{"status answered 404 for " + age.Round(time.Millisecond).String() + " after the submit was accepted"}))
				return
			}
			bt.log.Debug("batch not known yet", zap.Int("polls", bt.polls))
		} else {
			bt.log.Warn("status poll failed", zap.Int("polls", bt.polls), zap.Error(err))
		}
		if b.pollTimedOut(workCtx, bt, age) {
			return
		}
		b.schedulePoll(bt, now, retryAfter)
		return
	}
	if st.ImportStatus != bt.lastStatus {
		if !st.ImportStatus.Known() {
			bt.log.Warn("unknown ImportStatus; treated as not terminal", zap.String("importStatus", string(st.ImportStatus)))
		} else {
			bt.log.Debug("batch status", zap.String("importStatus", string(st.ImportStatus)), zap.Int("polls", bt.polls))
		}
	}
	bt.lastStatus = st.ImportStatus
	if st.LessonCount != nil {
		bt.lessonCount = *st.LessonCount
	}
	switch st.ImportStatus {
	case jobmanager.StatusLessonsCreated:
		b.settle(workCtx, bt, outcomeFor(bt, "", "", string(st.ImportStatus), nil))
	case jobmanager.StatusLessonsImportFailed:
		reason, class := schemas.ReasonImportFailed, schemas.ErrorClassData
		if b.cfg.MessageRules.Classify(st.ErrorMessages) == jobmanager.ClassTechnical {
			class = schemas.ErrorClassTechnical
		}
		if bt.ambiguous && containsAll(jobmanager.DuplicateJobIDs(st.ErrorMessages), bt.jobIDs()) {
			reason, class = schemas.ReasonInDoubt, schemas.ErrorClassTechnical
		} else if class == schemas.ErrorClassTechnical && bt.techRetries < b.cfg.TechnicalRetries && !b.stopping {
			b.resubmitAsNew(workCtx, bt, st.ErrorMessages)
			return
		}
		b.settle(workCtx, bt, outcomeFor(bt, reason, class, string(st.ImportStatus), st.ErrorMessages))
	default:
		if b.pollTimedOut(workCtx, bt, age) {
			return
		}
		b.schedulePoll(bt, now, 0)
	}
}

func (b *Bridge) pollTimedOut(workCtx context.Context, bt *batch, age time.Duration) bool {
	if age < b.cfg.PollTimeout {
		return false
	}
	bt.log.Error("poll timeout", zap.Duration("timeout", b.cfg.PollTimeout), zap.Int("polls", bt.polls),
		zap.String("importStatus", string(bt.lastStatus)))
	b.settle(workCtx, bt, outcomeFor(bt, schemas.ReasonPollTimeout, schemas.ErrorClassTechnical, string(bt.lastStatus),
		[]string{"no terminal status within " + b.cfg.PollTimeout.String()}))
	return true
}

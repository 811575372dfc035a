package consumer

import (
	"container/heap"
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
func (c *core) schedulePoll(bt *batch, retryAfter time.Duration) {
	if bt.dead || c.phase == phaseDone {
		return
	}
	s := c.cfg.PollSchedule
	d := c.jitter(s[min(bt.polls, len(s)-1)])
	if retryAfter > d {
		d = retryAfter
	}
	bt.nextPoll = c.now.Add(d)
	heap.Push(&c.polls, bt)
	c.at(bt.nextPoll, func() {})
}

// pumpPolls starts a poll for every due batch, as far as the poll concurrency and the breaker allow.
func (c *core) pumpPolls() {
	for len(c.polls) > 0 && !c.polls[0].nextPoll.After(c.now) && c.pollsRun < c.cfg.MaxConcurrentPolls {
		if c.polls[0].dead {
			heap.Pop(&c.polls)
			continue
		}
		if !c.jmMayCall() {
			return
		}
		bt := heap.Pop(&c.polls).(*batch)
		c.pollsRun++
		bt.polls++
		c.do(effect{kind: effPoll, key: bt.key, mandator: bt.mandator, batchID: bt.batchID}, func(r result) {
			c.pollsRun--
			c.onPoll(bt, r)
		})
	}
}

// onPoll decides what a status answer means for the batch.
func (c *core) onPoll(bt *batch, r result) {
	global := c.jmAnswered(r.err)
	if bt.dead || c.batches[bt.key] != bt {
		return
	}
	if global {
		bt.polls-- // Finding 9: not the batch's poll; nothing times out while the breaker is open
		c.schedulePoll(bt, 0)
		return
	}
	age := c.elapsed(bt.acceptedAt, bt.accOutage)
	if err := r.err; err != nil {
		var je *jobmanager.Error
		var retryAfter time.Duration
		if errors.As(err, &je) {
			retryAfter = je.RetryAfter
		}
		if errors.Is(err, jobmanager.ErrNotFound) {
			if age >= c.cfg.NotFoundGrace {
				bt.log.Error("batch unknown to JobManager past the grace period", zap.Duration("grace", c.cfg.NotFoundGrace), zap.Int("polls", bt.polls))
				c.settle(bt, outcomeFor(bt, schemas.ReasonBatchUnknown, schemas.ErrorClassTechnical, "",
					[]string{"status answered 404 for " + age.Round(time.Millisecond).String() + " after the submit was accepted"}))
				return
			}
			bt.log.Debug("batch not known yet", zap.Int("polls", bt.polls))
		} else {
			bt.log.Warn("status poll failed", zap.Int("polls", bt.polls), zap.Error(err))
		}
		if c.pollTimedOut(bt, age) {
			return
		}
		c.schedulePoll(bt, retryAfter)
		return
	}
	st := r.status
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
		c.settle(bt, outcomeFor(bt, "", "", string(st.ImportStatus), nil))
	case jobmanager.StatusLessonsImportFailed:
		reason, class := schemas.ReasonImportFailed, schemas.ErrorClassData
		if c.cfg.MessageRules.Classify(st.ErrorMessages) == jobmanager.ClassTechnical {
			class = schemas.ErrorClassTechnical
		}
		if bt.ambiguous && containsAll(jobmanager.DuplicateJobIDs(st.ErrorMessages), bt.jobIDs()) {
			reason, class = schemas.ReasonInDoubt, schemas.ErrorClassTechnical
		} else if class == schemas.ErrorClassTechnical && bt.techRetries < c.cfg.TechnicalRetries && c.phase == phaseRunning {
			c.resubmitAsNew(bt, st.ErrorMessages)
			return
		}
		if reason == schemas.ReasonImportFailed && class == schemas.ErrorClassData && c.isolate(bt, st) {
			return
		}
		c.settle(bt, outcomeFor(bt, reason, class, string(st.ImportStatus), st.ErrorMessages))
	default:
		if c.pollTimedOut(bt, age) {
			return
		}
		c.schedulePoll(bt, 0)
	}
}

func (c *core) pollTimedOut(bt *batch, age time.Duration) bool {
	if age < c.cfg.PollTimeout {
		return false
	}
	bt.log.Error("poll timeout", zap.Duration("timeout", c.cfg.PollTimeout), zap.Int("polls", bt.polls),
		zap.String("importStatus", string(bt.lastStatus)))
	c.settle(bt, outcomeFor(bt, schemas.ReasonPollTimeout, schemas.ErrorClassTechnical, string(bt.lastStatus),
		[]string{"no terminal status within " + c.cfg.PollTimeout.String()}))
	return true
}

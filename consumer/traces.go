package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/lessonbridge/lessonbridge/internal/tracing"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// batchTraces is the runner's side of tracing: one span per batch (started at its first submit, or
// at its first poll for a batch adopted from the ledger), a child span per submit attempt and per
// poll, the batch's traceparent on its outcome event, and the span ended when the outcome is
// confirmed. The core knows nothing of it. Safe for the runner's concurrent workers; with tracing
// off (nil provider) every method does nothing.
type batchTraces struct {
	p  *tracing.Provider
	mu sync.Mutex
	by map[string]*batchTrace
}

type batchTrace struct {
	span           *tracing.Batch
	submits, polls int
}

func newBatchTraces(p *tracing.Provider) *batchTraces {
	return &batchTraces{p: p, by: map[string]*batchTrace{}}
}

func (t *batchTraces) get(e effect, traceparents []string) *batchTrace {
	bt := t.by[e.key]
	if bt == nil {
		lessons := 0
		ids := make([]string, 0, len(e.jobs))
		for _, j := range e.jobs {
			lessons += len(j.LektionList)
			ids = append(ids, j.JobID)
		}
		bt = &batchTrace{span: t.p.StartBatch(context.Background(), tracing.BatchInfo{Key: e.key, Mandator: e.mandator,
			Action: string(e.action), Lessons: lessons, Events: len(traceparents), JobIDs: ids}, traceparents, time.Time{})}
		t.by[e.key] = bt
	}
	return bt
}

// submit starts the span of a submit attempt; pass the returned ctx to the JobManager call.
func (t *batchTraces) submit(ctx context.Context, e effect) (context.Context, *tracing.Step) {
	if !t.p.Enabled() {
		return ctx, nil
	}
	t.mu.Lock()
	bt := t.get(e, e.traceparents)
	bt.submits++
	n := bt.submits
	t.mu.Unlock()
	return bt.span.StartSubmit(ctx, n)
}

// poll starts the span of a status poll.
func (t *batchTraces) poll(ctx context.Context, e effect) (context.Context, *tracing.Step) {
	if !t.p.Enabled() {
		return ctx, nil
	}
	t.mu.Lock()
	bt := t.get(e, nil)
	bt.polls++
	n := bt.polls
	t.mu.Unlock()
	return bt.span.StartPoll(ctx, n)
}

func (t *batchTraces) accepted(key, batchID string) {
	if !t.p.Enabled() {
		return
	}
	t.mu.Lock()
	bt := t.by[key]
	t.mu.Unlock()
	if bt != nil {
		bt.span.Accepted(batchID)
	}
}

// traceParent is the batch span's traceparent for its outcome ("" without a span).
func (t *batchTraces) traceParent(key string) string {
	if !t.p.Enabled() {
		return ""
	}
	t.mu.Lock()
	bt := t.by[key]
	t.mu.Unlock()
	if bt == nil {
		return ""
	}
	return bt.span.TraceParent()
}

// end ends the batch span with its confirmed outcome.
func (t *batchTraces) end(key string, o *schemas.Outcome) {
	if !t.p.Enabled() {
		return
	}
	t.mu.Lock()
	bt := t.by[key]
	delete(t.by, key)
	t.mu.Unlock()
	if bt != nil {
		bt.span.End(o.Data.Status, o.Data.Reason, o.Data.ErrorClass)
	}
}

func batchIDOf(st *jobmanager.BatchStatus) string {
	if st == nil {
		return ""
	}
	return st.BatchID
}

func importStatusOf(st *jobmanager.BatchStatus) string {
	if st == nil {
		return ""
	}
	return string(st.ImportStatus)
}

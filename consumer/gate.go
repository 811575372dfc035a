package consumer

import (
	"context"
	"time"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// lessonKey identifies a lesson for per-lesson ordering.
type lessonKey struct{ mandator, lessonID string }

// lessonState is the gate's record of one lesson: at most one pending entry (not yet submitted) or
// one in-flight batch, and the events that wait behind it in publish order.
type lessonState struct {
	pending  *pendingLesson
	inflight *batch
	waiting  []*item
}

// all returns every held item of the lesson that is not in a batch.
func (st *lessonState) all() []*item {
	var out []*item
	if st.pending != nil {
		out = append(out, st.pending.items...)
	}
	return append(out, st.waiting...)
}

// groupKey is a pending group: one future submit request.
type groupKey struct {
	mandator string
	action   schemas.Action
}

// group collects lessons for one (mandator, action) until it is cut into a batch.
type group struct {
	lessons  []*pendingLesson
	bytes    int
	deadline time.Time
}

// pendingLesson is one lesson in a group: the effective (latest) event and every event it settles.
type pendingLesson struct {
	key   lessonKey
	eff   *item
	items []*item
	size  int
}

// admit passes a valid event through the gate into its group, or queues it behind the lesson.
func (b *Bridge) admit(workCtx context.Context, it *item) {
	k := lessonKey{it.mandator, it.ev.Data.LessonID}
	st := b.lessons[k]
	if st == nil {
		st = &lessonState{}
		b.lessons[k] = st
	}
	switch {
	case st.pending == nil && st.inflight == nil && len(st.waiting) == 0:
		b.addToGroup(workCtx, st, k, it)
	case st.pending != nil && len(st.waiting) == 0 && st.pending.eff.ev.Action() == it.ev.Action():
		b.coalesce(st.pending, it)
	default:
		st.waiting = append(st.waiting, it)
	}
}

// coalesce makes it the effective event of p; the older events are settled with it.
func (b *Bridge) coalesce(p *pendingLesson, it *item) {
	g := b.groups[groupKey{it.mandator, it.ev.Action()}]
	size := lessonSize(it.ev)
	g.bytes += size - p.size
	p.size = size
	p.eff = it
	p.items = append(p.items, it)
}

func (b *Bridge) addToGroup(workCtx context.Context, st *lessonState, k lessonKey, it *item) {
	gk := groupKey{it.mandator, it.ev.Action()}
	size := lessonSize(it.ev)
	g := b.groups[gk]
	if g != nil && g.bytes+size > b.cfg.BatchMaxBytes {
		b.cut(workCtx, gk, g)
		g = nil
	}
	if g == nil {
		g = &group{deadline: b.now().Add(b.cfg.BatchLinger)}
		b.groups[gk] = g
	}
	p := &pendingLesson{key: k, eff: it, items: []*item{it}, size: size}
	g.lessons = append(g.lessons, p)
	g.bytes += size
	st.pending = p
	if len(g.lessons) >= b.cfg.BatchMaxLessons {
		b.cut(workCtx, gk, g)
	}
}

// release frees a lesson after its batch settled and admits the events waiting behind it.
func (b *Bridge) release(workCtx context.Context, k lessonKey) {
	st := b.lessons[k]
	if st == nil {
		return
	}
	st.inflight = nil
	w := st.waiting
	st.waiting = nil
	for i, it := range w {
		if st.pending == nil && st.inflight == nil {
			b.addToGroup(workCtx, st, k, it)
			continue
		}
		if st.pending != nil && st.pending.eff.ev.Action() == it.ev.Action() {
			b.coalesce(st.pending, it)
			continue
		}
		st.waiting = w[i:]
		break
	}
	if st.pending == nil && st.inflight == nil && len(st.waiting) == 0 {
		delete(b.lessons, k)
	}
}

// lessonSize estimates a lesson's share of the request body.
func lessonSize(ev *schemas.LessonChange) int {
	n := 110 + len(ev.Data.LessonID) + len(ev.Data.Resource)
	for k, v := range ev.Data.Attributes {
		n += len(k) + len(v) + 4
	}
	return n
}

// toLesson maps an event's data to a JobManager lesson (contract section 3).
func toLesson(ev *schemas.LessonChange) jobmanager.Lesson {
	l := jobmanager.Lesson{LektionID: ev.Data.LessonID, RessourceName: ev.Data.Resource, Extra: ev.Data.Attributes}
	if !ev.Data.Start.IsZero() {
		l.Beginn = ev.Data.Start.Format(time.RFC3339Nano)
	}
	if !ev.Data.End.IsZero() {
		l.Ende = ev.Data.End.Format(time.RFC3339Nano)
	}
	return l
}

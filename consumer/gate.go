package consumer

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

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
	// handBack: the pin moved while inflight's ledger record was still being written; the events
	// waiting behind it go back (Nak) when the record lands (handBackKept) or, without one, when
	// inflight is done; never into a batch here (handBackUnbatched).
	handBack bool
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
	st    *lessonState // the gate's record of the lesson (nil in recovered batches): cut needs no lookup
	eff   *item
	items []*item
	size  int
	one   [1]*item // items' first backing array
}

// lessonEntry is a new lesson's state and its first pending entry, allocated together: most lessons
// pass the gate once per batch.
type lessonEntry struct {
	st lessonState
	p  pendingLesson
}

// admit passes a valid event through the gate into its group, or queues it behind the lesson.
func (c *core) admit(it *item) {
	k := lessonKey{it.mandator, it.ev.Data.LessonID}
	st := c.lessons[k]
	if st == nil {
		e := &lessonEntry{}
		c.lessons[k] = &e.st
		c.addToGroup(&e.st, k, it, &e.p)
		return
	}
	switch {
	case st.pending == nil && st.inflight == nil && len(st.waiting) == 0:
		c.addToGroup(st, k, it, nil)
	case st.pending != nil && len(st.waiting) == 0 && st.pending.eff.ev.Action() == it.ev.Action():
		c.coalesce(st.pending, it)
	default:
		st.waiting = insertBySeq(st.waiting, it)
	}
}

// insertBySeq puts it into the lesson's waiting events in stream order (publish order): a
// redelivery that comes back after newer events of its lesson arrived (handed back with a Nak
// that returned to this instance, or late) goes before them, not behind (simulation seed 13947:
// an older update, handed back when its batch's record landed, came back after the lesson's
// delete and was imported after it).
func insertBySeq(waiting []*item, it *item) []*item {
	i, _ := slices.BinarySearchFunc(waiting, it.seq, func(w *item, s uint64) int { return cmp.Compare(w.seq, s) })
	return slices.Insert(waiting, i, it)
}

// coalesce settles it with p: the newer of it and p's effective event (by stream sequence) is
// the effective one, the older is settled with it. An older event can come after a newer one (a
// redelivery): it does not replace the newer data.
func (c *core) coalesce(p *pendingLesson, it *item) {
	p.items = append(p.items, it)
	if it.seq < p.eff.seq {
		return
	}
	g := c.groups[groupKey{it.mandator, it.ev.Action()}]
	size := int(it.size)
	g.bytes += size - p.size
	p.size = size
	p.eff = it
}

// addToGroup puts it into its group as lesson k's pending entry: p when not nil, else a new one.
func (c *core) addToGroup(st *lessonState, k lessonKey, it *item, p *pendingLesson) {
	gk := groupKey{it.mandator, it.ev.Action()}
	size := int(it.size)
	g := c.groups[gk]
	if g != nil && g.bytes+size > c.cfg.BatchMaxBytes {
		c.cut(gk, g)
		g = nil
	}
	if g == nil {
		g = &group{deadline: c.now.Add(c.cfg.BatchLinger)}
		c.groups[gk] = g
		c.at(g.deadline, func() {
			if c.groups[gk] == g {
				c.cut(gk, g)
			}
		})
	}
	if p == nil {
		p = &pendingLesson{}
	}
	*p = pendingLesson{key: k, st: st, eff: it, size: size}
	p.one[0] = it
	p.items = p.one[:1:1]
	g.lessons = append(g.lessons, p)
	g.bytes += size
	st.pending = p
	if len(g.lessons) >= c.cfg.BatchMaxLessons {
		c.cut(gk, g)
	}
}

// release frees a lesson after its batch settled and admits the events waiting behind it.
func (c *core) release(k lessonKey) {
	st := c.lessons[k]
	if st == nil {
		return
	}
	st.inflight = nil
	w := st.waiting
	st.waiting = nil
	if st.handBack {
		delete(c.lessons, k)
		if len(w) > 0 {
			c.log.Info("lesson's batch done; the events kept behind it since the pin moved go back (Nak)",
				zap.String("mandator", k.mandator), zap.String("lessonId", k.lessonID), zap.Int("handedBack", len(w)))
		}
		c.handBack(w)
		return
	}
	for i, it := range w {
		if st.pending == nil && st.inflight == nil {
			c.addToGroup(st, k, it, nil)
			continue
		}
		if st.pending != nil && st.pending.eff.ev.Action() == it.ev.Action() {
			c.coalesce(st.pending, it)
			continue
		}
		st.waiting = w[i:]
		break
	}
	if st.pending == nil && st.inflight == nil && len(st.waiting) == 0 {
		delete(c.lessons, k)
	}
}

// unpend takes the lesson's pending entry out of its group and puts its events back in front of
// the ones waiting: a batch found in the ledger (another instance's, older) takes the lesson first.
func (c *core) unpend(st *lessonState) {
	p := st.pending
	if p == nil {
		return
	}
	gk := groupKey{p.key.mandator, p.eff.ev.Action()}
	if g := c.groups[gk]; g != nil {
		if i := slices.Index(g.lessons, p); i >= 0 {
			g.lessons = slices.Delete(g.lessons, i, i+1)
			g.bytes -= p.size
		}
		if len(g.lessons) == 0 {
			delete(c.groups, gk)
		}
	}
	st.waiting = append(slices.Clone(p.items), st.waiting...)
	st.pending = nil
}

// hold puts bt in flight for lesson k. Finding 4: the gate invariant — never two batches of one
// lesson in flight — is asserted here; a violation is a bug that would import out of order.
func (c *core) hold(k lessonKey, bt *batch) {
	st := c.lessons[k]
	if st == nil {
		st = &lessonState{}
		c.lessons[k] = st
	}
	holdState(st, k, bt)
}

// holdState is hold for the lesson's known state st.
func holdState(st *lessonState, k lessonKey, bt *batch) {
	if st.inflight != nil && st.inflight != bt {
		panic(fmt.Sprintf("consumer: gate invariant broken: lesson %s/%s in batch %s and in batch %s", k.mandator, k.lessonID, st.inflight.key, bt.key))
	}
	st.inflight = bt
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

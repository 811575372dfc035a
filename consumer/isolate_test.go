package consumer

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// isoJM answers a coreDriver's effects as NATS and a JobManager would: a ledger in memory, a
// JobManager that fails (and applies nothing of) every batch holding a bad lesson, with the given
// message style, and records what was imported, published and acknowledged.
type isoJM struct {
	d     *coreDriver
	style string // lessons, anonymous, first-error
	bad   map[string]bool

	kv       map[string]rawRecord
	kvRev    uint64
	batches  map[string][]jobmanager.Job
	nextID   int
	imported []string // LektionIds of successful batches, in order of success
	submits  int
	outcomes []*schemas.Outcome
	dls      []uint64          // stream seqs dead-lettered
	settled  map[uint64]string // stream seq -> final ack body
	events   []string          // what happened, in order, for order assertions

	// stopAt, when it returns true for an effect, leaves that effect (and all later ones)
	// unanswered: a crash there.
	stopAt  func(effect) bool
	stopped bool
}

func newIsoJM(d *coreDriver, style string, bad ...string) *isoJM {
	j := &isoJM{d: d, style: style, bad: map[string]bool{}, kv: map[string]rawRecord{}, batches: map[string][]jobmanager.Job{},
		settled: map[uint64]string{}}
	for _, b := range bad {
		j.bad[b] = true
	}
	return j
}

func (j *isoJM) failMsgs(jobs []jobmanager.Job) []string {
	var msgs []string
	for _, job := range jobs {
		for _, l := range job.LektionList {
			if j.bad[l.LektionID] {
				msgs = append(msgs, fmt.Sprintf("Fehler: Ressource 'Raum 0' nicht gefunden (JobID %s, LektionId %s)", job.JobID, l.LektionID))
			}
		}
	}
	switch {
	case len(msgs) == 0:
		return nil
	case j.style == "anonymous":
		return []string{"Fehler: Validierung fehlgeschlagen"}
	case j.style == "first-error":
		return msgs[:1]
	}
	return msgs
}

// answer answers one effect; it reports false when the effect is left unanswered (a crash).
func (j *isoJM) answer(e effect) bool {
	if j.stopped || (j.stopAt != nil && j.stopAt(e)) {
		j.stopped = true
		return false
	}
	d := j.d
	switch e.kind {
	case effLedgerCreate:
		if _, ok := j.kv[e.key]; ok {
			d.answer(e, result{kind: errConflict, err: fmt.Errorf("key exists")})
			return true
		}
		j.kvRev++
		j.kv[e.key] = rawRecord{key: e.key, value: e.value, rev: j.kvRev}
		d.answer(e, result{rev: j.kvRev})
	case effLedgerUpdate:
		cur, ok := j.kv[e.key]
		if !ok || cur.rev != e.rev {
			d.answer(e, result{kind: errConflict, err: fmt.Errorf("wrong last sequence")})
			return true
		}
		j.kvRev++
		j.kv[e.key] = rawRecord{key: e.key, value: e.value, rev: j.kvRev}
		d.answer(e, result{rev: j.kvRev})
	case effLedgerDelete:
		delete(j.kv, e.key)
		d.answer(e, result{})
	case effLedgerGet:
		cur, ok := j.kv[e.key]
		if !ok {
			d.answer(e, result{kind: errNotFound, err: fmt.Errorf("not found")})
			return true
		}
		d.answer(e, result{rev: cur.rev, value: cur.value})
	case effLedgerList:
		d.answer(e, result{records: j.records()})
	case effSubmit:
		j.submits++
		j.nextID++
		id := fmt.Sprint(j.nextID)
		j.batches[id] = e.jobs
		var ls []string
		for _, job := range e.jobs {
			for _, l := range job.LektionList {
				ls = append(ls, l.LektionID)
			}
		}
		j.events = append(j.events, "submit "+strings.Join(ls, ","))
		d.answer(e, result{status: &jobmanager.BatchStatus{BatchID: id, ImportStatus: jobmanager.StatusAwaitingLessonCreation}})
	case effPoll:
		jobs := j.batches[e.batchID]
		st := &jobmanager.BatchStatus{BatchID: e.batchID, ImportStatus: jobmanager.StatusLessonsCreated}
		if msgs := j.failMsgs(jobs); msgs != nil {
			st.ImportStatus, st.ErrorMessages = jobmanager.StatusLessonsImportFailed, msgs
		} else {
			for _, job := range jobs {
				for _, l := range job.LektionList {
					j.imported = append(j.imported, l.LektionID)
				}
			}
		}
		d.answer(e, result{status: st})
	case effPublishOutcome:
		j.outcomes = append(j.outcomes, e.outcome)
		j.events = append(j.events, "outcome "+e.outcome.Data.Status+" "+strings.Join(e.outcome.Data.LessonIDs, ","))
		d.answer(e, result{})
	case effGetBody:
		d.answer(e, result{data: []byte("{}")})
	case effPublishDeadLetter:
		j.dls = append(j.dls, e.deadLetter.StreamSeq)
		d.answer(e, result{})
	case effAck:
		var acked []uint64
		for _, a := range e.acks {
			j.settled[a.seq] = string(e.body)
			acked = append(acked, a.seq)
		}
		d.answer(e, result{acked: acked})
	case effConsumerInfo:
		d.answer(e, result{info: consumerInfo{ackFloor: j.ackFloor(), delivered: d.seq, numAckPending: int(d.seq) - len(j.settled)}})
	case effStopPulling:
		d.answer(e, result{})
	case effFatal:
		j.d.t.Fatalf("the core stopped: %v", e.err)
	}
	return true
}

func (j *isoJM) ackFloor() uint64 {
	var f uint64
	for s := uint64(1); s <= j.d.seq; s++ {
		if _, ok := j.settled[s]; !ok {
			break
		}
		f = s
	}
	return f
}

func (j *isoJM) records() []rawRecord {
	var out []rawRecord
	for _, r := range j.kv {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b rawRecord) int { return strings.Compare(a.key, b.key) })
	return out
}

// run answers effects and lets time pass until nothing is left to do (or a crash point).
func (j *isoJM) run() {
	j.d.t.Helper()
	for range 2000 {
		j.d.collect()
		progressed := false
		for len(j.d.effs) > 0 && !j.stopped {
			e := j.d.effs[0]
			j.d.effs = j.d.effs[1:]
			if e.id == 0 && e.kind != effFatal {
				continue
			}
			if !j.answer(e) {
				j.d.effs = append([]effect{e}, j.d.effs...) // left unanswered, as it was
				break
			}
			progressed = true
		}
		if j.stopped {
			return
		}
		if !progressed {
			if len(j.d.c.batches) == 0 && len(j.d.c.bySeq) == 0 && len(j.kv) == 0 {
				return
			}
			j.d.advance(100 * time.Millisecond)
		}
	}
	j.d.t.Fatalf("no quiescence: batches %d, held %d, ledger %d", len(j.d.c.batches), len(j.d.c.bySeq), len(j.kv))
}

func (j *isoJM) outcomeOf(key string) *schemas.Outcome {
	for _, o := range j.outcomes {
		if o.ID == key {
			return o
		}
	}
	return nil
}

// redeliver hands the core the same message again (same body, sequence), delivered a second time.
func redeliver(d *coreDriver, it *item) {
	d.t.Helper()
	body, err := json.Marshal(it.ev)
	require.NoError(d.t, err)
	again := decodeItem(&d.c.cfg, rawMsg{reply: it.reply, subject: it.subject, data: body, seq: it.seq, numDelivered: 2, stored: it.stored})
	require.NoError(d.t, again.err)
	d.c.deliver(d.now, again)
	d.collect()
}

// deliverAll delivers one create event per lesson and returns the items.
func deliverAll(d *coreDriver, lessons ...string) map[string]*item {
	out := map[string]*item{}
	for _, l := range lessons {
		out[l] = d.deliver(schemas.TypeLessonCreated, l)
	}
	return out
}

func lessonNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("L-%d", i+1)
	}
	return out
}

// assertSettledOnce: every delivered event is settled exactly once (acked or terminated), the bad
// ones terminated with import_failed and dead-lettered once, the others acked, every good lesson
// imported exactly once and no bad one.
func (j *isoJM) assertSettledOnce(t *testing.T, items map[string]*item) {
	t.Helper()
	dl := map[uint64]int{}
	for _, s := range j.dls {
		dl[s]++
	}
	count := map[string]int{}
	for _, l := range j.imported {
		count[l]++
	}
	for l, it := range items {
		if j.bad[l] {
			assert.Equal(t, string(termWith(schemas.ReasonImportFailed)), j.settled[it.seq], "bad lesson %s terminated", l)
			assert.Equal(t, 1, dl[it.seq], "bad lesson %s dead-lettered once", l)
			assert.Zero(t, count[l], "bad lesson %s never imported", l)
			continue
		}
		assert.Equal(t, string(ackAck), j.settled[it.seq], "good lesson %s acked", l)
		assert.Zero(t, dl[it.seq], "good lesson %s not dead-lettered", l)
		assert.Equal(t, 1, count[l], "good lesson %s imported once", l)
	}
	settlements := map[string]int{}
	for _, o := range j.outcomes {
		for _, id := range o.Data.EventIDs {
			settlements[id]++
		}
	}
	for l, it := range items {
		assert.Equal(t, 1, settlements[it.ev.ID], "event of %s settled by exactly one outcome", l)
	}
}

// TestIsolationByLesson: JobManager names the bad lesson; only it is dead-lettered, the others go
// on at once in one new batch with new JobIDs and succeed. The parent's outcome names them as
// resubmitted.
func TestIsolationByLesson(t *testing.T) {
	d := newCoreDriver(t, nil)
	jm := newIsoJM(d, "lessons", "L-2")
	items := deliverAll(d, "L-1", "L-2", "L-3")
	jm.run()

	require.Len(t, jm.outcomes, 2)
	parent, child := jm.outcomes[0].Data, jm.outcomes[1].Data
	assert.Equal(t, schemas.StatusFailed, parent.Status)
	assert.Equal(t, schemas.ReasonImportFailed, parent.Reason)
	assert.Equal(t, []string{"L-2"}, parent.LessonIDs)
	assert.Equal(t, []string{items["L-2"].ev.ID}, parent.EventIDs)
	assert.Equal(t, []string{"L-1", "L-3"}, parent.ResubmittedLessonIDs)
	assert.Equal(t, []string{items["L-1"].ev.ID, items["L-3"].ev.ID}, parent.ResubmittedEventIDs)
	assert.Equal(t, schemas.StatusSucceeded, child.Status)
	assert.Equal(t, []string{"L-1", "L-3"}, child.LessonIDs)
	assert.NotEqual(t, parent.JobIDs, child.JobIDs, "new JobIDs")
	assert.Equal(t, 2, jm.submits)
	jm.assertSettledOnce(t, items)
	assert.Equal(t, 1.0, metricValue(t, d.c.m.lessonsIsolated))
	assert.Equal(t, 2.0, metricValue(t, d.c.m.lessonsResubmitted))
	assert.Equal(t, 1.0, metricValue(t, d.c.m.isolationSubmits))
	assert.Empty(t, jm.kv, "every record gone")
}

// TestIsolationAnonymous: JobManager names nothing; the batch is bisected until the bad lessons
// fail alone. Every step publishes its outcome, also those with no lesson at fault.
func TestIsolationAnonymous(t *testing.T) {
	for _, style := range []string{"anonymous", "first-error"} {
		t.Run(style, func(t *testing.T) {
			d := newCoreDriver(t, nil)
			jm := newIsoJM(d, style, "L-3", "L-11")
			items := deliverAll(d, lessonNames(16)...)
			jm.run()
			jm.assertSettledOnce(t, items)
			for _, o := range jm.outcomes {
				if o.Data.Status == schemas.StatusFailed {
					assert.NotNil(t, o.Data.ResubmittedEventIDs)
					assert.NotNil(t, o.Data.ResubmittedLessonIDs)
				}
			}
			assert.LessOrEqual(t, jm.submits, 2*2*4+2, "within 2·k·⌈log2 n⌉ + 2")
			assert.Empty(t, jm.kv)
		})
	}
}

// TestIsolateOff: the whole batch fails as JobManager said, as before isolation.
func TestIsolateOff(t *testing.T) {
	d := newCoreDriver(t, func(c *Config) { c.IsolateOff = true })
	jm := newIsoJM(d, "lessons", "L-2")
	items := deliverAll(d, "L-1", "L-2", "L-3")
	jm.run()
	require.Len(t, jm.outcomes, 1)
	o := jm.outcomes[0].Data
	assert.Equal(t, []string{"L-1", "L-2", "L-3"}, o.LessonIDs)
	assert.Empty(t, o.ResubmittedLessonIDs)
	assert.NotNil(t, o.ResubmittedLessonIDs, "present, empty")
	assert.Equal(t, 1, jm.submits)
	assert.Len(t, jm.dls, 3)
	for _, it := range items {
		assert.Equal(t, string(termWith(schemas.ReasonImportFailed)), jm.settled[it.seq])
	}
	assert.Zero(t, metricValue(t, d.c.m.isolationSubmits))
}

// TestIsolationKeepsLessonOrder: a later update of a resubmitted lesson waits in the gate until
// the child batch that carries the lesson settled; it never reaches JobManager first.
func TestIsolationKeepsLessonOrder(t *testing.T) {
	d := newCoreDriver(t, nil)
	jm := newIsoJM(d, "lessons", "L-2")
	items := deliverAll(d, "L-1", "L-2", "L-3")
	// Run up to the child's submit, then deliver an update of L-1.
	jm.stopAt = func(e effect) bool { return e.kind == effSubmit && jm.submits == 1 }
	jm.run()
	require.True(t, jm.stopped)
	upd := d.deliver(schemas.TypeLessonUpdated, "L-1")
	d.advance(d.c.cfg.BatchLinger)
	d.none(effLedgerCreate) // the update is held behind the child batch
	jm.stopAt, jm.stopped = nil, false
	jm.run()
	require.Len(t, jm.events, 6)
	assert.Equal(t, []string{"submit L-1,L-2,L-3", "outcome failed L-2", "submit L-1,L-3", "outcome succeeded L-1,L-3",
		"submit L-1", "outcome succeeded L-1"}, jm.events)
	assert.Equal(t, string(ackAck), jm.settled[upd.seq])
	assert.Equal(t, string(ackAck), jm.settled[items["L-1"].seq])
	assert.Equal(t, string(ackAck), jm.settled[items["L-3"].seq])
	assert.Equal(t, string(termWith(schemas.ReasonImportFailed)), jm.settled[items["L-2"].seq])
}

// TestIsolationCrashBeforeParentOutcome: the process dies after the parent's verdict is in the
// ledger and before its outcome is published: before a child record was created, or after. The
// restarted core rebuilds a missing child from the verdict, publishes the parent's outcome (the
// same one), and the child goes on: no lesson lost, none imported twice, every event settled once.
func TestIsolationCrashBeforeParentOutcome(t *testing.T) {
	verdictWritten := func(jm *isoJM) func(effect) bool {
		return func(e effect) bool {
			if e.kind != effLedgerCreate {
				return false
			}
			var r record
			require.NoError(t, json.Unmarshal(e.value, &r))
			return r.Parent != ""
		}
	}
	tests := []struct {
		name string
		stop func(*isoJM) func(effect) bool
	}{
		{"before the child's record", verdictWritten},
		{"after the child's record", func(jm *isoJM) func(effect) bool {
			return func(e effect) bool { return e.kind == effPublishOutcome }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newCoreDriver(t, nil)
			jm := newIsoJM(d, "lessons", "L-2")
			items := deliverAll(d, "L-1", "L-2", "L-3", "L-4")
			jm.stopAt = tt.stop(jm)
			jm.run()
			require.True(t, jm.stopped)
			require.Empty(t, jm.outcomes, "crashed before the parent's outcome")
			require.Equal(t, 1, jm.submits)
			var parentKey string
			for k, r := range jm.kv {
				rec, err := parseRecord(k, r.value)
				require.NoError(t, err)
				if rec.Verdict != nil {
					parentKey = k
					require.NotNil(t, rec.Verdict.Split, "the verdict carries the split")
				}
			}
			require.NotEmpty(t, parentKey)

			// Restart: a new core on the same ledger; every message comes back.
			d2 := newCoreDriverWith(t, nil, facts{}, jm.records(), consumerInfo{numAckPending: len(items), delivered: d.seq})
			d2.seq = d.seq
			jm.d, jm.stopAt, jm.stopped = d2, nil, false
			for _, l := range []string{"L-1", "L-2", "L-3", "L-4"} {
				redeliver(d2, items[l])
			}
			jm.run()

			p := jm.outcomeOf(parentKey)
			require.NotNil(t, p, "the parent's outcome is published after the restart")
			assert.Equal(t, []string{"L-2"}, p.Data.LessonIDs)
			assert.Equal(t, []string{items["L-2"].ev.ID}, p.Data.EventIDs)
			assert.Equal(t, []string{"L-1", "L-3", "L-4"}, p.Data.ResubmittedLessonIDs)
			assert.Equal(t, []string{items["L-1"].ev.ID, items["L-3"].ev.ID, items["L-4"].ev.ID}, p.Data.ResubmittedEventIDs)
			assert.Len(t, jm.outcomes, 2)
			assert.Equal(t, 2, jm.submits, "the child submitted once")
			jm.assertSettledOnce(t, items)
			assert.Empty(t, jm.kv)
		})
	}
}

// TestIsolationWaitsWhileShuttingDown: a batch that fails while the bridge shuts down is not
// split then (no new batches during the grace) and not failed as a whole either: its record stays
// "accepted", so the next start polls it again and isolates it (the simulation's seed 52 failed
// good lessons here before).
func TestIsolationWaitsWhileShuttingDown(t *testing.T) {
	d := newCoreDriver(t, nil)
	jm := newIsoJM(d, "lessons", "L-2")
	deliverAll(d, "L-1", "L-2", "L-3")
	jm.stopAt = func(e effect) bool { return e.kind == effPoll }
	jm.run()
	require.True(t, jm.stopped)
	poll := d.expect(effPoll)
	d.c.stop(d.now)
	d.answer(d.expect(effStopPulling), result{})
	jm.stopAt, jm.stopped = nil, false
	jm.answer(poll)
	d.none(effPublishOutcome)
	d.none(effPublishDeadLetter)
	d.none(effLedgerUpdate)
	d.none(effAck)
	require.Len(t, jm.kv, 1)
	for k, r := range jm.kv {
		rec, err := parseRecord(k, r.value)
		require.NoError(t, err)
		assert.Equal(t, stateAccepted, rec.State)
	}
	assert.Empty(t, d.c.batches)
	d.expect(effDone)
}

package consumer

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/internal/isolation"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// Failure isolation (contract 4a, docs/isolation.md): the engine side of internal/isolation.
//
// A batch that JobManager failed with a data-class LessonsImportFailed (not in doubt) is handed to
// isolation.Plan. Its Decision splits the batch: the lessons at fault stay with it (its outcome
// settles them, their events are dead-lettered and terminated); every Part becomes a child batch
// (new key, new JobIDs) that takes over the part's lessons in the gate and their held messages.
//
// Crash safety, in this order:
//
//  1. the parent's settling ledger update carries the verdict with the split: the Decision, each
//     child's key, JobIDs and message sequences, and the resubmitted event and lesson ids;
//     the parent's record then names only the messages of the lessons at fault;
//  2. the children's records are created (state recorded, with their isolation State, parent and
//     root key), and only then submitted;
//  3. the parent's outcome is published.
//
// After a crash a settling parent whose child record is missing rebuilds it from its verdict
// (rebuildChildren, validated with Decision.Validate): the child's messages attach to the rebuilt
// record, which is created in the ledger before it is submitted with the JobIDs of the verdict.

// split is what a parent's verdict records about its isolation step.
type split struct {
	Decision             isolation.Decision `json:"decision"`
	Children             []splitChild       `json:"children,omitempty"`
	ResubmittedEventIDs  []string           `json:"resubmittedEventIds,omitempty"`
	ResubmittedLessonIDs []string           `json:"resubmittedLessonIds,omitempty"`
}

// splitChild names one follow-up batch of a split: enough to rebuild its record.
type splitChild struct {
	Key    string   `json:"key"`
	JobIDs []string `json:"jobIds"` // one per group of Part.Jobs, in that order
	Seqs   seqList  `json:"seqs"`   // every message the child settles
}

// isolationLessons lists a batch's lessons in record order (jobs, then each job's LektionList),
// with the stream sequence of the effective event as Ref.
func isolationLessons(jobs []jobmanager.Job, jobSeqs [][]uint64) []isolation.Lesson {
	var out []isolation.Lesson
	for j, job := range jobs {
		for i, l := range job.LektionList {
			var ref uint64
			if j < len(jobSeqs) && i < len(jobSeqs[j]) {
				ref = jobSeqs[j][i]
			}
			out = append(out, isolation.Lesson{ID: l.LektionID, JobID: job.JobID, Ref: ref})
		}
	}
	return out
}

// isolate tries to split a failed batch. It returns false when the batch is not isolated (isolation
// off, nothing to split, or a batch not whole here): the caller settles it as JobManager said.
func (c *core) isolate(bt *batch, st *jobmanager.BatchStatus) bool {
	if c.cfg.IsolateOff || bt.partial || bt.ledgerRev == 0 {
		return false
	}
	lessons := isolationLessons(bt.jobs, bt.jobSeqs)
	if len(lessons) == 0 || len(lessons) != len(bt.lessons) {
		return false // nothing to split, or a recovered batch whose messages did not all come back
	}
	byKey := map[lessonKey]*pendingLesson{}
	for _, p := range bt.lessons {
		byKey[p.key] = p
	}
	for _, l := range lessons {
		if p := byKey[lessonKey{bt.mandator, l.ID}]; p == nil || p.eff == nil || len(p.items) == 0 {
			return false // not every lesson's messages are here (a partly recovered batch)
		}
	}
	state := bt.iso
	if state == nil {
		s, err := isolation.Start(len(lessons), isolation.Limits{})
		if err != nil {
			return false
		}
		state = &s
	}
	d, err := isolation.Plan(*state, lessons, st.ErrorMessages)
	if err != nil {
		bt.log.Error("failure isolation not possible; the batch fails as a whole", zap.Error(err))
		return false
	}
	if d.Step == isolation.StepNotIsolated || len(d.Parts) == 0 {
		if d.Step != isolation.StepNotIsolated && len(d.Parts) == 0 && d.Step != isolation.StepSingle {
			bt.log.Warn("failure isolation: budget spent; the lessons left fail as JobManager said",
				zap.Int("unproven", len(d.Unproven)), zap.Int("budget", state.Budget))
		}
		if d.Step == isolation.StepSingle {
			c.m.lessonsIsolated.Add(float64(len(d.AtFault)))
		}
		return false
	}

	if c.phase != phaseRunning {
		// Shutting down: no new batches now. The record stays "accepted"; at the next start (here
		// or on another instance) the batch is polled again and isolated then.
		bt.log.Info("failed batch left for failure isolation at the next start (shutting down)")
		// Its lessons stay held here until the process ends: the events waiting behind them must
		// not pass the batch, whose lessons the next start may resubmit (simulation seed 5831:
		// a waiting update of such a lesson was cut into a new batch while draining).
		bt.keepLessons = true
		c.released(bt, false)
		return true
	}
	root := bt.root
	if root == "" {
		root = bt.key
	}
	sp := &split{Decision: d, ResubmittedEventIDs: []string{}, ResubmittedLessonIDs: []string{}}
	var kids []*batch
	moved := map[*item]bool{}
	for _, part := range d.Parts {
		kid := &batch{key: "b-" + c.newUUID(), mandator: bt.mandator, action: bt.action, state: stateRecorded,
			created: c.now, parent: bt.key, root: root}
		ps := part.State
		kid.iso = &ps
		sc := splitChild{Key: kid.key}
		for _, group := range part.Jobs(lessons) {
			job := jobmanager.Job{JobID: c.newJobID()}
			var seqs []uint64
			for _, i := range group {
				p := byKey[lessonKey{bt.mandator, lessons[i].ID}]
				job.LektionList = append(job.LektionList, toLesson(p.eff.ev))
				seqs = append(seqs, p.eff.seq)
				kid.lessons = append(kid.lessons, p)
				for _, it := range p.items {
					kid.items = append(kid.items, it)
					moved[it] = true
					sc.Seqs = append(sc.Seqs, it.seq)
					if it.ev != nil {
						sp.ResubmittedEventIDs = append(sp.ResubmittedEventIDs, it.ev.ID)
					}
				}
				sp.ResubmittedLessonIDs = append(sp.ResubmittedLessonIDs, p.key.lessonID)
			}
			kid.jobs = append(kid.jobs, job)
			kid.jobSeqs = append(kid.jobSeqs, seqs)
			sc.JobIDs = append(sc.JobIDs, job.JobID)
		}
		kid.setLogger(c.log)
		sp.Children = append(sp.Children, sc)
		kids = append(kids, kid)
	}
	// The parent keeps the lessons at fault and their messages.
	var keepL []*pendingLesson
	for _, p := range bt.lessons {
		if !moved[p.items[0]] {
			keepL = append(keepL, p)
		}
	}
	var keepI []*item
	for _, it := range bt.items {
		if !moved[it] {
			keepI = append(keepI, it)
		}
	}
	bt.lessons, bt.items = keepL, keepI
	bt.dropTail()
	bt.split, bt.kids = sp, kids
	for _, kid := range kids {
		bt.followUps = append(bt.followUps, kid.key)
	}

	atFault := make([]string, 0, len(d.AtFault))
	for _, i := range d.AtFault {
		atFault = append(atFault, lessons[i].ID)
	}
	bt.log.Warn("failure isolation step", zap.String("step", string(d.Step)), zap.Strings("lessonsAtFault", atFault),
		zap.Int("unproven", len(d.Unproven)), zap.Int("resubmitted", len(sp.ResubmittedLessonIDs)),
		zap.Strings("followUpBatchKeys", bt.followUps), zap.Int("depth", state.Depth), zap.Int("budget", state.Budget))
	c.m.lessonsIsolated.Add(float64(len(d.AtFault) - len(d.Unproven)))
	c.m.lessonsResubmitted.Add(float64(len(sp.ResubmittedLessonIDs)))
	c.m.isolationSubmits.Add(float64(len(kids)))

	c.settle(bt, outcomeFor(bt, schemas.ReasonImportFailed, schemas.ErrorClassData, string(st.ImportStatus), st.ErrorMessages))
	return true
}

// startChildren registers a split's child batches, hands them the parent's lessons in the gate,
// creates their ledger records and then runs then (the parent's outcome). Each child is submitted
// once its record exists.
func (c *core) startChildren(bt *batch, then func()) {
	kids := bt.kids
	bt.kids = nil
	left := len(kids)
	if left == 0 {
		then()
		return
	}
	for _, kid := range kids {
		c.batches[kid.key] = kid
		for _, p := range kid.lessons {
			st := c.lessons[p.key]
			switch {
			case st != nil && st.inflight == bt:
				st.inflight = kid // the child takes the lesson over: it never leaves the gate
			case st != nil && st.inflight != nil:
				// A recovered parent that found the lesson in flight here (see indexRecords): the
				// child takes it over when that batch lets go.
				c.missed[p.key] = append(c.missed[p.key], kid)
			default:
				c.hold(p.key, kid)
			}
		}
		for _, it := range kid.items {
			c.bySeq[it.seq] = it
		}
	}
	c.m.inFlight.Set(float64(len(c.batches)))
	for _, kid := range kids {
		c.ledgerWrite(kid, "ledger record (isolation)", func() {
			c.queueSubmit(kid)
			left--
			if left == 0 {
				then()
			}
		})
	}
}

// narrowSplit applies a settling record's split: the record settles only the messages not handed
// to a child.
func narrowSplit(r *record) {
	if r.Verdict == nil || r.Verdict.Split == nil {
		return
	}
	moved := map[uint64]bool{}
	for _, ch := range r.Verdict.Split.Children {
		for _, s := range ch.Seqs {
			moved[s] = true
		}
	}
	var keep seqList
	for _, s := range r.Seqs {
		if !moved[s] {
			keep = append(keep, s)
		}
	}
	r.Seqs = keep
}

// rebuildChildren returns the records of a split's children that are missing from the ledger
// listing (keys in have), rebuilt from the parent's verdict.
func rebuildChildren(parent *record, have map[string]bool) ([]*record, error) {
	if parent.Verdict == nil || parent.Verdict.Split == nil {
		return nil, nil
	}
	sp := parent.Verdict.Split
	var jobs []jobmanager.Job
	var jobSeqs [][]uint64
	for _, j := range parent.Jobs {
		job := jobmanager.Job{JobID: j.JobID}
		for _, l := range j.Lessons {
			job.LektionList = append(job.LektionList, jobmanager.Lesson{LektionID: l})
		}
		jobs = append(jobs, job)
		jobSeqs = append(jobSeqs, j.Seqs)
	}
	lessons := isolationLessons(jobs, jobSeqs)
	if err := sp.Decision.Validate(len(lessons)); err != nil {
		return nil, fmt.Errorf("%w: record %s: isolation verdict: %v", ErrLedgerFormat, parent.Key, err)
	}
	if len(sp.Children) != len(sp.Decision.Parts) {
		return nil, fmt.Errorf("%w: record %s: isolation verdict names %d children for %d parts", ErrLedgerFormat,
			parent.Key, len(sp.Children), len(sp.Decision.Parts))
	}
	root := parent.Root
	if root == "" {
		root = parent.Key
	}
	var out []*record
	for k, part := range sp.Decision.Parts {
		ch := sp.Children[k]
		if have[ch.Key] {
			continue
		}
		groups := part.Jobs(lessons)
		if len(groups) != len(ch.JobIDs) {
			return nil, fmt.Errorf("%w: record %s: child %s has %d JobIDs for %d jobs", ErrLedgerFormat, parent.Key,
				ch.Key, len(ch.JobIDs), len(groups))
		}
		ps := part.State
		r := &record{Version: recordVersion, Key: ch.Key, Mandator: parent.Mandator, Action: parent.Action, State: stateRecorded,
			Seqs: ch.Seqs, Created: parent.Verdict.FinishedAt, Isolation: &ps, Parent: parent.Key, Root: root, rebuilt: true}
		for g, group := range groups {
			rj := recordJob{JobID: ch.JobIDs[g]}
			for _, i := range group {
				rj.Seqs = append(rj.Seqs, lessons[i].Ref)
				rj.Lessons = append(rj.Lessons, lessons[i].ID)
			}
			r.Jobs = append(r.Jobs, rj)
		}
		out = append(out, r)
	}
	return out, nil
}

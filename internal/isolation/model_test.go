package isolation

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
)

// style is how the JobManager model words a failed batch's ErrorMessages (the simulator's styles,
// see jobmanagertest.ErrorStyle).
type style int

const (
	styleLessons   style = iota // one message per bad lesson, naming it and its JobID
	styleJobID                  // one message per job with a bad lesson, naming only the JobID
	styleAnonymous              // one message naming nothing
	styleFirst                  // only the first message of styleLessons
	styleCount
)

func (s style) String() string {
	return [...]string{"lessons", "jobid", "anonymous", "first-error"}[s]
}

// jobManager answers a submitted batch: whether it failed, and its ErrorMessages.
type jobManager interface {
	submit(lessons []Lesson) (failed bool, msgs []string)
}

// model is a JobManager that fails exactly the batches holding a bad lesson, atomically.
type model struct {
	bad   map[string]bool
	style style
	// chaos, when set, replaces the model by one that fails batches at random and names random
	// lessons of them, to show that no answer makes isolation loop.
	chaos *rand.Rand
}

// submit answers a batch: failed and ErrorMessages.
func (m model) submit(lessons []Lesson) (bool, []string) {
	if m.chaos != nil {
		if m.chaos.IntN(3) == 0 {
			return false, nil
		}
		var msgs []string
		for range m.chaos.IntN(3) {
			l := lessons[m.chaos.IntN(len(lessons))]
			if m.chaos.IntN(2) == 0 {
				msgs = append(msgs, "Fehler: Lektion "+l.ID+" ungültig")
			} else {
				msgs = append(msgs, "Fehler: Validierung fehlgeschlagen (JobID "+l.JobID+")")
			}
		}
		return true, msgs
	}
	var msgs []string
	failedJobs := map[string]bool{}
	for _, l := range lessons {
		if !m.bad[l.ID] {
			continue
		}
		switch m.style {
		case styleLessons, styleFirst:
			msgs = append(msgs, fmt.Sprintf("Fehler: Ressource 'Raum X' nicht gefunden (JobID %s, LektionId %s)", l.JobID, l.ID))
		case styleJobID:
			if !failedJobs[l.JobID] {
				msgs = append(msgs, fmt.Sprintf("Fehler: Validierung fehlgeschlagen (JobID %s)", l.JobID))
			}
		case styleAnonymous:
			if len(msgs) == 0 {
				msgs = append(msgs, "Fehler: Validierung fehlgeschlagen")
			}
		}
		failedJobs[l.JobID] = true
	}
	if len(failedJobs) == 0 {
		return false, nil
	}
	if m.style == styleFirst {
		msgs = msgs[:1]
	}
	return true, msgs
}

// outcome is what an isolation driven to its end did.
type outcome struct {
	submits  int            // JobManager submits, the original batch's included
	atFault  map[string]int // LektionId -> times settled at fault
	proven   map[string]bool
	imported map[string]int // LektionId -> times settled by a successful batch
	steps    int
	maxDepth int
	problems []string // broken invariants, empty when all held
}

// isolate submits an original batch of ids (jobs of jobSize lessons) to jm and follows every
// Decision until nothing is left, taking the open batches in an order drawn from rnd (nil: first
// in, first out), as an engine with several batches in flight would.
func isolate(jm jobManager, ids []string, jobSize int, lim Limits, rnd *rand.Rand) outcome {
	out := outcome{atFault: map[string]int{}, proven: map[string]bool{}, imported: map[string]int{}}
	type open struct {
		lessons []Lesson
		state   State
	}
	jobs := 0
	newJob := func() string { jobs++; return fmt.Sprintf("lb-20251222-%06d", jobs) }
	var first []Lesson
	var job string
	for i, id := range ids {
		if i%jobSize == 0 {
			job = newJob()
		}
		first = append(first, Lesson{ID: id, JobID: job, Ref: uint64(i)})
	}
	st, err := Start(len(first), lim)
	if err != nil {
		out.problems = append(out.problems, err.Error())
		return out
	}
	queue := []open{{first, st}}
	for len(queue) > 0 {
		k := 0
		if rnd != nil {
			k = rnd.IntN(len(queue))
		}
		b := queue[k]
		queue = slices.Delete(queue, k, k+1)
		out.submits++
		out.maxDepth = max(out.maxDepth, b.state.Depth)
		if out.submits > 100000 {
			out.problems = append(out.problems, "more than 100000 submits: a loop")
			return out
		}
		failed, msgs := jm.submit(b.lessons)
		if !failed {
			for _, l := range b.lessons {
				out.imported[l.ID]++
			}
			continue
		}
		d, err := Plan(b.state, b.lessons, msgs)
		if err != nil {
			out.problems = append(out.problems, err.Error())
			return out
		}
		out.steps++
		if err := d.Validate(len(b.lessons)); err != nil {
			out.problems = append(out.problems, err.Error())
			return out
		}
		unproven := map[int]bool{}
		for _, i := range d.Unproven {
			unproven[i] = true
		}
		for _, i := range d.AtFault {
			out.atFault[b.lessons[i].ID]++
			if !unproven[i] {
				out.proven[b.lessons[i].ID] = true
			}
		}
		spent := 0
		for _, p := range d.Parts {
			spent += 1 + p.State.Budget
			if p.State.Depth != b.state.Depth+1 {
				out.problems = append(out.problems, fmt.Sprintf("part depth %d under depth %d", p.State.Depth, b.state.Depth))
			}
			where := map[string]bool{}
			var next []Lesson
			for _, job := range p.Jobs(b.lessons) {
				id := newJob()
				for _, i := range job {
					next = append(next, Lesson{ID: b.lessons[i].ID, JobID: id, Ref: b.lessons[i].Ref})
					where[b.lessons[i].ID] = true
				}
			}
			for _, i := range d.AtFault {
				if where[b.lessons[i].ID] {
					out.problems = append(out.problems, "lesson "+b.lessons[i].ID+" both at fault and resubmitted")
				}
			}
			queue = append(queue, open{next, p.State})
		}
		if spent > b.state.Budget {
			out.problems = append(out.problems, fmt.Sprintf("parts cost %d of a budget of %d", spent, b.state.Budget))
		}
	}
	return out
}

// ceilLog2 is ⌈log2 n⌉ for n ≥ 1.
func ceilLog2(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

// bound is the submits (the original's included) that isolating k bad lessons among n may cost.
func bound(k, n int) int {
	if k == 0 {
		return 1
	}
	return 2*k*ceilLog2(n) + 2
}

// lessonIDs returns n LektionIds; every seventh is numeric (the model's messages name it after
// "LektionId", which Attribute needs for numeric ids).
func lessonIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		if i%7 == 3 {
			ids[i] = fmt.Sprint(100000 + i)
		} else {
			ids[i] = fmt.Sprintf("L-%d", i)
		}
	}
	return ids
}

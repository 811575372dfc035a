package isolation

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/lessonbridge/lessonbridge/jobmanager"
)

// Version is the V of the States and Decisions this package writes. A State or Decision with
// another V does not decode.
const Version = 1

// DefaultMaxSubmits is the hard cap on the submits of one original batch's isolation when
// Limits.MaxSubmits is zero. Below it, the budget is 2·n − 2 for n lessons.
const DefaultMaxSubmits = 1000

// leafSize is the largest suspected set submitted lesson by lesson instead of in halves: for up
// to four lessons that is never more submits than halving, and fewer rounds.
const leafSize = 4

// Limits bound an isolation.
type Limits struct {
	// MaxSubmits caps the submits for one original batch, over all its steps. Zero means
	// DefaultMaxSubmits; negative is invalid.
	MaxSubmits int
}

// Lesson is one lesson of a failed batch. A batch's lessons are listed in the order of its jobs
// and, within a job, of the job's LektionList.
type Lesson struct {
	ID    string // LektionId, as sent to JobManager
	JobID string // JobID of the job that carried it
	Ref   uint64 // the caller's handle (e.g. the stream sequence of its event); not interpreted
}

// State is where an isolation stands for one batch: the original batch's comes from Start, and
// each Part of a Decision carries the State of the new batch it becomes. The engine persists it
// with the batch (JSON) and hands it back to Plan if that batch fails. The zero State is not valid.
type State struct {
	V int `json:"v"`
	// Budget is the number of submits this batch's isolation may still make, for all the steps
	// below it: its own parts and theirs.
	Budget int `json:"budget"`
	// Depth counts the isolation steps above this batch: 0 for the original batch, 1 for its parts.
	Depth int `json:"depth"`
}

// Start returns the State of an original batch of n lessons: Depth 0, Budget 2·n − 2 capped at
// lim.MaxSubmits (DefaultMaxSubmits when zero).
func Start(n int, lim Limits) (State, error) {
	if n < 1 {
		return State{}, fmt.Errorf("isolation: start: lessons %d: want at least 1", n)
	}
	if lim.MaxSubmits < 0 {
		return State{}, fmt.Errorf("isolation: start: MaxSubmits %d: want 0 (default) or more", lim.MaxSubmits)
	}
	limit := lim.MaxSubmits
	if limit == 0 {
		limit = DefaultMaxSubmits
	}
	return State{V: Version, Budget: min(2*n-2, limit), Depth: 0}, nil
}

// Validate reports a State that Plan would reject.
func (s State) Validate() error {
	switch {
	case s.V != Version:
		return fmt.Errorf("isolation: state: v %d: want %d", s.V, Version)
	case s.Budget < 0:
		return fmt.Errorf("isolation: state: budget %d: want 0 or more", s.Budget)
	case s.Depth < 0:
		return fmt.Errorf("isolation: state: depth %d: want 0 or more", s.Depth)
	}
	return nil
}

// UnmarshalJSON decodes a State and validates it.
func (s *State) UnmarshalJSON(data []byte) error {
	type plain State
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return fmt.Errorf("isolation: state: %w", err)
	}
	if err := State(p).Validate(); err != nil {
		return err
	}
	*s = State(p)
	return nil
}

// Step says what a Decision did, for logs and metrics.
type Step string

// The steps.
const (
	// StepAttributed: ErrorMessages named lessons (at fault) or JobIDs (their jobs bisected).
	StepAttributed Step = "attributed"
	// StepBisected: nothing could be attributed; the batch is split.
	StepBisected Step = "bisected"
	// StepSingle: a batch of one lesson failed; that lesson is at fault.
	StepSingle Step = "single"
	// StepNotIsolated: the ErrorMessages report a Duplicate JobId, which isolation must not handle
	// (in doubt, or our own JobIDs resent): the whole batch fails as JobManager said.
	StepNotIsolated Step = "not_isolated"
)

// Kind says why a Part is submitted.
type Kind string

// The kinds.
const (
	// KindRest holds the lessons neither at fault nor suspected: expected to succeed.
	KindRest Kind = "rest"
	// KindHalf is one half of a suspected set.
	KindHalf Kind = "half"
	// KindSingle is one lesson of a small suspected set, submitted alone.
	KindSingle Kind = "single"
)

// Part is a set of a failed batch's lessons to submit as one new batch with new JobIDs.
type Part struct {
	Kind    Kind    `json:"kind"`
	Lessons Indices `json:"lessons"` // ascending positions in the failed batch's lessons; never empty
	State   State   `json:"state"`   // the new batch's State
}

// Jobs groups the part's lessons into jobs as the failed batch did: one job per JobID of the
// failed batch, in order of first appearance, each listing its lessons' positions in ascending
// order. lessons is the failed batch's list.
func (p Part) Jobs(lessons []Lesson) [][]int {
	var jobs [][]int
	at := map[string]int{}
	for _, i := range p.Lessons {
		k, ok := at[lessons[i].JobID]
		if !ok {
			k = len(jobs)
			at[lessons[i].JobID] = k
			jobs = append(jobs, nil)
		}
		jobs[k] = append(jobs[k], i)
	}
	return jobs
}

// Decision is what to do about one failed batch. Every lesson of the batch is either in AtFault
// or in exactly one Part.
type Decision struct {
	V    int  `json:"v"`
	Step Step `json:"step"`
	// AtFault are the lessons the failed batch's outcome settles: their events are dead-lettered
	// with reason import_failed and the failed batch's id (contract 4a).
	AtFault Indices `json:"atFault"`
	// Unproven is the part of AtFault that isolation did not show to be at fault: the budget ran
	// out before, or the step is StepNotIsolated. They fail as JobManager said.
	Unproven Indices `json:"unproven,omitempty"`
	// Parts are the new batches, in the order to submit them. Their lessons are the failed batch's
	// resubmittedLessonIds.
	Parts []Part `json:"parts,omitempty"`
}

// Submits is the number of new batches the decision asks for.
func (d Decision) Submits() int { return len(d.Parts) }

// Exhausted reports whether some lesson fails only because the budget ran out.
func (d Decision) Exhausted() bool { return d.Step != StepNotIsolated && len(d.Unproven) > 0 }

// Resubmitted returns the positions of every lesson in a part, ascending.
func (d Decision) Resubmitted() Indices {
	var out Indices
	for _, p := range d.Parts {
		out = append(out, p.Lessons...)
	}
	slices.Sort(out)
	return out
}

// Validate checks that d is a decision about a batch of n lessons as Plan makes them: version,
// every position in range and in exactly one of AtFault and the parts, Unproven within AtFault,
// no empty part, valid part States. The engine checks a decision read back from its ledger with it.
func (d Decision) Validate(n int) error {
	if d.V != Version {
		return fmt.Errorf("isolation: decision: v %d: want %d", d.V, Version)
	}
	switch d.Step {
	case StepAttributed, StepBisected, StepSingle, StepNotIsolated:
	default:
		return fmt.Errorf("isolation: decision: step %q is unknown", d.Step)
	}
	seen := make([]bool, n)
	mark := func(what string, x Indices) error {
		for _, i := range x {
			if i < 0 || i >= n {
				return fmt.Errorf("isolation: decision: %s: lesson %d of a batch of %d", what, i, n)
			}
			if seen[i] {
				return fmt.Errorf("isolation: decision: %s: lesson %d is listed twice", what, i)
			}
			seen[i] = true
		}
		return nil
	}
	if err := mark("atFault", d.AtFault); err != nil {
		return err
	}
	for k, p := range d.Parts {
		if len(p.Lessons) == 0 {
			return fmt.Errorf("isolation: decision: part %d is empty", k)
		}
		if err := p.State.Validate(); err != nil {
			return fmt.Errorf("isolation: decision: part %d: %w", k, err)
		}
		if err := mark(fmt.Sprintf("part %d", k), p.Lessons); err != nil {
			return err
		}
	}
	for i, ok := range seen {
		if !ok {
			return fmt.Errorf("isolation: decision: lesson %d is neither at fault nor in a part", i)
		}
	}
	inFault := map[int]bool{}
	for _, i := range d.AtFault {
		inFault[i] = true
	}
	for _, i := range d.Unproven {
		if !inFault[i] {
			return fmt.Errorf("isolation: decision: unproven lesson %d is not at fault", i)
		}
	}
	return nil
}

// UnmarshalJSON decodes a Decision and checks its version (Validate checks the rest, given the
// batch's size).
func (d *Decision) UnmarshalJSON(data []byte) error {
	type plain Decision
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return fmt.Errorf("isolation: decision: %w", err)
	}
	if p.V != Version {
		return fmt.Errorf("isolation: decision: v %d: want %d", p.V, Version)
	}
	*d = Decision(p)
	return nil
}

// ErrNoLessons is returned by Plan for a batch without lessons.
var ErrNoLessons = errors.New("isolation: plan: the batch has no lessons")

// Plan decides what to do about a batch that JobManager failed with a data-class
// LessonsImportFailed (the caller checks the class and the reason; technical failures, in-doubt
// batches and other reasons are not isolated). st is the batch's State (Start for an original
// batch, Part.State for a part), lessons its lessons in batch order, msgs its ErrorMessages.
//
// It returns an error only for an invalid State or no lessons. See the package documentation for
// the algorithm; Decision.Validate(len(lessons)) holds for every Decision it returns.
func Plan(st State, lessons []Lesson, msgs []string) (Decision, error) {
	if err := st.Validate(); err != nil {
		return Decision{}, fmt.Errorf("isolation: plan: %w", err)
	}
	if len(lessons) == 0 {
		return Decision{}, ErrNoLessons
	}
	u := unitsOf(lessons)
	d := Decision{V: Version}
	if len(jobmanager.DuplicateJobIDs(msgs)) > 0 {
		d.Step = StepNotIsolated
		d.AtFault, d.Unproven = all(len(lessons)), all(len(lessons))
		return d, nil
	}
	if len(u.units) == 1 {
		d.Step, d.AtFault = StepSingle, all(len(lessons))
		return d, nil
	}

	ids := make([]string, len(u.units))
	for k, un := range u.units {
		ids[k] = lessons[un[0]].ID
	}
	var jobIDs []string
	jobUnits := map[string][]int{} // JobID -> units, in order
	for k, un := range u.units {
		for _, i := range un {
			j := lessons[i].JobID
			if _, ok := jobUnits[j]; !ok {
				jobIDs = append(jobIDs, j)
			}
			if us := jobUnits[j]; len(us) == 0 || us[len(us)-1] != k {
				jobUnits[j] = append(us, k)
			}
		}
	}
	att := jobmanager.Attribute(msgs, ids, jobIDs)

	const (
		free = iota
		fault
		suspect
	)
	mark := make([]int, len(u.units))
	for _, id := range att.Lessons {
		mark[u.byID[id]] = fault
	}
	var groups [][]int // suspected sets of units
	for _, j := range att.JobIDs {
		named := false
		for _, k := range jobUnits[j] {
			named = named || mark[k] == fault
		}
		if named {
			continue // the job's named lesson is what the message is about
		}
		var g []int
		for _, k := range jobUnits[j] {
			if mark[k] == free {
				mark[k] = suspect
				g = append(g, k)
			}
		}
		if len(g) > 0 {
			groups = append(groups, g)
		}
	}
	d.Step = StepAttributed
	if len(att.Lessons) == 0 && len(groups) == 0 {
		d.Step = StepBisected
		groups = [][]int{seq(len(u.units))}
		for k := range mark {
			mark[k] = suspect
		}
	}

	var atFault, unproven []int // units
	for k, m := range mark {
		if m == fault {
			atFault = append(atFault, k)
		}
	}
	var rest []int
	for k, m := range mark {
		if m == free {
			rest = append(rest, k)
		}
	}

	// The parts, cheapest first when the budget is short: the rest (one submit for most of the
	// good lessons), then each suspected set.
	type plan struct {
		kind  Kind
		units []int
	}
	var parts []plan
	left := st.Budget
	switch {
	case len(rest) == 0:
	case st.Depth >= 1 && len(att.Lessons) > 0 && len(rest) >= 2 && left >= 2:
		// A resubmitted batch that fails naming lessons again: JobManager likely reports only its
		// first error. Two rests search in parallel instead of one lesson per round.
		h := (len(rest) + 1) / 2
		parts = append(parts, plan{KindRest, rest[:h]}, plan{KindRest, rest[h:]})
		left -= 2
	case left >= 1:
		parts = append(parts, plan{KindRest, rest})
		left--
	default:
		unproven = append(unproven, rest...)
	}
	for _, g := range groups {
		switch {
		case len(g) == 1:
			atFault = append(atFault, g[0]) // a named job of one lesson: that lesson
		case len(g) <= leafSize && left >= len(g):
			for _, k := range g {
				parts = append(parts, plan{KindSingle, []int{k}})
			}
			left -= len(g)
		case left >= 2:
			h := (len(g) + 1) / 2
			parts = append(parts, plan{KindHalf, g[:h]}, plan{KindHalf, g[h:]})
			left -= 2
		default:
			unproven = append(unproven, g...)
		}
	}

	// Allotments: each part of s units needs at most 2·s − 2 to finish; share what is left.
	need := make([]int, len(parts))
	total := 0
	for k, p := range parts {
		need[k] = 2*len(p.units) - 2
		total += need[k]
	}
	share := make([]int, len(parts))
	if left >= total {
		copy(share, need)
	} else if total > 0 {
		given := 0
		for k := range parts {
			share[k] = left * need[k] / total
			given += share[k]
		}
		for k := 0; given < left; k = (k + 1) % len(parts) {
			if share[k] < need[k] {
				share[k]++
				given++
			}
		}
	}

	for k, p := range parts {
		d.Parts = append(d.Parts, Part{
			Kind:    p.kind,
			Lessons: u.positions(p.units),
			State:   State{V: Version, Budget: share[k], Depth: st.Depth + 1},
		})
	}
	d.AtFault = u.positions(append(atFault, unproven...))
	d.Unproven = u.positions(unproven)
	return d, nil
}

// units groups a batch's positions by LektionId: the planner moves a lesson's entries together.
type units struct {
	units [][]int        // positions of each LektionId, ascending; units in order of first position
	byID  map[string]int // LektionId -> unit
}

func unitsOf(lessons []Lesson) units {
	u := units{byID: make(map[string]int, len(lessons))}
	for i, l := range lessons {
		k, ok := u.byID[l.ID]
		if !ok {
			k = len(u.units)
			u.byID[l.ID] = k
			u.units = append(u.units, nil)
		}
		u.units[k] = append(u.units[k], i)
	}
	return u
}

// positions returns the positions of the given units, ascending.
func (u units) positions(ks []int) Indices {
	var out Indices
	for _, k := range ks {
		out = append(out, u.units[k]...)
	}
	slices.Sort(out)
	return out
}

func all(n int) Indices { return Indices(seq(n)) }

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

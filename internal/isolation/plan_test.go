package isolation

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// batchOf returns lessons L-0.. with the given job sizes (JobIDs j-0..).
func batchOf(jobSizes ...int) []Lesson {
	var out []Lesson
	for j, n := range jobSizes {
		for range n {
			out = append(out, Lesson{ID: fmt.Sprintf("L-%d", len(out)), JobID: fmt.Sprintf("j-%d", j), Ref: uint64(len(out))})
		}
	}
	return out
}

func start(t *testing.T, n int) State {
	t.Helper()
	st, err := Start(n, Limits{})
	require.NoError(t, err)
	return st
}

func TestPlan(t *testing.T) {
	type part struct {
		kind    Kind
		lessons string // Indices as JSON ranges
		budget  int
	}
	tests := []struct {
		name     string
		lessons  []Lesson
		budget   int // -1: Start's
		depth    int
		msgs     []string
		step     Step
		atFault  string
		unproven string
		parts    []part
	}{
		{name: "named lesson: at fault, the rest in one batch", lessons: batchOf(3, 3), budget: -1,
			msgs: []string{"Fehler: Ressource 'Raum 9' nicht gefunden (JobID j-1, LektionId L-4)"},
			step: StepAttributed, atFault: "4", parts: []part{{KindRest, "0-3,5", 8}}},
		{name: "a resubmitted batch failing with a named lesson: two rests", lessons: batchOf(3, 3), budget: -1, depth: 1,
			msgs: []string{"Fehler: Ressource 'Raum 9' nicht gefunden (JobID j-0, LektionId L-1)"},
			step: StepAttributed, atFault: "1", parts: []part{{KindRest, "0,2-3", 4}, {KindRest, "4-5", 2}}},
		{name: "two rests only when affordable", lessons: batchOf(3, 3), budget: 1, depth: 1,
			msgs: []string{"LektionId L-1"}, step: StepAttributed, atFault: "1", parts: []part{{KindRest, "0,2-5", 0}}},
		{name: "a resubmitted batch failing anonymously: halves", lessons: batchOf(6), budget: -1, depth: 1,
			msgs: []string{"Validierung fehlgeschlagen"}, step: StepBisected,
			parts: []part{{KindHalf, "0-2", 4}, {KindHalf, "3-5", 4}}},
		{name: "several named lessons, array", lessons: batchOf(10), budget: -1,
			msgs: []string{"Lektion L-1 existiert nicht", "lesson L-7 not found", "Ende vor Beginn (LektionId L-3)"},
			step: StepAttributed, atFault: "1,3,7", parts: []part{{KindRest, "0,2,4-6,8-9", 12}}},
		{name: "every lesson named: nothing to resubmit", lessons: batchOf(2), budget: -1,
			msgs: []string{"L-0 und L-1 ungültig"}, step: StepAttributed, atFault: "0-1"},
		{name: "named job: rest in one batch, the job in halves", lessons: batchOf(2, 6, 2), budget: -1,
			msgs: []string{"Fehler: Validierung fehlgeschlagen (JobID j-1)"},
			step: StepAttributed, atFault: "",
			parts: []part{{KindRest, "0-1,8-9", 6}, {KindHalf, "2-4", 4}, {KindHalf, "5-7", 4}}},
		{name: "named job of four: lesson by lesson", lessons: batchOf(2, 4), budget: -1,
			msgs: []string{"JobID j-1: Validierung fehlgeschlagen"}, step: StepAttributed,
			parts: []part{{KindRest, "0-1", 2}, {KindSingle, "2", 0}, {KindSingle, "3", 0}, {KindSingle, "4", 0}, {KindSingle, "5", 0}}},
		{name: "named job of one lesson: that lesson", lessons: batchOf(3, 1), budget: -1,
			msgs: []string{"JobID j-1 ungültig"}, step: StepAttributed, atFault: "3", parts: []part{{KindRest, "0-2", 4}}},
		{name: "a job named with its lesson is not suspected", lessons: batchOf(4, 4), budget: -1,
			msgs: []string{"Fehler (JobID j-1, LektionId L-5)", "JobID j-1: Validierung fehlgeschlagen"},
			step: StepAttributed, atFault: "5", parts: []part{{KindRest, "0-4,6-7", 12}}},
		{name: "anonymous: halves", lessons: batchOf(10), budget: -1, msgs: []string{"Validierung fehlgeschlagen"},
			step: StepBisected, parts: []part{{KindHalf, "0-4", 8}, {KindHalf, "5-9", 8}}},
		{name: "anonymous odd: the first half is larger", lessons: batchOf(4, 3), budget: -1, msgs: nil,
			step: StepBisected, parts: []part{{KindHalf, "0-3", 6}, {KindHalf, "4-6", 4}}},
		{name: "anonymous small: lesson by lesson", lessons: batchOf(3), budget: -1, msgs: []string{"Fehler"},
			step: StepBisected, parts: []part{{KindSingle, "0", 0}, {KindSingle, "1", 0}, {KindSingle, "2", 0}}},
		{name: "names outside the batch are no attribution", lessons: batchOf(6), budget: -1,
			msgs: []string{"Lektion L-60 und JobID j-9 ungültig"}, step: StepBisected,
			parts: []part{{KindHalf, "0-2", 4}, {KindHalf, "3-5", 4}}},
		{name: "one lesson: at fault", lessons: batchOf(1), budget: -1, msgs: []string{"Fehler"}, step: StepSingle, atFault: "0"},
		{name: "duplicate JobId: not isolated", lessons: batchOf(2, 2), budget: -1,
			msgs: []string{"Fehler: Duplicate JobId: j-0", "Lektion L-3 ungültig"}, step: StepNotIsolated,
			atFault: "0-3", unproven: "0-3"},
		{name: "budget spent: the rest fails as JobManager said", lessons: batchOf(6), budget: 1,
			msgs: []string{"Validierung fehlgeschlagen"}, step: StepBisected, atFault: "0-5", unproven: "0-5"},
		{name: "budget short: the rest first, suspects fail", lessons: batchOf(3, 4), budget: 2,
			msgs: []string{"JobID j-1 ungültig"}, step: StepAttributed, atFault: "3-6", unproven: "3-6",
			parts: []part{{KindRest, "0-2", 1}}},
		{name: "budget short: halves instead of singles", lessons: batchOf(4), budget: 3,
			msgs: nil, step: StepBisected, parts: []part{{KindHalf, "0-1", 1}, {KindHalf, "2-3", 0}}},
		{name: "budget shared in proportion", lessons: batchOf(20), budget: 12,
			msgs: nil, step: StepBisected, parts: []part{{KindHalf, "0-9", 5}, {KindHalf, "10-19", 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := start(t, len(tt.lessons))
			if tt.budget >= 0 {
				st.Budget = tt.budget
			}
			st.Depth = tt.depth
			d, err := Plan(st, tt.lessons, tt.msgs)
			require.NoError(t, err)
			require.NoError(t, d.Validate(len(tt.lessons)))
			assert.Equal(t, tt.step, d.Step)
			assert.Equal(t, tt.atFault, ranges(t, d.AtFault), "atFault")
			assert.Equal(t, tt.unproven, ranges(t, d.Unproven), "unproven")
			assert.Equal(t, tt.unproven != "" && tt.step != StepNotIsolated, d.Exhausted())
			var got []part
			for _, p := range d.Parts {
				assert.Equal(t, tt.depth+1, p.State.Depth)
				got = append(got, part{p.Kind, ranges(t, p.Lessons), p.State.Budget})
			}
			assert.Equal(t, tt.parts, got)
			assert.Equal(t, len(tt.parts), d.Submits())
		})
	}
}

func ranges(t *testing.T, x Indices) string {
	t.Helper()
	b, err := json.Marshal(x)
	require.NoError(t, err)
	var s string
	require.NoError(t, json.Unmarshal(b, &s))
	return s
}

func TestPlanKeepsALessonsEntriesTogether(t *testing.T) {
	lessons := []Lesson{{ID: "L-1", JobID: "a"}, {ID: "L-2", JobID: "a"}, {ID: "L-1", JobID: "b"}, {ID: "L-3", JobID: "b"}}
	d, err := Plan(start(t, 4), lessons, nil)
	require.NoError(t, err)
	require.Len(t, d.Parts, 3, "three distinct lessons, one by one")
	assert.Equal(t, Indices{0, 2}, d.Parts[0].Lessons)
	assert.Equal(t, [][]int{{0}, {2}}, d.Parts[0].Jobs(lessons), "jobs as in the failed batch")

	d, err = Plan(start(t, 4), lessons, []string{"LektionId L-1"})
	require.NoError(t, err)
	assert.Equal(t, Indices{0, 2}, d.AtFault)
}

func TestPlanRejects(t *testing.T) {
	_, err := Plan(State{}, batchOf(2), nil)
	assert.ErrorContains(t, err, "v 0: want 1")
	_, err = Plan(State{V: 1, Budget: -1}, batchOf(2), nil)
	assert.ErrorContains(t, err, "budget -1")
	_, err = Plan(start(t, 1), nil, nil)
	assert.ErrorIs(t, err, ErrNoLessons)
	_, err = Start(0, Limits{})
	assert.ErrorContains(t, err, "lessons 0")
	_, err = Start(3, Limits{MaxSubmits: -2})
	assert.ErrorContains(t, err, "MaxSubmits -2")
}

func TestStart(t *testing.T) {
	st, err := Start(500, Limits{})
	require.NoError(t, err)
	assert.Equal(t, State{V: Version, Budget: 998, Depth: 0}, st)
	st, err = Start(5000, Limits{})
	require.NoError(t, err)
	assert.Equal(t, DefaultMaxSubmits, st.Budget)
	st, err = Start(500, Limits{MaxSubmits: 20})
	require.NoError(t, err)
	assert.Equal(t, 20, st.Budget)
	st, err = Start(1, Limits{})
	require.NoError(t, err)
	assert.Equal(t, 0, st.Budget)
}

func TestDecisionJSON(t *testing.T) {
	lessons := batchOf(200, 300)
	d, err := Plan(start(t, 500), lessons, []string{"Lektion L-17 ungültig", "JobID j-1 ungültig"})
	require.NoError(t, err)
	b, err := json.Marshal(d)
	require.NoError(t, err)
	assert.Less(t, len(b), 400, "small: %s", b)
	assert.Contains(t, string(b), `"v":1`)
	var back Decision
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, d, back)
	require.NoError(t, back.Validate(500))
	require.Len(t, back.Parts, 3)
	assert.Equal(t, Indices(seqFrom(200, 500)), append(append(Indices{}, back.Parts[1].Lessons...), back.Parts[2].Lessons...),
		"the named job in halves")

	for _, tt := range []struct{ in, err string }{
		{`{"v":2,"step":"single","atFault":"0"}`, "decision: v 2: want 1"},
		{`{"v":1,"step":"single","atFault":"3-1"}`, `range "3-1"`},
		{`{"v":1,"step":"single","atFault":"1,1"}`, `range "1"`},
		{`{"v":1,"step":"single","atFault":"x"}`, `range "x"`},
		{`{"v":1,"step":"single","atFault":[1]}`, "want a string of ranges"},
		{`{"v":1,"budget":-3}`, "budget -3"},
	} {
		var d Decision
		var s State
		if strings.Contains(tt.in, "budget") {
			assert.ErrorContains(t, json.Unmarshal([]byte(tt.in), &s), tt.err, tt.in)
			continue
		}
		assert.ErrorContains(t, json.Unmarshal([]byte(tt.in), &d), tt.err, tt.in)
	}
	_, err = json.Marshal(Indices{2, 1})
	assert.ErrorContains(t, err, "not ascending")
}

func seqFrom(a, b int) []int {
	var out []int
	for i := a; i < b; i++ {
		out = append(out, i)
	}
	return out
}

func TestDecisionValidate(t *testing.T) {
	ok := Decision{V: 1, Step: StepAttributed, AtFault: Indices{1}, Parts: []Part{{KindRest, Indices{0, 2}, State{V: 1}}}}
	require.NoError(t, ok.Validate(3))
	for _, tt := range []struct {
		change func(*Decision)
		err    string
	}{
		{func(d *Decision) { d.V = 0 }, "v 0"},
		{func(d *Decision) { d.Step = "x" }, `step "x"`},
		{func(d *Decision) { d.AtFault = Indices{3} }, "lesson 3 of a batch of 3"},
		{func(d *Decision) { d.AtFault = Indices{0} }, "lesson 0 is listed twice"},
		{func(d *Decision) { d.AtFault = nil }, "lesson 1 is neither"},
		{func(d *Decision) { d.Unproven = Indices{0} }, "unproven lesson 0"},
		{func(d *Decision) { d.Parts = append(d.Parts, Part{KindRest, nil, State{V: 1}}) }, "part 1 is empty"},
		{func(d *Decision) { d.Parts[0].State.V = 7 }, "part 0: isolation: state: v 7"},
	} {
		d := ok
		d.Parts = append([]Part(nil), ok.Parts...)
		tt.change(&d)
		assert.ErrorContains(t, d.Validate(3), tt.err)
	}
}

// check runs one isolation and reports every property that fails: each lesson settled exactly
// once; with a JobManager that fails exactly the batches holding a bad lesson and the full budget
// (2·n − 2), exactly the bad lessons at fault and the submits within the bound; never more submits
// than the budget; a good lesson at fault only when a capped budget ran out (Decision.Unproven).
func check(t *testing.T, m model, n, jobSize int, lim Limits, rnd *rand.Rand) outcome {
	t.Helper()
	return checkWith(t, m, m, n, jobSize, lim, rnd)
}

// checkWith is check against jm, a JobManager that behaves as m says.
func checkWith(t *testing.T, jm jobManager, m model, n, jobSize int, lim Limits, rnd *rand.Rand) outcome {
	t.Helper()
	ids := lessonIDs(n)
	o := isolate(jm, ids, jobSize, lim, rnd)
	for _, p := range o.problems {
		t.Error(p)
	}
	k := 0
	for _, id := range ids {
		if m.bad[id] {
			k++
		}
		settled := o.atFault[id] + o.imported[id]
		if settled != 1 {
			t.Errorf("lesson %s settled %d times (at fault %d, imported %d)", id, settled, o.atFault[id], o.imported[id])
		}
		if m.chaos == nil && m.bad[id] && o.imported[id] > 0 {
			t.Errorf("bad lesson %s imported", id)
		}
		if m.chaos == nil && !m.bad[id] && o.proven[id] {
			t.Errorf("good lesson %s shown at fault", id)
		}
	}
	st, err := Start(n, lim)
	require.NoError(t, err)
	if o.submits > 1+st.Budget {
		t.Errorf("%d submits, budget %d", o.submits, st.Budget)
	}
	if m.chaos == nil && st.Budget == 2*n-2 { // not capped: 2·s − 2 finishes any part
		for _, id := range ids {
			if !m.bad[id] && o.atFault[id] > 0 {
				t.Errorf("good lesson %s at fault with a budget of %d", id, st.Budget)
			}
		}
		if o.submits > bound(k, n) {
			t.Errorf("%d submits for %d bad of %d, bound %d", o.submits, k, n, bound(k, n))
		}
	}
	return o
}

func randomBad(rnd *rand.Rand, n, k int) map[string]bool {
	ids := lessonIDs(n)
	bad := map[string]bool{}
	for _, i := range rnd.Perm(n)[:k] {
		bad[ids[i]] = true
	}
	return bad
}

// TestIsolationProperties: for random batches, bad sets, message styles, job sizes, budgets and
// orders of completion, the properties of check hold.
func TestIsolationProperties(t *testing.T) {
	rnd := rand.New(rand.NewPCG(10, 4))
	for run := range 600 {
		n := 1 + rnd.IntN(120)
		k := []int{0, 1, 2, 3, rnd.IntN(n + 1)}[rnd.IntN(5)]
		k = min(k, n)
		sty := style(rnd.IntN(int(styleCount)))
		jobSize := []int{1, 3, 10, n}[rnd.IntN(4)]
		var lim Limits
		if rnd.IntN(4) == 0 {
			lim.MaxSubmits = 1 + rnd.IntN(2*n)
		}
		m := model{bad: randomBad(rnd, n, k), style: sty}
		var order *rand.Rand
		if rnd.IntN(2) == 0 {
			order = rand.New(rand.NewPCG(uint64(run), 1))
		}
		t.Run(fmt.Sprintf("%d/n=%d,k=%d,%s,job=%d,max=%d", run, n, k, sty, jobSize, lim.MaxSubmits), func(t *testing.T) {
			check(t, m, n, jobSize, lim, order)
		})
	}
}

// TestIsolationFiveHundred: the cases in a batch of 500, for every style.
func TestIsolationFiveHundred(t *testing.T) {
	for _, k := range []int{1, 2, 50, 500} {
		for sty := range styleCount {
			t.Run(fmt.Sprintf("k=%d/%s", k, sty), func(t *testing.T) {
				m := model{bad: randomBad(rand.New(rand.NewPCG(uint64(k), 7)), 500, k), style: sty}
				o := check(t, m, 500, 10, Limits{}, nil)
				if sty == styleLessons {
					assert.Equal(t, min(2, 1+k)-btoi(k == 500), o.submits, "named lessons: the original and one rest")
				}
				if sty == styleFirst {
					assert.LessOrEqual(t, o.submits, 2*k+1, "first error only: at most two submits per bad lesson")
				}
			})
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestIsolationNeverLoops: a JobManager that fails batches at random and names random lessons
// cannot make isolation exceed its budget or settle a lesson twice.
func TestIsolationNeverLoops(t *testing.T) {
	for seed := range uint64(200) {
		rnd := rand.New(rand.NewPCG(seed, 99))
		n := 1 + rnd.IntN(200)
		m := model{chaos: rand.New(rand.NewPCG(seed, 3))}
		o := check(t, m, n, 1+rnd.IntN(n), Limits{}, rand.New(rand.NewPCG(seed, 5)))
		assert.LessOrEqual(t, o.maxDepth, n, "depth")
	}
}

// FuzzIsolation: check's properties for any batch size, bad set, style, job size, cap and order.
func FuzzIsolation(f *testing.F) {
	f.Add(uint64(1), uint16(500), uint16(5), uint8(2), uint16(10), uint16(0))
	f.Add(uint64(2), uint16(17), uint16(17), uint8(1), uint16(4), uint16(3))
	f.Add(uint64(3), uint16(64), uint16(1), uint8(3), uint16(64), uint16(0))
	f.Fuzz(func(t *testing.T, seed uint64, n, k uint16, sty uint8, jobSize, maxSubmits uint16) {
		nn := 1 + int(n)%600
		kk := int(k) % (nn + 1)
		rnd := rand.New(rand.NewPCG(seed, 0))
		m := model{bad: randomBad(rnd, nn, kk), style: style(sty % uint8(styleCount))}
		if sty >= 200 {
			m = model{chaos: rnd}
		}
		check(t, m, nn, 1+int(jobSize)%nn, Limits{MaxSubmits: int(maxSubmits) % 2000}, rand.New(rand.NewPCG(seed, 1)))
	})
}

package jobmanager

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestAttribute(t *testing.T) {
	lessons := []string{"L-1", "L-10", "L-2", "l-3", "1001", "1002", "A.7"}
	jobs := []string{"lb-20251222-0193f0c2-aaaa", "lb-20251222-0193f0c2-bbbb", "job-7"}
	tests := []struct {
		name       string
		msgs       []string
		lessons    []string
		jobs       []string
		anonymous  int
		duplicates bool
	}{
		{name: "simulator shape",
			msgs:    []string{"Fehler: Ressource 'Raum 9' nicht gefunden (JobID lb-20251222-0193f0c2-aaaa, LektionId L-2)"},
			lessons: []string{"L-2"}, jobs: []string{"lb-20251222-0193f0c2-aaaa"}},
		{name: "German prose", msgs: []string{"Fehler: Lektion L-1 existiert nicht (update)"}, lessons: []string{"L-1"}},
		{name: "English prose", msgs: []string{"lesson L-10 not found"}, lessons: []string{"L-10"}},
		{name: "quoted", msgs: []string{`LektionId "L-1" ungültig`, "Lektion „L-2“ fehlt", "Lektion «L-10»"},
			lessons: []string{"L-1", "L-10", "L-2"}},
		{name: "list", msgs: []string{"Lektionen L-1, L-2 und L-10: Ende vor Beginn"}, lessons: []string{"L-1", "L-10", "L-2"}},
		{name: "sentence end and colon", msgs: []string{"Ungültig: L-1.", "L-2: Zeit ungültig"}, lessons: []string{"L-1", "L-2"}},
		{name: "slash separates", msgs: []string{"Konflikt L-1/L-2"}, lessons: []string{"L-1", "L-2"}},
		{name: "L-1 is not L-10 nor XL-1 nor X-L-1", msgs: []string{"Fehler bei XL-1, X-L-1 und L-100"}, anonymous: 1},
		{name: "longer identifier with the ids' own punctuation", msgs: []string{"Lektion A.77 und A.7.1 fehlt"}, anonymous: 1},
		{name: "punctuation the ids do not use ends an id", msgs: []string{"Lektion A.7, L-1+ fehlt"},
			lessons: []string{"L-1", "A.7"}},
		{name: "case as written", msgs: []string{"Lektion l-1 und L-3 fehlen"}, anonymous: 1},
		{name: "case as written, lower", msgs: []string{"Lektion l-3 fehlt"}, lessons: []string{"l-3"}},
		{name: "numeric ids need a lesson word", msgs: []string{"Fehler 1001: Zeitpunkt ungültig", "1002 Lektionen geprüft"}, anonymous: 2},
		{name: "numeric ids after a lesson word", msgs: []string{"LektionId 1001 fehlt", "Lektion Nr. 1002 ungültig"},
			lessons: []string{"1001", "1002"}},
		{name: "numeric ids in a list", msgs: []string{"lessons 1001 and 1002 overlap"}, lessons: []string{"1001", "1002"}},
		{name: "numeric id after another word", msgs: []string{"Lektion L-1 Raum 1001"}, lessons: []string{"L-1"}},
		{name: "job only", msgs: []string{"Fehler: Validierung fehlgeschlagen (JobID job-7)"}, jobs: []string{"job-7"}},
		{name: "job in another case", msgs: []string{"Job LB-20251222-0193F0C2-BBBB ungültig"},
			jobs: []string{"lb-20251222-0193f0c2-bbbb"}},
		{name: "job id prefix is not the job", msgs: []string{"JobID job-77 ungültig", "job-7-1"}, anonymous: 2},
		{name: "anonymous", msgs: []string{"Validierung fehlgeschlagen", "Fehler"}, anonymous: 2},
		{name: "duplicate is not attribution",
			msgs:       []string{"Fehler: Duplicate JobId: job-7", "Fehler: Duplicate JobId: lb-20251222-0193f0c2-aaaa (L-1)"},
			duplicates: true},
		{name: "duplicate next to a data error", msgs: []string{"Duplikat JobID job-7", "Lektion L-2 ungültig"},
			lessons: []string{"L-2"}, duplicates: true},
		{name: "no messages"},
		{name: "each once, in batch order", msgs: []string{"L-2 L-1 L-2", "L-1"}, lessons: []string{"L-1", "L-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Attribute(tt.msgs, lessons, jobs)
			assert.Equal(t, tt.lessons, a.Lessons, "lessons")
			assert.Equal(t, tt.jobs, a.JobIDs, "jobs")
			assert.Equal(t, tt.anonymous, a.Unattributed, "unattributed")
			assert.Equal(t, tt.duplicates, a.Duplicates, "duplicates")
		})
	}
}

func TestAttributeFoldingAmbiguousJobIDs(t *testing.T) {
	a := Attribute([]string{"Job J-1 fehlgeschlagen", "Job j-2"}, nil, []string{"j-1", "J-1", "J-2"})
	assert.Equal(t, []string{"J-1", "J-2"}, a.JobIDs, "exact J-1 only (j-1 folds alike); j-2 folds to J-2")
}

func TestAttributeEmptyAndDuplicateIDs(t *testing.T) {
	a := Attribute([]string{"L-1 und  "}, []string{"", "L-1", "L-1"}, []string{""})
	assert.Equal(t, []string{"L-1"}, a.Lessons)
	assert.Empty(t, a.JobIDs)
}

// naiveNamed is a reference for Attribute's lesson matching of ids that contain a letter: every
// occurrence found with strings.Index, judged with the rule of the documentation.
func naiveNamed(msgs, ids []string, joiners string) map[string]bool {
	named := map[string]bool{}
	wordBefore := func(s string) bool {
		r, n := utf8.DecodeLastRuneInString(s)
		if n == 0 {
			return false
		}
		if isWordRune(r) {
			return true
		}
		if strings.ContainsRune(joiners, r) {
			r2, n2 := utf8.DecodeLastRuneInString(s[:len(s)-n])
			return n2 > 0 && isWordRune(r2)
		}
		return false
	}
	wordAfter := func(s string) bool {
		r, n := utf8.DecodeRuneInString(s)
		if n == 0 {
			return false
		}
		if isWordRune(r) {
			return true
		}
		if strings.ContainsRune(joiners, r) {
			r2, n2 := utf8.DecodeRuneInString(s[n:])
			return n2 > 0 && isWordRune(r2)
		}
		return false
	}
	for _, m := range msgs {
		if duplicateMarker.MatchString(m) {
			continue
		}
		for _, id := range ids {
			if id == "" {
				continue
			}
			for off := 0; ; {
				k := strings.Index(m[off:], id)
				if k < 0 {
					break
				}
				i := off + k
				if utf8.RuneStart(m[i]) && !wordBefore(m[:i]) && (i+len(id) == len(m) || utf8.RuneStart(m[i+len(id)])) &&
					!wordAfter(m[i+len(id):]) {
					named[id] = true
				}
				off = i + 1
			}
		}
	}
	return named
}

// FuzzAttribute: Attribute never panics, agrees with the naive reference on ids that contain a
// letter, names only identifiers of the batch that occur in the messages, and always finds an id
// standing alone between spaces in a message.
func FuzzAttribute(f *testing.F) {
	f.Add("Fehler: Ressource 'R' nicht gefunden (JobID j-1, LektionId L-1)", "L-1", "L-10", "j-1")
	f.Add("XL-1 L-10 L-1.2", "L-1", "L-1.2", "J")
	f.Add("Lektion 1001 und 1002", "1001", "1002", "lb-1")
	f.Add("Duplicate JobId: j-1", "L-1", "j-1", "j-1")
	f.Add("L-1\xffL-2 \xe2\x80", "L-2", "\xff", "L")
	f.Fuzz(func(t *testing.T, msg, id1, id2, job string) {
		lessons := []string{id1, id2}
		msgs := strings.Split(msg, "|")
		a := Attribute(msgs, lessons, []string{job})
		joiners := joinersOf(lessons, []string{job})
		want := naiveNamed(msgs, lessons, joiners)
		for _, id := range lessons {
			if id == "" || !strings.ContainsFunc(id, unicode.IsLetter) {
				continue
			}
			assert.Equal(t, want[id], contains(a.Lessons, id), "lesson %q in %q", id, msgs)
		}
		for _, id := range a.Lessons {
			assert.True(t, id == id1 || id == id2)
			assert.True(t, strings.Contains(msg, id), "%q named but not in %q", id, msg)
		}
		for _, id := range a.JobIDs {
			assert.Equal(t, job, id)
			assert.True(t, strings.Contains(asciiLower(msg), asciiLower(id)))
		}
		assert.LessOrEqual(t, a.Unattributed, len(msgs))

		// An id with a letter, standing alone, is always found.
		if id1 != "" && utf8.ValidString(id1) && strings.ContainsFunc(id1, unicode.IsLetter) &&
			!strings.ContainsFunc(id1, unicode.IsSpace) && !strings.Contains(id1, "|") {
			alone := Attribute([]string{"Fehler: Lektion " + id1 + " ungültig"}, lessons, nil)
			if !alone.Duplicates {
				assert.Contains(t, alone.Lessons, id1)
			}
		}
	})
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

package jobmanager

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Attribution is what the ErrorMessages of a LessonsImportFailed batch say about the batch's own
// lessons and jobs (contract 4a): the LektionIds and JobIDs of the batch that the messages name.
// Failure isolation puts a named lesson at fault and a named job's lessons under suspicion.
type Attribution struct {
	// Lessons are the batch's LektionIds that some message names, each once, in the order the
	// batch lists them.
	Lessons []string
	// JobIDs are the batch's JobIDs that some message names, each once, in the order and the
	// spelling the batch lists them.
	JobIDs []string
	// Unattributed counts the messages that name no lesson and no JobID of the batch ("Validierung
	// fehlgeschlagen"), not counting "Duplicate JobId" messages.
	Unattributed int
	// Duplicates reports a "Duplicate JobId" message (see DuplicateJobIDs). Such messages are not
	// attribution and are skipped: the JobIDs they name are the bridge's own, resent (in doubt),
	// not the cause of a data error.
	Duplicates bool
}

// Attribute finds the lessons (by LektionId, lessonIDs) and jobs (by JobID, jobIDs) of a failed
// batch that its ErrorMessages name. msgs may hold one message or many (ErrorMessages arrives as a
// string or an array); the order of the arguments' elements only orders the result.
//
// An identifier counts only as a whole: L-1 is not named by "L-10", "XL-1", "L-1.2" or "X-L-1",
// but is by "L-1", "'L-1'", "„L-1“", "(LektionId L-1)", "L-1:", "L-1." or "L-1, L-2". Around a
// match there must be no letter, digit or underscore, nor a punctuation character that the
// batch's identifiers themselves use (such as '-' or '.') followed by one. Message shapes in German
// and English work alike ("Lektion L-1 existiert nicht", "lesson L-1 not found",
// "Ressource 'X' nicht gefunden (JobID j-1, LektionId L-1)").
//
// LektionIds match exactly as JobManager writes them (case-sensitive: "l-1" is another lesson),
// since naming a lesson puts it at fault. A LektionId without any letter (such as "1001") matches
// only after a lesson word ("LektionId 1001", "Lektion Nr. 1001", "lessons 1000, 1001 and
// 1002"), so that error codes, counts and times are not taken for lessons. JobIDs match exactly
// and, when no other JobID of the batch folds to the same, also in another ASCII case: a named job
// is only suspected, never at fault by itself, so a looser match costs nothing but a bisection.
//
// Messages with a "Duplicate JobId" marker are skipped (Attribution.Duplicates). Attribute never
// fails; identifiers that are empty are ignored. Its cost is linear in the length of the messages
// times the number of distinct identifier lengths.
func Attribute(msgs []string, lessonIDs, jobIDs []string) Attribution {
	lessons := newIDIndex(lessonIDs, false)
	jobs := newIDIndex(jobIDs, true)
	joiners := joinersOf(lessonIDs, jobIDs)
	var a Attribution
	lessonHit := make([]bool, len(lessons.ids))
	jobHit := make([]bool, len(jobs.ids))
	for _, msg := range msgs {
		if duplicateMarker.MatchString(msg) {
			a.Duplicates = true
			continue
		}
		named := false
		scanStarts(msg, joiners, func(i int) {
			if lessons.match(msg, i, joiners, lessonHit) {
				named = true
			}
			if jobs.match(msg, i, joiners, jobHit) {
				named = true
			}
		})
		if !named {
			a.Unattributed++
		}
	}
	a.Lessons = lessons.hits(lessonHit)
	a.JobIDs = jobs.hits(jobHit)
	return a
}

// idIndex finds the identifiers of one kind at a position of a message.
type idIndex struct {
	ids     []string       // distinct, non-empty, in the caller's order
	exact   map[string]int // id -> index in ids
	fold    map[string]int // ASCII-lowercased id -> index, -1 when two ids fold alike; nil: no folding
	lengths []int          // distinct byte lengths of ids, ascending
	first   [256]bool      // first bytes of ids (and of their folded forms)
	numeric []bool         // per id: no letter in it (matches only after a lesson word)
}

func newIDIndex(ids []string, fold bool) *idIndex {
	x := &idIndex{exact: make(map[string]int, len(ids))}
	if fold {
		x.fold = make(map[string]int, len(ids))
	}
	for _, id := range ids {
		if _, dup := x.exact[id]; dup || id == "" {
			continue
		}
		x.exact[id] = len(x.ids)
		x.ids = append(x.ids, id)
		x.first[id[0]] = true
		if !slices.Contains(x.lengths, len(id)) {
			x.lengths = append(x.lengths, len(id))
		}
		x.numeric = append(x.numeric, !fold && !strings.ContainsFunc(id, unicode.IsLetter))
		if fold {
			low := asciiLower(id)
			x.first[low[0]], x.first[asciiUpper(low[:1])[0]] = true, true
			if _, taken := x.fold[low]; taken {
				x.fold[low] = -1
			} else {
				x.fold[low] = len(x.ids) - 1
			}
		}
	}
	slices.Sort(x.lengths)
	return x
}

// match marks in hit every identifier that occurs as a whole at msg[i:] and reports whether
// there was one. i is a position where an identifier may start (see scanStarts).
func (x *idIndex) match(msg string, i int, joiners string, hit []bool) bool {
	if len(x.ids) == 0 || !x.first[msg[i]] {
		return false
	}
	found := false
	for _, n := range x.lengths {
		if i+n > len(msg) {
			break
		}
		sub := msg[i : i+n]
		k, ok := x.exact[sub]
		if !ok && x.fold != nil {
			if k, ok = x.fold[asciiLower(sub)]; ok && k < 0 {
				ok = false
			}
		}
		if !ok || !wholeEnd(msg, i+n, joiners) {
			continue
		}
		if x.numeric[k] && !afterLessonWord(msg[:i], joiners) {
			continue
		}
		hit[k], found = true, true
	}
	return found
}

func (x *idIndex) hits(hit []bool) []string {
	var out []string
	for k, h := range hit {
		if h {
			out = append(out, x.ids[k])
		}
	}
	return out
}

// isWordRune reports letters, digits and '_': characters that always continue an identifier.
func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// notJoiners are characters that separate identifiers in messages even when an identifier
// contains them.
const notJoiners = `,;'"„“”«»‚‘’()[]{}<>`

// joinersOf returns the punctuation the identifiers use inside them (such as "-."): next to a
// match, one of these followed by a word character means the match is part of a longer
// identifier.
func joinersOf(idLists ...[]string) string {
	var b []rune
	for _, ids := range idLists {
		for _, id := range ids {
			for _, r := range id {
				if !isWordRune(r) && !unicode.IsSpace(r) && r != utf8.RuneError &&
					!strings.ContainsRune(notJoiners, r) && !slices.Contains(b, r) {
					b = append(b, r)
				}
			}
		}
	}
	return string(b)
}

// scanStarts calls f for every byte position of msg where a whole identifier may start: the
// start, and every rune start not preceded by a word rune, nor by a joiner that a word rune
// precedes.
func scanStarts(msg string, joiners string, f func(i int)) {
	var prev, prev2 rune = -1, -1 // the two runes before i; -1: none
	for i, r := range msg {
		if !(prev >= 0 && isWordRune(prev)) && !(prev >= 0 && strings.ContainsRune(joiners, prev) && prev2 >= 0 && isWordRune(prev2)) {
			f(i)
		}
		prev2, prev = prev, r
	}
}

// wholeEnd reports whether an identifier ending at msg[:j] ends there as a whole: at the end of
// msg, or before a rune that is no word rune and no joiner followed by a word rune.
func wholeEnd(msg string, j int, joiners string) bool {
	if j == len(msg) {
		return true
	}
	if !utf8.RuneStart(msg[j]) {
		return false // the candidate ends inside a rune
	}
	r, n := utf8.DecodeRuneInString(msg[j:])
	if isWordRune(r) {
		return false
	}
	if strings.ContainsRune(joiners, r) && j+n < len(msg) {
		r2, _ := utf8.DecodeRuneInString(msg[j+n:])
		return !isWordRune(r2)
	}
	return true
}

// afterLessonWord reports whether before (the text before an identifier) ends with a lesson word
// ("Lektion", "LektionId", "Lektionen", "lesson", "lessonIds", ...), possibly followed by "Id",
// "Nr." or "#", and possibly by a list of other identifiers joined by commas, "und", "and",
// "oder" or "or".
func afterLessonWord(before string, joiners string) bool {
	for range 64 { // a list longer than this is not read back
		before = strings.TrimRightFunc(before, func(r rune) bool {
			return unicode.IsSpace(r) || strings.ContainsRune(`,;:=#.'"„“”«»‚‘’([-`, r)
		})
		k := len(before)
		for k > 0 {
			r, n := utf8.DecodeLastRuneInString(before[:k])
			if !isWordRune(r) && !(strings.ContainsRune(joiners, r) && k-n > 0) {
				break
			}
			k -= n
		}
		tok := strings.ToLower(before[k:])
		switch {
		case tok == "":
			return false
		case strings.HasPrefix(tok, "lektion") || strings.HasPrefix(tok, "lesson"):
			return true
		case tok == "id" || tok == "ids" || tok == "nr" || tok == "no" || tok == "nummer" || tok == "number" ||
			tok == "und" || tok == "and" || tok == "oder" || tok == "or" ||
			strings.ContainsFunc(tok, unicode.IsDigit):
			before = before[:k]
		default:
			return false
		}
	}
	return false
}

// asciiLower lowercases ASCII letters only, so that the byte length stays the same.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func asciiUpper(s string) string {
	b := []byte(s)
	for j, c := range b {
		if 'a' <= c && c <= 'z' {
			b[j] = c - ('a' - 'A')
		}
	}
	return string(b)
}

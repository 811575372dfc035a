package jobmanagertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// job is one decoded job of a submit body. Field names were matched case-insensitively.
type job struct {
	JobID      string
	HasJobID   bool // false when JobID is absent, null or ""
	Lessons    []StoredLesson
	HasLessons bool // false when LektionList is absent or null
}

// decodeJobs decodes a submit body: a JSON array of job objects. Member names are matched
// case-insensitively (JobID/JobId, LektionId/LektionID, ...): a name matches a known member when
// strings.ToLower makes them equal. Two members of one object whose names differ only in case are
// an error (the sender's intent is ambiguous); of two members with the same name the last counts,
// as with encoding/json. Members a lesson does not know are kept in its Extra, compacted. It
// returns an error, meant for a 400 answer, when the body is not such an array or a known member
// has the wrong JSON type. Missing members are not errors here: they are validation errors of
// the batch.
//
// It accepts exactly the bodies that encoding/json accepts and gives the same results and messages
// as decoding each object into a map of json.RawMessage would (FuzzDecodeJobs compares the two), in
// one pass over the body and without a map per object: the strings it returns share one copy of
// the body, and the Extra values share a few buffers.
func decodeJobs(body []byte) ([]job, error) { return decodeJobsString(string(body)) }

// decodeJobsString is decodeJobs of a body held as a string, which the returned strings share.
func decodeJobsString(body string) ([]job, error) {
	body = strings.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body, want a JSON array of jobs")
	}
	if body[0] != '[' {
		return nil, errors.New("body is not a JSON array of jobs")
	}
	d := decoder{s: body}
	jobs, err := d.jobs()
	if err == nil {
		return jobs, nil
	}
	// A syntax error anywhere in the body is reported before the first job's problem, as a
	// decoder that checks the whole body first would.
	raw := []byte(body)
	if err != errSyntax && json.Valid(raw) {
		return nil, err
	}
	var raws []json.RawMessage
	if uerr := json.Unmarshal(raw, &raws); uerr != nil {
		err = uerr // encoding/json's message, with its offset
	}
	return nil, fmt.Errorf("body is not a JSON array of jobs: %w", err)
}

var errNotObject = errors.New("not a JSON object")

// jobs decodes the body's array (depth 1).
func (d *decoder) jobs() ([]job, error) {
	if d.open(']') {
		if d.ws(); d.i != len(d.s) {
			return nil, errSyntax
		}
		return nil, errors.New("empty job array")
	}
	var jobs []job
	for k := 0; ; k++ {
		j, err := d.job()
		switch {
		case err == errSyntax:
			return nil, err
		case err != nil:
			return nil, fmt.Errorf("job %d: %w", k, err)
		}
		jobs = append(jobs, j)
		more, err := d.more(']')
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
	}
	if d.ws(); d.i != len(d.s) {
		return nil, errSyntax
	}
	return jobs, nil
}

// span is a member's name as sent and its value's offsets.
type span struct {
	name       string
	start, end int
	spaced     bool // the value has whitespace between its tokens
	plain      bool // the value is a string literal without escapes, only ASCII
}

func (sp span) set() bool { return sp.end > 0 }

// names detects members of one object whose names differ only in case.
type names struct {
	known [4]span // by key index
	other []span  // distinct names matching no key, in order; each with its last value
	lower map[string]int

	dup    [2]string // the first pair of names that differ only in case, sorted
	hasDup bool
}

// addKnown records the member matching key k.
func (n *names) addKnown(k int, sp span) {
	if prev := n.known[k]; prev.set() && prev.name != sp.name {
		n.setDup(prev.name, sp.name)
	}
	n.known[k] = sp
}

// addOther records a member matching no key.
func (n *names) addOther(sp span) {
	if n.lower == nil && len(n.other) < 16 {
		for i, o := range n.other {
			if o.name == sp.name {
				n.other[i] = sp
				return
			}
			if lowerEqual(o.name, sp.name) {
				n.setDup(o.name, sp.name)
				return
			}
		}
		n.other = append(n.other, sp)
		return
	}
	if n.lower == nil {
		n.lower = make(map[string]int, 2*len(n.other))
		for i, o := range n.other {
			n.lower[strings.ToLower(o.name)] = i
		}
	}
	low := strings.ToLower(sp.name)
	if i, ok := n.lower[low]; ok {
		if n.other[i].name == sp.name {
			n.other[i] = sp
		} else {
			n.setDup(n.other[i].name, sp.name)
		}
		return
	}
	n.lower[low] = len(n.other)
	n.other = append(n.other, sp)
}

func (n *names) setDup(a, b string) {
	if !n.hasDup {
		n.dup, n.hasDup = [2]string{min(a, b), max(a, b)}, true
	}
}

func (n *names) err() error {
	if !n.hasDup {
		return nil
	}
	return fmt.Errorf("members %q and %q differ only in case", n.dup[0], n.dup[1])
}

// lowerEqual reports strings.ToLower(a) == strings.ToLower(b), without allocating for ASCII.
func lowerEqual(a, b string) bool {
	if isASCII(a) && isASCII(b) {
		return len(a) == len(b) && asciiLowerEqual(a, b)
	}
	//lint:ignore SA6005 the rule is ToLower equality (as before), which differs from EqualFold for "İ"
	return strings.ToLower(a) == strings.ToLower(b)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// asciiLowerEqual compares ASCII strings of equal length case-insensitively.
func asciiLowerEqual(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// keyIndex returns the index of the key in keys (all lower case) that strings.ToLower(name)
// equals, or -1. ascii says that name is known to be ASCII.
func keyIndex(name string, ascii bool, keys []string) int {
	if ascii || isASCII(name) {
		for i, k := range keys {
			if len(k) == len(name) && asciiLowerEqual(k, name) {
				return i
			}
		}
		return -1
	}
	low := strings.ToLower(name) // can map non-ASCII runes to ASCII: "K" (Kelvin) to "k"
	return slices.Index(keys, low)
}

var (
	jobKeys    = []string{"jobid", "lektionlist"}
	lessonKeys = []string{"lektionid", "beginn", "ende", "ressourcename"}
)

// member scans the value of a member (inside depth open containers) and returns its span.
func (d *decoder) member(name string, depth int) (span, error) {
	start := d.i
	if err := d.skip(depth); err != nil {
		return span{}, err
	}
	return span{name: name, start: start, end: d.i, plain: d.s[start] == '"' && d.plain}, nil
}

// lessonList is one LektionList member's value, decoded.
type lessonList struct {
	name    string
	null    bool
	lessons []StoredLesson
	err     error // what the member's value is wrong for, with the member's name
}

// job decodes the value at d.i as a job object (depth 2).
func (d *decoder) job() (job, error) {
	if d.peek() != '{' {
		if err := d.skip(1); err != nil {
			return job{}, err
		}
		return job{}, errNotObject
	}
	var n names
	var list lessonList
	if !d.open('}') {
		for {
			name, plain, err := d.key()
			if err != nil {
				return job{}, err
			}
			k := keyIndex(name, plain, jobKeys)
			switch k {
			case 1:
				n.addKnown(k, span{name: name, end: 1}) // set; the value is in list
				if list, err = d.lessonList(name); err != nil {
					return job{}, err
				}
			default:
				sp, err := d.member(name, 2)
				if err != nil {
					return job{}, err
				}
				if k == 0 {
					n.addKnown(k, sp)
				} else {
					n.addOther(sp)
				}
			}
			more, err := d.more('}')
			if err != nil {
				return job{}, err
			}
			if !more {
				break
			}
		}
	}
	if err := n.err(); err != nil {
		return job{}, err
	}
	var j job
	if id := n.known[0]; id.set() {
		var err error
		if j.JobID, j.HasJobID, err = d.stringValue(id); err != nil {
			return job{}, err
		}
		j.HasJobID = j.HasJobID && j.JobID != ""
	}
	if n.known[1].set() && !list.null {
		if list.err != nil {
			return job{}, list.err
		}
		j.HasLessons, j.Lessons = true, list.lessons
	}
	return j, nil
}

// lessonList decodes the value at d.i of the job member name (depth 2). Only syntax errors are
// returned as errors; the value's other problems are in the result, to be reported once the whole
// job is scanned (a later member of the same name replaces this one).
func (d *decoder) lessonList(name string) (list lessonList, err error) {
	list.name = name
	if d.peek() != '[' {
		start := d.i
		if err := d.skip(2); err != nil {
			return list, err
		}
		if d.s[start:d.i] == "null" {
			list.null = true
		} else {
			list.err = fmt.Errorf("%s: want a JSON array of lessons", name)
		}
		return list, nil
	}
	if d.open(']') {
		return list, nil
	}
	lessons := d.lessons[:0]
	defer func() {
		if list.err == nil && len(lessons) > 0 {
			list.lessons = slices.Clone(lessons)
		}
		clear(lessons) // drop references to this body
		d.lessons = lessons[:0]
	}()
	for k := 0; ; k++ {
		if list.err != nil {
			if err := d.skip(3); err != nil {
				return list, err
			}
		} else {
			l, err := d.lesson()
			switch {
			case err == errSyntax:
				return list, err
			case err != nil:
				list.err = fmt.Errorf("%s[%d]: %w", name, k, err)
			default:
				lessons = append(lessons, l)
			}
		}
		more, err := d.more(']')
		if err != nil {
			return list, err
		}
		if !more {
			return list, nil
		}
	}
}

// lesson decodes the value at d.i as a lesson object (depth 4).
func (d *decoder) lesson() (StoredLesson, error) {
	if d.peek() != '{' {
		if err := d.skip(3); err != nil {
			return StoredLesson{}, err
		}
		return StoredLesson{}, errNotObject
	}
	n := names{other: d.other[:0]}
	defer func() { d.other = n.other[:0] }()
	if !d.open('}') {
		for {
			name, plain, err := d.key()
			if err != nil {
				return StoredLesson{}, err
			}
			d.sawWS = false
			sp, err := d.member(name, 4)
			if err != nil {
				return StoredLesson{}, err
			}
			if k := keyIndex(name, plain, lessonKeys); k >= 0 {
				n.addKnown(k, sp)
			} else {
				sp.spaced = d.sawWS
				n.addOther(sp)
			}
			more, err := d.more('}')
			if err != nil {
				return StoredLesson{}, err
			}
			if !more {
				break
			}
		}
	}
	if err := n.err(); err != nil {
		return StoredLesson{}, err
	}
	var l StoredLesson
	for k, dst := range [...]*string{&l.LektionID, &l.Beginn, &l.Ende, &l.RessourceName} {
		if sp := n.known[k]; sp.set() {
			var err error
			if *dst, _, err = d.stringValue(sp); err != nil {
				return StoredLesson{}, err
			}
		}
	}
	if len(n.other) > 0 {
		l.Extra = make(map[string]json.RawMessage, len(n.other))
		for _, sp := range n.other {
			l.Extra[sp.name] = d.extra(sp)
		}
	}
	return l, nil
}

// stringValue decodes a member that must be a string; ok is false when it is null.
func (d *decoder) stringValue(sp span) (s string, ok bool, err error) {
	raw := d.s[sp.start:sp.end]
	switch raw[0] {
	case 'n':
		return "", false, nil
	case '"':
		if sp.plain {
			return raw[1 : len(raw)-1], true, nil
		}
		s, err := unquote(raw)
		return s, err == nil, err
	}
	return "", false, fmt.Errorf("%s: want a string, got %s", sp.name, truncate(raw, 40))
}

// extraChunk is the size of the buffers that compact Extra values are copied into.
const extraChunk = 8 << 10

// extra returns a copy of a member's value, compacted.
func (d *decoder) extra(sp span) json.RawMessage {
	v := d.s[sp.start:sp.end]
	if sp.spaced {
		var buf bytes.Buffer
		_ = json.Compact(&buf, []byte(v)) // valid: scanned
		return buf.Bytes()
	}
	if len(v) > extraChunk/4 {
		return json.RawMessage(v)
	}
	if cap(d.arena)-len(d.arena) < len(v) {
		d.arena = make([]byte, 0, extraChunk)
	}
	start := len(d.arena)
	d.arena = append(d.arena, v...)
	return d.arena[start:len(d.arena):len(d.arena)]
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

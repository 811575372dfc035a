package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxLessonIDLength is the most characters (Unicode code points) a data.lessonId may have.
const MaxLessonIDLength = 200

// maxValueLen is how many bytes of an offending value a FieldError quotes.
const maxValueLen = 100

// FieldError is one problem with one field of an event.
type FieldError struct {
	// Field is the member's path in dot form ("data.start"), or a pseudo-field in
	// parentheses: "(body)" for the message as a whole, "(mandator)" for the subject's
	// mandator token.
	Field string
	// Value is the offending value, truncated to about 100 bytes: a string member's
	// decoded text, or for a member of the wrong JSON type its JSON text. Empty when
	// there is no value to show (a missing member, an empty string).
	Value string
	// Problem says what is wrong, e.g. `must be "1.0"` or "is required".
	Problem string
}

// Error reads `field "value" problem`, or `field problem` when Value is empty.
func (e FieldError) Error() string {
	field := e.Field
	if field == "" {
		field = "(body)"
	}
	if e.Value == "" {
		return field + " " + e.Problem
	}
	return fmt.Sprintf("%s %q %s", field, e.Value, e.Problem)
}

// DecodeError is returned by Decode for an invalid event. It lists every problem found,
// in a stable order: the subject's mandator, the message body, the envelope's attributes
// in the order of contract section 3, then the members of data.
type DecodeError struct {
	Fields []FieldError // never empty
}

// Error joins the field errors with "; ".
func (e *DecodeError) Error() string {
	var b strings.Builder
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// ValidMandator returns nil if s can be a mandator, the last token of the subject
// lessons.changes.<mandator>: 1 to 64 characters from [A-Za-z0-9_-]. The error names s.
func ValidMandator(s string) error {
	if !validMandator(s) {
		return fmt.Errorf("schemas: invalid mandator %q: must match [A-Za-z0-9_-]{1,64}", truncate(s))
	}
	return nil
}

func validMandator(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Decode parses and validates a lesson-change event (contract section 3) received on the
// subject lessons.changes.<mandator>. It returns the event, or nil and a *DecodeError
// listing every problem found.
//
// Decode enforces everything lesson-change.schema.json says, and the rules that JSON
// Schema cannot express: the mandator must be a valid subject token, data.mandator (when
// present) must equal it, data.end must be after data.start for created and updated
// events, and those times must not be the zero time.Time (0001-01-01T00:00:00Z), which
// encoding/json's omitzero would drop. Leap seconds (ss = 60) are rejected because
// time.Time cannot hold them. Member names are matched case-sensitively; of duplicate
// members the last one counts; members the contract does not know are ignored, and so is
// a "data" member's unknown content. An empty data.attributes object decodes as nil.
//
// Decode is safe for concurrent use and does not keep raw. The returned strings share one
// copy of the string members' bytes (not of the whole body: keys, times and punctuation are
// not kept). NOTE: it is the hot path of the bridge's intake; it validates with
// hand-written checks, not with the JSON Schema validator.
func Decode(raw []byte, mandator string) (*LessonChange, error) {
	d := decoder{raw: raw}
	if !validMandator(mandator) {
		d.fail("(mandator)", mandator, "must match [A-Za-z0-9_-]{1,64}")
	}
	e := d.decode(mandator)
	if len(d.errs) > 0 {
		return nil, &DecodeError{Fields: d.errs}
	}
	return e, nil
}

// decoder holds one Decode call's state.
type decoder struct {
	raw   []byte
	body  string // the kept spans' bytes, made once, shared by the returned strings
	errs  []FieldError
	nKept int
	kept  [maxKept]keptSpan // which string contents of raw body holds (an array: d stays on the stack)
}

// keptSpan says that the string content raw[lo:hi] is body[off:off+hi-lo].
type keptSpan struct{ lo, hi, off int }

// maxKeptAttributes is how many data.attributes names share the body copy; the names of further
// members are copied one by one.
const maxKeptAttributes = 8

// maxKept bounds the kept spans: 8 envelope and 4 data members, and the attributes' names.
const maxKept = 8 + 4 + maxKeptAttributes

// keepString marks the content of the string literal at s (if it is one) for the body copy.
func (d *decoder) keepString(s span) {
	if s.present() && d.raw[s.lo] == '"' {
		d.keepContent(s.lo+1, s.hi-1)
	}
}

// keepContent marks raw[lo:hi] for the body copy, while there is room.
func (d *decoder) keepContent(lo, hi int) {
	if d.nKept < len(d.kept) {
		d.kept[d.nKept] = keptSpan{lo: lo, hi: hi}
		d.nKept++
	}
}

// buildBody copies the kept spans into body, in one allocation.
func (d *decoder) buildBody() {
	n := 0
	for _, k := range d.kept[:d.nKept] {
		n += k.hi - k.lo
	}
	var b strings.Builder
	b.Grow(n)
	for i := range d.kept[:d.nKept] {
		d.kept[i].off = b.Len()
		b.Write(d.raw[d.kept[i].lo:d.kept[i].hi])
	}
	d.body = b.String()
}

// content returns raw[lo:hi] as a string: from body when kept, else a copy.
func (d *decoder) content(lo, hi int) string {
	for _, k := range d.kept[:d.nKept] {
		if k.lo == lo && k.hi == hi {
			return d.body[k.off : k.off+hi-lo]
		}
	}
	return string(d.raw[lo:hi])
}

func (d *decoder) fail(field, value, problem string) {
	d.errs = append(d.errs, FieldError{Field: field, Value: truncate(value), Problem: problem})
}

// event is the result plus room for its time, so that both take one allocation.
type event struct {
	LessonChange
	time time.Time
}

// Member spans of the envelope and of data, by the order in which they are checked.
const (
	fSpecVersion = iota
	fID
	fSource
	fType
	fTime
	fSubject
	fDataContentType
	fDataSchema
	fTraceParent
	fData
	nEnvelope
)

const (
	fLessonID = iota
	fStart
	fEnd
	fResource
	fGroup
	fMandator
	fAttributes
	nData
)

func (d *decoder) decode(mandator string) *LessonChange {
	raw := d.raw
	i := skipSpace(raw, 0)
	if i == len(raw) || raw[i] != '{' {
		end := checkValue(raw, i, 0)
		if end < 0 || skipSpace(raw, end) != len(raw) {
			d.syntaxError()
		} else {
			d.wrongType("(body)", span{i, end}, "a JSON object")
		}
		return nil
	}

	// One pass finds the envelope's members and checks the whole body's syntax.
	var env [nEnvelope]span
	m := checkedMembers{b: raw, i: i + 1, depth: 1}
	for {
		key, val, ok := m.next()
		if !ok {
			break
		}
		f := -1
		switch string(keyBytes(raw, key)) {
		case "specversion":
			f = fSpecVersion
		case "id":
			f = fID
		case "source":
			f = fSource
		case "type":
			f = fType
		case "time":
			f = fTime
		case "subject":
			f = fSubject
		case "datacontenttype":
			f = fDataContentType
		case "dataschema":
			f = fDataSchema
		case "traceparent":
			f = fTraceParent
		case "data":
			f = fData
		}
		if f >= 0 {
			env[f] = val
		}
	}
	if m.end < 0 || skipSpace(raw, m.end) != len(raw) {
		d.syntaxError()
		return nil
	}
	// The string members that the result keeps share one copy.
	for _, f := range [...]int{fSpecVersion, fID, fSource, fType, fSubject, fDataContentType, fDataSchema, fTraceParent} {
		d.keepString(env[f])
	}
	var dataF [nData]span
	if data := env[fData]; data.present() && raw[data.lo] == '{' {
		dataF = dataSpans(raw, data)
		for _, f := range [...]int{fLessonID, fResource, fGroup, fMandator} {
			d.keepString(dataF[f])
		}
		if a := dataF[fAttributes]; a.present() && raw[a.lo] == '{' {
			am := newMembers(raw, a)
			for range maxKeptAttributes {
				key, _, ok := am.next()
				if !ok {
					break
				}
				d.keepContent(key.lo, key.hi)
			}
		}
	}
	d.buildBody()

	ev := &event{}
	e := &ev.LessonChange
	if s, ok := d.str("specversion", env[fSpecVersion], true); ok && s != SpecVersion {
		d.fail("specversion", s, `must be "1.0"`)
	}
	e.SpecVersion = SpecVersion
	e.ID, _ = d.requiredString("id", env[fID])
	e.Source, _ = d.requiredString("source", env[fSource])
	typ, ok := d.str("type", env[fType], true)
	if ok && typ != TypeLessonCreated && typ != TypeLessonUpdated && typ != TypeLessonDeleted {
		d.fail("type", typ, "must be one of lesson.created, lesson.updated, lesson.deleted")
	}
	e.Type = typ
	if env[fTime].present() {
		if t, ok := d.time("time", env[fTime]); ok {
			ev.time = t
			e.Time = &ev.time
		}
	}
	e.Subject, _ = d.str("subject", env[fSubject], false)
	if ct, ok := d.str("datacontenttype", env[fDataContentType], false); ok {
		if env[fDataContentType].present() && !jsonMediaType(ct) {
			d.fail("datacontenttype", ct, "must be a JSON media type (application/json or */*+json)")
		}
		e.DataContentType = ct
	}
	e.DataSchema, _ = d.str("dataschema", env[fDataSchema], false)
	e.TraceParent = d.traceParent(env[fTraceParent])

	data := env[fData]
	switch {
	case !data.present():
		d.fail("data", "", "is required")
	case raw[data.lo] != '{':
		d.wrongType("data", data, "an object")
	default:
		d.decodeData(&e.Data, dataF, typ, mandator)
	}
	if len(d.errs) > 0 {
		return nil
	}
	return e
}

// traceParent returns the CloudEvents distributed-tracing extension's value when it is a valid W3C
// traceparent and "" otherwise: tracing never fails an event. A value with escapes is not one.
func (d *decoder) traceParent(tp span) string {
	n := tp.hi - tp.lo
	if !tp.present() || n < 2+traceParentLen || n > 2+maxTraceParentLen || d.raw[tp.lo] != '"' ||
		bytes.IndexByte(d.raw[tp.lo:tp.hi], '\\') >= 0 {
		return ""
	}
	if s := d.content(tp.lo+1, tp.hi-1); ValidTraceParent(s) {
		return s
	}
	return ""
}

// dataSpans finds the members of the data object at obj.
func dataSpans(raw []byte, obj span) [nData]span {
	var f [nData]span
	m := newMembers(raw, obj)
	for {
		key, val, ok := m.next()
		if !ok {
			break
		}
		i := -1
		switch string(keyBytes(raw, key)) {
		case "lessonId":
			i = fLessonID
		case "start":
			i = fStart
		case "end":
			i = fEnd
		case "resource":
			i = fResource
		case "group":
			i = fGroup
		case "mandator":
			i = fMandator
		case "attributes":
			i = fAttributes
		}
		if i >= 0 {
			f[i] = val
		}
	}
	return f
}

// decodeData decodes and checks the data object whose members dataSpans found.
func (d *decoder) decodeData(out *LessonData, f [nData]span, typ, mandator string) {
	raw := d.raw
	if id, ok := d.requiredString("data.lessonId", f[fLessonID]); ok && id != "" {
		if utf8.RuneCountInString(id) > MaxLessonIDLength {
			d.fail("data.lessonId", id, fmt.Sprintf("is longer than %d characters", MaxLessonIDLength))
		}
		if strings.IndexFunc(id, unicode.IsControl) >= 0 {
			d.fail("data.lessonId", id, "contains a control character")
		}
		out.LessonID = id
	}

	timed := typ == TypeLessonCreated || typ == TypeLessonUpdated
	startOK, endOK := false, false
	out.Start, startOK = d.lessonTime("data.start", f[fStart], timed)
	out.End, endOK = d.lessonTime("data.end", f[fEnd], timed)
	if timed && startOK && endOK && !out.End.After(out.Start) {
		d.fail("data.end", d.plain(f[fEnd]), "is not after data.start")
	}
	if timed {
		out.Resource, _ = d.requiredString("data.resource", f[fResource])
	} else {
		out.Resource, _ = d.str("data.resource", f[fResource], false)
	}
	out.Group, _ = d.str("data.group", f[fGroup], false)
	if mt, ok := d.str("data.mandator", f[fMandator], false); ok && f[fMandator].present() {
		if validMandator(mandator) && mt != mandator {
			d.fail("data.mandator", mt, fmt.Sprintf("does not equal the subject's mandator %q", mandator))
		}
		out.Mandator = mt
	}
	if a := f[fAttributes]; a.present() {
		if raw[a.lo] != '{' {
			d.wrongType("data.attributes", a, "an object")
		} else {
			out.Attributes = d.attributes(a)
		}
	}
}

// lessonTime decodes data.start or data.end; required says whether it must be present.
// ok is true only for a present, valid time.
func (d *decoder) lessonTime(field string, s span, required bool) (t time.Time, ok bool) {
	if !s.present() {
		if required {
			d.fail(field, "", "is required")
		}
		return time.Time{}, false
	}
	t, ok = d.time(field, s)
	if ok && required && t.IsZero() {
		d.fail(field, d.plain(s), "must not be the zero time")
		return time.Time{}, false
	}
	return t, ok
}

// time decodes a present RFC 3339 date-time member.
func (d *decoder) time(field string, s span) (time.Time, bool) {
	if d.raw[s.lo] != '"' {
		d.wrongType(field, s, "a string")
		return time.Time{}, false
	}
	content := d.raw[s.lo+1 : s.hi-1]
	var t time.Time
	var err error
	if plainString(content) {
		t, err = parseRFC3339(content)
	} else {
		t, err = parseRFC3339(d.plain(s))
	}
	if err != nil {
		d.fail(field, d.plain(s), err.Error())
		return time.Time{}, false
	}
	return t, true
}

// requiredString decodes a member that must be a non-empty string. ok is false when it
// is absent or not a string.
func (d *decoder) requiredString(field string, s span) (string, bool) {
	v, ok := d.str(field, s, true)
	if ok && v == "" {
		d.fail(field, "", "must not be empty")
	}
	return v, ok
}

// str decodes a string member. An absent member is an error only if required; ok is
// false for an absent member or one of another JSON type.
func (d *decoder) str(field string, s span, required bool) (string, bool) {
	if !s.present() {
		if required {
			d.fail(field, "", "is required")
		}
		return "", !required
	}
	if d.raw[s.lo] != '"' {
		d.wrongType(field, s, "a string")
		return "", false
	}
	return d.plain(s), true
}

// plain returns the string literal at s, decoded. s must be a string literal.
func (d *decoder) plain(s span) string {
	if plainString(d.raw[s.lo+1 : s.hi-1]) {
		return d.content(s.lo+1, s.hi-1)
	}
	var v string
	if err := json.Unmarshal(d.raw[s.lo:s.hi], &v); err != nil {
		return string(d.raw[s.lo+1 : s.hi-1]) // not reached: the literal is valid JSON
	}
	return v
}

// attributes decodes the object at s; an empty object yields nil. The values share one
// copy of the object's bytes.
func (d *decoder) attributes(s span) map[string]json.RawMessage {
	m := newMembers(d.raw, s)
	if _, _, ok := m.next(); !ok {
		return nil
	}
	buf := append([]byte(nil), d.raw[s.lo:s.hi]...)
	out := make(map[string]json.RawMessage)
	m = newMembers(d.raw, s)
	for {
		key, val, ok := m.next()
		if !ok {
			break
		}
		name := d.plain(span{key.lo - 1, key.hi + 1})
		out[name] = json.RawMessage(buf[val.lo-s.lo : val.hi-s.lo : val.hi-s.lo])
	}
	return out
}

// wrongType reports a member of the wrong JSON type, quoting its compacted JSON text.
func (d *decoder) wrongType(field string, s span, want string) {
	var b bytes.Buffer
	if json.Compact(&b, d.raw[s.lo:s.hi]) != nil {
		b.Reset()
		b.Write(d.raw[s.lo:s.hi])
	}
	d.fail(field, b.String(), "must be "+want+", not "+jsonKind(d.raw[s.lo]))
}

// syntaxError reports a body that is not valid JSON. It is called only once the scanner
// has found that, and takes the message and offset from encoding/json, so that they are
// json.Unmarshal's own.
func (d *decoder) syntaxError() {
	var v struct{}
	err := json.Unmarshal(d.raw, &v)
	var se *json.SyntaxError
	switch {
	case len(d.raw) == 0:
		d.fail("(body)", "", "is empty")
	case errors.As(err, &se):
		d.fail("(body)", "", fmt.Sprintf("is not valid JSON: %v (at byte offset %d)", se, se.Offset))
	case err != nil:
		d.fail("(body)", "", fmt.Sprintf("is not valid JSON: %v", err))
	default:
		d.fail("(body)", "", "is not valid JSON")
	}
}

// jsonMediaType reports whether ct is application/json or */*+json (case-insensitive),
// optionally followed by whitespace and parameters without control characters.
func jsonMediaType(ct string) bool {
	mt, params, hasParams := strings.Cut(ct, ";")
	mt = strings.TrimRight(mt, " \t")
	if hasParams {
		for i := 0; i < len(params); i++ {
			if c := params[i]; c < 0x20 || c == 0x7f {
				return false
			}
		}
	}
	if asciiEqualFold(mt, "application/json") {
		return true
	}
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || !isToken(typ) || !isToken(sub) || len(sub) <= len("+json") {
		return false
	}
	return asciiEqualFold(sub[len(sub)-len("+json"):], "+json")
}

// asciiEqualFold is strings.EqualFold for ASCII only: media types fold no other letters.
func asciiEqualFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// truncate shortens s to about maxValueLen bytes, on a rune boundary, marking the cut.
func truncate(s string) string {
	if len(s) <= maxValueLen {
		return s
	}
	cut := maxValueLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

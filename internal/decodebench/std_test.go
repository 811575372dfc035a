package decodebench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lessonbridge/lessonbridge/schemas"
)

// stdDecode is schemas.Decode written the straightforward way: the body and data are
// unmarshalled by encoding/json into maps of json.RawMessage (case-sensitive names, the
// last of duplicate members wins, as Decode does), each value is converted with
// json.Unmarshal; the checks after that are Decode's, copied.
func stdDecode(raw []byte, mandator string) (*schemas.LessonChange, error) {
	var d decoder
	if !validMandator(mandator) {
		d.fail("(mandator)", mandator, "must match [A-Za-z0-9_-]{1,64}")
	}
	e := d.decode(raw, mandator)
	if len(d.errs) > 0 {
		return nil, &schemas.DecodeError{Fields: d.errs}
	}
	return e, nil
}

type decoder struct{ errs []schemas.FieldError }

const maxValueLen = 100

func (d *decoder) fail(field, value, problem string) {
	d.errs = append(d.errs, schemas.FieldError{Field: field, Value: truncate(value), Problem: problem})
}

func (d *decoder) decode(raw []byte, mandator string) *schemas.LessonChange {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(raw, &env); err != nil || env == nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) || err == nil { // valid JSON, but not an object
			d.wrongType("(body)", bytes.TrimSpace(raw), "a JSON object")
		} else {
			d.syntaxError(raw)
		}
		return nil
	}
	e := &schemas.LessonChange{}
	if s, ok := d.str("specversion", env["specversion"], true); ok && s != schemas.SpecVersion {
		d.fail("specversion", s, `must be "1.0"`)
	}
	e.SpecVersion = schemas.SpecVersion
	e.ID, _ = d.requiredString("id", env["id"])
	e.Source, _ = d.requiredString("source", env["source"])
	typ, ok := d.str("type", env["type"], true)
	if ok && typ != schemas.TypeLessonCreated && typ != schemas.TypeLessonUpdated && typ != schemas.TypeLessonDeleted {
		d.fail("type", typ, "must be one of lesson.created, lesson.updated, lesson.deleted")
	}
	e.Type = typ
	if v := env["time"]; v != nil {
		if t, ok := d.time("time", v); ok {
			e.Time = &t
		}
	}
	e.Subject, _ = d.str("subject", env["subject"], false)
	if ct, ok := d.str("datacontenttype", env["datacontenttype"], false); ok {
		if env["datacontenttype"] != nil && !jsonMediaType(ct) {
			d.fail("datacontenttype", ct, "must be a JSON media type (application/json or */*+json)")
		}
		e.DataContentType = ct
	}
	e.DataSchema, _ = d.str("dataschema", env["dataschema"], false)
	if v := env["traceparent"]; v != nil && v[0] == '"' && !bytes.Contains(v, []byte{'\\'}) {
		if s := d.plain(v); schemas.ValidTraceParent(s) {
			e.TraceParent = s // kept when valid, ignored otherwise, as Decode does
		}
	}

	data := env["data"]
	switch {
	case data == nil:
		d.fail("data", "", "is required")
	case data[0] != '{':
		d.wrongType("data", data, "an object")
	default:
		d.decodeData(&e.Data, data, typ, mandator)
	}
	if len(d.errs) > 0 {
		return nil
	}
	return e
}

func (d *decoder) decodeData(out *schemas.LessonData, obj json.RawMessage, typ, mandator string) {
	var f map[string]json.RawMessage
	if err := json.Unmarshal(obj, &f); err != nil {
		panic(err) // not reached: obj is a valid object
	}
	if id, ok := d.requiredString("data.lessonId", f["lessonId"]); ok && id != "" {
		if utf8.RuneCountInString(id) > schemas.MaxLessonIDLength {
			d.fail("data.lessonId", id, fmt.Sprintf("is longer than %d characters", schemas.MaxLessonIDLength))
		}
		if strings.IndexFunc(id, unicode.IsControl) >= 0 {
			d.fail("data.lessonId", id, "contains a control character")
		}
		out.LessonID = id
	}
	timed := typ == schemas.TypeLessonCreated || typ == schemas.TypeLessonUpdated
	startOK, endOK := false, false
	out.Start, startOK = d.lessonTime("data.start", f["start"], timed)
	out.End, endOK = d.lessonTime("data.end", f["end"], timed)
	if timed && startOK && endOK && !out.End.After(out.Start) {
		d.fail("data.end", d.plain(f["end"]), "is not after data.start")
	}
	if timed {
		out.Resource, _ = d.requiredString("data.resource", f["resource"])
	} else {
		out.Resource, _ = d.str("data.resource", f["resource"], false)
	}
	out.Group, _ = d.str("data.group", f["group"], false)
	if mt, ok := d.str("data.mandator", f["mandator"], false); ok && f["mandator"] != nil {
		if validMandator(mandator) && mt != mandator {
			d.fail("data.mandator", mt, fmt.Sprintf("does not equal the subject's mandator %q", mandator))
		}
		out.Mandator = mt
	}
	if a := f["attributes"]; a != nil {
		if a[0] != '{' {
			d.wrongType("data.attributes", a, "an object")
		} else {
			var attrs map[string]json.RawMessage
			if err := json.Unmarshal(a, &attrs); err != nil {
				panic(err) // not reached
			}
			if len(attrs) > 0 {
				out.Attributes = attrs
			}
		}
	}
}

func (d *decoder) lessonTime(field string, v json.RawMessage, required bool) (t time.Time, ok bool) {
	if v == nil {
		if required {
			d.fail(field, "", "is required")
		}
		return time.Time{}, false
	}
	t, ok = d.time(field, v)
	if ok && required && t.IsZero() {
		d.fail(field, d.plain(v), "must not be the zero time")
		return time.Time{}, false
	}
	return t, ok
}

func (d *decoder) time(field string, v json.RawMessage) (time.Time, bool) {
	if v[0] != '"' {
		d.wrongType(field, v, "a string")
		return time.Time{}, false
	}
	s := d.plain(v)
	t, err := parseRFC3339(s)
	if err != nil {
		d.fail(field, s, err.Error())
		return time.Time{}, false
	}
	return t, true
}

func (d *decoder) requiredString(field string, v json.RawMessage) (string, bool) {
	s, ok := d.str(field, v, true)
	if ok && s == "" {
		d.fail(field, "", "must not be empty")
	}
	return s, ok
}

func (d *decoder) str(field string, v json.RawMessage, required bool) (string, bool) {
	if v == nil {
		if required {
			d.fail(field, "", "is required")
		}
		return "", !required
	}
	if v[0] != '"' {
		d.wrongType(field, v, "a string")
		return "", false
	}
	return d.plain(v), true
}

// plain decodes a string literal.
func (d *decoder) plain(v json.RawMessage) string {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		panic(err) // not reached: v is a valid string literal
	}
	return s
}

func (d *decoder) wrongType(field string, v []byte, want string) {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		b.Reset()
		b.Write(v)
	}
	d.fail(field, b.String(), "must be "+want+", not "+jsonKind(v[0]))
}

func (d *decoder) syntaxError(raw []byte) {
	var v struct{}
	err := json.Unmarshal(raw, &v)
	var se *json.SyntaxError
	switch {
	case len(raw) == 0:
		d.fail("(body)", "", "is empty")
	case errors.As(err, &se):
		d.fail("(body)", "", fmt.Sprintf("is not valid JSON: %v (at byte offset %d)", se, se.Offset))
	case err != nil:
		d.fail("(body)", "", fmt.Sprintf("is not valid JSON: %v", err))
	default:
		d.fail("(body)", "", "is not valid JSON")
	}
}

func jsonKind(c byte) string {
	switch c {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func validMandator(s string) bool { return schemas.ValidMandator(s) == nil }

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

package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzDecode checks that Decode never panics, that whatever it accepts satisfies the
// event's invariants and survives a json.Marshal round trip unchanged, and that whatever
// it rejects comes with a *DecodeError naming at least one field.
//
//	go test -run='^$' -fuzz=FuzzDecode -fuzztime=60s ./schemas/
func FuzzDecode(f *testing.F) {
	for _, x := range readExamples(f, SchemaLessonChange) {
		f.Add(x.raw, exampleMandator)
	}
	f.Add([]byte(`{"specversion":"1.0","id":"a","source":"b","type":"lesson.deleted","data":{"lessonId":"c"}}`), "m")
	f.Fuzz(func(t *testing.T, raw []byte, mandator string) {
		e, err := Decode(raw, mandator)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || len(de.Fields) == 0 {
				t.Fatalf("error %v (%T) is not a *DecodeError with fields", err, err)
			}
			if e != nil {
				t.Fatalf("Decode returned an event and an error")
			}
			for _, fe := range de.Fields {
				if fe.Problem == "" || len(fe.Value) > maxValueLen+len("...") {
					t.Fatalf("bad field error %#v", fe)
				}
			}
			// What the schema accepts, Decode may reject only for the rules the schema
			// cannot express, or for a date-time the schema's format check is lax about.
			if ValidateSchema(SchemaLessonChange, raw) == nil {
				for _, fe := range de.Fields {
					if !goOnlyProblem(fe) {
						t.Fatalf("schema accepts %q, Decode rejects it: %v", raw, fe)
					}
				}
			}
			return
		}
		if err := checkInvariants(e, mandator); err != nil {
			t.Fatalf("accepted %q: %v", raw, err)
		}
		if err := ValidateSchema(SchemaLessonChange, raw); err != nil {
			t.Fatalf("Decode accepts %q, the schema rejects it: %v", raw, err)
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("marshal %+v: %v", e, err)
		}
		e2, err := Decode(again, mandator)
		if err != nil {
			t.Fatalf("re-decode %s: %v", again, err)
		}
		if err := sameEvent(e, e2); err != nil {
			t.Fatalf("round trip of %q changed the event: %v", raw, err)
		}
	})
}

// goOnlyProblem reports whether fe is a problem that lesson-change.schema.json does not
// catch: one of the rules it cannot express, or a date-time that the validator's format
// check accepts although it is not RFC 3339 (it takes "+1" for an hour, for instance).
func goOnlyProblem(fe FieldError) bool {
	switch {
	case fe.Field == "(mandator)",
		fe.Field == "data.mandator" && strings.HasPrefix(fe.Problem, "does not equal"),
		fe.Problem == "is not after data.start",
		fe.Problem == "must not be the zero time",
		fe.Problem == errLeapSecond.Error(),
		fe.Problem == errNotRFC3339.Error():
		return true
	}
	return false
}

// checkInvariants re-validates a decoded event from scratch.
func checkInvariants(e *LessonChange, mandator string) error {
	var problems []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	check(e.SpecVersion == SpecVersion, "specversion %q", e.SpecVersion)
	check(e.ID != "", "empty id")
	check(e.Source != "", "empty source")
	check(e.Action() != "", "no action for type %q", e.Type)
	check(e.DataContentType == "" || jsonMediaType(e.DataContentType), "datacontenttype %q", e.DataContentType)
	check(ValidMandator(mandator) == nil, "invalid mandator %q accepted", mandator)
	d := e.Data
	check(d.LessonID != "", "empty lessonId")
	check(utf8.RuneCountInString(d.LessonID) <= MaxLessonIDLength, "lessonId too long")
	check(strings.IndexFunc(d.LessonID, unicode.IsControl) < 0, "lessonId %q has a control character", d.LessonID)
	if e.Type == TypeLessonCreated || e.Type == TypeLessonUpdated {
		check(!d.Start.IsZero() && !d.End.IsZero(), "zero start or end")
		check(d.End.After(d.Start), "end %v not after start %v", d.End, d.Start)
		check(d.Resource != "", "empty resource")
	}
	check(d.Mandator == "" || d.Mandator == mandator, "data.mandator %q != %q", d.Mandator, mandator)
	check(d.Attributes == nil || len(d.Attributes) > 0, "empty non-nil attributes")
	for k, v := range d.Attributes {
		check(json.Valid(v), "attribute %q is not JSON: %q", k, v)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// sameEvent compares two events; attribute values are compared as JSON values, since
// json.Marshal compacts and HTML-escapes raw messages.
func sameEvent(a, b *LessonChange) error {
	ac, bc := *a, *b
	ac.Data.Attributes, bc.Data.Attributes = nil, nil
	if !reflect.DeepEqual(ac, bc) {
		return fmt.Errorf("%+v != %+v", ac, bc)
	}
	if len(a.Data.Attributes) != len(b.Data.Attributes) {
		return fmt.Errorf("attributes %v != %v", a.Data.Attributes, b.Data.Attributes)
	}
	for k, av := range a.Data.Attributes {
		bv, ok := b.Data.Attributes[k]
		if !ok {
			return fmt.Errorf("attribute %q lost", k)
		}
		x, errA := jsonValue(av)
		y, errB := jsonValue(bv)
		if errA != nil || errB != nil || !reflect.DeepEqual(x, y) {
			return fmt.Errorf("attribute %q: %s != %s (%v, %v)", k, av, bv, errA, errB)
		}
	}
	return nil
}

func jsonValue(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

package schemas

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// This file keeps Decode as it was before the scanner checked syntax itself: a full
// json.Valid pass over the body, then the walker of jsonscan.go on input known to be
// valid. It is the oracle of FuzzDecodeMatchesPrepass and the baseline of
// BenchmarkDecodeWithPrepass. The helpers shared with Decode (str, time, decodeData, ...)
// were not changed by the one-pass scanner.

// decodeWithPrepass is Decode with the json.Valid pre-pass.
func decodeWithPrepass(raw []byte, mandator string) (*LessonChange, error) {
	d := decoder{raw: raw}
	if !validMandator(mandator) {
		d.fail("(mandator)", mandator, "must match [A-Za-z0-9_-]{1,64}")
	}
	e := d.decodeWithPrepass(mandator)
	if len(d.errs) > 0 {
		return nil, &DecodeError{Fields: d.errs}
	}
	return e, nil
}

// decodeWithPrepass is the old (*decoder).decode.
func (d *decoder) decodeWithPrepass(mandator string) *LessonChange {
	raw := d.raw
	if !json.Valid(raw) {
		d.syntaxError()
		return nil
	}
	i := skipSpace(raw, 0)
	if raw[i] != '{' {
		d.wrongType("(body)", span{i, valueEnd(raw, i)}, "a JSON object")
		return nil
	}

	var env [nEnvelope]span
	m := newMembers(raw, span{i, valueEnd(raw, i)})
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
		d.decodeData(&e.Data, dataSpans(raw, data), typ, mandator)
	}
	if len(d.errs) > 0 {
		return nil
	}
	return e
}

// syntaxCases are inputs at the edges of the JSON grammar, with json.Valid's verdict.
var syntaxCases = []struct {
	in    string
	valid bool
}{
	{"", false},
	{" \t\r\n", false},
	{"{}", true},
	{" {} \n", true},
	{"\f{}", false},           // form feed is not JSON whitespace
	{"{}\u00a0", false},       // nor is NBSP
	{"\xef\xbb\xbf{}", false}, // nor a byte order mark
	{"{} {}", false},          // trailing value
	{"{}x", false},            // trailing garbage
	{"{},", false},            //
	{"{", false},              //
	{"}", false},              //
	{`{"a"}`, false},          // key without value
	{`{"a":}`, false},         //
	{`{"a":1,}`, false},       // trailing comma
	{`{,"a":1}`, false},       //
	{`{"a":1 "b":2}`, false},  // missing comma
	{`{"a" 1}`, false},        // missing colon
	{`{a:1}`, false},          // unquoted key
	{`{1:1}`, false},          //
	{`{"a":1,"a":2}`, true},   // duplicate keys are fine
	{`{"a":[1,[2,{"b":null}],{}]}`, true},
	{`[1,]`, false},
	{`[,1]`, false},
	{`[1 2]`, false},
	{`[`, false},
	{`[]]`, false},
	{`[}`, false},
	{`{]`, false},
	{`"abc`, false},                // unterminated
	{`"a\"`, false},                // escaped quote, still unterminated
	{`"a\\"`, true},                // escaped backslash
	{`"\"\\\/\b\f\n\r\t"`, true},   // every short escape
	{`"\a"`, false},                // unknown escapes
	{`"\x41"`, false},              //
	{`"\'"`, false},                //
	{`"\u00e9\uD800\udc00"`, true}, // lone surrogates are syntactically fine
	{`"\u00g0"`, false},            //
	{`"\u12"`, false},              //
	{`"\u`, false},                 //
	{`"\`, false},                  //
	{"\"a\x00b\"", false},          // control characters
	{"\"a\x1fb\"", false},          //
	{"\"a\tb\"", false},            //
	{"\"a\nb\"", false},            //
	{"\"a\x7fb\"", true},           // DEL is not a control character to JSON
	{"\"a\xffb\"", true},           // invalid UTF-8 is accepted
	{"\"\xc3\"", true},             // a truncated sequence too
	{"\"\xed\xa0\x80\"", true},     // an encoded surrogate too
	{"\xff", false},                // but not outside strings
	{"0", true},
	{"-0", true},
	{"01", false},
	{"-01", false},
	{"-", false},
	{"+1", false},
	{"1.", false},
	{".5", false},
	{"1.5", true},
	{"1.5e", false},
	{"1e+", false},
	{"1E-07", true},
	{"1e5.0", false},
	{"-0.0e-0", true},
	{"1_000", false},
	{"0x10", false},
	{"NaN", false},
	{"Infinity", false},
	{"1 2", false},
	{"true", true},
	{"tru", false},
	{"truex", false},
	{"True", false},
	{"false", true},
	{"fals", false},
	{"null", true},
	{"nul", false},
	{"nulll", false},
	{"[true,false,null]", true},
	{`{"a":tru}`, false},
	{`{"a":-}`, false},
	{`{"a":0}`, true},
	{`{"a":01}`, false},
	{strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth), true},
	{strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), false},
	{strings.Repeat(`{"a":`, maxDepth) + "1" + strings.Repeat("}", maxDepth), true},
	{strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1), false},
	{strings.Repeat(`{"a":[`, maxDepth/2) + strings.Repeat("]}", maxDepth/2), true},
	{`{"a":` + strings.Repeat(`[`, maxDepth) + strings.Repeat(`]`, maxDepth) + "}", false},
}

// scannerValid is the scanner's verdict on b as a whole JSON text.
func scannerValid(b []byte) bool {
	end := checkValue(b, skipSpace(b, 0), 0)
	return end >= 0 && skipSpace(b, end) == len(b)
}

// isSyntaxError reports whether err is Decode's error for a body that is not JSON.
func isSyntaxError(err error) bool {
	var de *DecodeError
	if !errors.As(err, &de) {
		return false
	}
	for _, fe := range de.Fields {
		if fe.Field == "(body)" && (fe.Problem == "is empty" || strings.HasPrefix(fe.Problem, "is not valid JSON")) {
			return true
		}
	}
	return false
}

func TestScannerAgreesWithJSONValid(t *testing.T) {
	for _, tt := range syntaxCases {
		name := tt.in
		if len(name) > 40 {
			name = name[:40] + "..."
		}
		t.Run(name, func(t *testing.T) {
			b := []byte(tt.in)
			assert.Equal(t, tt.valid, json.Valid(b), "json.Valid")
			assert.Equal(t, tt.valid, scannerValid(b), "checkValue")
			_, err := Decode(b, "m")
			assert.Equal(t, !tt.valid, isSyntaxError(err), "Decode: %v", err)
			// The same value as an envelope member, so that the body walk checks it.
			wrapped := []byte(`{"id":` + tt.in + `}`)
			_, err = Decode(wrapped, "m")
			assert.Equal(t, !json.Valid(wrapped), isSyntaxError(err), "Decode of %s: %v", wrapped, err)
		})
	}
}

// TestDecodeSyntaxErrorsMatchPrepass checks that the messages and offsets of syntax
// errors are those of the json.Valid path.
func TestDecodeSyntaxErrorsMatchPrepass(t *testing.T) {
	for _, tt := range syntaxCases {
		for _, raw := range []string{tt.in, `{"data":` + tt.in + `}`, `{"a":1,` + tt.in} {
			_, got := Decode([]byte(raw), "m")
			_, want := decodeWithPrepass([]byte(raw), "m")
			require.Error(t, want, raw) // none of these is a valid event
			assert.Equal(t, want, got, "input %.60q", raw)
		}
	}
	_, err := Decode([]byte(`{"specversion":"1.0","id":"a\qb"}`), "m")
	assert.EqualError(t, err, `(body) is not valid JSON: invalid character 'q' in string escape code (at byte offset 30)`)
	_, err = Decode([]byte(strings.Repeat("[", maxDepth+1)), "m")
	assert.EqualError(t, err, `(body) is not valid JSON: invalid character '[' exceeded max depth (at byte offset 10001)`)
}

// FuzzJSONSyntax checks that the scanner accepts exactly what json.Valid accepts, alone
// and as Decode's body walk.
//
//	go test -run='^$' -fuzz=FuzzJSONSyntax -fuzztime=60s ./schemas/
func FuzzJSONSyntax(f *testing.F) {
	for _, tt := range syntaxCases {
		if len(tt.in) < 1000 {
			f.Add([]byte(tt.in))
		}
	}
	f.Add([]byte(benchEvent))
	f.Fuzz(func(t *testing.T, b []byte) {
		want := json.Valid(b)
		if got := scannerValid(b); got != want {
			t.Fatalf("checkValue says valid=%v, json.Valid says %v: %q", got, want, b)
		}
		_, err := Decode(b, "m")
		if got := !isSyntaxError(err); got != want {
			t.Fatalf("Decode says valid=%v (%v), json.Valid says %v: %q", got, err, want, b)
		}
		wrapped := append(append([]byte(`{"data":{"lessonId":"L","x":`), b...), "}}"...)
		want = json.Valid(wrapped)
		_, err = Decode(wrapped, "m")
		if got := !isSyntaxError(err); got != want {
			t.Fatalf("Decode says valid=%v (%v), json.Valid says %v: %q", got, err, want, wrapped)
		}
	})
}

// FuzzDecodeMatchesPrepass checks that Decode returns exactly what the json.Valid path
// returns: the same event, or the same field errors in the same order.
//
//	go test -run='^$' -fuzz=FuzzDecodeMatchesPrepass -fuzztime=60s ./schemas/
func FuzzDecodeMatchesPrepass(f *testing.F) {
	for _, x := range readExamples(f, SchemaLessonChange) {
		f.Add(x.raw, exampleMandator)
	}
	for _, tt := range syntaxCases {
		if len(tt.in) < 1000 {
			f.Add([]byte(`{"specversion":"1.0","id":"i","source":"s","type":"lesson.deleted","data":{"lessonId":"L","attributes":{"a":`+tt.in+`}}}`), "m")
		}
	}
	f.Add([]byte(benchEvent), "zh-kanti")
	f.Fuzz(func(t *testing.T, raw []byte, mandator string) {
		got, gotErr := Decode(raw, mandator)
		want, wantErr := decodeWithPrepass(raw, mandator)
		if !reflect.DeepEqual(gotErr, wantErr) {
			t.Fatalf("%q, %q: error %v, json.Valid path: %v", raw, mandator, gotErr, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q, %q: event %+v, json.Valid path: %+v", raw, mandator, got, want)
		}
	})
}

// BenchmarkDecodeWithPrepass is the baseline of BenchmarkDecode: the same event, decoded
// with the json.Valid pre-pass.
func BenchmarkDecodeWithPrepass(b *testing.B) {
	raw := []byte(benchEvent)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeWithPrepass(raw, "zh-kanti"); err != nil {
			b.Fatal(err)
		}
	}
}

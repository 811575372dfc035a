package decodebench

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

const mandator = "zh-kanti"

// benchEvent is schemas' own benchmark event (schemas/decode_test.go).
const benchEvent = `{"specversion":"1.0","id":"0f8e6f7c-1c3e-4c53-9d6e-4f3c1b2a9e01","source":"/school-system/timetable","type":"lesson.created","time":"2025-12-22T16:00:00Z","datacontenttype":"application/json","data":{"lessonId":"L-0001","start":"2025-12-23T08:00:00Z","end":"2025-12-23T10:00:00Z","resource":"Raum 1.01","group":"course-MATH-3A","mandator":"zh-kanti","attributes":{"Lehrer":"Muster","Klasse":"3A"}}}`

// seeds are bodies beyond the examples on which the two decoders must agree: syntax, types,
// duplicates, escapes.
var seeds = []string{
	``, ` `, `{`, `{"a":1}x`, `[1]`, `"x"`, `12`, `true`, `null`, ` null `, `{}`, `{"data":null}`, `{"data":[]}`,
	`{"specversion":"1.0","id":"a","source":"b","type":"lesson.deleted","data":{"lessonId":"c"}}`,
	`{"specversion":"1.0","id":"a","source":"b","type":"lesson.deleted","data":{"lessonId":"c","lessonId":"d"},"id":"e"}`,
	`{"spec\u0076ersion":"1.0","\u0069d":"a","source":"b","type":"lesson.deleted","data":{"lesson\u0049d":"c\n"}}`,
	`{"specversion":1,"id":{"a" : [1, 2]},"source":null,"type":true,"time":5,"data":{"lessonId":"\u0001","start":"x","attributes":[]}}`,
	`{"specversion":"1.0","id":"a","source":"b","type":"lesson.created","data":{"lessonId":"c","start":"2025-12-23T08:00:00Z","end":"2025-12-23T08:00:00Z","resource":"r","attributes":{}}}`,
	// A valid W3C traceparent: ignored by Decode today; once Decode keeps the CloudEvents
	// traceparent extension (branch h12-explain), stdDecode must do the same or this fails.
	`{"specversion":"1.0","id":"a","source":"b","type":"lesson.deleted","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","data":{"lessonId":"c"}}`,
	`{"specversion":"1.0","id":"a","source":"b","type":"lesson.deleted","traceparent":"00-zz","data":{"lessonId":"c"}}`,
	"{\"specversion\":\"1.0\",\"id\":\"\xff\",\"source\":\"b\",\"type\":\"lesson.deleted\",\"data\":{\"lessonId\":\"c\",\"attributes\":{\"\xffk\":1,\"a\":{ \"b\" : 2 }}}}",
}

func bodies(t testing.TB) [][]byte {
	paths, err := filepath.Glob("../../schemas/testdata/examples/lesson-change/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	sort.Strings(paths)
	var out [][]byte
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		require.NoError(t, err)
		out = append(out, raw)
	}
	for _, s := range seeds {
		out = append(out, []byte(s))
	}
	out = append(out, []byte(benchEvent))
	for _, c := range publisher.SampleEvents(50, mandator, 1, 0.3) {
		out = append(out, c.Body)
	}
	return out
}

func assertSame(t *testing.T, raw []byte, mandator string) {
	want, wantErr := schemas.Decode(raw, mandator)
	got, err := stdDecode(raw, mandator)
	if wantErr != nil {
		require.Error(t, err, "%s", raw)
		assert.Equal(t, wantErr.Error(), err.Error(), "%s", raw)
		assert.Equal(t, wantErr, err, "%s", raw)
		return
	}
	require.NoError(t, err, "%s", raw)
	assert.Equal(t, want, got, "%s", raw)
}

// TestStdDecodeMatches: the baseline returns what schemas.Decode returns, on every
// lesson-change example, the seeds and sample events (a third of them invalid), errors included.
func TestStdDecodeMatches(t *testing.T) {
	for _, raw := range bodies(t) {
		assertSame(t, raw, mandator)
	}
	assertSame(t, []byte(benchEvent), "a.b")
}

// FuzzStdDecodeMatches extends TestStdDecodeMatches to any body and mandator:
//
//	go test -run='^$' -fuzz=FuzzStdDecodeMatches -fuzztime=30s ./internal/decodebench/
func FuzzStdDecodeMatches(f *testing.F) {
	for _, raw := range bodies(f) {
		f.Add(raw, mandator)
	}
	f.Fuzz(func(t *testing.T, raw []byte, mandator string) {
		assertSame(t, raw, mandator)
	})
}

// BenchmarkDecode compares schemas.Decode (hand-written) with stdDecode (encoding/json) on
// schemas' benchmark event and on the bridge's sample events, as BenchmarkThroughput publishes
// them. ns/op is per event.
func BenchmarkDecode(b *testing.B) {
	sample := publisher.SampleEvents(1000, mandator, 6, 0)
	for _, bm := range []struct {
		name   string
		decode func([]byte, string) (*schemas.LessonChange, error)
	}{{"hand-written", schemas.Decode}, {"encoding-json", stdDecode}} {
		b.Run("event/"+bm.name, func(b *testing.B) {
			raw := []byte(benchEvent)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bm.decode(raw, mandator); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("sample/"+bm.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := bm.decode(sample[i%len(sample)].Body, mandator); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

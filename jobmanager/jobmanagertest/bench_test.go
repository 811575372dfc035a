package jobmanagertest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// submitBody500 returns a create body shaped like the bridge's: 5 jobs (one per group) of 100
// lessons each, every lesson with the four known fields and three extra members, compact. The
// returned offsets are where each job's 8-digit counter sits in its JobID, so that a benchmark can
// make every submit's JobIDs new.
func submitBody500() (body []byte, counters []int) {
	var b strings.Builder
	b.WriteByte('[')
	n := 0
	for g := range 5 {
		if g > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"JobID":"job-`)
		counters = append(counters, b.Len())
		fmt.Fprintf(&b, `00000000-g%d","LektionList":[`, g)
		for k := range 100 {
			if k > 0 {
				b.WriteByte(',')
			}
			n++
			fmt.Fprintf(&b, `{"LektionId":"L-%05d","Beginn":"2026-01-%02dT%02d:00:00Z","Ende":"2026-01-%02dT%02d:45:00Z",`+
				`"RessourceName":"Raum %d.%02d","note":"Woche %d, Lektion %d","subject":"Mathematik","teacher":"Frau Muster"}`,
				n, 12+k%20, 7+k%9, 12+k%20, 7+k%9, 1+k%3, k%20, 1+k%40, 1+k%8)
		}
		b.WriteString(`]}`)
	}
	b.WriteByte(']')
	return []byte(b.String()), counters
}

// BenchmarkSubmit500 measures one 500-lesson create submit through ServeHTTP, the simulator as
// the bridge's end-to-end benchmark runs it (Config{}, no delays): decoding, recording, and the
// validation and application of the previous submit's batch, which completes on this request.
// Every submit carries new JobIDs (patched into a copy of one body) and the same 500 lessons.
func BenchmarkSubmit500(b *testing.B) {
	tmpl, counters := submitBody500()
	sim := New(Config{})
	body := make([]byte, len(tmpl))
	rd := strings.NewReader("")
	i := 0
	b.SetBytes(int64(len(tmpl)))
	b.ReportAllocs()
	for b.Loop() {
		i++
		copy(body, tmpl)
		for _, off := range counters {
			copy(body[off:off+8], fmt.Appendf(nil, "%08d", i))
		}
		rd.Reset(string(body))
		req := httptest.NewRequest(http.MethodPost, "/bench/api/v2.0/jobs/create", rd)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		sim.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("submit %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*500), "ns/lesson")
	b.StopTimer()
	bs := sim.Batches("bench")
	for _, bi := range bs[:len(bs)-1] { // the last one completes on the next request
		if bi.ImportStatus != StatusLessonsCreated || bi.LessonCount != 500 {
			b.Fatalf("batch %s: %s, %d lessons, %v", bi.BatchID, bi.ImportStatus, bi.LessonCount, bi.ErrorMessages)
		}
	}
}

// BenchmarkDecodeJobs500 compares decodeJobs (the single-pass scanner) with stdDecodeJobs, the
// straightforward encoding/json decoder (each object into a map of json.RawMessage) that gives the
// same results and messages (FuzzDecodeJobs), on the body of BenchmarkSubmit500.
func BenchmarkDecodeJobs500(b *testing.B) {
	body, _ := submitBody500()
	for _, bm := range []struct {
		name   string
		decode func([]byte) (int, error)
	}{
		{"hand-written", func(body []byte) (int, error) { jobs, err := decodeJobs(body); return len(jobs), err }},
		{"encoding-json", func(body []byte) (int, error) { jobs, err := stdDecodeJobs(body); return len(jobs), err }},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				n, err := bm.decode(body)
				if err != nil || n != 5 {
					b.Fatal(n, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*500), "ns/lesson")
		})
	}
}

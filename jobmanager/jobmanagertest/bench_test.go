package jobmanagertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lessonbridge/lessonbridge/jobmanager"
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

// runSubmits is the number of 500-lesson submits in one black-box run (200,000 lessons).
const runSubmits = 400

// bridgeJobs returns the jobs of submit round of a run as the bridge builds them in the black-box
// benchmark: 500 creates of lessons no earlier round created, in 20 jobs (one per data.group) of 25,
// each lesson with LektionId, Beginn, Ende (RFC 3339) and RessourceName and no attributes, and
// JobIDs like the bridge's (<prefix>-<date>-<UUID>).
func bridgeJobs(round int) []jobmanager.Job {
	start := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	jobs := make([]jobmanager.Job, 20)
	for g := range jobs {
		jobs[g].JobID = fmt.Sprintf("lb-20261201-0193d2a4-%04x-7000-8000-%012x", g, round)
		for k := range 25 {
			n := round*500 + g*25 + k
			at := start.Add(time.Duration(n) * time.Hour)
			jobs[g].LektionList = append(jobs[g].LektionList, jobmanager.Lesson{
				LektionID: fmt.Sprintf("L-%07d", n), Beginn: at.Format(time.RFC3339Nano),
				Ende: at.Add(45 * time.Minute).Format(time.RFC3339Nano), RessourceName: "Raum 1.01"})
		}
	}
	return jobs
}

// BenchmarkSubmitPoll500 measures the simulator's work per lesson as the black-box benchmark makes
// it (Config{} with a token, no delays): per op one 500-lesson create submit with the body
// jobmanager.Client sends (20 jobs of 25 new lessons, new JobIDs), then status polls until the
// batch is terminal (the first poll completes it: validation and application). Every 400 ops
// (200,000 lessons, one black-box run) a new Sim starts, so the simulator's state grows as in
// that run and the garbage collector sees the same heap.
//
//   - handler: straight through ServeHTTP with httptest.NewRecorder, so that only the simulator
//     costs (decoding, recording, advancing, validating, applying, encoding the answers).
//   - http: jobmanager.Client (bearer token) against httptest.NewServer, as the bridge talks to
//     jobmanager-sim: the client's and net/http's costs on both sides are in the figure too.
//
// ns/lesson is ns/op / 500; B/op and allocs/op divided by 500 are per lesson.
func BenchmarkSubmitPoll500(b *testing.B) {
	jobs := make([][]jobmanager.Job, runSubmits)
	bodies := make([][]byte, runSubmits)
	for r := range jobs {
		jobs[r] = bridgeJobs(r)
		var err error
		if bodies[r], err = json.Marshal(jobs[r]); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("handler", func(b *testing.B) {
		var sim *Sim
		var rd bytes.Reader
		polls, i := 0, 0
		b.ReportAllocs()
		cpu0, _ := processCPU()
		for b.Loop() {
			if i%runSubmits == 0 {
				sim = New(Config{Token: "bench"})
			}
			rd.Reset(bodies[i%runSubmits])
			i++
			req := httptest.NewRequest(http.MethodPost, "/bench/api/v2.0/jobs/create", &rd)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer bench")
			rec := httptest.NewRecorder()
			sim.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				b.Fatalf("submit %d: %d %s", i, rec.Code, rec.Body)
			}
			var st struct{ BatchId, ImportStatus string }
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
				b.Fatal(err)
			}
			for {
				polls++
				req := httptest.NewRequest(http.MethodGet, "/bench/api/v2.0/jobs/batches/"+st.BatchId, nil)
				req.Header.Set("Authorization", "Bearer bench")
				rec := httptest.NewRecorder()
				sim.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %s: %d %s", st.BatchId, rec.Code, rec.Body)
				}
				if bytes.Contains(rec.Body.Bytes(), []byte(StatusLessonsCreated)) {
					break
				}
				if bytes.Contains(rec.Body.Bytes(), []byte(StatusLessonsImportFailed)) {
					b.Fatalf("batch %s failed: %s", st.BatchId, rec.Body)
				}
			}
		}
		reportPerLesson(b, i, polls, cpu0)
	})
	b.Run("http", func(b *testing.B) {
		var sim *Sim
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sim.ServeHTTP(w, r) }))
		defer srv.Close()
		c, err := jobmanager.New(srv.URL, jobmanager.WithToken("bench"), jobmanager.WithHTTPClient(srv.Client()))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		polls, i := 0, 0
		b.ReportAllocs()
		cpu0, _ := processCPU()
		for b.Loop() {
			if i%runSubmits == 0 {
				sim = New(Config{Token: "bench"}) // no request is in flight
			}
			st, err := c.Submit(ctx, "bench", jobmanager.ActionCreate, jobs[i%runSubmits])
			i++
			if err != nil {
				b.Fatal(err)
			}
			for {
				polls++
				got, err := c.Batch(ctx, "bench", st.BatchID)
				if err != nil {
					b.Fatal(err)
				}
				if got.ImportStatus == jobmanager.StatusLessonsCreated {
					break
				}
				if got.ImportStatus.Terminal() {
					b.Fatalf("batch %s: %s %v", st.BatchID, got.ImportStatus, got.ErrorMessages)
				}
			}
		}
		reportPerLesson(b, i, polls, cpu0)
	})
}

// reportPerLesson adds ns/lesson, polls/op and cpu-ns/lesson to a benchmark of ops 500-lesson
// submits. cpu-ns/lesson is the process's CPU time (every goroutine, the garbage collector's
// included) since cpu0, per lesson: on a machine whose cores other processes share it varies
// less than the wall time, and it is what the stand-in costs the black-box run.
func reportPerLesson(b *testing.B, ops, polls int, cpu0 time.Duration) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(ops*500), "ns/lesson")
	b.ReportMetric(float64(polls)/float64(ops), "polls/op")
	if cpu1, ok := processCPU(); ok {
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(ops*500), "cpu-ns/lesson")
	}
}

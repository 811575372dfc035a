package jobmanager

import (
	"encoding/json"
	"fmt"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// benchJobs returns 100 jobs of 5 lessons (500 lessons, the default --batch-max-lessons),
// every other lesson carrying two attributes.
func benchJobs() []Job {
	jobs := make([]Job, 100)
	for i := range jobs {
		jobs[i].JobID = fmt.Sprintf("lb-20251222-0193f0c2-7b1a-7c3d-8e4f-%012d", i)
		for k := range 5 {
			l := Lesson{
				LektionID:     fmt.Sprintf("L-%06d", i*5+k),
				Beginn:        "2025-12-23T08:00:00Z",
				Ende:          "2025-12-23T10:00:00Z",
				RessourceName: "Raum 1.01",
			}
			if k%2 == 0 {
				l.Extra = map[string]json.RawMessage{"Kurs": json.RawMessage(`"MATH-3A"`), "Lehrperson": json.RawMessage(`"abc"`)}
			}
			jobs[i].LektionList = append(jobs[i].LektionList, l)
		}
	}
	return jobs
}

// The straightforward encoding/json submit body that the hand-written encoder (appendJobs) is
// measured against: json.Marshal of the jobs, each lesson's known fields marshalled as a struct
// with omitempty, then its Extra members sorted, each value marshalled as a json.RawMessage
// (which validates and compacts it). It writes the same JSON values as appendJobs
// (TestStdSubmitBodyMatches); it differs only in escaping <, > and & inside Extra values too.

type stdJob struct {
	JobID       string      `json:"JobID"`
	LektionList []stdLesson `json:"LektionList"`
}

type stdLesson Lesson

func (l stdLesson) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(struct {
		LektionID     string `json:"LektionId"`
		Beginn        string `json:"Beginn,omitempty"`
		Ende          string `json:"Ende,omitempty"`
		RessourceName string `json:"RessourceName,omitempty"`
	}{l.LektionID, l.Beginn, l.Ende, l.RessourceName})
	if err != nil || len(l.Extra) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(l.Extra))
	for k := range l.Extra {
		if !knownLessonKey(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	b = b[:len(b)-1]
	for _, k := range keys {
		kb, _ := json.Marshal(k)
		b = append(append(append(b, ','), kb...), ':')
		v := l.Extra[k]
		if v == nil {
			b = append(b, "null"...)
			continue
		}
		vb, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("jobmanager: lesson %q: extra member %q: %w", l.LektionID, k, err)
		}
		b = append(b, vb...)
	}
	return append(b, '}'), nil
}

func toStdJobs(jobs []Job) []stdJob {
	out := make([]stdJob, len(jobs))
	for i, j := range jobs {
		out[i].JobID = j.JobID
		for _, l := range j.LektionList {
			out[i].LektionList = append(out[i].LektionList, stdLesson(l))
		}
	}
	return out
}

// TestStdSubmitBodyMatches: the encoding/json baseline writes the bytes appendJobs writes, so
// that BenchmarkMarshalJobs compares like with like.
func TestStdSubmitBodyMatches(t *testing.T) {
	jobs := append(benchJobs(), Job{JobID: "j-x", LektionList: []Lesson{{LektionID: "q\"\\\n\u2028\xff", Extra: map[string]json.RawMessage{
		"Zeta": json.RawMessage(`"z"`), "alpha": json.RawMessage(`{ "a" : [1, 2] }`), "beginn": json.RawMessage(`"evil"`),
		"reſſourcename": json.RawMessage(`1`), "Nil": nil,
	}}}})
	want, err := appendJobs(nil, jobs)
	require.NoError(t, err)
	got, err := json.Marshal(toStdJobs(jobs))
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got))

	_, err = json.Marshal(toStdJobs([]Job{{JobID: "j", LektionList: []Lesson{{LektionID: "L-4", Extra: map[string]json.RawMessage{"x": json.RawMessage(`{nope`)}}}}}))
	assert.ErrorContains(t, err, `jobmanager: lesson "L-4": extra member "x"`)
}

// BenchmarkMarshalJobs compares, on one 500-lesson submit body, the hand-written encoder
// (appendJobs, what Submit sends) with the straightforward encoding/json one above.
func BenchmarkMarshalJobs(b *testing.B) {
	jobs := benchJobs()
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := appendJobs(make([]byte, 0, 80<<10), jobs); err != nil {
				b.Fatal(err)
			}
		}
	})
	std := toStdJobs(jobs)
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(std); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchStatusBodies are a submit answer (202) and a failed batch's status, as the simulator
// writes them.
var benchStatusBodies = map[string]string{
	"accepted": `{"BatchId":"12345","ImportStatus":"AwaitingLessonCreation"}`,
	"failed": `{"BatchId":"12346","ImportStatus":"LessonsImportFailed","LessonCount":500,` +
		`"ErrorMessages":["Fehler: Lektion L-000123: Beginn ist ungültig","Fehler: Lektion L-000124: Ende fehlt"]}`,
}

// BenchmarkDecodeBatchStatus measures decodeBatchStatus, what Submit and Batch decode their
// answers with (json.Unmarshal into RawMessage fields since issue 13: twice as fast as the
// member walker it replaced, see docs/readme-throughput.md).
func BenchmarkDecodeBatchStatus(b *testing.B) {
	for _, name := range []string{"accepted", "failed"} {
		body := []byte(benchStatusBodies[name])
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeBatchStatus(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

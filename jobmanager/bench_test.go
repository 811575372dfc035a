package jobmanager

import (
	"encoding/json"
	"fmt"
	"testing"
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

func BenchmarkMarshalJobs(b *testing.B) {
	jobs := benchJobs()
	b.Run("submit-body", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := appendJobs(make([]byte, 0, 80<<10), jobs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(jobs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// explainBench is the shared fixture of BenchmarkExplainLookup: an embedded server whose outcome
// stream holds N outcomes (LESSONBRIDGE_EXPLAIN_BENCH_OUTCOMES, default 1,000,000) of 10 mandators,
// 5 lessons each, and a few ids to look up.
var explainBench struct {
	once     sync.Once
	err      error
	url      string
	n        int
	lastKey  string    // the key of the last outcome
	midKey   string    // the key of the outcome in the middle
	lastLsn  string    // a lesson of the last outcome
	lastMnd  string    // the mandator of the last outcome
	lastEvt  string    // an event of the last outcome
	since90  time.Time // when 90 % of the outcomes were stored
	setupDur time.Duration
	stop     func()
}

func setupExplainBench(b *testing.B) {
	f := &explainBench
	f.once.Do(func() {
		f.n = 1_000_000
		if v := os.Getenv("LESSONBRIDGE_EXPLAIN_BENCH_OUTCOMES"); v != "" {
			f.n, f.err = strconv.Atoi(v)
			if f.err != nil {
				return
			}
		}
		dir, err := os.MkdirTemp("", "lessonbridge-explain-bench-")
		if err != nil {
			f.err = err
			return
		}
		s, err := natstest.StartServer(dir, 0)
		if err != nil {
			f.err = err
			return
		}
		f.stop = func() { s.Shutdown(); s.WaitForShutdown(); _ = os.RemoveAll(dir) }
		f.url = s.ClientURL()
		nc, err := nats.Connect(f.url)
		if err != nil {
			f.err = err
			return
		}
		js, _ := jetstream.New(nc)
		ctx := context.Background()
		for name, subj := range map[string]string{"LESSONS": "lessons.changes.>", "LESSON_OUTCOMES": "lessons.outcomes.>", "LESSON_DEADLETTER": "lessons.deadletter.>"} {
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
				f.err = err
				return
			}
		}
		start := time.Now()
		for i := range f.n {
			now := time.Now().UTC()
			key := "b-" + uuid.Must(uuid.NewV7()).String()
			m := fmt.Sprintf("m%d", i%10)
			lessons := make([]string, 5)
			events := make([]string, 5)
			for j := range lessons {
				lessons[j] = fmt.Sprintf("L-%07d-%d", i, j)
				events[j] = fmt.Sprintf("e-%07d-%d", i, j)
			}
			o := schemas.Outcome{SpecVersion: "1.0", ID: key, Source: "lessonbridge", Type: "lesson.batch.succeeded", Time: now,
				Subject: strconv.Itoa(100000 + i), DataContentType: "application/json",
				Data: schemas.OutcomeData{Status: "succeeded", BatchID: strconv.Itoa(100000 + i), Mandator: m, Action: "create",
					ImportStatus: "LessonsCreated", ErrorMessages: []string{}, JobIDs: []string{"lb-" + now.Format("20060102") + "-" + uuid.Must(uuid.NewV7()).String()},
					LessonCount: 5, LessonIDs: lessons, EventIDs: events, ResubmittedEventIDs: []string{}, ResubmittedLessonIDs: []string{},
					SubmittedAt: now, FinishedAt: now, Polls: 3}}
			body, _ := json.Marshal(o)
			if _, err := js.PublishAsync("lessons.outcomes."+m+".succeeded", body); err != nil {
				f.err = err
				return
			}
			if i%4096 == 0 {
				<-js.PublishAsyncComplete()
			}
			if i == f.n/2 {
				f.midKey = key
			}
			if i == f.n*9/10 {
				f.since90 = now
			}
			if i == f.n-1 {
				f.lastKey, f.lastLsn, f.lastMnd, f.lastEvt = key, lessons[2], m, events[2]
			}
		}
		<-js.PublishAsyncComplete()
		f.setupDur = time.Since(start)
		nc.Close()
	})
	if f.stop != nil {
		b.Cleanup(f.stop)
	}
	if f.err != nil {
		b.Fatal(f.err)
	}
}

// BenchmarkExplainLookup measures explain against a stream of a million outcomes (not run by CI):
//
//	go test -run '^$' -bench BenchmarkExplainLookup -benchtime 1x -timeout 60m ./cmd/lessonbridge/
func BenchmarkExplainLookup(b *testing.B) {
	setupExplainBench(b)
	f := &explainBench
	b.Logf("%d outcomes stored in %v", f.n, f.setupDur)
	cases := []struct {
		name string
		args []string
	}{
		{"batch key, last", []string{f.lastKey}},
		{"batch key, middle", []string{f.midKey}},
		{"batchId, no mandator (full scan)", []string{strconv.Itoa(100000 + f.n - 1)}},
		{"lessonId with mandator", []string{"--mandator", f.lastMnd, f.lastLsn}},
		{"lessonId with mandator and --since (last 10 %)", []string{"--mandator", f.lastMnd, "--since", f.since90.Format(time.RFC3339Nano), f.lastLsn}},
		{"event id, --since (last 10 %), no mandator", []string{"--since", f.since90.Format(time.RFC3339Nano), f.lastEvt}},
		{"event id, no mandator (full scan)", []string{f.lastEvt}},
		{"unknown id (full scan)", []string{"no-such-id"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				var out, errOut discardCounter
				err := runExplain(context.Background(), append([]string{"--nats-url", f.url, "--timeout", "30m"}, c.args...), &out, &errOut)
				if err != nil && c.name != "unknown id (full scan)" {
					b.Fatal(err)
				}
			}
		})
	}
}

type discardCounter struct{ n int }

func (d *discardCounter) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

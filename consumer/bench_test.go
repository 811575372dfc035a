package consumer

// Benchmarks of issue 6 (performance, measured side by side). They run only with -bench, e.g.
//
//	go test -run='^$' -bench=. -benchtime=1x -count=3 ./consumer
//
// and report their figures with b.ReportMetric; BENCHMARKS.md explains the method and holds the
// results. LESSONBRIDGE_BENCH_N overrides the number of events of the throughput and hold benchmarks
// (default 100000). LESSONBRIDGE_BENCH_CPUPROFILE=<file> writes a CPU profile of the bridge's
// end-to-end window only (start of consuming to drained) of BenchmarkThroughput;
// LESSONBRIDGE_BENCH_HEAPPROFILE=<file> a heap profile of BenchmarkHeld while everything is held.

import (
	"bufio"
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

const (
	benchToken    = "bench-token"
	benchMandator = "bench"
	// benchServeEnv makes the test binary a server process for BenchmarkHeld (see init).
	benchServeEnv = "LESSONBRIDGE_BENCH_SERVE"
)

// benchN is the number of events of the throughput and hold benchmarks.
func benchN(b *testing.B) int {
	n := 100000
	if v := os.Getenv("LESSONBRIDGE_BENCH_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("LESSONBRIDGE_BENCH_N=%q is not a positive number", v)
		}
	}
	return n
}

// createInputStream creates the input stream as the bridge would (ensureStream): file storage,
// lessons.changes.>, two-minute duplicate window.
func createInputStream(b testing.TB, js jetstream.JetStream) {
	b.Helper()
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "LESSONS", Subjects: []string{"lessons.changes.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
}

// publishAll publishes changes asynchronously (PublishChanges) and waits for every PubAck.
func publishAll(b *testing.B, js jetstream.JetStream, changes []publisher.RawChange) {
	b.Helper()
	p, err := publisher.New(js)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.PublishChanges(context.Background(), changes, 4096, nil); err != nil {
		b.Fatal(err)
	}
}

// waitDrained waits until the consumer has nothing pending or unacknowledged.
func waitDrained(b *testing.B, cons jetstream.Consumer, timeout time.Duration) {
	b.Helper()
	if err := natstest.WaitDrained(cons, timeout); err != nil {
		b.Fatal(err)
	}
}

// runBridge starts a bridge and returns it, with a function that stops it and waits for Run.
func runBridge(b *testing.B, js jetstream.JetStream, jm JobManager, cfg Config) (*Bridge, func()) {
	b.Helper()
	br, err := New(js, jm, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				b.Errorf("bridge: %v", err)
			}
		case <-time.After(30 * time.Second):
			b.Error("bridge did not stop")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !br.Ready() {
		select {
		case err := <-done:
			b.Fatalf("bridge ended before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			b.Fatal("bridge not ready")
		}
		time.Sleep(50 * time.Microsecond)
	}
	return br, stop
}

// outcomeCounter counts the events settled by outcome events (a core subscription on the outcome
// subjects) and closes done when want events are settled.
type outcomeCounter struct {
	mu       sync.Mutex
	settled  int
	failed   int
	polls    []int
	want     int
	marks    []time.Time // when a tenth, two tenths, ... of want were settled
	done     chan struct{}
	sub      *nats.Subscription
	decodeEr error
}

func countOutcomes(b *testing.B, nc *nats.Conn, want int) *outcomeCounter {
	b.Helper()
	oc := &outcomeCounter{want: want, done: make(chan struct{})}
	sub, err := nc.Subscribe("lessons.outcomes.>", func(m *nats.Msg) {
		var o schemas.Outcome
		err := json.Unmarshal(m.Data, &o)
		oc.mu.Lock()
		defer oc.mu.Unlock()
		if err != nil {
			oc.decodeEr = err
			return
		}
		before := oc.settled
		oc.settled += len(o.Data.EventIDs)
		if o.Data.Status != schemas.StatusSucceeded {
			oc.failed += len(o.Data.EventIDs)
		}
		oc.polls = append(oc.polls, o.Data.Polls)
		for len(oc.marks) < 10 && oc.settled*10 >= oc.want*(len(oc.marks)+1) {
			oc.marks = append(oc.marks, time.Now())
		}
		if before < oc.want && oc.settled >= oc.want {
			close(oc.done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		b.Fatal(err)
	}
	oc.sub = sub
	return oc
}

func (oc *outcomeCounter) wait(b *testing.B, timeout time.Duration) {
	b.Helper()
	select {
	case <-oc.done:
	case <-time.After(timeout):
		oc.mu.Lock()
		defer oc.mu.Unlock()
		b.Fatalf("outcomes settled %d of %d events within %v (decode error: %v)", oc.settled, oc.want, timeout, oc.decodeEr)
	}
}

// BenchmarkThroughput measures, on the same N pre-published sample events (about 400 bytes each) and
// the same embedded server set-up (file storage), (1) the ceiling: a durable pull consumer with
// Consume and explicit Ack; (2) the bridge end to end against the simulator without delays; each
// from the start of consuming to the consumer having nothing pending or unacknowledged; their
// ratio; and (3) submit requests per 1,000 lessons at that saturation.
func BenchmarkThroughput(b *testing.B) {
	measuring(b)
	n := benchN(b)
	changes := publisher.SampleEvents(n, benchMandator, 6, 0)
	for range b.N {
		ceiling := benchCeiling(b, changes)
		r := benchBridge(b, changes, throughputConfig(), nil)
		null := benchBridge(b, changes, throughputConfig(), &nullJobManager{})
		b.ReportMetric(ceiling, "ceiling-ev/s")
		b.ReportMetric(r.evps, "bridge-ev/s")
		b.ReportMetric(r.evps/ceiling, "ratio")
		b.ReportMetric(null.evps, "nulljm-ev/s")
		b.ReportMetric(null.evps/ceiling, "nulljm-ratio")
		b.ReportMetric(float64(r.submits)*1000/float64(r.lessons), "submits/1000lessons")
		b.ReportMetric(float64(r.lessons)/float64(r.submits), "lessons/submit")
		b.ReportMetric(float64(r.statusPolls)/float64(r.submits), "polls/batch")
		if r.failed > 0 {
			b.Errorf("%d events settled as failed", r.failed)
		}
	}
}

func benchCeiling(b *testing.B, changes []publisher.RawChange) float64 {
	srv := natstest.Start(b)
	pnc, pjs := srv.Connect()
	createInputStream(b, pjs)
	publishAll(b, pjs, changes)
	nc, js := srv.Connect()
	ctx := context.Background()
	s, err := js.Stream(ctx, "LESSONS")
	if err != nil {
		b.Fatal(err)
	}
	defaults := Config{}.Defaults()
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "ceiling", AckPolicy: jetstream.AckExplicitPolicy, AckWait: defaults.AckWait,
		MaxAckPending: defaults.MaxHeld + 2*defaults.PullBatch, MaxDeliver: -1,
		FilterSubject: "lessons.changes.>", DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		b.Fatal(err)
	}
	elapsed, err := natstest.Ceiling(cons, len(changes), defaults.PullBatch, 5*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	// The bridge's run that follows gets the machine to itself.
	nc.Close()
	pnc.Close()
	srv.Stop()
	return float64(len(changes)) / elapsed.Seconds()
}

type bridgeRun struct {
	evps        float64
	submits     int
	lessons     int
	statusPolls int
	failed      int
}

// throughputConfig is the bridge tuned for throughput: a short linger, full batches and a short
// poll schedule (the simulator answers the first poll with the final state). A linger of 50ms
// rather than 10ms fills the update and delete groups, which are fed by lessons released from
// settled batches (3.6 instead of 2.2 submits per 1,000 lessons at 10ms), at the same throughput.
func throughputConfig() Config {
	return Config{
		BatchLinger:     50 * time.Millisecond,
		BatchMaxLessons: 500,
		PollSchedule:    []time.Duration{time.Millisecond, 5 * time.Millisecond},
		ShutdownGrace:   5 * time.Second,
	}
}

// nullJobManager accepts every submit and answers the first status request with LessonsCreated, at
// no cost: the bridge's throughput without the simulator's share of the machine (diagnostic).
type nullJobManager struct {
	mu      sync.Mutex
	next    int
	lessons map[string]int
	submits int
	total   int
}

func (n *nullJobManager) Submit(_ context.Context, _ string, _ jobmanager.Action, jobs []jobmanager.Job) (*jobmanager.BatchStatus, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lessons == nil {
		n.lessons = map[string]int{}
	}
	n.next++
	id := strconv.Itoa(n.next)
	c := 0
	for _, j := range jobs {
		c += len(j.LektionList)
	}
	n.lessons[id] = c
	n.submits++
	n.total += c
	return &jobmanager.BatchStatus{BatchID: id, ImportStatus: jobmanager.StatusAwaitingLessonCreation}, nil
}

func (n *nullJobManager) Batch(_ context.Context, _, batchID string) (*jobmanager.BatchStatus, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.lessons[batchID]
	if !ok {
		return nil, fmt.Errorf("nulljm: batch %s: %w", batchID, jobmanager.ErrNotFound)
	}
	return &jobmanager.BatchStatus{BatchID: batchID, ImportStatus: jobmanager.StatusLessonsCreated, LessonCount: &c}, nil
}

// benchBridge runs a bridge on the pre-published changes against the simulator over HTTP, or
// against null when it is not nil.
func benchBridge(b *testing.B, changes []publisher.RawChange, cfg Config, null *nullJobManager) bridgeRun {
	srv := natstest.Start(b)
	pnc, pjs := srv.Connect()
	createInputStream(b, pjs)
	publishAll(b, pjs, changes)
	sim := jobmanagertest.New(jobmanagertest.Config{Token: benchToken})
	hs := httptest.NewServer(sim)
	defer hs.Close()
	var jm JobManager
	jm, err := jobmanager.New(hs.URL, jobmanager.WithToken(benchToken))
	if err != nil {
		b.Fatal(err)
	}
	if null != nil {
		jm = null
	}
	oc := countOutcomes(b, pnc, len(changes))
	nc, js := srv.Connect()

	stopProfile := func() {}
	if null == nil {
		stopProfile = profileWindow(b)
	}
	start := time.Now()
	br, stop := runBridge(b, js, jm, cfg)
	oc.wait(b, 5*time.Minute)
	cons, err := js.Consumer(context.Background(), "LESSONS", br.cfg.ConsumerName)
	if err != nil {
		b.Fatal(err)
	}
	waitDrained(b, cons, time.Minute)
	elapsed := time.Since(start)
	stopProfile()
	stop()
	_ = oc.sub.Unsubscribe()

	nc.Close()
	pnc.Close()
	srv.Stop()
	r := bridgeRun{evps: float64(len(changes)) / elapsed.Seconds(), submits: sim.Submits(), failed: oc.failed}
	oc.mu.Lock()
	var marks []string
	for _, m := range oc.marks {
		marks = append(marks, m.Sub(start).Round(time.Millisecond).String())
	}
	oc.mu.Unlock()
	if null != nil {
		r.submits, r.lessons = null.submits, null.total
		b.Logf("bridge (null JobManager): %d events in %v; settled by tenths at %s", len(changes), elapsed.Round(time.Millisecond), strings.Join(marks, " "))
		return r
	}
	b.Logf("bridge: %d events in %v; settled by tenths at %s", len(changes), elapsed.Round(time.Millisecond), strings.Join(marks, " "))
	for _, bi := range sim.Batches(benchMandator) {
		r.lessons += len(bi.LessonIDs)
	}
	for k, c := range sim.Requests() {
		if k.Kind == jobmanagertest.KindStatus {
			r.statusPolls += c
		}
	}
	return r
}

// profileWindow starts a CPU profile into $LESSONBRIDGE_BENCH_CPUPROFILE, if set, and returns the
// function that ends it.
func profileWindow(b *testing.B) func() {
	path := os.Getenv("LESSONBRIDGE_BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatalf("%v (do not combine with -cpuprofile)", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

// virtualPolls counts the status polls of a batch whose import takes d, on a virtual clock with
// the engine's own scheduling rule (schedulePoll) and answers that take no time.
func virtualPolls(br *Bridge, d time.Duration) int {
	bt := &batch{}
	c := br.core
	t0 := time.Unix(0, 0)
	c.now = t0
	for {
		c.schedulePoll(bt, 0)
		heap.Pop(&c.polls)
		c.timers = c.timers[:0]
		now := bt.nextPoll
		c.now = now
		bt.polls++
		if now.Sub(t0) >= d {
			return bt.polls
		}
	}
}

// BenchmarkPolls measures (4) the status polls per batch of an import that takes 5 minutes with the
// default schedule (3s, 5s, 10s, 20s, 30s, ±10% jitter): on a virtual clock with the engine's rule,
// over many batches, and end to end with the schedule and the import time scaled by 1/100 (a real
// bridge against the simulator with ProcessingDelay 3s). A fixed 2 s poll needs 150.
func BenchmarkPolls(b *testing.B) {
	measuring(b)
	const importTakes = 5 * time.Minute
	const scale = 100
	for range b.N {
		srv := natstest.Start(b)
		pnc, pjs := srv.Connect()
		createInputStream(b, pjs)
		sim := jobmanagertest.New(jobmanagertest.Config{Token: benchToken, ProcessingDelay: importTakes / scale})
		hs := httptest.NewServer(sim)
		jm, err := jobmanager.New(hs.URL, jobmanager.WithToken(benchToken))
		if err != nil {
			b.Fatal(err)
		}
		_, js := srv.Connect()

		// Virtual clock: the engine's schedulePoll with its jitter, 10,000 batches.
		vb, err := New(js, jm, Config{})
		if err != nil {
			b.Fatal(err)
		}
		var vsum, vmax int
		vmin := math.MaxInt
		const batches = 10000
		for range batches {
			p := virtualPolls(vb, importTakes)
			vsum += p
			vmin, vmax = min(vmin, p), max(vmax, p)
		}

		// End to end, scaled: 8 batches (one per mandator, so none waits for another).
		def := Config{}.Defaults()
		cfg := Config{BatchLinger: 10 * time.Millisecond, ShutdownGrace: 5 * time.Second}
		for _, d := range def.PollSchedule {
			cfg.PollSchedule = append(cfg.PollSchedule, d/scale)
		}
		const mandators = 8
		oc := countOutcomes(b, pnc, mandators)
		_, stop := runBridge(b, js, jm, cfg)
		p, err := publisher.New(pjs)
		if err != nil {
			b.Fatal(err)
		}
		for i := range mandators {
			ev := benchEvent(fmt.Sprintf("L-%d", i))
			if _, err := p.PublishChange(context.Background(), fmt.Sprintf("m%d", i), ev); err != nil {
				b.Fatal(err)
			}
		}
		oc.wait(b, time.Minute)
		stop()
		_ = oc.sub.Unsubscribe()
		hs.Close()
		oc.mu.Lock()
		esum, emax := 0, 0
		for _, p := range oc.polls {
			esum += p
			emax = max(emax, p)
		}
		epolls := len(oc.polls)
		oc.mu.Unlock()

		b.ReportMetric(float64(vsum)/batches, "virtual-polls/batch")
		b.ReportMetric(float64(vmin), "virtual-min")
		b.ReportMetric(float64(vmax), "virtual-max")
		b.ReportMetric(float64(esum)/float64(epolls), "e2e-polls/batch")
		b.ReportMetric(float64(emax), "e2e-max")
		b.ReportMetric(float64(importTakes/(2*time.Second)), "fixed2s-polls")
	}
}

// benchEvent is a valid create event for one lesson.
func benchEvent(lessonID string) *schemas.LessonChange {
	start := time.Date(2026, 1, 12, 8, 0, 0, 0, time.UTC)
	return &schemas.LessonChange{
		SpecVersion: schemas.SpecVersion, ID: uuid.Must(uuid.NewV7()).String(), Source: "/bench",
		Type: schemas.TypeLessonCreated, Subject: lessonID,
		Data: schemas.LessonData{LessonID: lessonID, Group: "course-MATH-3A", Start: start, End: start.Add(45 * time.Minute),
			Resource: "Raum 1.01", Attributes: map[string]json.RawMessage{"teacher": json.RawMessage(`"MUE"`)}},
	}
}

// submitRecorder wraps the simulator and notes when each lesson of a submit arrived.
type submitRecorder struct {
	next    http.Handler
	mu      sync.Mutex
	arrived map[string]time.Time
}

func (s *submitRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/jobs/") {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var jobs []struct {
			LektionList []struct {
				LektionID string `json:"LektionId"`
			}
		}
		if json.Unmarshal(body, &jobs) == nil {
			s.mu.Lock()
			for _, j := range jobs {
				for _, l := range j.LektionList {
					if _, ok := s.arrived[l.LektionID]; !ok {
						s.arrived[l.LektionID] = at
					}
				}
			}
			s.mu.Unlock()
		}
	}
	s.next.ServeHTTP(w, r)
}

// BenchmarkLatency measures (6) publish-to-submit latency at low load: 200 events, one lesson each,
// published one at a time at 50/s, BatchLinger 100ms; from just before the publish call to the
// simulator receiving the submit that carries the lesson.
func BenchmarkLatency(b *testing.B) {
	measuring(b)
	const (
		events = 200
		rate   = 50
		linger = 100 * time.Millisecond
	)
	for range b.N {
		srv := natstest.Start(b)
		_, pjs := srv.Connect()
		createInputStream(b, pjs)
		rec := &submitRecorder{next: jobmanagertest.New(jobmanagertest.Config{Token: benchToken}), arrived: map[string]time.Time{}}
		hs := httptest.NewServer(rec)
		jm, err := jobmanager.New(hs.URL, jobmanager.WithToken(benchToken))
		if err != nil {
			b.Fatal(err)
		}
		_, js := srv.Connect()
		cfg := Config{BatchLinger: linger, PollSchedule: []time.Duration{5 * time.Millisecond, 10 * time.Millisecond},
			ShutdownGrace: 5 * time.Second}
		_, stop := runBridge(b, js, jm, cfg)
		p, err := publisher.New(pjs)
		if err != nil {
			b.Fatal(err)
		}
		published := map[string]time.Time{}
		tick := time.NewTicker(time.Second / rate)
		for i := range events {
			<-tick.C
			ev := benchEvent(fmt.Sprintf("L-%04d", i))
			published[ev.Data.LessonID] = time.Now()
			if _, err := p.PublishChange(context.Background(), benchMandator, ev); err != nil {
				b.Fatal(err)
			}
		}
		tick.Stop()
		deadline := time.Now().Add(30 * time.Second)
		for {
			rec.mu.Lock()
			got := len(rec.arrived)
			rec.mu.Unlock()
			if got >= events {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d lessons submitted", got, events)
			}
			time.Sleep(10 * time.Millisecond) // polling the recorder
		}
		stop()
		hs.Close()
		var lat []float64
		rec.mu.Lock()
		for id, at := range rec.arrived {
			lat = append(lat, float64(at.Sub(published[id]))/float64(time.Millisecond))
		}
		rec.mu.Unlock()
		slices.Sort(lat)
		b.ReportMetric(percentile(lat, 0.50), "p50-ms")
		b.ReportMetric(percentile(lat, 0.99), "p99-ms")
		b.ReportMetric(lat[len(lat)-1], "max-ms")
		b.ReportMetric(float64(linger+50*time.Millisecond)/float64(time.Millisecond), "target-p99-ms")
	}
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// init turns the test binary into the server process of BenchmarkHeld when benchServeEnv names a
// store directory: an embedded NATS server and a simulator that holds every batch, so that the
// benchmark process's heap holds only the bridge (and its clients). It never returns then.
func init() {
	if dir := os.Getenv(benchServeEnv); dir != "" {
		os.Exit(serveForBench(dir))
	}
}

func serveForBench(dir string) int {
	s, err := natstest.StartServer(dir, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sim := jobmanagertest.New(jobmanagertest.Config{Token: benchToken})
	sim.Hold(true)
	hs := httptest.NewServer(sim)
	fmt.Printf("%s %s\n", s.ClientURL(), hs.URL)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the benchmark closes stdin
	hs.Close()
	s.Shutdown()
	s.WaitForShutdown()
	return 0
}

// startBenchServer starts the server process and returns the NATS and simulator URLs.
func startBenchServer(b *testing.B) (natsURL, simURL string) {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), benchServeEnv+"="+b.TempDir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("bench server: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		b.Fatalf("bench server said %q", line)
	}
	return f[0], f[1]
}

func metricValue(b testing.TB, m prometheus.Metric) float64 {
	b.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		b.Fatal(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}

// writeHeapProfile writes a heap profile into $LESSONBRIDGE_BENCH_HEAPPROFILE, if set.
func writeHeapProfile(b *testing.B) {
	path := os.Getenv("LESSONBRIDGE_BENCH_HEAPPROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Error(err)
	}
}

func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkHeld measures (5) the heap per held message with N (100,000) messages held: every batch
// is accepted and never completes (simulator Hold), and the bridge holds them past AckWait (10s
// here, so Heartbeat is 3.33s) with InProgress. NATS and the simulator run in a separate process so
// that the heap measured (after GC, before the bridge starts and while it holds everything) is the
// bridge's and its clients'. It reports the InProgress rate and the redeliveries (must be 0).
func BenchmarkHeld(b *testing.B) {
	measuring(b)
	n := benchN(b)
	const ackWait = 10 * time.Second
	for range b.N {
		natsURL, simURL := startBenchServer(b)
		pnc, err := nats.Connect(natsURL)
		if err != nil {
			b.Fatal(err)
		}
		pjs, err := jetstream.New(pnc)
		if err != nil {
			b.Fatal(err)
		}
		createInputStream(b, pjs)
		publishAll(b, pjs, publisher.SampleEvents(n, benchMandator, 6, 0))
		pnc.Close()

		nc, err := nats.Connect(natsURL)
		if err != nil {
			b.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		jm, err := jobmanager.New(simURL, jobmanager.WithToken(benchToken))
		if err != nil {
			b.Fatal(err)
		}
		before := heapAfterGC()

		cfg := Config{AckWait: ackWait, MaxHeld: n, BatchLinger: 20 * time.Millisecond, ShutdownGrace: 100 * time.Millisecond}
		br, stop := runBridge(b, js, jm, cfg)
		// Everything held and every batch accepted (polling), twice in a row 300ms apart.
		deadline := time.Now().Add(3 * time.Minute)
		stable := 0
		lastBatches := -1
		for stable < 2 {
			if time.Now().After(deadline) {
				b.Fatalf("held %v of %d", metricValue(b, br.metrics.held), n)
			}
			time.Sleep(300 * time.Millisecond) // polling the bridge's gauge and snapshot
			bis := br.Batches()
			accepted := len(bis) > 0
			for _, bi := range bis {
				accepted = accepted && bi.State == string(stateAccepted)
			}
			if int(metricValue(b, br.metrics.held)) == n && accepted && len(bis) == lastBatches {
				stable++
			} else {
				stable = 0
			}
			lastBatches = len(bis)
		}
		heldAt := time.Now()
		during := heapAfterGC()
		writeHeapProfile(b)
		hb0 := metricValue(b, br.metrics.heartbeats)
		// Hold for longer than AckWait: a late heartbeat would show as a redelivery.
		<-time.After(ackWait + 2*time.Second)
		hb1 := metricValue(b, br.metrics.heartbeats)
		heldFor := time.Since(heldAt)

		cons, err := js.Consumer(context.Background(), "LESSONS", br.cfg.ConsumerName)
		if err != nil {
			b.Fatal(err)
		}
		ci, err := cons.Info(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		redelivered := metricValue(b, br.metrics.redelivered)
		stop()
		nc.Close()

		b.ReportMetric(float64(int64(during)-int64(before))/float64(n), "heap-B/held")
		b.ReportMetric(float64(n), "held")
		b.ReportMetric(float64(lastBatches), "batches")
		b.ReportMetric((hb1-hb0)/heldFor.Seconds(), "inprogress/s")
		b.ReportMetric(float64(ci.NumRedelivered), "redelivered")
		b.ReportMetric(float64(ci.NumAckPending), "ackpending")
		if ci.NumRedelivered != 0 || redelivered != 0 {
			b.Errorf("redeliveries while held: consumer %d, bridge %v", ci.NumRedelivered, redelivered)
		}
	}
}

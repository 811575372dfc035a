package main

// Black-box benchmarks of issue 13: the built binary, a separate nats-server process and a separate
// jobmanager-sim process, as users run them. They run only with -bench, e.g.
//
//	go test -run='^$' -bench=BlackBox -benchtime=1x -count=3 ./cmd/lessonbridge
//
// LESSONBRIDGE_BB_N sets the events of BenchmarkBlackBoxThroughput (default 200000);
// LESSONBRIDGE_BB_RATE and LESSONBRIDGE_BB_SECONDS the rate and length of BenchmarkBlackBoxLatency
// (default 2000 events/s for 10 s). LESSONBRIDGE_BB_ARGS adds flags to the bridge's `run` (split on
// spaces), to compare settings in one run, and LESSONBRIDGE_BB_BRIDGE_ENV variables to its environment
// (e.g. GOGC=200); LESSONBRIDGE_BB_BRIDGE_BIN runs a bridge binary built elsewhere (a baseline commit) in
// the same harness; LESSONBRIDGE_BB_LOGDIR keeps the processes' logs, the consumer's state every 100 ms
// and nats-server's per-connection counts at the end (consumer.log, connz.json).
// LESSONBRIDGE_BB_PROFILE=dir profiles the throughput window: CPU profiles of the bridge (--pprof on)
// and of nats-server (its --profile port) over the first LESSONBRIDGE_BB_PROFILE_SECONDS (default 2)
// seconds, an execution trace of the bridge over the first second, and the bridge's block and mutex
// profiles at the end (dir/bridge.cpu, nats.cpu, bridge.trace, bridge.block, bridge.mutex), its
// allocations since it started (bridge.allocs) and nats-server's CPU over 1 s of the ceiling
// (nats-ceiling.cpu); the figures of a profiled run are not the benchmark's. BENCHMARKS.md has the method and the figures.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

const bbMandator = "bb"

func bbEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q is not a positive number", name, v)
	}
	return n
}

// bbBinaries builds the bridge and nats-server (the version go.mod pins) once per benchmark.
func bbBinaries(b *testing.B) (bridge, natsServer string) {
	b.Helper()
	dir := b.TempDir()
	bridge, natsServer = filepath.Join(dir, "lessonbridge"), filepath.Join(dir, "nats-server")
	builds := [][]string{{"build", "-o", bridge, "."}, {"build", "-o", natsServer, "github.com/nats-io/nats-server/v2"}}
	if bin := os.Getenv("LESSONBRIDGE_BB_BRIDGE_BIN"); bin != "" {
		bridge, builds = bin, builds[1:] // a bridge built elsewhere (an older commit, as the baseline)
	}
	for _, args := range builds {
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return bridge, natsServer
}

func bbFreePort(b *testing.B) int {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// bbProc is a child process whose CPU time can be read.
type bbProc struct {
	http string // the bridge's --http-addr
	name string
	cmd  *exec.Cmd
	log  *os.File
}

func bbStart(b *testing.B, name string, bin string, args ...string) *bbProc {
	return bbStartEnv(b, name, nil, bin, args...)
}

// bbStartEnv starts a process with env added to the benchmark's environment.
func bbStartEnv(b *testing.B, name string, env []string, bin string, args ...string) *bbProc {
	b.Helper()
	dir := os.Getenv("LESSONBRIDGE_BB_LOGDIR") // keep the processes' logs there
	if dir == "" {
		dir = b.TempDir()
	}
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &bbProc{name: name, cmd: cmd, log: logf}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = logf.Close()
	})
	return p
}

// cpu returns the process's user+system CPU time so far, from /proc (clock ticks of 10 ms).
func (p *bbProc) cpu(b *testing.B) time.Duration { return bbProcCPU(b, p.name, p.cmd.Process.Pid) }

// bbProcCPU returns a process's user+system CPU time so far, from /proc (clock ticks of 10 ms).
func bbProcCPU(b *testing.B, name string, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	// Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// bbMachine returns the machine's busy and total CPU time so far (all cores), from /proc/stat.
func bbMachine(b *testing.B) (busy, total time.Duration) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var sum, idle int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i < 8 { // guest time is already counted in user
			sum += n
		}
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return time.Duration(sum-idle) * 10 * time.Millisecond, time.Duration(sum) * 10 * time.Millisecond
}

// bbSelfCPU is the benchmark process's own CPU time so far (publishing, outcome counting).
func bbSelfCPU(b *testing.B) time.Duration { return bbProcCPU(b, "benchmark", os.Getpid()) }

func (p *bbProc) tail() string {
	raw, _ := os.ReadFile(p.log.Name())
	if len(raw) > 4000 {
		raw = raw[len(raw)-4000:]
	}
	return string(raw)
}

// bbSetup is one black-box set-up: nats-server and jobmanager-sim running, a client connected.
type bbSetup struct {
	bridgeBin string
	natsURL   string
	natsProf  string // nats-server's profiling address, when profiling
	natsMon   string // nats-server's monitoring address, when keeping logs
	simURL    string
	nats, sim *bbProc
	nc        *nats.Conn
	js        jetstream.JetStream
}

func bbUp(b *testing.B, bridgeBin, natsBin string) *bbSetup {
	b.Helper()
	port := bbFreePort(b)
	s := &bbSetup{bridgeBin: bridgeBin, natsURL: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	natsArgs := []string{"-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", b.TempDir()}
	if os.Getenv("LESSONBRIDGE_BB_PROFILE") != "" {
		pp := bbFreePort(b)
		s.natsProf = fmt.Sprintf("127.0.0.1:%d", pp)
		natsArgs = append(natsArgs, "-profile", strconv.Itoa(pp))
	}
	if os.Getenv("LESSONBRIDGE_BB_LOGDIR") != "" {
		mp := bbFreePort(b)
		s.natsMon = fmt.Sprintf("127.0.0.1:%d", mp)
		natsArgs = append(natsArgs, "-m", strconv.Itoa(mp))
	}
	s.nats = bbStart(b, "nats-server", natsBin, natsArgs...)
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.nc, err = nats.Connect(s.natsURL)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("nats-server not reachable: %v\n%s", err, s.nats.tail())
		}
		time.Sleep(20 * time.Millisecond) // polling a process we started for its port: nothing to wait on
	}
	b.Cleanup(s.nc.Close)
	s.js, err = jetstream.New(s.nc)
	if err != nil {
		b.Fatal(err)
	}

	simPort := bbFreePort(b)
	s.simURL = fmt.Sprintf("http://127.0.0.1:%d", simPort)
	s.sim = bbStart(b, "jobmanager-sim", bridgeBin, "jobmanager-sim", "--addr", fmt.Sprintf("127.0.0.1:%d", simPort),
		"--token", "bb", "--creation-delay", "0s", "--processing-delay", "0s", "--not-found-lag", "0s", "--log-level", "warn")
	bbWaitHTTP(b, s.simURL+"/_sim/state", s.sim)
	return s
}

func bbWaitHTTP(b *testing.B, url string, p *bbProc) {
	b.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not answering 200 (%v)\n%s", url, err, p.tail())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ceiling: raw JetStream consume+ack of the same events on the same server (stream CEILING, its own
// subjects, file storage like LESSONS): from Consume to nothing pending or unacked.
// ceiling measures raw consume+ack on the same server: events per second, and the CPU that the
// consuming client (this process) used from Consume to drained.
func (s *bbSetup) ceiling(b *testing.B, changes []publisher.RawChange) (float64, time.Duration) {
	b.Helper()
	ctx := context.Background()
	st, err := s.js.CreateStream(ctx, jetstream.StreamConfig{Name: "CEILING", Subjects: []string{"ceiling.>"},
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	p, err := publisher.New(s.js, publisher.WithSubjects(publisher.Subjects{Changes: "ceiling", Outcomes: "ceiling-o", DeadLetter: "ceiling-d"}))
	if err != nil {
		b.Fatal(err)
	}
	if err := p.PublishChanges(ctx, changes, 4096, nil); err != nil {
		b.Fatal(err)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "ceiling", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxAckPending: 100_000 + 2000, MaxDeliver: -1})
	if err != nil {
		b.Fatal(err)
	}
	var prof *bbProfiler
	if dir := os.Getenv("LESSONBRIDGE_BB_PROFILE"); dir != "" && s.natsProf != "" {
		// nats-server during the ceiling, to set against its profile during the bridge's window.
		prof = &bbProfiler{dir: dir}
		prof.wg.Add(1)
		go func() {
			defer prof.wg.Done()
			prof.fetch(b, "nats-ceiling.cpu", "http://"+s.natsProf+"/debug/pprof/profile?seconds=1")
		}()
	}
	self0 := bbSelfCPU(b)
	elapsed, err := natstest.Ceiling(cons, len(changes), 1000, 5*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	client := bbSelfCPU(b) - self0
	if prof != nil {
		prof.wg.Wait()
	}
	if err := s.js.DeleteStream(ctx, "CEILING"); err != nil {
		b.Fatal(err)
	}
	return float64(len(changes)) / elapsed.Seconds(), client
}

func (s *bbSetup) waitDrained(b *testing.B, cons jetstream.Consumer) {
	b.Helper()
	if err := natstest.WaitDrained(cons, 5*time.Minute); err != nil {
		b.Fatal(err)
	}
}

// bbOutcomes counts settled events from the outcome subjects and records when each event settled.
type bbOutcomes struct {
	mu      sync.Mutex
	settled int
	failed  int
	at      map[string]time.Time // event id -> outcome arrival, when keep is set
	keep    bool
	want    int
	done    chan struct{}
}

func (s *bbSetup) watchOutcomes(b *testing.B, want int, keep bool) *bbOutcomes {
	b.Helper()
	oc := &bbOutcomes{want: want, keep: keep, done: make(chan struct{}), at: map[string]time.Time{}}
	sub, err := s.nc.Subscribe("lessons.outcomes.>", func(m *nats.Msg) {
		now := time.Now()
		// Only what is counted: the rest of the outcome is scanned, not kept (the benchmark
		// process shares the two cores with what it measures).
		var o struct {
			Data struct {
				Status   string   `json:"status"`
				EventIDs []string `json:"eventIds"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Data, &o); err != nil {
			return
		}
		oc.mu.Lock()
		defer oc.mu.Unlock()
		before := oc.settled
		oc.settled += len(o.Data.EventIDs)
		if o.Data.Status != string(schemas.StatusSucceeded) {
			oc.failed += len(o.Data.EventIDs)
		}
		if oc.keep {
			for _, id := range o.Data.EventIDs {
				oc.at[id] = now
			}
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
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := s.nc.Flush(); err != nil {
		b.Fatal(err)
	}
	return oc
}

func (oc *bbOutcomes) wait(b *testing.B, bridge *bbProc) {
	b.Helper()
	select {
	case <-oc.done:
	case <-time.After(10 * time.Minute):
		oc.mu.Lock()
		defer oc.mu.Unlock()
		b.Fatalf("settled %d of %d events\n%s", oc.settled, oc.want, bridge.tail())
	}
}

// startBridge starts `lessonbridge run` against the set-up and waits until /readyz answers 200.
func (s *bbSetup) startBridge(b *testing.B, extra ...string) *bbProc {
	b.Helper()
	p := s.launchBridge(b, extra...)
	bbWaitHTTP(b, "http://"+p.http+"/readyz", p)
	return p
}

// launchBridge starts `lessonbridge run` against the set-up without waiting for it.
func (s *bbSetup) launchBridge(b *testing.B, extra ...string) *bbProc {
	b.Helper()
	httpPort := bbFreePort(b)
	args := []string{"run", "--nats-url", s.natsURL, "--jobmanager-url", s.simURL, "--jobmanager-token", "bb",
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort), "--log-level", "warn"}
	if s.natsProf != "" {
		args = append(args, "--pprof", "on")
	}
	args = append(args, extra...)
	if more := strings.Fields(os.Getenv("LESSONBRIDGE_BB_ARGS")); len(more) > 0 {
		args = append(args, more...)
	}
	p := bbStartEnv(b, "lessonbridge", strings.Fields(os.Getenv("LESSONBRIDGE_BB_BRIDGE_ENV")), s.bridgeBin, args...)
	p.http = fmt.Sprintf("127.0.0.1:%d", httpPort)
	if env := strings.Fields(os.Getenv("LESSONBRIDGE_BB_BRIDGE_ENV")); len(env) > 0 {
		b.Logf("bridge environment adds %v", env)
	}
	return p
}

// firstDelivery waits until the server has delivered a first message of the input stream to the
// bridge's consumer and returns the consumer. It asks every millisecond: /readyz is not the start
// (it may answer 200 well after pulling began, and a saturated machine answers it late).
func (s *bbSetup) firstDelivery(b *testing.B, bridge *bbProc) jetstream.Consumer {
	b.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if cons, err := s.js.Consumer(ctx, "LESSONS", "lessonbridge"); err == nil {
			if ci, err := cons.Info(ctx); err == nil && ci.Delivered.Stream > 0 {
				return cons
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the bridge's consumer delivered nothing within 60 s\n%s", bridge.tail())
		}
		time.Sleep(time.Millisecond) // polling another process's consumer: nothing to wait on
	}
}

// connz writes, when keeping logs, what nats-server counted per client connection (its /connz)
// to LESSONBRIDGE_BB_LOGDIR/connz.json, and logs each connection's messages in and out per event.
func (s *bbSetup) connz(b *testing.B, n int) {
	if s.natsMon == "" {
		return
	}
	resp, err := http.Get("http://" + s.natsMon + "/connz?limit=1024")
	if err != nil {
		b.Errorf("connz: %v", err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Errorf("connz: %v", err)
		return
	}
	if err := os.WriteFile(filepath.Join(os.Getenv("LESSONBRIDGE_BB_LOGDIR"), "connz.json"), body, 0o644); err != nil {
		b.Errorf("connz: %v", err)
	}
	var cz struct {
		Connections []struct {
			Name    string `json:"name"`
			InMsgs  int64  `json:"in_msgs"`
			OutMsgs int64  `json:"out_msgs"`
			InBytes int64  `json:"in_bytes"`
			OutByte int64  `json:"out_bytes"`
		} `json:"connections"`
	}
	if err := json.Unmarshal(body, &cz); err != nil {
		b.Errorf("connz: %v", err)
		return
	}
	for _, c := range cz.Connections {
		b.Logf("connection %q: per event %.3f messages in (%.0f B), %.3f out (%.0f B)", c.Name,
			float64(c.InMsgs)/float64(n), float64(c.InBytes)/float64(n), float64(c.OutMsgs)/float64(n), float64(c.OutByte)/float64(n))
	}
}

// watchConsumer writes the consumer's state every 100 ms to LESSONBRIDGE_BB_LOGDIR/consumer.log
// (when set): waiting pull requests, pending, ack pending, delivered, to tell a stalled pull from a
// busy bridge.
func (s *bbSetup) watchConsumer(b *testing.B, cons jetstream.Consumer) (stop func()) {
	dir := os.Getenv("LESSONBRIDGE_BB_LOGDIR")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, "consumer.log"))
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			ci, err := cons.Info(context.Background())
			if err != nil {
				fmt.Fprintf(f, "%s error %v\n", time.Now().Format("15:04:05.000"), err)
				continue
			}
			fmt.Fprintf(f, "%s waiting %d pending %d ackPending %d delivered %d ackFloor %d\n", time.Now().Format("15:04:05.000"),
				ci.NumWaiting, ci.NumPending, ci.NumAckPending, ci.Delivered.Stream, ci.AckFloor.Stream)
		}
	}()
	return func() { close(done); <-finished; _ = f.Close() }
}

// bbProfiler fetches profiles of the throughput window (LESSONBRIDGE_BB_PROFILE).
type bbProfiler struct {
	dir string
	wg  sync.WaitGroup
}

// start begins the CPU profiles of the bridge and nats-server and the bridge's execution trace; nil
// when not profiling.
func (s *bbSetup) startProfiles(b *testing.B, bridge *bbProc) *bbProfiler {
	dir := os.Getenv("LESSONBRIDGE_BB_PROFILE")
	if dir == "" {
		return nil
	}
	secs := strconv.Itoa(bbEnvInt(b, "LESSONBRIDGE_BB_PROFILE_SECONDS", 2))
	pr := &bbProfiler{dir: dir}
	for file, url := range map[string]string{
		"bridge.cpu":   "http://" + bridge.http + "/debug/pprof/profile?seconds=" + secs,
		"bridge.trace": "http://" + bridge.http + "/debug/pprof/trace?seconds=1",
		"nats.cpu":     "http://" + s.natsProf + "/debug/pprof/profile?seconds=" + secs,
	} {
		pr.wg.Add(1)
		go func() {
			defer pr.wg.Done()
			pr.fetch(b, file, url)
		}()
	}
	return pr
}

func (pr *bbProfiler) fetch(b *testing.B, file, url string) {
	resp, err := http.Get(url)
	if err != nil {
		b.Errorf("profile %s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(pr.dir, file))
	if err != nil {
		b.Errorf("profile: %v", err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		b.Errorf("profile %s: %s %v", url, resp.Status, err)
	}
}

// finish fetches the bridge's block, mutex and allocation profiles (allocs: since the process
// started, just before the window) and waits for the others.
func (pr *bbProfiler) finish(b *testing.B, bridge *bbProc) {
	if pr == nil {
		return
	}
	pr.fetch(b, "bridge.block", "http://"+bridge.http+"/debug/pprof/block")
	pr.fetch(b, "bridge.mutex", "http://"+bridge.http+"/debug/pprof/mutex")
	pr.fetch(b, "bridge.allocs", "http://"+bridge.http+"/debug/pprof/allocs")
	pr.wg.Wait()
}

func (s *bbSetup) submits(b *testing.B) int {
	b.Helper()
	resp, err := http.Get(s.simURL + "/_sim/state")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Submits int `json:"submits"`
	}
	if err := json.NewDecoder(bufio.NewReaderSize(resp.Body, 1<<20)).Decode(&st); err != nil {
		b.Fatal(err)
	}
	return st.Submits
}

// BenchmarkBlackBoxThroughput: N creates (one lesson each) are published to LESSONS first; the clock
// runs from the server's first delivery to the bridge's consumer until every event is settled (outcome eventIds) and the
// consumer has nothing pending or unacked. The ceiling is raw consume+ack of the same events on the
// same server in the same iteration. CPU is the user+system time of each process over its window.
func BenchmarkBlackBoxThroughput(b *testing.B) {
	n := bbEnvInt(b, "LESSONBRIDGE_BB_N", 200_000)
	bridgeBin, natsBin := bbBinaries(b)
	for range b.N {
		s := bbUp(b, bridgeBin, natsBin)
		changes := publisher.BacklogCreates(n, bbMandator)
		nc0 := s.nats.cpu(b)
		t0 := time.Now()
		ceiling, ceilingClient := s.ceiling(b, changes)
		ceilingNATSCPU := float64(s.nats.cpu(b)-nc0) / float64(time.Since(t0))

		ctx := context.Background()
		if _, err := s.js.CreateStream(ctx, jetstream.StreamConfig{Name: "LESSONS", Subjects: []string{"lessons.changes.>"},
			Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
			b.Fatal(err)
		}
		p, err := publisher.New(s.js)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.PublishChanges(ctx, changes, 4096, nil); err != nil {
			b.Fatal(err)
		}
		oc := s.watchOutcomes(b, n, false)
		submits0 := s.submits(b)
		bridge := s.launchBridge(b, "--batch-linger", "50ms", "--poll-schedule", "1ms,5ms")
		cons := s.firstDelivery(b, bridge)
		cpuB, cpuN, cpuS, cpuSelf := bridge.cpu(b), s.nats.cpu(b), s.sim.cpu(b), bbSelfCPU(b)
		busy0, total0 := bbMachine(b)
		start := time.Now()
		prof := s.startProfiles(b, bridge)
		stopWatch := s.watchConsumer(b, cons)
		oc.wait(b, bridge)
		s.waitDrained(b, cons)
		elapsed := time.Since(start)
		busy1, total1 := bbMachine(b)
		stopWatch()
		s.connz(b, n)
		prof.finish(b, bridge)
		evps := float64(n) / elapsed.Seconds()
		pct := func(d time.Duration) float64 { return 100 * float64(d) / float64(elapsed) }
		b.ReportMetric(ceiling, "ceiling-ev/s")
		b.ReportMetric(evps, "bridge-ev/s")
		b.ReportMetric(evps/ceiling, "ratio")
		dB, dN, dS := bridge.cpu(b)-cpuB, s.nats.cpu(b)-cpuN, s.sim.cpu(b)-cpuS
		b.ReportMetric(pct(dB), "bridge-cpu%")
		b.ReportMetric(pct(dN), "nats-cpu%")
		b.ReportMetric(pct(dS), "sim-cpu%")
		// CPU per event: less sensitive to other load on the machine than the rate.
		us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(n) }
		b.ReportMetric(us(dB), "bridge-cpu-us/ev")
		b.ReportMetric(us(dN), "nats-cpu-us/ev")
		b.ReportMetric(us(dS), "sim-cpu-us/ev")
		b.ReportMetric(pct(bbSelfCPU(b)-cpuSelf), "bench-cpu%")
		// The whole machine (every core, every process) over the window: 100 % per core.
		b.ReportMetric(float64(100*runtime.NumCPU())*float64(busy1-busy0)/float64(max(total1-total0, 1)), "machine-busy%")
		b.ReportMetric(100*ceilingNATSCPU, "ceiling-nats-cpu%")
		b.ReportMetric(float64(ceilingClient)/float64(time.Microsecond)/float64(n), "ceiling-client-cpu-us/ev")
		b.ReportMetric(float64(s.submits(b)-submits0)*1000/float64(n), "submits/1000lessons")
		if oc.failed > 0 {
			b.Errorf("%d events settled as failed\n%s", oc.failed, bridge.tail())
		}
	}
}

// BenchmarkBlackBoxLatency: creates for distinct lessons published at a steady rate (default 2,000/s
// for 10 s) to a running bridge with linger 100 ms and first poll 50 ms (the floor is 150 ms); the
// latency of an event runs from just before its publish to its outcome arriving at a subscriber.
func BenchmarkBlackBoxLatency(b *testing.B) {
	rate := bbEnvInt(b, "LESSONBRIDGE_BB_RATE", 2000)
	secs := bbEnvInt(b, "LESSONBRIDGE_BB_SECONDS", 10)
	bridgeBin, natsBin := bbBinaries(b)
	for range b.N {
		s := bbUp(b, bridgeBin, natsBin)
		n := rate * secs
		changes := publisher.BacklogCreates(n, bbMandator)
		oc := s.watchOutcomes(b, n, true)
		bridge := s.startBridge(b, "--batch-linger", "100ms", "--poll-schedule", "50ms,100ms,200ms")
		p, err := publisher.New(s.js)
		if err != nil {
			b.Fatal(err)
		}
		sent := make([]time.Time, n)
		const tick = 10 * time.Millisecond
		per := rate / int(time.Second/tick)
		ticker := time.NewTicker(tick)
		for i := 0; i < n; i += per {
			<-ticker.C
			end := min(i+per, n)
			now := time.Now()
			for j := i; j < end; j++ {
				sent[j] = now
			}
			if err := p.PublishChanges(context.Background(), changes[i:end], per, nil); err != nil {
				b.Fatal(err)
			}
		}
		ticker.Stop()
		oc.wait(b, bridge)
		oc.mu.Lock()
		lat := make([]float64, 0, n)
		for i, c := range changes {
			lat = append(lat, float64(oc.at[c.ID].Sub(sent[i]))/float64(time.Millisecond))
		}
		oc.mu.Unlock()
		slices.Sort(lat)
		q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		b.ReportMetric(q(0.50), "p50-ms")
		b.ReportMetric(q(0.99), "p99-ms")
		b.ReportMetric(lat[len(lat)-1], "max-ms")
	}
}

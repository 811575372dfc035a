package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// The chaos test runs the real `lessonbridge run` binary against an embedded NATS server and the
// JobManager simulator (both in the test process, over real sockets), kills it with SIGKILL at
// random moments, restarts NATS, and then checks the invariants of issue 4 from the outside: the
// streams, the consumer, the ledger bucket and the simulator's inspection API. See docs/chaos.md.
//
// Environment:
//
//	LESSONBRIDGE_CHAOS_LONG=1   long form (20,000 events, 20 kills) instead of the CI form
//	LESSONBRIDGE_CHAOS_SEED=n   reproduce a run's random choices (the seed is logged)
//	LESSONBRIDGE_CHAOS_RACE=1   build the bridge binary with -race
//	LESSONBRIDGE_CHAOS_BIN=path run this lessonbridge binary instead of building one
//	LESSONBRIDGE_CHAOS_LOG_LEVEL the bridge's --log-level (default warn)

func TestFaultHooks(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantNil bool
		wantErr bool
		calls   int
		kills   int // exactly, for probability 0 and 1
	}{
		{name: "unset", env: nil, wantNil: true},
		{name: "never", env: map[string]string{envFaultKillAfterSubmit: "0"}, calls: 100, kills: 0},
		{name: "always", env: map[string]string{envFaultKillAfterSubmit: "1", envFaultSeed: "7"}, calls: 3, kills: 3},
		{name: "not a number", env: map[string]string{envFaultKillAfterSubmit: "often"}, wantNil: true, wantErr: true},
		{name: "above one", env: map[string]string{envFaultKillAfterSubmit: "1.5"}, wantNil: true, wantErr: true},
		{name: "bad seed", env: map[string]string{envFaultKillAfterSubmit: "0.5", envFaultSeed: "x"}, wantNil: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kills := 0
			h, err := faultHooksFrom(func(k string) string { return tt.env[k] }, io.Discard, func() { kills++ })
			if tt.wantErr {
				assert.Error(t, err)
			} else {
				require.NoError(t, err)
			}
			if tt.wantNil {
				assert.Nil(t, h.AfterSubmit)
				return
			}
			require.NotNil(t, h.AfterSubmit)
			errs := 0
			for range tt.calls {
				if h.AfterSubmit("12345") != nil {
					errs++
				}
			}
			assert.Equal(t, tt.kills, kills)
			assert.Equal(t, tt.kills, errs, "a kill that returns must abandon the batch")
		})
	}

	t.Run("seeded draws repeat", func(t *testing.T) {
		draw := func() []bool {
			env := map[string]string{envFaultKillAfterSubmit: "0.3", envFaultSeed: "42"}
			h, err := faultHooksFrom(func(k string) string { return env[k] }, io.Discard, func() {})
			require.NoError(t, err)
			var out []bool
			for range 200 {
				out = append(out, h.AfterSubmit("1") != nil)
			}
			return out
		}
		a := draw()
		assert.Equal(t, a, draw())
		hits := 0
		for _, x := range a {
			if x {
				hits++
			}
		}
		assert.InDelta(t, 60, hits, 30, "about 30%% of 200 draws")
	})
}

// chaosPlan is one run of the harness.
type chaosPlan struct {
	events      int           // published, over both mandators (5% invalid)
	kills       int           // SIGKILLs sent by the test at random moments
	hookKills   int           // incarnations run with the fault hook, each must die by its own SIGKILL
	natsRestart bool          // stop the NATS server, wait 1 s, start it again on the same port and store
	settle      time.Duration // how long the final incarnation gets to settle everything
}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: builds and runs the binary for about a minute")
	}
	bin := buildBridge(t)
	long := os.Getenv("LESSONBRIDGE_CHAOS_LONG") == "1"
	tests := []struct {
		name string
		plan chaosPlan
	}{
		// The black-box runs of issue 4's Done-when.
		{"sigkill-three-times", chaosPlan{events: 600, kills: 3, settle: 60 * time.Second}},
		{"nats-restart", chaosPlan{events: 600, natsRestart: true, settle: 60 * time.Second}},
		// The chaos run: kills at random moments, one in the window between submit and ledger update.
		{"chaos", chaosPlan{events: 2000, kills: 5, hookKills: 1, natsRestart: true, settle: 90 * time.Second}},
	}
	if long {
		tests = []struct {
			name string
			plan chaosPlan
		}{{"chaos-long", chaosPlan{events: 20000, kills: 20, hookKills: 3, natsRestart: true, settle: 10 * time.Minute}}}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			newChaos(t, bin, tt.plan).run()
		})
	}
}

// buildBridge builds the lessonbridge binary once for the test.
func buildBridge(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("LESSONBRIDGE_CHAOS_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "lessonbridge")
	args := []string{"build", "-tags", "lessonbridge_faults", "-o", bin}
	if os.Getenv("LESSONBRIDGE_CHAOS_RACE") == "1" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

const chaosToken = "chaos-token"

var chaosMandators = []string{"chaos-a", "chaos-b"}

// chaosBadLessons are LektionIds the simulator always refuses (in both mandators).
var chaosBadLessons = []string{"L-00007", "L-00023", "L-00041"}

// chaos is the harness of one plan: NATS and the simulator in process, the bridge as a subprocess.
type chaos struct {
	t        *testing.T
	plan     chaosPlan
	bin      string
	seed     int64
	rnd      *rand.Rand
	logDir   string
	storeDir string
	port     int
	ns       *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	provoked int // events published to make a fault-hook incarnation submit
	sim      *jobmanagertest.Sim
	simURL   string

	bridge       *bridgeProc
	incarnations int
	kills        int // by the test
	hookKills    int // by the fault hook
	natsRestarts int
	started      time.Time
}

// bridgeProc is one incarnation of `lessonbridge run`.
type bridgeProc struct {
	n        int
	cmd      *exec.Cmd
	logPath  string
	done     chan struct{} // closed when the process has exited
	expected atomic.Bool   // the test killed or stopped it (or expects the fault hook to)
}

func newChaos(t *testing.T, bin string, plan chaosPlan) *chaos {
	seed := time.Now().UnixNano()
	if s := os.Getenv("LESSONBRIDGE_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, "LESSONBRIDGE_CHAOS_SEED")
		seed = n
	}
	t.Logf("seed %d (LESSONBRIDGE_CHAOS_SEED=%d reproduces the random choices)", seed, seed)
	c := &chaos{t: t, plan: plan, bin: bin, seed: seed, rnd: rand.New(rand.NewPCG(uint64(seed), 0xc4a05)),
		storeDir: t.TempDir(), port: freePort(t), started: time.Now()}

	logDir, err := os.MkdirTemp("", "lessonbridge-chaos-")
	require.NoError(t, err)
	c.logDir = logDir
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bridge logs kept in %s", logDir)
			return
		}
		_ = os.RemoveAll(logDir)
	})

	c.ns, err = natstest.StartServer(c.storeDir, c.port)
	require.NoError(t, err)
	t.Cleanup(func() { c.ns.Shutdown(); c.ns.WaitForShutdown() })
	c.nc, err = nats.Connect(c.natsURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(c.nc.Close)
	c.js, err = jetstream.New(c.nc)
	require.NoError(t, err)

	c.sim = jobmanagertest.New(jobmanagertest.Config{
		Token: chaosToken,
		// A few lessons JobManager always refuses (issue 10): failure isolation must keep them from
		// failing the lessons that share their batches, across kills and restarts.
		// Styles that keep JobManager's job-level "Duplicate JobId" message: with first-error a
		// resubmission after a crash can be answered with only the bad lesson's message, and the
		// in-doubt window is not recognised (a known limit, see the closing note of issue 10).
		BadLessons: chaosBadLessons,
		ErrorStyle: []jobmanagertest.ErrorStyle{jobmanagertest.StyleLessons, jobmanagertest.StyleJobID,
			jobmanagertest.StyleAnonymous}[uint64(seed)%3],
		CreationDelay:   20 * time.Millisecond,
		ProcessingDelay: 50 * time.Millisecond,
		NotFoundLag:     20 * time.Millisecond,
		Random: jobmanagertest.RandomFaults{
			Seed:             seed,
			SubmitFailRate:   0.05,
			StatusFailRate:   0.05,
			LoseResponseRate: 0.02,
		},
	})
	hs := httptest.NewServer(c.sim)
	t.Cleanup(hs.Close)
	c.simURL = hs.URL
	t.Cleanup(c.killCurrent) // registered last: runs first
	return c
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

func (c *chaos) natsURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", c.port) }

// start starts a new incarnation; with hook, the fault hook kills it after some accepted submit.
// httpAddr is its --http-addr (empty: none).
func (c *chaos) start(hook bool, httpAddr string) *bridgeProc {
	c.t.Helper()
	c.incarnations++
	p := &bridgeProc{n: c.incarnations, done: make(chan struct{}),
		logPath: filepath.Join(c.logDir, fmt.Sprintf("bridge-%02d.log", c.incarnations))}
	f, err := os.Create(p.logPath)
	require.NoError(c.t, err)
	logLevel := "warn"
	if l := os.Getenv("LESSONBRIDGE_CHAOS_LOG_LEVEL"); l != "" {
		logLevel = l
	}
	p.cmd = exec.Command(c.bin, "run",
		"--nats-url", c.natsURL(),
		"--jobmanager-url", c.simURL,
		"--jobmanager-token", chaosToken,
		"--poll-schedule", "20ms,50ms,100ms",
		"--not-found-grace", "30s",
		"--batch-linger", "50ms",
		"--batch-max-lessons", "100",
		"--ack-wait", "2s",
		"--http-addr", httpAddr,
		"--log-level", logLevel,
	)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LESSONBRIDGE_") && !strings.HasPrefix(kv, "NATS_URL=") {
			env = append(env, kv)
		}
	}
	if hook {
		env = append(env, envFaultKillAfterSubmit+"=0.3", fmt.Sprintf("%s=%d", envFaultSeed, c.seed+int64(p.n)))
		p.expected.Store(true)
	}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = f, f
	require.NoError(c.t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	c.bridge = p
	return p
}

// checkAlive reports an incarnation that ended without being killed: the bridge must ride out
// everything the test does to it.
func (c *chaos) checkAlive() {
	c.t.Helper()
	p := c.bridge
	if p == nil {
		return
	}
	select {
	case <-p.done:
		if !p.expected.Load() {
			c.t.Errorf("bridge incarnation %d exited on its own (%v); log tail:\n%s", p.n, p.cmd.ProcessState, tail(p.logPath, 30))
			p.expected.Store(true) // report once
		}
	default:
	}
}

// kill sends SIGKILL to the current incarnation and waits for it to be gone.
func (c *chaos) kill() {
	c.t.Helper()
	c.checkAlive()
	p := c.bridge
	p.expected.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("bridge incarnation %d did not die from SIGKILL", p.n)
	}
	c.kills++
}

func (c *chaos) killCurrent() {
	if p := c.bridge; p != nil {
		p.expected.Store(true)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// awaitHookKill waits for an incarnation started with the fault hook to kill itself. The hook fires
// only after a submit; when the waves are over and nothing is left to submit, the test publishes a
// fresh create every second (mandator chaos-a, lessons H-<n>) to give it one. They are ordinary
// events of the run: verify reads every event from the stream.
func (c *chaos) awaitHookKill(p *bridgeProc, within time.Duration) {
	c.t.Helper()
	deadline := time.After(within)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-p.done:
			done = true
		case <-tick.C:
			c.provoked++
			start := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
			body, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": fmt.Sprintf("hook-%d-%d", p.n, c.provoked),
				"source": "/chaos", "type": "lesson.created", "data": map[string]any{"lessonId": fmt.Sprintf("H-%d", c.provoked),
					"start": start, "end": start.Add(time.Hour), "resource": "Aula"}})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = c.js.Publish(ctx, "lessons.changes.chaos-a", body, jetstream.WithMsgID(fmt.Sprintf("hook-%d-%d", p.n, c.provoked)))
			cancel()
		case <-deadline:
			c.t.Errorf("incarnation %d with %s=0.3 did not kill itself within %v: is cfg.Hooks = faultHooks() wired into run?",
				p.n, envFaultKillAfterSubmit, within)
			c.killCurrent()
			return
		}
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if assert.True(c.t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "incarnation %d ended with %v, want SIGKILL by the fault hook", p.n, p.cmd.ProcessState) {
		log, _ := os.ReadFile(p.logPath)
		assert.Contains(c.t, string(log), "fault hook: SIGKILL after the submit of batch")
		c.hookKills++
	}
}

// restartNATS stops the server, waits a second and starts it again on the same port and store.
func (c *chaos) restartNATS() {
	c.t.Helper()
	c.ns.Shutdown()
	c.ns.WaitForShutdown()
	time.Sleep(time.Second) // the outage itself, not a synchronisation
	ns, err := natstest.StartServer(c.storeDir, c.port)
	require.NoError(c.t, err)
	c.ns = ns
	c.natsRestarts++
}

// stop ends the final incarnation with SIGTERM and expects a clean exit.
func (c *chaos) stop() {
	c.t.Helper()
	c.checkAlive()
	p := c.bridge
	p.expected.Store(true)
	require.NoError(c.t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
		assert.True(c.t, p.cmd.ProcessState.Success(), "SIGTERM: incarnation %d ended with %v; log tail:\n%s", p.n, p.cmd.ProcessState, tail(p.logPath, 20))
	case <-time.After(20 * time.Second):
		c.t.Errorf("incarnation %d did not stop within 20s of SIGTERM", p.n)
	}
	c.bridge = nil
}

// waves splits the sample workload into n waves, keeping each mandator's events in order.
func (c *chaos) waves(n int) [][]publisher.RawChange {
	per := c.plan.events / len(chaosMandators)
	out := make([][]publisher.RawChange, n)
	for i, m := range chaosMandators {
		evs := publisher.SampleEvents(per, m, c.seed+int64(i), 0.05)
		for w := range n {
			out[w] = append(out[w], evs[w*len(evs)/n:(w+1)*len(evs)/n]...)
		}
	}
	return out
}

func (c *chaos) run() {
	t := c.t
	var actions []string
	for range c.plan.kills {
		actions = append(actions, "kill")
	}
	for range c.plan.hookKills {
		actions = append(actions, "hook")
	}
	if c.plan.natsRestart {
		actions = append(actions, "nats")
	}
	c.rnd.Shuffle(len(actions), func(i, j int) { actions[i], actions[j] = actions[j], actions[i] })
	delays := make([]time.Duration, len(actions))
	var total time.Duration
	for i := range delays {
		delays[i] = 300*time.Millisecond + time.Duration(c.rnd.Int64N(int64(2200*time.Millisecond)))
		total += delays[i]
	}
	waves := c.waves(max(4, len(actions)+1))
	gap := total / time.Duration(len(waves))
	t.Logf("plan: %d events in %d waves %v apart; actions %v after %v", c.plan.events, len(waves), gap.Round(time.Millisecond), actions, roundAll(delays))

	c.start(false, "")
	c.awaitTopology()

	// Publish the waves in the background while the bridge is killed; a wave that meets a NATS
	// outage is published again (the stream de-duplicates by Nats-Msg-Id).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, err := publisher.New(c.js)
	require.NoError(t, err)
	pubDone := make(chan error, 1)
	go func() {
		for _, w := range waves {
			for {
				err := pub.PublishChanges(ctx, w, 256, nil)
				if err == nil {
					break
				}
				select {
				case <-ctx.Done():
					pubDone <- err
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			select {
			case <-ctx.Done():
				pubDone <- ctx.Err()
				return
			case <-time.After(gap):
			}
		}
		pubDone <- nil
	}()

	for i, a := range actions {
		time.Sleep(delays[i]) // a random moment, on purpose
		c.checkAlive()
		switch a {
		case "kill":
			c.kill()
			c.start(false, "")
		case "hook":
			c.kill()
			p := c.start(true, "")
			c.awaitHookKill(p, 30*time.Second)
			c.start(false, "")
		case "nats":
			c.restartNATS()
		}
	}
	select {
	case err := <-pubDone:
		require.NoError(t, err, "publishing the waves")
	case <-time.After(2 * time.Minute):
		t.Fatal("publishing the waves did not finish")
	}
	// The final incarnation: killed once more and started with its HTTP endpoints, so that the
	// test knows when it is ready (SIGTERM before the signal handler is installed would kill it).
	c.kill()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.start(false, addr)
	require.Eventually(t, func() bool {
		c.checkAlive()
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "final incarnation not ready; log tail:\n%s", tail(c.bridge.logPath, 20))
	c.awaitSettled()
	c.stop()
	c.verify()
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// awaitTopology waits until the first incarnation created streams, consumer and ledger bucket.
func (c *chaos) awaitTopology() {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		c.checkAlive()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := c.js.Consumer(ctx, "LESSONS", "lessonbridge"); err != nil {
			return false
		}
		_, err := c.js.KeyValue(ctx, "lessonbridge_ledger")
		return err == nil
	}, 20*time.Second, 20*time.Millisecond, "the bridge did not set up its topology; log tail:\n%s", tail(c.bridge.logPath, 20))
}

// awaitSettled waits until the consumer has nothing pending or unacknowledged and the ledger is empty.
func (c *chaos) awaitSettled() {
	c.t.Helper()
	deadline := time.Now().Add(c.plan.settle)
	var last string
	for time.Now().Before(deadline) {
		c.checkAlive()
		ci, keys, err := c.consumerAndLedger()
		if err == nil {
			last = fmt.Sprintf("NumPending %d, NumAckPending %d, NumRedelivered %d, ledger keys %d", ci.NumPending, ci.NumAckPending, ci.NumRedelivered, len(keys))
			if ci.NumPending == 0 && ci.NumAckPending == 0 && len(keys) == 0 {
				c.t.Logf("settled %v after the start: %s", time.Since(c.started).Round(time.Millisecond), last)
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	ci, keys, _ := c.consumerAndLedger()
	c.t.Fatalf("not settled within %v: %s; ledger keys %v; consumer %+v; bridge log tail:\n%s",
		c.plan.settle, last, keys, ci, tail(c.bridge.logPath, 40))
}

func (c *chaos) consumerAndLedger() (*jetstream.ConsumerInfo, []string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := c.js.Consumer(ctx, "LESSONS", "lessonbridge")
	if err != nil {
		return nil, nil, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	kv, err := c.js.KeyValue(ctx, "lessonbridge_ledger")
	if err != nil {
		return ci, nil, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return ci, nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return ci, keys, nil
}

// readStream returns every message of a stream, in order.
func (c *chaos) readStream(name string) []jetstream.Msg {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := c.js.Stream(ctx, name)
	require.NoError(c.t, err)
	info, err := s.Info(ctx)
	require.NoError(c.t, err)
	cons, err := c.js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{})
	require.NoError(c.t, err)
	var out []jetstream.Msg
	for uint64(len(out)) < info.State.Msgs {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		require.NoError(c.t, err)
		n := 0
		for m := range batch.Messages() {
			out = append(out, m)
			n++
		}
		require.NoError(c.t, batch.Error())
		require.NotZero(c.t, n, "stream %s: read %d of %d messages", name, len(out), info.State.Msgs)
	}
	return out
}

// inputEvent is a published event as the LESSONS stream holds it.
type inputEvent struct {
	id       string
	mandator string
	seq      uint64
	ev       *schemas.LessonChange // nil when invalid
}

func (c *chaos) verify() {
	t := c.t

	// The input, by stream sequence and by event id.
	bySeq := map[uint64]*inputEvent{}
	byID := map[string]*inputEvent{}
	var order []*inputEvent
	valid, invalid := 0, 0
	for _, m := range c.readStream("LESSONS") {
		md, err := m.Metadata()
		require.NoError(t, err)
		e := &inputEvent{id: m.Headers().Get(jetstream.MsgIDHeader), mandator: strings.TrimPrefix(m.Subject(), "lessons.changes."),
			seq: md.Sequence.Stream}
		e.ev, _ = schemas.Decode(m.Data(), e.mandator)
		if e.ev != nil {
			valid++
		} else {
			invalid++
		}
		require.NotContains(t, byID, e.id, "event %s published twice", e.id)
		bySeq[e.seq], byID[e.id] = e, e
		order = append(order, e)
	}
	assert.Equal(t, c.plan.events+c.provoked, len(order), "events in LESSONS (the waves and those given to a fault-hook incarnation)")

	// Outcomes: every valid event settled by exactly one.
	settled := map[string]int{}
	outcomeIDs := map[string]int{}
	byReason := map[string]int{}
	jobOwner := map[string]string{} // JobID -> outcome id
	inDoubtJobs := map[string]bool{}
	inDoubt, isolated := 0, 0
	type dataFailure struct {
		o      *schemas.Outcome
		lesson string
	}
	var dataFailed []dataFailure
	unknownLessons := map[string]bool{} // in doubt with a bad lesson among them: applied or not
	failedLessons := map[string]bool{}  // mandator/lessonId of failures other than in_doubt
	var outcomes, unexplained []*schemas.Outcome
	for _, m := range c.readStream("LESSON_OUTCOMES") {
		assert.NoError(t, schemas.ValidateSchema(schemas.SchemaOutcome, m.Data()), string(m.Data()))
		o := &schemas.Outcome{}
		require.NoError(t, json.Unmarshal(m.Data(), o))
		outcomes = append(outcomes, o)
		outcomeIDs[o.ID]++
		d := o.Data
		byReason[d.Status+"/"+d.Reason]++
		for _, id := range d.EventIDs {
			settled[id]++
		}
		for _, j := range d.JobIDs {
			if prev, ok := jobOwner[j]; ok && prev != o.ID {
				t.Errorf("JobID %s named by two outcomes, %s and %s", j, prev, o.ID)
			}
			jobOwner[j] = o.ID
		}
		if d.Status != schemas.StatusFailed {
			continue
		}
		switch {
		case d.Reason == schemas.ReasonInDoubt:
			inDoubt++
			for _, j := range d.JobIDs {
				inDoubtJobs[j] = true
			}
			// In doubt means the first submit probably went through. With a bad lesson among them it
			// may have failed as a whole instead (JobManager applies nothing of a failed batch, and its
			// JobIDs still count as used): these lessons' state is unknown, as the contract says, and a
			// later change of them may fail for that reason.
			if slices.ContainsFunc(d.LessonIDs, func(l string) bool { return slices.Contains(chaosBadLessons, l) }) {
				for _, l := range d.LessonIDs {
					unknownLessons[d.Mandator+"/"+l] = true
					failedLessons[d.Mandator+"/"+l] = true
				}
			}
		case d.Reason == schemas.ReasonImportFailed && d.ErrorClass == schemas.ErrorClassTechnical:
			for _, l := range d.LessonIDs {
				failedLessons[d.Mandator+"/"+l] = true
			}
		case d.Reason == schemas.ReasonImportFailed && d.ErrorClass == schemas.ErrorClassData:
			// Failure isolation: a data failure settles only the lessons at fault (checked below, once
			// every in-doubt outcome is known).
			for _, l := range d.LessonIDs {
				dataFailed = append(dataFailed, dataFailure{o, l})
				failedLessons[d.Mandator+"/"+l] = true
			}
			isolated += len(d.LessonIDs)
		default:
			t.Errorf("outcome %s (batch %s, %s %s) failed with reason %q class %q, which no injected fault explains: %v",
				o.ID, d.BatchID, d.Mandator, d.Action, d.Reason, d.ErrorClass, d.ErrorMessages)
			for _, l := range d.LessonIDs {
				failedLessons[d.Mandator+"/"+l] = true
			}
			unexplained = append(unexplained, o)
		}
	}
	for _, f := range dataFailed {
		d := f.o.Data
		if !slices.Contains(chaosBadLessons, f.lesson) && !unknownLessons[d.Mandator+"/"+f.lesson] {
			t.Errorf("outcome %s (batch %s) failed valid lesson %s/%s because of another lesson: %v",
				f.o.ID, d.BatchID, d.Mandator, f.lesson, d.ErrorMessages)
			unexplained = append(unexplained, f.o)
		}
	}
	for id, n := range outcomeIDs {
		assert.Equal(t, 1, n, "outcome %s in the stream %d times", id, n)
	}
	c.explain(unexplained, order, outcomes)
	lost, twice := 0, 0
	for _, e := range order {
		n := settled[e.id]
		switch {
		case e.ev == nil:
			assert.Zero(t, n, "invalid event %s (seq %d) named by an outcome", e.id, e.seq)
		case n == 0:
			lost++
			if lost <= 10 {
				t.Errorf("valid event %s (seq %d, %s %s) settled by no outcome", e.id, e.seq, e.ev.Type, e.ev.Data.LessonID)
			}
		case n > 1:
			twice++
			if twice <= 10 {
				t.Errorf("valid event %s (seq %d) settled by %d outcomes", e.id, e.seq, n)
			}
		}
	}
	for id := range settled {
		assert.Contains(t, byID, id, "an outcome names event %s, which was never published", id)
	}

	// Dead letters: every invalid event once as invalid_event (unique by subject and stream seq).
	dead := map[string]string{} // subject/seq -> reason
	for _, m := range c.readStream("LESSON_DEADLETTER") {
		h := m.Headers()
		k := h.Get(schemas.HeaderSubject) + "/" + h.Get(schemas.HeaderStreamSeq)
		dead[k] = h.Get(schemas.HeaderReason)
	}
	for _, e := range order {
		reason, ok := dead[fmt.Sprintf("lessons.changes.%s/%d", e.mandator, e.seq)]
		switch {
		case e.ev == nil:
			assert.True(t, ok && reason == schemas.ReasonInvalidEvent, "invalid event %s (seq %d) dead-lettered as %q (found: %v)", e.id, e.seq, reason, ok)
		case ok:
			assert.NotEqual(t, schemas.ReasonInvalidEvent, reason, "valid event %s dead-lettered as invalid", e.id)
		}
	}
	for _, o := range outcomes {
		if o.Data.Status != schemas.StatusFailed {
			continue
		}
		for _, id := range o.Data.EventIDs {
			if e := byID[id]; e != nil {
				_, ok := dead[fmt.Sprintf("lessons.changes.%s/%d", e.mandator, e.seq)]
				assert.True(t, ok, "event %s of failed outcome %s (%s) not dead-lettered", id, o.ID, o.Data.Reason)
			}
		}
	}

	// The simulator: no lesson created twice, no JobID reused, duplicates only where in doubt.
	st := c.sim.State()
	resent, dupBatches := 0, 0
	for _, m := range chaosMandators {
		ms := st.Mandators[m]
		for l, n := range ms.Creations {
			assert.LessOrEqual(t, n, 1, "lesson %s/%s created %d times", m, l, n)
		}
		assert.Empty(t, ms.JobIDConflicts, "JobIDs of %s sent for two different jobs", m)
		count := map[string]int{}
		for _, j := range ms.JobIDs {
			count[j]++
		}
		for _, n := range count {
			if n > 1 {
				resent++
			}
		}
		for _, b := range ms.Batches {
			if !slices.ContainsFunc(b.ErrorMessages, func(s string) bool { return strings.Contains(s, "Duplicate JobId") }) {
				continue
			}
			dupBatches++
			for _, j := range b.JobIDs {
				assert.True(t, inDoubtJobs[j], "batch %s repeated JobID %s, but no in_doubt outcome names it: a resubmission outside an in-doubt window", b.BatchID, j)
			}
		}
		// Every lesson ends as its events say (order held, nothing lost), except those of failures.
		want := map[string]*schemas.LessonData{}
		for _, e := range order {
			if e.mandator != m || e.ev == nil {
				continue
			}
			if e.ev.Type == schemas.TypeLessonDeleted {
				want[e.ev.Data.LessonID] = nil
			} else {
				want[e.ev.Data.LessonID] = &e.ev.Data
			}
		}
		got := c.sim.Lessons(m)
		for id, w := range want {
			if failedLessons[m+"/"+id] {
				continue
			}
			g, ok := got[id]
			if w == nil {
				assert.False(t, ok, "lesson %s/%s deleted last, but JobManager has it", m, id)
				continue
			}
			if !assert.True(t, ok, "lesson %s/%s missing in JobManager", m, id) {
				continue
			}
			begin, err := time.Parse(time.RFC3339Nano, g.Beginn)
			assert.NoError(t, err)
			assert.True(t, begin.Equal(w.Start) && g.RessourceName == w.Resource,
				"lesson %s/%s is %s %s in JobManager, its last event says %s %s", m, id, g.Beginn, g.RessourceName, w.Start, w.Resource)
		}
	}
	for j := range inDoubtJobs {
		found := false
		for _, m := range chaosMandators {
			for _, b := range st.Mandators[m].Batches {
				if slices.Contains(b.JobIDs, j) && slices.ContainsFunc(b.ErrorMessages, func(s string) bool { return strings.Contains(s, "Duplicate JobId: "+j) }) {
					found = true
				}
			}
		}
		assert.True(t, found, "in_doubt outcome names JobID %s, but JobManager never reported it as a duplicate", j)
	}

	// The consumer and the ledger are empty.
	ci, keys, err := c.consumerAndLedger()
	require.NoError(t, err)
	assert.Zero(t, ci.NumAckPending, "NumAckPending")
	assert.Zero(t, ci.NumPending, "NumPending")
	assert.Empty(t, keys, "ledger keys")

	reasons := slices.Sorted(maps.Keys(byReason))
	var rs []string
	for _, r := range reasons {
		rs = append(rs, fmt.Sprintf("%s=%d", r, byReason[r]))
	}
	var reqs []string
	for _, r := range st.Requests {
		reqs = append(reqs, fmt.Sprintf("%s/%d=%d", r.Kind, r.Code, r.Count))
	}
	sort.Strings(reqs)
	t.Logf("summary: %d events (%d valid, %d invalid) in %v; %d outcomes [%s]; %d dead letters; "+
		"%d incarnations, %d SIGKILLs by the test, %d by the fault hook, %d NATS restarts; "+
		"%d in_doubt outcomes, %d lessons failed by isolation (bad lessons %v), %d duplicate batches in JobManager, "+
		"%d JobIDs sent more than once; lost %d, settled twice %d; JobManager requests [%s]",
		len(order), valid, invalid, time.Since(c.started).Round(time.Millisecond), len(outcomes), strings.Join(rs, " "), len(dead),
		c.incarnations, c.kills, c.hookKills, c.natsRestarts, inDoubt, isolated, chaosBadLessons, dupBatches, resent, lost, twice, strings.Join(reqs, " "))
	assert.Equal(t, c.plan.kills+c.plan.hookKills+1, c.kills, "SIGKILLs by the test (one before the final incarnation)")
	assert.Equal(t, c.plan.hookKills, c.hookKills, "SIGKILLs by the fault hook")
}

// explain logs, for the first lessons of unexplained failures, the lesson's events in stream order
// (with the outcome that settled each) and what JobManager applied, to show the sequence that failed.
func (c *chaos) explain(failed []*schemas.Outcome, order []*inputEvent, outcomes []*schemas.Outcome) {
	settledBy := map[string]*schemas.Outcome{}
	for _, o := range outcomes {
		for _, id := range o.Data.EventIDs {
			settledBy[id] = o
		}
	}
	shown := 0
	for _, o := range failed {
		msgs := strings.Join(o.Data.ErrorMessages, " ")
		for _, l := range o.Data.LessonIDs {
			if !strings.Contains(msgs, "Lektion "+l+" ") {
				continue
			}
			if shown == 5 {
				return
			}
			shown++
			var b strings.Builder
			fmt.Fprintf(&b, "lesson %s/%s (failed in batch %s):\n  events:", o.Data.Mandator, l, o.Data.BatchID)
			for _, e := range order {
				if e.ev == nil || e.mandator != o.Data.Mandator || e.ev.Data.LessonID != l {
					continue
				}
				by := settledBy[e.id]
				if by == nil {
					fmt.Fprintf(&b, "\n    seq %d %s settled by nothing", e.seq, e.ev.Type)
					continue
				}
				fmt.Fprintf(&b, "\n    seq %d %s settled by batch %s (%s %s, submitted %s)", e.seq, e.ev.Type, by.Data.BatchID,
					by.Data.Status, by.Data.Reason, by.Data.SubmittedAt.Format("15:04:05.000"))
			}
			b.WriteString("\n  JobManager applied:")
			for _, a := range c.sim.History(o.Data.Mandator, l) {
				fmt.Fprintf(&b, "\n    %s in batch %s at %s", a.Action, a.BatchID, a.At.Format("15:04:05.000"))
			}
			c.t.Log(b.String())
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		lines = append(lines, "("+err.Error()+")")
	}
	return strings.Join(lines, "\n")
}

// TestProductionBinaryHasNoFaultHook: the fault hook is test-only (issue 9): a binary built without
// -tags lessonbridge_faults neither reads LESSONBRIDGE_FAULT_* nor contains the hook's code.
func TestProductionBinaryHasNoFaultHook(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "lessonbridge")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	data, err := os.ReadFile(bin)
	require.NoError(t, err)
	assert.NotContains(t, string(data), envFaultKillAfterSubmit, "the production binary names a fault-hook variable")
	assert.NotContains(t, string(data), "fault hook: SIGKILL", "the production binary holds the fault hook's code")
}

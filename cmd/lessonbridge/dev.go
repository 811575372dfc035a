package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// devToken is the bearer token of the simulator that dev starts (and that the bridge sends).
const devToken = "dev-token"

// The OAuth2 client of `dev --oauth2` (the simulator's token endpoint knows only it).
const (
	devOAuth2Client = "lessonbridge-dev"
	devOAuth2Secret = "dev-client-secret"
	devOAuth2Scope  = "jobs"
)

// openDevLog opens dev's log file: path, or a new file in the temporary directory when path is
// empty. The file is kept after dev ends, so the log can be read afterwards.
func openDevLog(path string) (string, *os.File, error) {
	if path == "" {
		f, err := os.CreateTemp("", "lessonbridge-dev-*.log")
		if err != nil {
			return "", nil, err
		}
		return f.Name(), f, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", nil, err
	}
	return path, f, nil
}

// devResources are the rooms the dev simulator knows: those publisher.SampleEvents uses. Any other
// RessourceName fails its batch, which dev uses to show an import_failed outcome.
var devResources = []string{"Raum 1.01", "Raum 1.02", "Raum 2.14", "Labor 3.05", "Turnhalle A", "Aula"}

// devUnknownResource is the room of dev's deliberately failing batch.
const devUnknownResource = "Raum 9.99"

// devBrokenEvents is how many events of the workload name the unknown room (taken from --events
// when it is at least 10).
const devBrokenEvents = 3

// devAnnexGood is how many valid lessons share the failing batch with the broken ones: failure
// isolation dead-letters only the broken ones and imports these in a follow-up batch.
const devAnnexGood = 3

// devConfig is the bridge configuration of dev: timings short enough to watch a whole flow in seconds.
func devConfig(log *zap.Logger) consumer.Config {
	return consumer.Config{
		PollSchedule:     []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second},
		PollTimeout:      2 * time.Minute,
		NotFoundGrace:    10 * time.Second,
		BatchLinger:      500 * time.Millisecond,
		AckWait:          10 * time.Second,
		SubmitBackoff:    250 * time.Millisecond,
		SubmitMaxBackoff: 2 * time.Second,
		ShutdownGrace:    3 * time.Second,
		Logger:           log,
	}
}

// devSimConfig is the JobManager simulator of dev: a few hundred milliseconds per state, known rooms.
func devSimConfig() jobmanagertest.Config {
	return jobmanagertest.Config{
		Token:           devToken,
		CreationDelay:   300 * time.Millisecond,
		ProcessingDelay: 700 * time.Millisecond,
		NotFoundLag:     200 * time.Millisecond,
		Resources:       devResources,
	}
}

// runDev is `lessonbridge dev`: an embedded NATS server with JetStream, the JobManager simulator over
// real HTTP and the bridge, all in this process, with a sample workload whose batches, outcomes and
// dead letters are printed as they happen. It runs until ctx ends, or with --exit-when-done until the
// workload is settled; then it shuts everything down and removes its temporary store.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", stderr)
	events := fs.Int("events", 60, "sample events to publish (0: none)")
	failRate := fs.Float64("fail-rate", 0.1, "fraction of sample events made invalid on purpose (0..1)")
	seed := fs.Int64("seed", 1, "seed of the sample mix")
	mandator := fs.String("mandator", "demo", "mandator of the sample events")
	natsPort := fs.Int("nats-port", 0, "port of the embedded NATS server (0: a free one)")
	httpAddr := fs.String("http-addr", "127.0.0.1:8081", "address of /metrics, /readyz and /batches (a free port if busy)")
	exitWhenDone := fs.Bool("exit-when-done", false, "stop once every published sample event is settled")
	logFile := fs.String("log-file", "", "file for the bridge's own log (empty: a new file in the temp directory, kept and named at start)")
	logLevel := fs.String("log-level", "info", "bridge log level in --log-file: debug, info, warn or error")
	logFormat := fs.String("log-format", "console", "bridge log format in --log-file: console or json")
	color := fs.String("color", "auto", "colours: auto (on a terminal, unless NO_COLOR is set), always or never")
	withOAuth2 := fs.Bool("oauth2", false, "the simulator issues short-lived OAuth2 tokens (client credentials) and the bridge gets them from its token endpoint")
	tokenTTL := fs.Duration("oauth2-token-ttl", 5*time.Second, "lifetime of the simulator's OAuth2 tokens (with --oauth2)")
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	switch {
	case *events < 0:
		return fmt.Errorf("dev: --events %d is negative", *events)
	case *failRate < 0 || *failRate > 1:
		return fmt.Errorf("dev: --fail-rate %v is not within 0..1", *failRate)
	case !mandatorToken.MatchString(*mandator):
		return fmt.Errorf("dev: --mandator %q must match [A-Za-z0-9_-]{1,64}", *mandator)
	case *natsPort < 0 || *natsPort > 65535:
		return fmt.Errorf("dev: --nats-port %d is not a port", *natsPort)
	case *withOAuth2 && *tokenTTL < time.Second:
		return fmt.Errorf("dev: --oauth2-token-ttl %v: at least 1s (OAuth2 announces lifetimes in whole seconds)", *tokenTTL)
	}
	colored, err := useColor(*color, stdout)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	p := palette{on: colored}
	out := &linePrinter{w: stdout}
	defer out.close()
	// The logger's settings are checked before a log file is created for it.
	if _, err := newLogger(*logLevel, *logFormat, io.Discard); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	logPath, logW, err := openDevLog(*logFile)
	if err != nil {
		return fmt.Errorf("dev: --log-file: %w", err)
	}
	defer logW.Close()
	log, err := newDevLogger(*logLevel, *logFormat, logW, func(msg string) {
		_ = out.println(fmt.Sprintf("%s %s bridge: %s %s", p.dim(clock(time.Now())), p.red("!"), msg, p.dim("(more in the log file)")))
	})
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer func() { _ = log.Sync() }()

	// NATS with JetStream in a temporary store.
	dir, err := os.MkdirTemp("", "lessonbridge-dev-")
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer os.RemoveAll(dir)
	ns, err := natstest.StartServer(dir, *natsPort)
	if err != nil {
		return fmt.Errorf("dev: nats server: %w", err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	natsURL := ns.ClientURL()

	// The JobManager simulator on a real local listener.
	simLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("dev: simulator: %w", err)
	}
	simCfg := devSimConfig()
	var simAPI http.Handler = jobmanagertest.New(simCfg)
	var oauth *jobmanagertest.OAuth2
	if *withOAuth2 {
		simCfg.Token = "" // the OAuth2 front checks the tokens
		oauth, err = jobmanagertest.NewOAuth2(jobmanagertest.OAuth2Config{
			Clients:  []jobmanagertest.OAuth2Client{{ID: devOAuth2Client, Secret: devOAuth2Secret, Scopes: []string{devOAuth2Scope}}},
			TokenTTL: *tokenTTL,
		}, jobmanagertest.New(simCfg))
		if err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		simAPI = oauth
	}
	simSrv := &http.Server{Handler: simAPI, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(log.Named("sim"))}
	simDone := make(chan struct{})
	go func() { defer close(simDone); _ = simSrv.Serve(simLn) }()
	defer func() { _ = simSrv.Close(); <-simDone }()
	simURL := "http://" + simLn.Addr().String()

	nc, err := nats.Connect(natsURL, nats.Name("lessonbridge dev"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("dev: connect %s: %w", natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	tokens := jobmanager.StaticToken(devToken)
	if *withOAuth2 {
		tokens, err = jobmanager.OAuth2(jobmanager.OAuth2Config{Client: jobmanager.OAuth2Client{
			TokenURL: simURL + jobmanagertest.OAuth2TokenPath, ClientID: devOAuth2Client, ClientSecret: devOAuth2Secret, Scopes: []string{devOAuth2Scope},
		}})
		if err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}
	jm, err := jobmanager.New(simURL, jobmanager.WithTokenSource(tokens))
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	bridge, err := consumer.New(js, jm, devConfig(log))
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}

	// The HTTP endpoints, on a free port when the asked one is busy.
	api, err := newHTTPAPI(bridge, bridge.Metrics(), nc.IsConnected, jm, *mandator)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if err := registerObservability(api, js, devConfig(log)); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	httpNote := ""
	srv, err := startHTTP(*httpAddr, api.Handler(), log)
	if err != nil {
		srv, err = startHTTP("127.0.0.1:0", api.Handler(), log)
		if err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		httpNote = fmt.Sprintf("   (%s was busy)", *httpAddr)
	}
	defer func() { _ = srv.Shutdown(httpShutdownTimeout) }()

	self := selfCommand()
	auth := fmt.Sprintf("token %q", devToken)
	if *withOAuth2 {
		auth = fmt.Sprintf("OAuth2 tokens from %s%s for client %s, valid %v", simURL, jobmanagertest.OAuth2TokenPath, devOAuth2Client, *tokenTTL)
	}
	_ = out.println(p.bold("lessonbridge dev") + ": NATS, the JobManager simulator and the bridge in this process; Ctrl-C stops them")
	_ = out.println(fmt.Sprintf("  NATS        %s  (JetStream, store %s, removed at exit)", natsURL, dir))
	_ = out.println(fmt.Sprintf("  JobManager  %s  (simulator, %s; state: %s%s)", simURL, auth, simURL, jobmanagertest.StatePath))
	_ = out.println(fmt.Sprintf("  HTTP        http://%s/readyz  /metrics  /batches%s", srv.Addr, httpNote))
	_ = out.println(fmt.Sprintf("  bridge log  %s  (level %s; errors also here, shortened)", logPath, *logLevel))
	_ = out.println("  in another terminal:")
	_ = out.println(fmt.Sprintf("    %s watch --nats-url %s --deadletter", self, natsURL))
	_ = out.println(fmt.Sprintf("    %s batches --http-addr %s", self, srv.Addr))
	if self != "lessonbridge" {
		_ = out.println(p.dim("    (or `go install ./cmd/lessonbridge` once, then `lessonbridge watch ...`)"))
	}

	// The bridge.
	runCtx, stopBridge := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBridge()
	runDone := make(chan error, 1)
	go func() { runDone <- bridge.Run(runCtx) }()
	var runErr error
	bridgeStopped := false
	stopAndWait := func() error {
		if !bridgeStopped {
			stopBridge()
			runErr = <-runDone
			bridgeStopped = true
		}
		return runErr
	}
	defer func() { _ = stopAndWait() }()

	if err := awaitReady(ctx, bridge, runDone); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		bridgeStopped = true
		return fmt.Errorf("dev: bridge: %w", err)
	}

	// The workload, and a tracker that settles it from the outcome and dead-letter streams.
	changes, annex, broken := devWorkload(*events, *mandator, *seed, *failRate)
	tr := newDevTracker(out, changes)
	tr.p = p
	watchers, err := devWatch(ctx, js, tr)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer func() {
		for _, cc := range watchers {
			cc.Stop()
			<-cc.Closed()
		}
	}()
	var wg sync.WaitGroup
	showCtx, stopShow := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); showAccepted(showCtx, bridge, out, p) }()
	defer func() { stopShow(); wg.Wait() }()

	if len(changes) > 0 {
		pub, err := publisher.New(js)
		if err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		if err := pub.PublishChanges(ctx, changes, 0, nil); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dev: publish sample: %w", err)
		}
		_ = out.println(tr.describeWorkload(*mandator, annex, broken))
	} else {
		_ = out.println(fmt.Sprintf("no sample events (--events 0); publish some with `%s publish --nats-url %s --mandator %s --sample 20`", self, natsURL, *mandator))
	}

	select {
	case <-tr.done:
		if oauth != nil {
			_ = out.println(fmt.Sprintf("%s OAuth2: the token endpoint issued %s (each valid %v, replaced before expiry); the API refused %s",
				p.dim(clock(time.Now())), plural(oauth.Issued(devOAuth2Client), "token", "tokens"), *tokenTTL, plural(oauth.Rejected(), "request", "requests")))
		}
		if !*exitWhenDone {
			_ = out.println(fmt.Sprintf("the bridge keeps running: publish more with `%s publish --nats-url %s --sample 20 --mandator %s`; Ctrl-C stops", self, natsURL, *mandator))
			if m, lesson := devExplainTarget(changes, annex, broken); lesson != "" {
				_ = out.println("what happened to a lesson: " + explainExample(natsURL, m, lesson, srv.Addr))
			}
			select {
			case <-ctx.Done():
			case err := <-runDone:
				bridgeStopped, runErr = true, err
			}
		}
	case <-ctx.Done():
	case err := <-runDone:
		bridgeStopped, runErr = true, err
	}
	if ctx.Err() != nil {
		_ = out.println("stopping: the bridge, the simulator and NATS (the store is removed)")
	}
	if err := stopAndWait(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("dev: bridge: %w", err)
	}
	return nil
}

// awaitReady waits until the bridge has bound its consumer (and so created the streams), Run
// returned, or ctx ended.
func awaitReady(ctx context.Context, bridge *consumer.Bridge, runDone <-chan error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !bridge.Ready() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-runDone:
			if err == nil {
				err = errors.New("stopped before it was ready")
			}
			return err
		case <-tick.C:
		}
	}
	return nil
}

// devWorkload is the sample of n events: n-devBrokenEvents-devAnnexGood from publisher.SampleEvents
// for mandator, and (when n >= 10) devBrokenEvents + devAnnexGood valid creations for a second
// mandator, annex, in one batch: broken = devBrokenEvents of them name a room the simulator does not
// know, so that their batch ends LessonsImportFailed, and the others are good (failure isolation
// imports them in a follow-up batch).
func devWorkload(n int, mandator string, seed int64, failRate float64) (changes []publisher.RawChange, annex string, broken int) {
	good := 0
	if n >= 10 {
		broken, good = devBrokenEvents, devAnnexGood
	}
	changes = publisher.SampleEvents(n-broken-good, mandator, seed, failRate)
	annex = "annex"
	if mandator == annex {
		annex = "annex-2"
	}
	start := time.Date(2026, 2, 2, 8, 0, 0, 0, time.UTC)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := range broken + good {
		room := devUnknownResource
		if i >= broken {
			room = devResources[i%len(devResources)]
		}
		id, err := uuid.NewV7()
		if err != nil {
			id = uuid.New()
		}
		ev := schemas.LessonChange{
			SpecVersion: schemas.SpecVersion, ID: id.String(), Source: "/lessonbridge/dev", Type: schemas.TypeLessonCreated,
			Time: &now, DataContentType: "application/json",
			Data: schemas.LessonData{
				LessonID: fmt.Sprintf("A-%05d", i+1),
				Start:    start.Add(time.Duration(i) * time.Hour), End: start.Add(time.Duration(i)*time.Hour + 45*time.Minute),
				Resource: room, Group: "annex-move",
			},
		}
		body, err := json.Marshal(ev)
		if err != nil {
			panic(err) // a LessonChange always marshals
		}
		changes = append(changes, publisher.RawChange{Mandator: annex, ID: ev.ID, Body: body})
	}
	return changes, annex, broken
}

// devWatch follows the outcome and dead-letter streams from their start with ordered consumers and
// feeds the tracker.
func devWatch(ctx context.Context, js jetstream.JetStream, tr *devTracker) ([]jetstream.ConsumeContext, error) {
	subjects := publisher.DefaultSubjects()
	var ccs []jetstream.ConsumeContext
	for _, src := range []struct {
		stream, filter string
		handle         func(jetstream.Msg)
	}{
		{"LESSON_OUTCOMES", subjects.Outcomes + ".>", tr.outcome},
		{"LESSON_DEADLETTER", subjects.DeadLetter + ".>", tr.deadLetter},
	} {
		cons, err := js.OrderedConsumer(ctx, src.stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{src.filter}, DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err == nil {
			var cc jetstream.ConsumeContext
			if cc, err = cons.Consume(src.handle); err == nil {
				ccs = append(ccs, cc)
				continue
			}
		}
		for _, cc := range ccs {
			cc.Stop()
			<-cc.Closed()
		}
		return nil, fmt.Errorf("follow stream %s: %w", src.stream, err)
	}
	return ccs, nil
}

// showAccepted prints a line for each batch the bridge got a BatchId for, until ctx ends.
func showAccepted(ctx context.Context, bridge *consumer.Bridge, out *linePrinter, p palette) {
	seen := map[string]bool{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, b := range bridge.Batches() {
			if b.BatchID == "" || seen[b.Key+"/"+b.BatchID] {
				continue
			}
			seen[b.Key+"/"+b.BatchID] = true
			_ = out.println(devAcceptedLine(p, time.Now(), b))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// devTracker prints outcomes and dead letters and settles dev's own workload by them: an event is
// settled by the outcome that lists its id, or, when it is invalid, by its invalid_event dead letter
// (recognised by its bytes, since a dead letter carries the original body). Events others publish
// are printed but not counted.
type devTracker struct {
	out   *linePrinter
	p     palette
	total int
	began time.Time
	done  chan struct{} // closed when every event of the workload is settled

	mu           sync.Mutex
	pending      map[string]bool     // event ids not settled yet
	idsByBody    map[string][]string // body -> event ids with that body
	invalidNamed int                 // how many events the sample made invalid on purpose (for the description)
	imported     int
	batchesOK    int
	resubmitted  map[string]bool   // event ids a failed batch resubmitted (failure isolation)
	isoImported  int               // of those, imported by a follow-up batch
	isoBad       int               // events at fault in failed batches that isolation worked on
	failed       map[string][2]int // reason -> {events, batches}
	invalid      int
	finished     bool
}

func newDevTracker(out *linePrinter, changes []publisher.RawChange) *devTracker {
	t := &devTracker{out: out, total: len(changes), began: time.Now(), done: make(chan struct{}),
		pending: map[string]bool{}, idsByBody: map[string][]string{}, failed: map[string][2]int{},
		resubmitted: map[string]bool{}}
	for _, c := range changes {
		t.pending[c.ID] = true
		t.idsByBody[string(c.Body)] = append(t.idsByBody[string(c.Body)], c.ID)
		if _, err := schemas.Decode(c.Body, c.Mandator); err != nil {
			t.invalidNamed++
		}
	}
	if t.total == 0 {
		t.finish()
	}
	return t
}

// describeWorkload says what was published.
func (t *devTracker) describeWorkload(mandator, annex string, broken int) string {
	s := fmt.Sprintf("%s published %d events: %d sample events for %s (%d invalid on purpose)", clock(time.Now()),
		t.total, t.total-broken, mandator, t.invalidNamed)
	if broken > 0 {
		s = fmt.Sprintf("%s published %d events: %d sample events for %s (%d invalid on purpose)", clock(time.Now()),
			t.total, t.total-broken-devAnnexGood, mandator, t.invalidNamed)
		s += fmt.Sprintf(", %d for %s in one batch, %d of them naming the unknown room %q", broken+devAnnexGood, annex, broken, devUnknownResource)
	}
	return s
}

// outcome prints an outcome event and settles the events it lists.
func (t *devTracker) outcome(msg jetstream.Msg) {
	var o schemas.Outcome
	if err := json.Unmarshal(msg.Data(), &o); err != nil {
		_ = t.out.println(fmt.Sprintf("%s ? %s: undecodable outcome: %s", t.p.dim(clock(msgTime(msg))), msg.Subject(), cut(oneLine(err.Error()), devMaxError)))
		return
	}
	_ = t.out.println(devOutcomeLine(t.p, &o))
	t.settleOutcome(msg.Data())
}

// deadLetter prints a dead letter that no outcome line counts (an invalid event) and settles it
// when it is one of the workload's. The dead letters of a failed batch are settled and counted by
// its outcome line; they are not printed again.
func (t *devTracker) deadLetter(msg jetstream.Msg) {
	if line, ok := devDeadLetterLine(t.p, msg.Subject(), msg.Headers(), msgTime(msg)); ok {
		_ = t.out.println(line)
	}
	t.settleDeadLetter(msg.Headers().Get(schemas.HeaderReason), msg.Data())
}

// settleOutcome counts the workload's events that the outcome event data lists.
func (t *devTracker) settleOutcome(data []byte) {
	var o schemas.Outcome
	if json.Unmarshal(data, &o) != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	mine, isolated := 0, len(o.Data.ResubmittedEventIDs) > 0
	for _, id := range o.Data.EventIDs {
		if t.resubmitted[id] {
			isolated = true
			if o.Data.Status == schemas.StatusSucceeded {
				t.isoImported++
			}
		}
		if t.pending[id] {
			delete(t.pending, id)
			mine++
		}
	}
	for _, id := range o.Data.ResubmittedEventIDs {
		t.resubmitted[id] = true
	}
	if isolated && o.Data.Status == schemas.StatusFailed {
		t.isoBad += len(o.Data.EventIDs)
	}
	if mine > 0 {
		if o.Data.Status == schemas.StatusSucceeded {
			t.imported += mine
			t.batchesOK++
		} else {
			f := t.failed[o.Data.Reason]
			t.failed[o.Data.Reason] = [2]int{f[0] + mine, f[1] + 1}
		}
	}
	t.check()
}

// settleDeadLetter counts an invalid_event dead letter whose body is one of the workload's events.
func (t *devTracker) settleDeadLetter(reason string, body []byte) {
	if reason != schemas.ReasonInvalidEvent {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range t.idsByBody[string(body)] {
		if t.pending[id] {
			delete(t.pending, id)
			t.invalid++
			break
		}
	}
	t.check()
}

// check prints the summary once every event is settled; t.mu is held.
func (t *devTracker) check() {
	if len(t.pending) > 0 || t.finished {
		return
	}
	_ = t.out.println(t.summary(time.Since(t.began)))
	t.finish()
}

func (t *devTracker) finish() {
	t.finished = true
	close(t.done)
}

// summary is the closing line, e.g.
//
//	60 events: 51 imported in 6 batches, 3 failed import in 1 batch, 6 dead-lettered as invalid (all settled in 4.2s); failure isolation: 3 imported after isolating 3 bad ones
func (t *devTracker) summary(took time.Duration) string {
	parts := []string{fmt.Sprintf("%d imported in %s", t.imported, plural(t.batchesOK, "batch", "batches"))}
	reasons := make([]string, 0, len(t.failed))
	for r := range t.failed {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		what := "failed (" + r + ")"
		if r == schemas.ReasonImportFailed {
			what = "failed import"
		}
		parts = append(parts, fmt.Sprintf("%d %s in %s", t.failed[r][0], what, plural(t.failed[r][1], "batch", "batches")))
	}
	parts = append(parts, fmt.Sprintf("%d dead-lettered as invalid", t.invalid))
	s := fmt.Sprintf("%s %d events: %s (all settled in %s)", clock(time.Now()), t.total, strings.Join(parts, ", "), took.Round(100*time.Millisecond))
	if len(t.resubmitted) > 0 {
		s += fmt.Sprintf("; failure isolation: %d imported after isolating %d bad ones", t.isoImported, t.isoBad)
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// devExplainTarget picks the lesson dev's explain example asks about: the first of the batch that
// fails on purpose, else the first sample event's.
func devExplainTarget(changes []publisher.RawChange, annex string, broken int) (mandator, lessonID string) {
	for _, c := range changes {
		if broken > 0 && c.Mandator != annex {
			continue
		}
		var ev schemas.LessonChange
		if json.Unmarshal(c.Body, &ev) == nil && ev.Data.LessonID != "" {
			return c.Mandator, ev.Data.LessonID
		}
	}
	return "", ""
}

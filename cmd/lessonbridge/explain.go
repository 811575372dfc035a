package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// Kinds of id explain understands (--kind).
const (
	kindAuto   = "auto"
	kindEvent  = "event"
	kindLesson = "lesson"
	kindBatch  = "batch"
	kindJob    = "job"
	kindKey    = "key"
)

const (
	// explainAnchorSlack is how far before the time encoded in a batch key or JobID the scans start
	// (clock differences between the bridge instances and the NATS server).
	explainAnchorSlack = time.Minute
	// explainInputLookback is how far before the earliest anchor the input stream is searched for
	// the events of a batch when neither --since nor an earlier anchor bounds it: events wait at most
	// --batch-linger plus the time behind an earlier batch of the same lesson.
	explainInputLookback = time.Hour
	// explainMaxJMLookups bounds the JobManager status requests of one explain.
	explainMaxJMLookups = 20
	// explainIdleWait is how long a scan waits for the next message before it asks the server
	// whether any are left.
	explainIdleWait = 2 * time.Second
)

var (
	// explainKeyRE is a batch key: b-<UUIDv7> (also the outcome's CloudEvents id).
	explainKeyRE = regexp.MustCompile(`^b-([0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12})$`)
	// explainJobRE is a JobID the bridge made: <prefix>-<YYYYMMDD>-<UUIDv7>.
	explainJobRE = regexp.MustCompile(`^[A-Za-z0-9_-]+-\d{8}-([0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12})$`)
	explainKinds = []string{kindAuto, kindEvent, kindLesson, kindBatch, kindJob, kindKey}
)

const explainHelp = `
explain <id> tells what happened to an event, a lesson, a JobManager batch, a JobID or a batch key:
when it was published (and replayed), in which batch with which JobIDs it went to JobManager, when
that batch was submitted, how often it was polled, its outcome, its dead letter, and whether failure
isolation sent it on into a later batch. It reads the input, outcome and dead-letter streams with
ordered consumers (nothing is acknowledged or changed), asks the running bridge's /batches about
batches still in flight (--bridge-url) and, with --jobmanager-url, JobManager about each batch.

The id is matched, unless --kind says which it is, as an event id, a JobManager batchId, a JobID, a
batch key (b-<uuid>) and, with --mandator, a lessonId. A batch key or JobID carries its creation
time, so the streams are read from shortly before it; otherwise --since/--until bound the search
(RFC 3339 or a duration back from now, e.g. 24h) and a search without --since reads the streams
from their first message. When a stream no longer holds the time asked about (retention), explain
says so.

--support prints, for each failed JobManager batch found, what the vendor's guide asks for in a
support case: mandator, batchId, timestamps, ErrorMessages and JobIDs, ready to paste.

Exit status: 0 when anything was found, 1 when nothing was (or on an error).
`

// explainOptions is the checked command line of explain.
type explainOptions struct {
	nats             natsSettings
	id               string
	kind             string
	mandator         string
	since, until     time.Time
	bridgeURL        string
	jm               jmSettings
	jsonOut, support bool
	inputStream      string
	outcomeStream    string
	deadletterStream string
	consumerName     string
	subjects         publisher.Subjects
	timeout          time.Duration
}

// errNothingFound is returned when explain found no trace of the id.
var errNothingFound = errors.New("explain: nothing found")

// parseExplainArgs parses explain's flags and its one argument (anywhere among the flags). Every bad
// value is reported, each naming its flag and value.
func parseExplainArgs(args []string, stderr io.Writer, now time.Time) (explainOptions, error) {
	fs := newFlagSet("explain", stderr)
	usage := fs.Usage
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: lessonbridge explain [flags] <id>")
		usage()
		fmt.Fprint(stderr, explainHelp)
	}
	var o explainOptions
	var since, until string
	def := publisher.DefaultSubjects()
	natsF := registerNATSFlags(fs)
	fs.StringVar(&o.kind, "kind", kindAuto, "what the id is: auto, event, lesson, batch (JobManager batchId), job (JobID) or key (batch key)")
	fs.StringVar(&o.mandator, "mandator", "", "the mandator: needed for a lessonId, narrows every search")
	fs.StringVar(&since, "since", "", "search from this time: RFC 3339 or a duration back from now, e.g. 24h (default: the streams' start)")
	fs.StringVar(&until, "until", "", "search up to this time: RFC 3339 or a duration back from now (default: now)")
	fs.StringVar(&o.bridgeURL, "bridge-url", "", "the running bridge's --http-addr (host:port or URL), for batches still in flight")
	fs.StringVar(&o.jm.URL, "jobmanager-url", "", "also ask JobManager (this base URL) for the status of each batch found")
	fs.StringVar(&o.jm.Token, "jobmanager-token", "", "JobManager bearer token")
	fs.StringVar(&o.jm.TokenFile, "jobmanager-token-file", "", "file holding the JobManager bearer token")
	fs.StringVar(&o.jm.TokenDir, "jobmanager-token-dir", "", "directory of per-mandator token files")
	fs.BoolVar(&o.jsonOut, "json", false, "print the whole finding as one JSON object")
	fs.BoolVar(&o.support, "support", false, "print what a JobManager support case needs (batchId, timestamps, ErrorMessages, JobIDs, mandator)")
	fs.StringVar(&o.inputStream, "input-stream", "LESSONS", "stream of the lesson-change events")
	fs.StringVar(&o.outcomeStream, "outcome-stream", "LESSON_OUTCOMES", "stream of the outcome events")
	fs.StringVar(&o.deadletterStream, "deadletter-stream", "LESSON_DEADLETTER", "stream of the dead letters")
	fs.StringVar(&o.consumerName, "consumer", "lessonbridge", "the bridge's durable consumer on the input stream (where an unsettled event is)")
	fs.StringVar(&o.subjects.Changes, "input-prefix", def.Changes, "subject prefix of lesson changes")
	fs.StringVar(&o.subjects.Outcomes, "outcome-prefix", def.Outcomes, "subject prefix of outcome events")
	fs.StringVar(&o.subjects.DeadLetter, "deadletter-prefix", def.DeadLetter, "subject prefix of dead letters")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "bound on the whole command")

	// The id may stand before, between or after the flags.
	var positional []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return explainOptions{}, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if err := parseFlags(fs, nil, nil); err != nil {
		return explainOptions{}, err
	}

	var errs []error
	o.nats, errs = natsF.settings("explain", osFS{})
	bad := func(name, value, why string) { errs = append(errs, flagProblem("explain", name, value, why)) }
	switch len(positional) {
	case 0:
		errs = append(errs, errors.New("an id is required: lessonbridge explain [flags] <id>"))
	case 1:
		o.id = strings.TrimSpace(positional[0])
		if o.id == "" || len(o.id) > 256 || strings.ContainsFunc(o.id, func(r rune) bool { return r < ' ' }) {
			errs = append(errs, fmt.Errorf("id %q: must be 1 to 256 printable characters", positional[0]))
		}
	default:
		errs = append(errs, fmt.Errorf("one id only, got %d: %s", len(positional), strings.Join(positional, " ")))
	}
	if !slices.Contains(explainKinds, o.kind) {
		bad("kind", o.kind, "must be one of "+strings.Join(explainKinds, ", "))
	}
	if o.mandator != "" && schemas.ValidMandator(o.mandator) != nil {
		bad("mandator", o.mandator, "must match [A-Za-z0-9_-]{1,64}")
	}
	if o.kind == kindLesson && o.mandator == "" {
		bad("mandator", "", "a lessonId is unique per mandator only: --kind lesson needs --mandator")
	}
	var err error
	if o.since, err = parseReplayTime(since, now); err != nil {
		bad("since", since, err.Error())
	}
	if o.until, err = parseReplayTime(until, now); err != nil {
		bad("until", until, err.Error())
	}
	if !o.since.IsZero() && !o.until.IsZero() && !o.since.Before(o.until) {
		bad("until", until, "must be after --since "+since)
	}
	for name, v := range map[string]string{"consumer": o.consumerName, "input-stream": o.inputStream, "outcome-stream": o.outcomeStream, "deadletter-stream": o.deadletterStream} {
		if !replayStreamRE.MatchString(v) {
			bad(name, v, "must be a stream name ([A-Za-z0-9_-])")
		}
	}
	if err := o.subjects.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.timeout <= 0 {
		bad("timeout", o.timeout.String(), "must be positive")
	}
	if o.jm.URL == "" && (o.jm.Token != "" || o.jm.TokenFile != "" || o.jm.TokenDir != "") {
		bad("jobmanager-url", "", "a JobManager token was given without --jobmanager-url")
	}
	if len(errs) > 0 {
		return explainOptions{}, fmt.Errorf("explain: %w", errors.Join(errs...))
	}
	return o, nil
}

// runExplain is `lessonbridge explain <id>`; see explainHelp.
func runExplain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseExplainArgs(args, stderr, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	nc, err := dialNATS(o.nats, "lessonbridge explain")
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	defer nc.Close()
	js, err := o.nats.newJetStream(nc)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	var jm *jobmanager.Client
	if o.jm.URL != "" {
		if jm, err = newJobManagerClient(o.jm); err != nil {
			return fmt.Errorf("explain: --jobmanager-url: %w", err)
		}
	}
	rep, err := explain(ctx, js, jm, o, time.Now())
	if err != nil {
		return err
	}
	switch {
	case o.jsonOut:
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("explain: %w", err)
		}
		if _, err := stdout.Write(append(b, '\n')); err != nil {
			return err
		}
	case o.support:
		if _, err := io.WriteString(stdout, rep.supportText()); err != nil {
			return err
		}
	default:
		if _, err := io.WriteString(stdout, rep.text()); err != nil {
			return err
		}
	}
	if !rep.Found {
		return fmt.Errorf("%w for %q", errNothingFound, o.id)
	}
	return nil
}

// explainReport is what explain found; --json prints it as it is.
type explainReport struct {
	ID       string   `json:"id"`
	Kinds    []string `json:"kinds"` // the kinds the id was matched as
	Mandator string   `json:"mandator,omitempty"`
	Found    bool     `json:"found"`
	// Verdict is one line: what happened, e.g. "imported", "dead-lettered (import_failed)".
	Verdict     string                 `json:"verdict"`
	Events      []explainEvent         `json:"events"`
	Outcomes    []explainOutcome       `json:"outcomes"`
	DeadLetters []explainDeadLetter    `json:"deadLetters"`
	InFlight    []explainBridgeBatch   `json:"inFlight"`
	JobManager  []explainJobManagerAns `json:"jobManager,omitempty"`
	Timeline    []explainEntry         `json:"timeline"`
	Searched    []explainSearch        `json:"searched"`
	Notes       []string               `json:"notes"`
}

// explainEvent is an input event found in the input stream.
type explainEvent struct {
	Seq       uint64    `json:"seq"`
	Subject   string    `json:"subject"`
	Stored    time.Time `json:"stored"`
	EventID   string    `json:"eventId"`
	Type      string    `json:"type,omitempty"`
	LessonID  string    `json:"lessonId,omitempty"`
	ReplayOf  string    `json:"replayOf,omitempty"` // <dead-letter stream>/<seq> for a replayed event
	Undecoded string    `json:"undecoded,omitempty"`
	// Consumer is, for an event no outcome or dead letter settles, where the bridge's consumer
	// has it: "held" (delivered, not acknowledged), "waiting" (not delivered yet) or
	// "acknowledged" (settled by an outcome the streams no longer hold, or outside the search).
	Consumer string `json:"consumer,omitempty"`
}

// explainOutcome is an outcome event found in the outcome stream; Match says why it was taken.
type explainOutcome struct {
	Seq     uint64          `json:"seq"`
	Subject string          `json:"subject"`
	Stored  time.Time       `json:"stored"`
	Match   string          `json:"match"`
	Outcome schemas.Outcome `json:"outcome"`
}

// explainDeadLetter is a dead letter found in the dead-letter stream.
type explainDeadLetter struct {
	Seq       uint64    `json:"seq"`
	Subject   string    `json:"subject"`
	Stored    time.Time `json:"stored"`
	Reason    string    `json:"reason"`
	Error     string    `json:"error,omitempty"`
	BatchID   string    `json:"batchId,omitempty"`
	Origin    string    `json:"originSubject,omitempty"`
	StreamSeq string    `json:"streamSeq,omitempty"`
	EventID   string    `json:"eventId,omitempty"`
	LessonID  string    `json:"lessonId,omitempty"`
}

// explainBridgeBatch is a batch of the running bridge's /batches. LessonIDs and EventIDs are read
// when the bridge reports them (older bridges do not).
type explainBridgeBatch struct {
	consumer.BatchInfo
	LessonIDs []string `json:"lessonIds,omitempty"`
	EventIDs  []string `json:"eventIds,omitempty"`
	Match     string   `json:"match"`
}

// explainJobManagerAns is JobManager's answer about one batch now.
type explainJobManagerAns struct {
	Mandator      string   `json:"mandator"`
	BatchID       string   `json:"batchId"`
	ImportStatus  string   `json:"importStatus,omitempty"`
	LessonCount   *int     `json:"lessonCount,omitempty"`
	ErrorMessages []string `json:"errorMessages,omitempty"`
	Error         string   `json:"error,omitempty"`
}

// explainEntry is one line of the timeline.
type explainEntry struct {
	Time time.Time `json:"time"`
	What string    `json:"what"` // published, replayed, submitted, polled, outcome, isolation, deadletter, inflight, jobmanager
	Text string    `json:"text"`
}

// explainSearch says which part of a stream was read.
type explainSearch struct {
	Stream    string    `json:"stream"`
	Filter    string    `json:"filter"`
	From      time.Time `json:"from,omitzero"` // zero: the stream's first message
	Until     time.Time `json:"until,omitzero"`
	Scanned   int       `json:"scanned"`
	FirstTime time.Time `json:"streamFirstTime,omitzero"` // the oldest message the stream still holds
	FirstSeq  uint64    `json:"streamFirstSeq"`
	Missing   bool      `json:"missing,omitempty"` // the stream does not exist
}

// explainer holds one explain's state while it reads the streams.
type explainer struct {
	js  jetstream.JetStream
	o   explainOptions
	now time.Time
	rep *explainReport

	events     map[string]bool // event ids of interest (the id, and those of the outcomes found)
	resubbed   map[string]bool // event ids resubmitted by a found outcome and not yet settled by a later one
	batchIDs   map[string]bool // JobManager batch ids of the outcomes found (dead letters carry them)
	anchor     time.Time       // the time encoded in a key or JobID id; zero when none
	foundEvent map[string]bool // event ids found in the input stream

	consumerInfo *jetstream.ConsumerInfo // read when unsettled events were found
}

// explain gathers everything the streams, the bridge and JobManager say about o.id.
func explain(ctx context.Context, js jetstream.JetStream, jm *jobmanager.Client, o explainOptions, now time.Time) (*explainReport, error) {
	e := &explainer{js: js, o: o, now: now, rep: &explainReport{ID: o.id, Mandator: o.mandator,
		Events: []explainEvent{}, Outcomes: []explainOutcome{}, DeadLetters: []explainDeadLetter{}, InFlight: []explainBridgeBatch{},
		Timeline: []explainEntry{}, Notes: []string{}},
		events: map[string]bool{}, resubbed: map[string]bool{}, batchIDs: map[string]bool{}, foundEvent: map[string]bool{}}
	e.rep.Kinds = e.kinds()
	if e.matchesKind(kindEvent) {
		e.events[o.id] = true
	}
	if err := e.scanOutcomes(ctx); err != nil {
		return nil, err
	}
	if err := e.scanInput(ctx); err != nil {
		return nil, err
	}
	if err := e.scanDeadLetters(ctx); err != nil {
		return nil, err
	}
	e.askConsumer(ctx)
	if o.bridgeURL != "" {
		e.askBridge(ctx)
	}
	if jm != nil {
		e.askJobManager(ctx, jm)
	}
	e.finish()
	return e.rep, nil
}

// kinds returns the kinds the id is matched as.
func (e *explainer) kinds() []string {
	if e.o.kind != kindAuto {
		return []string{e.o.kind}
	}
	if m := explainKeyRE.FindStringSubmatch(e.o.id); m != nil {
		e.anchor = uuidTime(m[1])
		return []string{kindKey}
	}
	k := []string{kindEvent, kindBatch}
	if m := explainJobRE.FindStringSubmatch(e.o.id); m != nil {
		e.anchor = uuidTime(m[1])
		k = []string{kindJob}
	}
	if e.o.mandator != "" {
		k = append(k, kindLesson)
	}
	return k
}

// uuidTime is the time a UUIDv7 was made, or zero.
func uuidTime(s string) time.Time {
	u, err := uuid.Parse(s)
	if err != nil || u.Version() != 7 {
		return time.Time{}
	}
	sec, nsec := u.Time().UnixTime()
	return time.Unix(sec, nsec).UTC()
}

func (e *explainer) matchesKind(k string) bool { return slices.Contains(e.rep.Kinds, k) }

// scanStart is where a scan of a stream begins: --since, or shortly before the anchor.
func (e *explainer) scanStart(lookback time.Duration) time.Time {
	if !e.o.since.IsZero() {
		return e.o.since
	}
	if !e.anchor.IsZero() {
		return e.anchor.Add(-explainAnchorSlack - lookback)
	}
	return time.Time{}
}

// scanStream reads stream's messages on filter stored from from (zero: the first) up to until
// (zero: no bound) and up to the last message stored when the scan began, and passes each to fn
// until fn returns false. It notes what it read in the report.
func (e *explainer) scanStream(ctx context.Context, stream, filter string, from, until time.Time,
	fn func(msg jetstream.Msg, md *jetstream.MsgMetadata) bool) error {
	s := explainSearch{Stream: stream, Filter: filter, From: from, Until: until}
	defer func() { e.rep.Searched = append(e.rep.Searched, s) }()
	st, err := e.js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s.Missing = true
		e.note(fmt.Sprintf("stream %s does not exist (the bridge creates it at start-up)", stream))
		return nil
	}
	if err != nil {
		return fmt.Errorf("explain: stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("explain: stream %s: %w", stream, err)
	}
	s.FirstTime, s.FirstSeq = info.State.FirstTime, info.State.FirstSeq
	if info.State.Msgs == 0 {
		return nil
	}
	lastSeq := info.State.LastSeq
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !from.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &from
	}
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("explain: stream %s: %w", stream, err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("explain: stream %s: %w", stream, err)
	}
	if ci.NumPending == 0 {
		return nil
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(2048))
	if err != nil {
		return fmt.Errorf("explain: stream %s: %w", stream, err)
	}
	defer iter.Stop()
	for {
		nctx, cancel := context.WithTimeout(ctx, explainIdleWait)
		msg, err := iter.Next(jetstream.NextContext(nctx))
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("explain: stream %s: %w (raise --timeout or narrow with --since/--mandator)", stream, ctx.Err())
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			ci, err := cons.Info(ctx)
			if err != nil {
				return fmt.Errorf("explain: stream %s: %w", stream, err)
			}
			if ci.NumPending == 0 {
				return nil
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("explain: stream %s: %w", stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("explain: stream %s: %w", stream, err)
		}
		if md.Sequence.Stream > lastSeq || !until.IsZero() && md.Timestamp.After(until) {
			return nil
		}
		s.Scanned++
		if !fn(msg, md) || md.Sequence.Stream >= lastSeq || md.NumPending == 0 {
			return nil
		}
	}
}

// scanOutcomes finds the outcomes naming the id and, following failure isolation forward, the later
// outcomes that settle the events a found one resubmitted.
func (e *explainer) scanOutcomes(ctx context.Context) error {
	filter := e.o.subjects.Outcomes + ".>"
	if e.o.mandator != "" {
		filter = e.o.subjects.Outcomes + "." + e.o.mandator + ".>"
	}
	needle := []byte(e.o.id)
	// A key, batchId or JobID names one JobManager batch: once it and the batches that settle what it
	// resubmitted are found, the scan can stop.
	unique := !e.matchesKind(kindEvent) && !e.matchesKind(kindLesson)
	found := false
	return e.scanStream(ctx, e.o.outcomeStream, filter, e.scanStart(0), e.o.until, func(msg jetstream.Msg, md *jetstream.MsgMetadata) bool {
		data := msg.Data()
		if !bytes.Contains(data, needle) && !e.containsResubmitted(data) {
			return true
		}
		var oc schemas.Outcome
		if json.Unmarshal(data, &oc) != nil {
			return true
		}
		match := e.outcomeMatch(&oc)
		if match == "" {
			return true
		}
		found = true
		e.rep.Outcomes = append(e.rep.Outcomes, explainOutcome{Seq: md.Sequence.Stream, Subject: msg.Subject(), Stored: md.Timestamp, Match: match, Outcome: oc})
		for _, id := range oc.Data.EventIDs {
			delete(e.resubbed, id)
		}
		if match == matchKey || match == matchBatch || match == matchJob || match == matchFollowUp {
			// Asked about a batch, its events, its dead letters and the later batches that settle
			// what it resubmitted are part of the story; asked about a lesson or an event, only
			// their own.
			for _, id := range oc.Data.EventIDs {
				e.events[id] = true
			}
			for _, id := range oc.Data.ResubmittedEventIDs {
				e.events[id] = true
				e.resubbed[id] = true
			}
			if oc.Data.BatchID != "" {
				e.batchIDs[oc.Data.BatchID] = true
			}
		}
		return !(unique && found && len(e.resubbed) == 0)
	})
}

// containsResubmitted reports whether data mentions an event a found outcome resubmitted (a cheap
// test before decoding).
func (e *explainer) containsResubmitted(data []byte) bool {
	for id := range e.resubbed {
		if bytes.Contains(data, []byte(id)) {
			return true
		}
	}
	return false
}

// Why an outcome belongs to the finding (explainOutcome.Match).
const (
	matchKey      = "batch key"
	matchBatch    = "batchId"
	matchJob      = "JobID"
	matchFollowUp = "settles events resubmitted by an earlier batch"
)

// outcomeMatch says why oc belongs to the finding, or "" when it does not.
func (e *explainer) outcomeMatch(oc *schemas.Outcome) string {
	d, id := &oc.Data, e.o.id
	switch {
	case e.matchesKind(kindKey) && oc.ID == id:
		return matchKey
	case e.matchesKind(kindBatch) && d.BatchID == id:
		return matchBatch
	case e.matchesKind(kindJob) && slices.Contains(d.JobIDs, id):
		return matchJob
	case e.matchesKind(kindEvent) && slices.Contains(d.EventIDs, id):
		return "settles the event"
	case e.matchesKind(kindEvent) && slices.Contains(d.ResubmittedEventIDs, id):
		return "resubmitted the event"
	case e.matchesKind(kindLesson) && d.Mandator == e.o.mandator && slices.Contains(d.LessonIDs, id):
		return "settles the lesson"
	case e.matchesKind(kindLesson) && d.Mandator == e.o.mandator && slices.Contains(d.ResubmittedLessonIDs, id):
		return "resubmitted the lesson"
	}
	for _, ev := range d.EventIDs {
		if e.resubbed[ev] {
			return matchFollowUp
		}
	}
	return ""
}

// eventHead is the part of a lesson-change event explain reads.
type eventHead struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data struct {
		LessonID string `json:"lessonId"`
	} `json:"data"`
}

// scanInput finds the input events of interest: the id itself, the events of the outcomes found,
// and, for a lessonId, every change of the lesson.
func (e *explainer) scanInput(ctx context.Context) error {
	filter := e.o.subjects.Changes + ".>"
	if e.o.mandator != "" {
		filter = e.o.subjects.Changes + "." + e.o.mandator
	}
	from := e.scanStart(explainInputLookback)
	if e.o.since.IsZero() {
		// The events of a batch were published before it was submitted.
		for _, oc := range e.rep.Outcomes {
			if t := oc.Outcome.Data.SubmittedAt.Add(-explainInputLookback); !oc.Outcome.Data.SubmittedAt.IsZero() && !from.IsZero() && t.Before(from) {
				from = t
			}
		}
	}
	needle := []byte(e.o.id)
	lesson := e.matchesKind(kindLesson)
	prefix := e.o.subjects.Changes + "."
	return e.scanStream(ctx, e.o.inputStream, filter, from, e.o.until, func(msg jetstream.Msg, md *jetstream.MsgMetadata) bool {
		h := msg.Headers()
		msgID := h.Get(jetstream.MsgIDHeader)
		replayOf := h.Get(replayHeaderOf)
		if replayOf == "" && msgID != "" && !e.events[msgID] && !(lesson && bytes.Contains(msg.Data(), needle)) {
			return true // the common case: decided from the Nats-Msg-Id header without decoding
		}
		var head eventHead
		ev := explainEvent{Seq: md.Sequence.Stream, Subject: msg.Subject(), Stored: md.Timestamp, ReplayOf: replayOf}
		if err := json.Unmarshal(msg.Data(), &head); err != nil {
			if !e.events[msgID] {
				return true
			}
			ev.EventID, ev.Undecoded = msgID, cut(oneLine(err.Error()), 200)
		} else {
			ev.EventID, ev.Type, ev.LessonID = head.ID, head.Type, head.Data.LessonID
		}
		mandator := strings.TrimPrefix(msg.Subject(), prefix)
		if !e.events[ev.EventID] && !(lesson && mandator == e.o.mandator && ev.LessonID == e.o.id) {
			return true
		}
		e.events[ev.EventID] = true
		e.foundEvent[ev.EventID] = true
		e.rep.Events = append(e.rep.Events, ev)
		return true
	})
}

// scanDeadLetters finds the dead letters of the events of interest and of the batches found.
func (e *explainer) scanDeadLetters(ctx context.Context) error {
	filter := e.o.subjects.DeadLetter + ".>"
	if e.o.mandator != "" {
		filter = e.o.subjects.DeadLetter + "." + e.o.mandator
	}
	lesson := e.matchesKind(kindLesson)
	batch := e.matchesKind(kindBatch)
	return e.scanStream(ctx, e.o.deadletterStream, filter, e.scanStart(0), e.o.until, func(msg jetstream.Msg, md *jetstream.MsgMetadata) bool {
		h := msg.Headers()
		dl := explainDeadLetter{Seq: md.Sequence.Stream, Subject: msg.Subject(), Stored: md.Timestamp,
			Reason: h.Get(schemas.HeaderReason), Error: h.Get(schemas.HeaderError), BatchID: h.Get(schemas.HeaderBatchID),
			Origin: h.Get(schemas.HeaderSubject), StreamSeq: h.Get(schemas.HeaderStreamSeq)}
		var head eventHead
		if json.Unmarshal(msg.Data(), &head) == nil {
			dl.EventID, dl.LessonID = head.ID, head.Data.LessonID
		}
		mandator := msg.Subject()[strings.LastIndexByte(msg.Subject(), '.')+1:]
		switch {
		case dl.EventID != "" && e.events[dl.EventID]:
		case dl.BatchID != "" && (e.batchIDs[dl.BatchID] || batch && dl.BatchID == e.o.id):
		case lesson && mandator == e.o.mandator && dl.LessonID == e.o.id:
		default:
			return true
		}
		if dl.EventID != "" {
			e.events[dl.EventID] = true
		}
		e.rep.DeadLetters = append(e.rep.DeadLetters, dl)
		return true
	})
}

// askConsumer tells, for each input event found that no outcome or dead letter settles, whether
// the bridge's consumer has delivered it (held by the bridge) or not yet (waiting in the stream).
func (e *explainer) askConsumer(ctx context.Context) {
	settled := e.settledEvents()
	for _, dl := range e.rep.DeadLetters {
		settled[dl.EventID] = true
	}
	var open []int
	for i, ev := range e.rep.Events {
		if !settled[ev.EventID] {
			open = append(open, i)
		}
	}
	if len(open) == 0 {
		return
	}
	cons, err := e.js.Consumer(ctx, e.o.inputStream, e.o.consumerName)
	if err != nil {
		e.note(fmt.Sprintf("consumer %s on %s not readable (%v): whether the bridge holds the unsettled events is unknown", e.o.consumerName, e.o.inputStream, err))
		return
	}
	ci := cons.CachedInfo()
	for _, i := range open {
		ev := &e.rep.Events[i]
		switch {
		case ev.Seq <= ci.AckFloor.Stream:
			ev.Consumer = "acknowledged"
		case ev.Seq <= ci.Delivered.Stream:
			ev.Consumer = "held"
		default:
			ev.Consumer = "waiting"
		}
	}
	e.consumerInfo = ci
}

// askBridge reads the running bridge's /batches and keeps the batches that concern the id.
func (e *explainer) askBridge(ctx context.Context) {
	base := e.o.bridgeURL
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	base = strings.TrimRight(base, "/")
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	code, body, err := httpGet(rctx, base+"/batches")
	if err != nil {
		e.note(fmt.Sprintf("the bridge at %s is not reachable (%v): batches in flight unknown", base, err))
		return
	}
	if code != http.StatusOK {
		e.note(fmt.Sprintf("the bridge's %s/batches answered %d: batches in flight unknown", base, code))
		return
	}
	var list []explainBridgeBatch
	if err := json.Unmarshal(body, &list); err != nil {
		e.note(fmt.Sprintf("the bridge's %s/batches is not a batch list (%v)", base, err))
		return
	}
	settled := e.settledEvents()
	for _, b := range list {
		if e.o.mandator != "" && b.Mandator != e.o.mandator {
			continue
		}
		b.Match = e.bridgeMatch(&b, settled)
		if b.Match != "" {
			e.rep.InFlight = append(e.rep.InFlight, b)
		}
	}
}

// bridgeMatch says why an in-flight batch belongs to the finding, or "".
func (e *explainer) bridgeMatch(b *explainBridgeBatch, settled map[string]bool) string {
	id := e.o.id
	switch {
	case e.matchesKind(kindKey) && b.Key == id:
		return "batch key"
	case e.matchesKind(kindBatch) && b.BatchID == id:
		return "batchId"
	case e.matchesKind(kindJob) && slices.Contains(b.JobIDs, id):
		return "JobID"
	case e.matchesKind(kindLesson) && slices.Contains(b.LessonIDs, id):
		return "holds the lesson"
	}
	for _, ev := range b.EventIDs {
		if e.events[ev] && !settled[ev] {
			return "holds the event"
		}
	}
	return ""
}

// settledEvents is the set of event ids an outcome found settles.
func (e *explainer) settledEvents() map[string]bool {
	s := map[string]bool{}
	for _, oc := range e.rep.Outcomes {
		for _, id := range oc.Outcome.Data.EventIDs {
			s[id] = true
		}
	}
	return s
}

// askJobManager asks JobManager about each batch found.
func (e *explainer) askJobManager(ctx context.Context, jm *jobmanager.Client) {
	type ref struct{ mandator, batchID string }
	var refs []ref
	seen := map[ref]bool{}
	add := func(m, b string) {
		r := ref{m, b}
		if b != "" && m != "" && !seen[r] {
			seen[r] = true
			refs = append(refs, r)
		}
	}
	for _, oc := range e.rep.Outcomes {
		add(oc.Outcome.Data.Mandator, oc.Outcome.Data.BatchID)
	}
	for _, b := range e.rep.InFlight {
		add(b.Mandator, b.BatchID)
	}
	if e.o.kind == kindBatch && e.o.mandator != "" {
		add(e.o.mandator, e.o.id)
	}
	if len(refs) > explainMaxJMLookups {
		e.note(fmt.Sprintf("JobManager asked about the first %d of %d batches", explainMaxJMLookups, len(refs)))
		refs = refs[:explainMaxJMLookups]
	}
	for _, r := range refs {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := jm.Batch(rctx, r.mandator, r.batchID)
		cancel()
		a := explainJobManagerAns{Mandator: r.mandator, BatchID: r.batchID}
		if err != nil {
			a.Error = err.Error() // package jobmanager never puts the token into an error
		} else {
			a.ImportStatus, a.LessonCount, a.ErrorMessages = string(st.ImportStatus), st.LessonCount, st.ErrorMessages
		}
		e.rep.JobManager = append(e.rep.JobManager, a)
	}
}

func (e *explainer) note(s string) { e.rep.Notes = append(e.rep.Notes, s) }

// finish builds the timeline, the verdict and the notes about missing history.
func (e *explainer) finish() {
	r := e.rep
	r.Found = len(r.Events)+len(r.Outcomes)+len(r.DeadLetters)+len(r.InFlight) > 0
	for _, ev := range r.Events {
		what, from := "published", ""
		if ev.ReplayOf != "" {
			what, from = "replayed", " from dead letter "+ev.ReplayOf
		}
		text := fmt.Sprintf("%s lesson %s event %s on %s (%s seq %d)%s", orDash(ev.Type), orDash(ev.LessonID), ev.EventID, ev.Subject, e.o.inputStream, ev.Seq, from)
		if ev.Undecoded != "" {
			text = fmt.Sprintf("event %s on %s (%s seq %d)%s, not decodable: %s", ev.EventID, ev.Subject, e.o.inputStream, ev.Seq, from, ev.Undecoded)
		}
		r.Timeline = append(r.Timeline, explainEntry{ev.Stored, what, text})
		if ci := e.consumerInfo; ci != nil && ev.Consumer != "" {
			var t string
			switch ev.Consumer {
			case "held":
				t = fmt.Sprintf("delivered to consumer %s and not acknowledged: the bridge holds it (pending in a group, behind an earlier change of the lesson, or in flight); %d messages held in all", e.o.consumerName, ci.NumAckPending)
			case "waiting":
				t = fmt.Sprintf("not yet delivered to consumer %s: %d messages wait before and with it", e.o.consumerName, ci.NumPending)
			default:
				t = fmt.Sprintf("acknowledged by consumer %s, but no outcome or dead letter for it was found in the streams searched", e.o.consumerName)
			}
			r.Timeline = append(r.Timeline, explainEntry{e.now, ev.Consumer, t})
		}
	}
	for _, oc := range r.Outcomes {
		d := &oc.Outcome.Data
		batch := "batch " + orDash(d.BatchID)
		if d.BatchID == "" {
			batch = "batch (never accepted by JobManager)"
		}
		if !d.SubmittedAt.IsZero() {
			r.Timeline = append(r.Timeline, explainEntry{d.SubmittedAt, "submitted", fmt.Sprintf("%s %s %s (key %s): %d lessons, JobIDs %s",
				d.Mandator, d.Action, batch, oc.Outcome.ID, len(d.LessonIDs)+len(d.ResubmittedLessonIDs), strings.Join(d.JobIDs, ", "))})
		}
		at := d.FinishedAt
		if at.IsZero() {
			at = oc.Stored
		}
		if d.Polls > 0 {
			r.Timeline = append(r.Timeline, explainEntry{at, "polled", fmt.Sprintf("%s %d times; last ImportStatus %s", batch, d.Polls, orDash(d.ImportStatus))})
		}
		text := fmt.Sprintf("%s %s (key %s, %s seq %d): settles %d events, lessons %s", d.Status, batch, oc.Outcome.ID, e.o.outcomeStream, oc.Seq,
			len(d.EventIDs), orDash(strings.Join(d.LessonIDs, ", ")))
		if d.Status != schemas.StatusSucceeded {
			text += fmt.Sprintf("; reason %s, class %s", orDash(d.Reason), orDash(d.ErrorClass))
		}
		if len(d.ErrorMessages) > 0 {
			text += ": " + cut(oneLine(strings.Join(d.ErrorMessages, "; ")), maxShownError)
		}
		text += " [" + oc.Match + "]"
		r.Timeline = append(r.Timeline, explainEntry{at, "outcome", text})
		if len(d.ResubmittedLessonIDs) > 0 || len(d.ResubmittedEventIDs) > 0 {
			r.Timeline = append(r.Timeline, explainEntry{at, "isolation", fmt.Sprintf("lessons %s (events %d) were not at fault and went on into a later batch",
				orDash(strings.Join(d.ResubmittedLessonIDs, ", ")), len(d.ResubmittedEventIDs))})
		}
	}
	for _, dl := range r.DeadLetters {
		text := fmt.Sprintf("on %s (%s seq %d): reason %s", dl.Subject, e.o.deadletterStream, dl.Seq, orDash(dl.Reason))
		if dl.BatchID != "" {
			text += ", batch " + dl.BatchID
		}
		if dl.EventID != "" {
			text += fmt.Sprintf(", event %s lesson %s", dl.EventID, orDash(dl.LessonID))
		}
		if dl.Error != "" {
			text += ": " + cut(oneLine(dl.Error), maxShownError)
		}
		r.Timeline = append(r.Timeline, explainEntry{dl.Stored, "deadletter", text})
	}
	for _, b := range r.InFlight {
		r.Timeline = append(r.Timeline, explainEntry{b.Created, "inflight", fmt.Sprintf("in the bridge: %s %s batch %s (key %s), state %s, %d polls, last status %s, %d lessons, JobIDs %s [%s]",
			b.Mandator, b.Action, orDash(b.BatchID), b.Key, orDash(b.State), b.Polls, orDash(b.LastStatus), b.Lessons, orDash(strings.Join(b.JobIDs, ", ")), b.Match)})
	}
	for _, a := range r.JobManager {
		text := fmt.Sprintf("now: %s batch %s ", a.Mandator, a.BatchID)
		if a.Error != "" {
			text += "could not be asked: " + a.Error
		} else {
			text += "ImportStatus " + orDash(a.ImportStatus)
			if len(a.ErrorMessages) > 0 {
				text += ": " + cut(oneLine(strings.Join(a.ErrorMessages, "; ")), maxShownError)
			}
		}
		r.Timeline = append(r.Timeline, explainEntry{e.now, "jobmanager", text})
	}
	sort.SliceStable(r.Timeline, func(i, j int) bool { return r.Timeline[i].Time.Before(r.Timeline[j].Time) })

	// Events an outcome names that the input stream did not yield.
	var missing []string
	for _, oc := range r.Outcomes {
		for _, id := range oc.Outcome.Data.EventIDs {
			if e.events[id] && !e.foundEvent[id] && !slices.Contains(missing, id) {
				missing = append(missing, id)
			}
		}
	}
	for _, s := range r.Searched {
		if s.Missing {
			continue
		}
		gone := s.FirstSeq > 1 && (s.From.IsZero() || s.From.Before(s.FirstTime))
		if gone && (s.Stream != e.o.inputStream || len(missing) > 0 || !r.Found) {
			r.Notes = append(r.Notes, fmt.Sprintf("%s no longer holds the history before %s (its first message is seq %d; older ones were removed by its limits): what happened earlier cannot be told",
				s.Stream, s.FirstTime.UTC().Format(time.RFC3339), s.FirstSeq))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		from := "its first message"
		for _, s := range r.Searched {
			if s.Stream == e.o.inputStream && !s.From.IsZero() {
				from = s.From.UTC().Format(time.RFC3339)
			}
		}
		shown := missing
		if len(shown) > 5 {
			shown = shown[:5]
		}
		r.Notes = append(r.Notes, fmt.Sprintf("%d events named by the outcomes were not found in %s searched from %s (%s): published earlier (use --since) or no longer held",
			len(missing), e.o.inputStream, from, strings.Join(shown, ", ")))
	}
	r.Verdict = e.verdict()
}

// verdict sums the finding up in one line.
func (e *explainer) verdict() string {
	r := e.rep
	if !r.Found {
		return "no trace of " + e.o.id + " in the streams searched" + map[bool]string{true: " or the bridge", false: ""}[e.o.bridgeURL != ""]
	}
	if len(r.InFlight) > 0 {
		b := r.InFlight[len(r.InFlight)-1]
		return fmt.Sprintf("in flight: batch %s (key %s) is %s", orDash(b.BatchID), b.Key, orDash(b.State))
	}
	if len(r.Outcomes) > 0 {
		// For an event or lesson the last outcome that settles it (not one that resubmitted it) tells.
		last := -1
		for i, oc := range r.Outcomes {
			if !strings.HasPrefix(oc.Match, "resubmitted") {
				last = i
			}
		}
		if last < 0 {
			return "resubmitted by failure isolation; the batch that settles it was not found (still in flight? check --bridge-url)"
		}
		d := r.Outcomes[last].Outcome.Data
		if d.Status == schemas.StatusSucceeded {
			return fmt.Sprintf("imported: %s batch %s succeeded at %s", d.Action, orDash(d.BatchID), d.FinishedAt.UTC().Format(time.RFC3339))
		}
		v := fmt.Sprintf("not imported: %s batch %s failed (%s, %s) at %s", d.Action, orDash(d.BatchID), orDash(d.Reason), orDash(d.ErrorClass), d.FinishedAt.UTC().Format(time.RFC3339))
		if len(r.DeadLetters) > 0 {
			v += "; dead-lettered"
		}
		return v
	}
	if len(r.DeadLetters) > 0 {
		dl := r.DeadLetters[len(r.DeadLetters)-1]
		return "dead-lettered: " + orDash(dl.Reason)
	}
	for _, ev := range r.Events {
		switch ev.Consumer {
		case "held":
			return "published, held by the bridge, no outcome yet (use --bridge-url to see its batches)"
		case "waiting":
			return "published, not yet delivered to the bridge"
		}
	}
	return "published, no outcome yet"
}

// text renders the report for people.
func (r *explainReport) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (matched as %s", r.ID, strings.Join(r.Kinds, ", "))
	if r.Mandator != "" {
		fmt.Fprintf(&b, "; mandator %s", r.Mandator)
	}
	fmt.Fprintf(&b, "): %s\n", r.Verdict)
	for _, en := range r.Timeline {
		fmt.Fprintf(&b, "  %s  %-10s %s\n", en.Time.UTC().Format("2006-01-02T15:04:05.000Z"), en.What, oneLine(en.Text))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for _, s := range r.Searched {
		if s.Missing {
			continue
		}
		from := "its first message"
		if !s.From.IsZero() {
			from = s.From.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(&b, "searched %s (%s) from %s: %d messages\n", s.Stream, s.Filter, from, s.Scanned)
	}
	return b.String()
}

// supportText is what the vendor guide asks for in a support case, for each JobManager batch found
// that failed (or, without one, each found).
func (r *explainReport) supportText() string {
	var b strings.Builder
	var failed []explainOutcome
	for _, oc := range r.Outcomes {
		if oc.Outcome.Data.Status == schemas.StatusFailed {
			failed = append(failed, oc)
		}
	}
	if len(failed) == 0 {
		fmt.Fprintf(&b, "No failed JobManager batch found for %s (%s): nothing to report to JobManager support.\n", r.ID, r.Verdict)
		for _, bt := range r.InFlight {
			fmt.Fprintf(&b, "In flight: mandator %s, BatchId %s, JobIDs %s, created %s, last ImportStatus %s\n", bt.Mandator, orDash(bt.BatchID),
				orDash(strings.Join(bt.JobIDs, ", ")), bt.Created.UTC().Format(time.RFC3339), orDash(bt.LastStatus))
		}
		return b.String()
	}
	for i, oc := range failed {
		d := &oc.Outcome.Data
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "JobManager import failed (lessonbridge, asked about %s)\n", r.ID)
		fmt.Fprintf(&b, "Mandator:      %s\n", d.Mandator)
		if d.BatchID != "" {
			fmt.Fprintf(&b, "BatchId:       %s\n", d.BatchID)
		} else {
			fmt.Fprintf(&b, "BatchId:       (none: JobManager did not accept the submit)\n")
		}
		fmt.Fprintf(&b, "Endpoint:      POST /%s/api/v2.0/jobs/%s\n", d.Mandator, d.Action)
		if !d.SubmittedAt.IsZero() {
			fmt.Fprintf(&b, "Submitted at:  %s\n", d.SubmittedAt.UTC().Format(time.RFC3339Nano))
		}
		fmt.Fprintf(&b, "Finished at:   %s\n", d.FinishedAt.UTC().Format(time.RFC3339Nano))
		fmt.Fprintf(&b, "ImportStatus:  %s\n", orDash(d.ImportStatus))
		fmt.Fprintf(&b, "JobIDs:        %s\n", orDash(strings.Join(d.JobIDs, ", ")))
		fmt.Fprintf(&b, "Lessons:       %d (LektionId %s)\n", len(d.LessonIDs)+len(d.ResubmittedLessonIDs),
			orDash(strings.Join(append(slices.Clone(d.LessonIDs), d.ResubmittedLessonIDs...), ", ")))
		fmt.Fprintf(&b, "Polls:         %d\n", d.Polls)
		fmt.Fprintf(&b, "Bridge verdict: %s (%s)\n", orDash(d.Reason), orDash(d.ErrorClass))
		b.WriteString("ErrorMessages:\n")
		if len(d.ErrorMessages) == 0 {
			b.WriteString("  (none)\n")
		}
		for _, m := range d.ErrorMessages {
			fmt.Fprintf(&b, "  %s\n", m)
		}
		for _, a := range r.JobManager {
			if a.BatchID == d.BatchID && a.Mandator == d.Mandator && a.Error == "" {
				fmt.Fprintf(&b, "ImportStatus now (asked %s): %s\n", "JobManager", orDash(a.ImportStatus))
			}
		}
	}
	return b.String()
}

// explainExample is the explain command line printed by dev for lessonId of mandator.
func explainExample(natsURL, mandator, lessonID, bridgeAddr string) string {
	return "lessonbridge explain --nats-url " + natsURL + " --mandator " + mandator + " --bridge-url " + bridgeAddr + " " + lessonID
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/term"

	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

const (
	// replayNoMandator is the dead-letter subject token the bridge uses for events whose subject
	// names no valid mandator: lessons.deadletter._invalid.mandator (contract section 5; before,
	// lessons.deadletter._invalid).
	replayNoMandator = "_invalid"
	// replayMarksBucket is the default KV bucket of the marks of replayed dead letters.
	replayMarksBucket = "lessonbridge_replayed"
	// replayHeaderOf names the dead letter a replayed message was copied from: "<stream>/<seq>".
	// The bridge ignores it; it is there for people tracing an event.
	replayHeaderOf = "Lessonbridge-Replay-Of"
	// replayProgressEvery is how many replayed dead letters pass between progress lines.
	replayProgressEvery = 1000
	// replayErrorExcerpt is how many runes of Lessonbridge-Error a --dry-run line shows.
	replayErrorExcerpt = 200
	// replayMaxReports is how many per-dead-letter notes (no valid mandator) go to stderr at most.
	replayMaxReports = 20
	// replayPublishAttempts is how often one republish is tried before it counts as an error; a
	// retry carries the same Nats-Msg-Id, so a publish whose PubAck was lost is not stored twice.
	replayPublishAttempts = 3
	// replayMaxConsecutiveErrors stops a replay whose publishes keep failing (NATS away, no stream).
	replayMaxConsecutiveErrors = 10
	// replayPublishTimeout bounds the wait for one PubAck.
	replayPublishTimeout = 10 * time.Second
	// replayIdleWait is how long the reader waits for the next dead letter before it asks the
	// server whether any are left (some may have been deleted while the replay ran).
	replayIdleWait = 2 * time.Second
)

var (
	replayRunIDRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	replayStreamRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	replaySubjectRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

const replayHelp = `
Replay republishes dead-lettered events (contract section 5) to the input after the cause was
fixed. It reads the dead-letter stream with an ordered consumer up to the last message stored when
it started, keeps those matching every filter given (mandator from the dead-letter subject, reason,
batch id, stored time in [--since, --until)), and publishes each one's original bytes to its
original subject (header Lessonbridge-Subject; <input-prefix>.<mandator> when absent), waiting for
JetStream's confirmation before the next one. The bridge then imports them like new events.

Safe to run twice: each republished dead letter is marked in the KV bucket --marks-bucket (key
<stream>.<seq>, created on first use), and marked dead letters are skipped (counted as "already
replayed") unless --again is given. --dry-run lists only what a real run would publish.

On a terminal, replay first counts what it would republish and asks for confirmation; --yes skips
the question (for scripts). Without a terminal it refuses to publish unless --yes or --dry-run is
given.

Each republish carries Nats-Msg-Id "replay-<dead-letter seq>-<run id>", the same for every retry
within a run, so a publish whose confirmation was lost is not stored twice. Every run gets a new
run id (printed at the start).

Dead letters whose original subject names no valid mandator (reason invalid_event, dead-letter
subject <prefix>._invalid.mandator, before <prefix>._invalid) are skipped and reported unless
--mandator _invalid selects them; they are then republished to their original subject.

Replay does NOT delete dead letters: the stream keeps them. Purge what you no longer need with the
nats CLI, e.g.
  nats stream purge LESSON_DEADLETTER --subject lessons.deadletter.zh-kanti
  nats stream rmm LESSON_DEADLETTER <seq>

Exit status: 0 when every selected dead letter was republished and marked (or listed, with
--dry-run), 1 when any could not be, or when the confirmation was refused.
`

// replayList is a flag that may be repeated and whose values may also be comma-separated lists.
// Parts are trimmed; empty parts are dropped.
type replayList []string

func (l *replayList) String() string { return strings.Join(*l, ",") }

func (l *replayList) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" && !slices.Contains(*l, p) {
			*l = append(*l, p)
		}
	}
	return nil
}

// replayFilter selects dead letters. An empty list or a zero time does not filter.
type replayFilter struct {
	mandators []string  // dead-letter subject tokens
	reasons   []string  // Lessonbridge-Reason values
	batchIDs  []string  // Lessonbridge-Batch-Id values
	since     time.Time // stored at or after
	until     time.Time // stored before
}

// match reports whether dl passes every filter.
func (f replayFilter) match(dl *replayDeadLetter) bool {
	switch {
	case len(f.mandators) > 0 && !slices.Contains(f.mandators, dl.mandator),
		len(f.reasons) > 0 && !slices.Contains(f.reasons, dl.reason),
		len(f.batchIDs) > 0 && !slices.Contains(f.batchIDs, dl.batchID),
		!f.since.IsZero() && dl.stored.Before(f.since),
		!f.until.IsZero() && !dl.stored.Before(f.until):
		return false
	}
	return true
}

// replayOptions is the checked configuration of one replay run.
type replayOptions struct {
	nats        natsSettings
	stream      string
	inputPrefix string
	filter      replayFilter
	dryRun      bool
	limit       int // 0: no limit
	runID       string
	again       bool   // republish dead letters that are marked as replayed
	yes         bool   // no confirmation prompt
	marksBucket string // KV bucket of the marks
}

// parseReplayArgs parses and checks replay's flags; relative times count back from now. Every
// problem found is reported, each naming its flag, environment variable and value.
func parseReplayArgs(args []string, stderr io.Writer, now time.Time) (replayOptions, error) {
	fs := newFlagSet("replay", stderr)
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(stderr, replayHelp)
	}
	var o replayOptions
	var mandators, reasons, batchIDs replayList
	var since, until string
	natsFlags := registerNATSFlags(fs)
	fs.StringVar(&o.stream, "deadletter-stream", "LESSON_DEADLETTER", "stream of the dead letters")
	fs.StringVar(&o.inputPrefix, "input-prefix", publisher.DefaultSubjects().Changes, "subject prefix of lesson changes (<prefix>.<mandator>)")
	fs.Var(&mandators, "mandator", "replay only these mandators (dead-letter subject token; repeatable or comma-separated; empty: all)")
	fs.Var(&reasons, "reason", "replay only these reasons, e.g. import_failed,rejected (repeatable or comma-separated; empty: all)")
	fs.Var(&batchIDs, "batch-id", "replay only these JobManager batch ids (repeatable or comma-separated; empty: all)")
	fs.StringVar(&since, "since", "", "replay only dead letters stored at or after this: RFC 3339 time or a duration back from now, e.g. 2h")
	fs.StringVar(&until, "until", "", "replay only dead letters stored before this: RFC 3339 time or a duration back from now")
	fs.BoolVar(&o.dryRun, "dry-run", false, "list what would be replayed, one line each, and publish nothing")
	fs.IntVar(&o.limit, "limit", 0, "replay at most this many dead letters (0: no limit)")
	fs.StringVar(&o.runID, "run-id", "", "run id in the Nats-Msg-Id (default: the start time in Unix nanoseconds)")
	fs.BoolVar(&o.again, "again", false, "also republish dead letters an earlier replay republished (they are marked in --marks-bucket)")
	fs.BoolVar(&o.yes, "yes", false, "do not ask for confirmation (needed without a terminal, unless --dry-run)")
	fs.StringVar(&o.marksBucket, "marks-bucket", replayMarksBucket, "KV bucket marking the dead letters replayed (created on first use)")
	if err := parseFlags(fs, args, nil); err != nil {
		return replayOptions{}, err
	}

	var errs []error
	o.nats, errs = natsFlags.settings("replay", osFS{})
	bad := func(name, value, why string) { errs = append(errs, flagProblem("replay", name, value, why)) }
	for _, m := range mandators {
		if schemas.ValidMandator(m) != nil {
			bad("mandator", m, "must match [A-Za-z0-9_-]{1,64}")
		}
	}
	for _, r := range reasons {
		if !replayReasonRE.MatchString(r) {
			bad("reason", r, "must be a reason such as import_failed (lower case letters and _)")
		} else if !slices.Contains(replayKnownReasons, r) {
			// New reasons may be added (contract section 4): warn, do not refuse.
			fmt.Fprintf(stderr, "replay: --reason %q is not a reason this version knows (%s)\n", r, strings.Join(replayKnownReasons, ", "))
		}
	}
	var err error
	if o.filter.since, err = parseReplayTime(since, now); err != nil {
		bad("since", since, err.Error())
	}
	if o.filter.until, err = parseReplayTime(until, now); err != nil {
		bad("until", until, err.Error())
	}
	if !o.filter.since.IsZero() && !o.filter.until.IsZero() && !o.filter.since.Before(o.filter.until) {
		bad("until", until, "must be after --since "+since)
	}
	if o.limit < 0 {
		bad("limit", strconv.Itoa(o.limit), "must not be negative")
	}
	if !replayStreamRE.MatchString(o.stream) {
		bad("deadletter-stream", o.stream, "must be a stream name ([A-Za-z0-9_-])")
	}
	if !replayStreamRE.MatchString(o.marksBucket) {
		bad("marks-bucket", o.marksBucket, "must be a bucket name ([A-Za-z0-9_-])")
	}
	if !replaySubjectRE.MatchString(o.inputPrefix) {
		bad("input-prefix", o.inputPrefix, "must be a literal subject such as lessons.changes")
	}
	if o.runID == "" {
		o.runID = strconv.FormatInt(now.UnixNano(), 10)
	} else if !replayRunIDRE.MatchString(o.runID) {
		bad("run-id", o.runID, "must match [A-Za-z0-9_-]{1,64}")
	}
	if len(errs) > 0 {
		return replayOptions{}, fmt.Errorf("replay: %w", errors.Join(errs...))
	}
	o.filter.mandators, o.filter.reasons, o.filter.batchIDs = mandators, reasons, batchIDs
	return o, nil
}

var (
	replayReasonRE     = regexp.MustCompile(`^[a-z][a-z_]{0,63}$`)
	replayKnownReasons = []string{
		schemas.ReasonImportFailed, schemas.ReasonRejected, schemas.ReasonSubmitGaveUp, schemas.ReasonPollTimeout,
		schemas.ReasonBatchUnknown, schemas.ReasonInDoubt, schemas.ReasonInvalidEvent,
	}
)

// parseReplayTime reads an RFC 3339 time or a positive duration back from now; "" is the zero time.
func parseReplayTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, errors.New("not an RFC 3339 time (2025-12-22T16:00:00Z) or a duration (2h)")
	}
	if d <= 0 {
		return time.Time{}, errors.New("a duration back from now must be positive")
	}
	return now.Add(-d), nil
}

// runReplay republishes dead-lettered events to the input; see replayHelp.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseReplayArgs(args, stderr, time.Now())
	if err != nil {
		return err
	}
	if !o.dryRun && !o.yes && !replayInputIsTerminal() {
		return errors.New("replay: standard input is not a terminal, so replay cannot ask for confirmation: " +
			"pass --yes to republish (or --dry-run to list what would be)")
	}
	nc, err := dialNATS(o.nats, "lessonbridge replay")
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer nc.Close()
	js, err := o.nats.newJetStream(nc)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	r := &replayer{js: js, o: o, out: stdout, errOut: stderr, in: replayInput, counts: newReplayCounts()}
	return r.run(ctx)
}

// The terminal replay asks on; variables so that tests can stand in for one.
var (
	replayInput           io.Reader = os.Stdin
	replayInputIsTerminal           = func() bool { return term.IsTerminal(int(os.Stdin.Fd())) }
)

func newReplayCounts() replayCounts { return replayCounts{byReason: map[string]*replayCount{}} }

// replayMark is the value of a mark: which run republished the dead letter, and the dead letter's
// stored time, so that a mark of a deleted and re-created stream's sequence number does not match.
type replayMark struct {
	RunID      string    `json:"runId"`
	ReplayedAt time.Time `json:"replayedAt"`
	Stored     time.Time `json:"stored"`
	Subject    string    `json:"subject"`
	MsgID      string    `json:"msgId"`
}

func replayMarkKey(stream string, seq uint64) string {
	return stream + "." + strconv.FormatUint(seq, 10)
}

// replayDeadLetter is one message of the dead-letter stream.
type replayDeadLetter struct {
	seq      uint64    // in the dead-letter stream
	subject  string    // <dead-letter prefix>.<mandator> or <dead-letter prefix>._invalid.mandator
	mandator string    // the mandator token of the dead-letter subject (deadLetterMandator)
	reason   string    // Lessonbridge-Reason
	errText  string    // Lessonbridge-Error
	batchID  string    // Lessonbridge-Batch-Id
	origin   string    // Lessonbridge-Subject: the original input subject
	stored   time.Time // when the dead-letter stream stored it
	body     []byte    // the original event's bytes
}

func replayDeadLetterOf(msg jetstream.Msg, seq uint64, stored time.Time) *replayDeadLetter {
	h := msg.Headers()
	subject := msg.Subject()
	return &replayDeadLetter{
		seq: seq, subject: subject, mandator: deadLetterMandator(subject),
		reason: h.Get(schemas.HeaderReason), errText: h.Get(schemas.HeaderError), batchID: h.Get(schemas.HeaderBatchID),
		origin: h.Get(schemas.HeaderSubject), stored: stored, body: msg.Data(),
	}
}

// deadLetterMandator is the mandator token of a dead-letter subject: its last token, except for
// <prefix>._invalid.mandator (contract section 5), whose token is _invalid.
func deadLetterMandator(subject string) string {
	if rest, ok := strings.CutSuffix(subject, "."+replayNoMandator+".mandator"); ok && rest != "" {
		return replayNoMandator
	}
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// replayTarget returns the subject dl is republished to, and whether that subject names a valid
// mandator under prefix (as the bridge requires). The subject is empty when there is none to use.
func replayTarget(dl *replayDeadLetter, prefix string) (subject string, valid bool) {
	subject = dl.origin
	if subject == "" {
		if dl.mandator == replayNoMandator || schemas.ValidMandator(dl.mandator) != nil {
			return "", false
		}
		subject = prefix + "." + dl.mandator
	}
	m, ok := strings.CutPrefix(subject, prefix+".")
	return subject, ok && m != replayNoMandator && schemas.ValidMandator(m) == nil
}

// replayMsgID is the Nats-Msg-Id of dl's republish in run runID; see replayHelp.
func replayMsgID(seq uint64, runID string) string {
	return "replay-" + strconv.FormatUint(seq, 10) + "-" + runID
}

// replayCount counts what happened to the dead letters of one reason (or of all).
type replayCount struct {
	replayed   int // republished and confirmed (with --dry-run: would be)
	skipped    int // not selected by the filters
	errors     int // could not be republished
	noMandator int // selected, but its subject names no valid mandator and --mandator did not name it
	overLimit  int // selected beyond --limit
	marked     int // selected, but an earlier replay republished it (marked) and --again was not given
}

type replayCounts struct {
	replayCount
	examined   int
	duplicates int // republishes JetStream reported as duplicates (a repeated --run-id)
	unmarked   int // republished, but the mark could not be written
	byReason   map[string]*replayCount
}

func (c *replayCounts) add(reason string, f func(*replayCount)) {
	f(&c.replayCount)
	rc := c.byReason[reason]
	if rc == nil {
		rc = &replayCount{}
		c.byReason[reason] = rc
	}
	f(rc)
}

// replayer runs one replay. It is not safe for concurrent use.
type replayer struct {
	js          jetstream.JetStream
	o           replayOptions
	out, errOut io.Writer
	in          io.Reader // where the confirmation is read
	counts      replayCounts
	reports     int // notes written about dead letters without a valid mandator
	consecutive int // publish errors in a row

	marksKV  jetstream.KeyValue    // nil: no marks bucket (a dry run before the first replay)
	marks    map[string]replayMark // by replayMarkKey, loaded at start
	planning bool                  // counting for the confirmation: publish nothing, print no lines
}

// run reads the dead-letter stream up to its last sequence at start, replays what the filters
// select, and writes the summary to out (also when it stops early). It returns an error when the
// stream cannot be read, when ctx ends, or when any selected dead letter could not be republished.
func (r *replayer) run(ctx context.Context) error {
	stream, err := r.js.Stream(ctx, r.o.stream)
	if err != nil {
		return fmt.Errorf("replay: stream %s: %w", r.o.stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("replay: stream %s: %w", r.o.stream, err)
	}
	lastSeq := info.State.LastSeq
	mode := ""
	if r.o.dryRun {
		mode = " (dry run: nothing is published)"
	}
	fmt.Fprintf(r.errOut, "replay run %s: %d dead letters in %s up to seq %d%s\n", r.o.runID, info.State.Msgs, r.o.stream, lastSeq, mode)
	if err := r.loadMarks(ctx); err != nil {
		return err
	}

	if !r.o.dryRun && !r.o.yes {
		r.planning = true
		err := r.scan(ctx, stream, info.State.Msgs, lastSeq)
		r.planning = false
		if err != nil {
			return err
		}
		plan := r.counts
		if plan.replayed == 0 {
			return r.summary() // nothing to ask about
		}
		r.counts = newReplayCounts()
		ok, err := r.confirm(&plan)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("replay: not confirmed; nothing was republished")
		}
	}

	err = r.scan(ctx, stream, info.State.Msgs, lastSeq)
	if werr := r.summary(); werr != nil && err == nil {
		err = fmt.Errorf("replay: write summary: %w", werr)
	}
	if err == nil && r.counts.errors > 0 {
		err = fmt.Errorf("replay: %d of the selected dead letters could not be republished", r.counts.errors)
	}
	if err == nil && r.counts.unmarked > 0 {
		err = fmt.Errorf("replay: %d republished dead letters could not be marked in %s; a later replay would republish them again",
			r.counts.unmarked, r.o.marksBucket)
	}
	return err
}

// loadMarks opens the marks bucket (creating it, unless this is a dry run) and reads every mark.
func (r *replayer) loadMarks(ctx context.Context) error {
	kv, err := r.js.KeyValue(ctx, r.o.marksBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		if r.o.dryRun {
			r.marks = map[string]replayMark{}
			return nil // nothing was replayed yet
		}
		kv, err = r.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: r.o.marksBucket,
			Description: "lessonbridge replay: dead letters republished (key <stream>.<seq>)", History: 1})
	}
	if err != nil {
		return fmt.Errorf("replay: --marks-bucket %s: %w", r.o.marksBucket, err)
	}
	r.marksKV = kv
	r.marks = map[string]replayMark{}
	w, err := kv.WatchFiltered(ctx, []string{r.o.stream + ".>"}, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("replay: --marks-bucket %s: %w", r.o.marksBucket, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("replay: %w", ctx.Err())
		case e := <-w.Updates():
			if e == nil {
				return nil // the initial values are all delivered
			}
			var m replayMark
			if json.Unmarshal(e.Value(), &m) == nil {
				r.marks[e.Key()] = m
			}
		}
	}
}

// confirm asks on the terminal whether to republish what plan counted.
func (r *replayer) confirm(plan *replayCounts) (bool, error) {
	reasons := make([]string, 0, len(plan.byReason))
	for reason, rc := range plan.byReason {
		if rc.replayed > 0 {
			reasons = append(reasons, fmt.Sprintf("%s %d", orDash(oneLine(reason)), rc.replayed))
		}
	}
	sort.Strings(reasons)
	marked := ""
	if plan.marked > 0 {
		marked = fmt.Sprintf("; %d replayed before are skipped, --again includes them", plan.marked)
	}
	fmt.Fprintf(r.errOut, "replay: republish %d dead letters (%s) to %s.*%s? [y/N] ", plan.replayed,
		strings.Join(reasons, ", "), r.o.inputPrefix, marked)
	line, err := bufio.NewReader(r.in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("replay: read confirmation: %w", err)
	}
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes", nil
}

func (r *replayer) scan(ctx context.Context, stream jetstream.Stream, msgs, lastSeq uint64) error {
	if msgs == 0 {
		return nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("replay: stream %s: %w", r.o.stream, err)
	}
	iter, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("replay: stream %s: %w", r.o.stream, err)
	}
	defer iter.Stop()
	for {
		nctx, cancel := context.WithTimeout(ctx, replayIdleWait)
		msg, err := iter.Next(jetstream.NextContext(nctx))
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("replay: %w", ctx.Err())
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			// Nothing arrived for a while: stop if nothing is left (messages deleted meanwhile).
			ci, err := cons.Info(ctx)
			if err != nil {
				return fmt.Errorf("replay: stream %s: %w", r.o.stream, err)
			}
			if ci.NumPending == 0 {
				return nil
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("replay: stream %s: %w", r.o.stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("replay: stream %s: %w", r.o.stream, err)
		}
		seq := md.Sequence.Stream
		if seq > lastSeq {
			return nil // stored after the start, e.g. a replayed event that failed again
		}
		if err := r.handle(ctx, replayDeadLetterOf(msg, seq, md.Timestamp)); err != nil {
			return err
		}
		if seq >= lastSeq || md.NumPending == 0 {
			return nil
		}
	}
}

// handle filters and replays (or lists) one dead letter. It returns an error only when the replay
// must stop.
func (r *replayer) handle(ctx context.Context, dl *replayDeadLetter) error {
	c := &r.counts
	c.examined++
	if !r.o.filter.match(dl) {
		c.add(dl.reason, func(rc *replayCount) { rc.skipped++ })
		return nil
	}
	target, valid := replayTarget(dl, r.o.inputPrefix)
	if target == "" || !valid && !slices.Contains(r.o.filter.mandators, dl.mandator) {
		c.add(dl.reason, func(rc *replayCount) { rc.noMandator++ })
		r.report(dl, target)
		return nil
	}
	key := replayMarkKey(r.o.stream, dl.seq)
	if m, ok := r.marks[key]; ok && !r.o.again && m.Stored.Equal(dl.stored) {
		c.add(dl.reason, func(rc *replayCount) { rc.marked++ })
		return nil
	}
	if r.o.limit > 0 && c.replayed+c.errors >= r.o.limit {
		c.add(dl.reason, func(rc *replayCount) { rc.overLimit++ })
		return nil
	}
	if r.planning {
		c.add(dl.reason, func(rc *replayCount) { rc.replayed++ })
		return nil
	}
	if r.o.dryRun {
		c.add(dl.reason, func(rc *replayCount) { rc.replayed++ })
		_, err := fmt.Fprintln(r.out, replayLine(dl, target))
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		return nil
	}

	ack, err := r.publish(ctx, dl, target)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("replay: %w", ctx.Err())
		}
		c.add(dl.reason, func(rc *replayCount) { rc.errors++ })
		fmt.Fprintf(r.errOut, "replay: seq %d (%s, %s) to %s: %v\n", dl.seq, dl.mandator, orDash(dl.reason), target, err)
		if r.consecutive++; r.consecutive >= replayMaxConsecutiveErrors {
			return fmt.Errorf("replay: giving up after %d publish errors in a row: %w", r.consecutive, err)
		}
		return nil
	}
	r.consecutive = 0
	c.add(dl.reason, func(rc *replayCount) { rc.replayed++ })
	if ack.Duplicate {
		c.duplicates++
	}
	if err := r.mark(ctx, key, dl, target); err != nil {
		c.unmarked++
		fmt.Fprintf(r.errOut, "replay: seq %d republished but not marked in %s: %v\n", dl.seq, r.o.marksBucket, err)
	}
	if c.replayed%replayProgressEvery == 0 {
		fmt.Fprintf(r.errOut, "replay: %d replayed, at dead letter seq %d\n", c.replayed, dl.seq)
	}
	return nil
}

// publish republishes dl's body to subject and waits for the PubAck, trying a few times with the
// same Nats-Msg-Id.
func (r *replayer) publish(ctx context.Context, dl *replayDeadLetter, subject string) (*jetstream.PubAck, error) {
	msg := &nats.Msg{Subject: subject, Data: dl.body, Header: nats.Header{}}
	msg.Header.Set(replayHeaderOf, r.o.stream+"/"+strconv.FormatUint(dl.seq, 10))
	id := replayMsgID(dl.seq, r.o.runID)
	backoff := 200 * time.Millisecond
	var err error
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, replayPublishTimeout)
		var ack *jetstream.PubAck
		ack, err = r.js.PublishMsg(pctx, msg, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return ack, nil
		}
		if attempt == replayPublishAttempts || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// mark records in the marks bucket that dl was republished to subject.
func (r *replayer) mark(ctx context.Context, key string, dl *replayDeadLetter, subject string) error {
	m := replayMark{RunID: r.o.runID, ReplayedAt: time.Now().UTC(), Stored: dl.stored, Subject: subject,
		MsgID: replayMsgID(dl.seq, r.o.runID)}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, replayPublishTimeout)
	defer cancel()
	if _, err := r.marksKV.Put(pctx, key, b); err != nil {
		return err
	}
	r.marks[key] = m
	return nil
}

// report notes on stderr a selected dead letter that is skipped because its subject names no
// valid mandator (the first replayMaxReports of them).
func (r *replayer) report(dl *replayDeadLetter, target string) {
	if r.planning {
		return // the real pass reports it
	}
	if r.reports++; r.reports > replayMaxReports {
		return
	}
	why := "has no Lessonbridge-Subject header"
	if target != "" {
		why = fmt.Sprintf("came from %s, which names no valid mandator", oneLine(target))
	}
	fmt.Fprintf(r.errOut, "replay: seq %d (%s, reason %s) skipped: it %s; select it with --mandator %s\n",
		dl.seq, oneLine(dl.subject), orDash(oneLine(dl.reason)), why, dl.mandator)
	if r.reports == replayMaxReports {
		fmt.Fprintln(r.errOut, "replay: further dead letters without a valid mandator are only counted")
	}
}

// replayLine renders one dead letter for --dry-run, e.g.
//
//	seq=17 mandator=zh-kanti reason=import_failed batch=12345 stored=2025-12-22T16:03:10Z to=lessons.changes.zh-kanti: Fehler: ...
func replayLine(dl *replayDeadLetter, target string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seq=%d mandator=%s reason=%s batch=%s stored=%s to=%s", dl.seq, dl.mandator,
		orDash(oneLine(dl.reason)), orDash(oneLine(dl.batchID)), dl.stored.UTC().Format(time.RFC3339), oneLine(target))
	if dl.errText != "" {
		fmt.Fprintf(&b, ": %s", cut(oneLine(dl.errText), replayErrorExcerpt))
	}
	return b.String()
}

// summary writes the totals and one line per reason to out, e.g.
//
//	replayed 3 of 6 dead letters (3 skipped by filter, 0 errors)
//	  import_failed: 2 replayed, 1 skipped, 0 errors
func (r *replayer) summary() error {
	c := &r.counts
	verb, perReason := "replayed", "replayed"
	if r.o.dryRun {
		verb, perReason = "would replay", "to replay"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d of %d dead letters (%s)\n", verb, c.replayed, c.examined, replayDetails(&c.replayCount, "skipped by filter"))
	if c.duplicates > 0 {
		fmt.Fprintf(&b, "%d of them were already in the input (same --run-id within the duplicate window)\n", c.duplicates)
	}
	reasons := make([]string, 0, len(c.byReason))
	for reason := range c.byReason {
		reasons = append(reasons, reason)
	}
	sort.Strings(reasons)
	for _, reason := range reasons {
		rc := c.byReason[reason]
		fmt.Fprintf(&b, "  %s: %d %s, %s\n", orDash(oneLine(reason)), rc.replayed, perReason, replayDetails(rc, "skipped"))
	}
	_, err := io.WriteString(r.out, b.String())
	return err
}

func replayDetails(rc *replayCount, skipped string) string {
	s := fmt.Sprintf("%d %s, %d errors", rc.skipped, skipped, rc.errors)
	if rc.noMandator > 0 {
		s += fmt.Sprintf(", %d without a valid mandator", rc.noMandator)
	}
	if rc.overLimit > 0 {
		s += fmt.Sprintf(", %d over --limit", rc.overLimit)
	}
	if rc.marked > 0 {
		s += fmt.Sprintf(", %d already replayed (--again repeats them)", rc.marked)
	}
	return s
}

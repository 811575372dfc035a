package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// maxShownError is how many runes of an error message a watch line shows.
const maxShownError = 500

// runWatch prints outcome events (and dead letters with --deadletter) as they arrive, one line each,
// read with ordered consumers so that nothing is acknowledged or changed on the server. It returns
// nil when ctx ends.
func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("watch", stderr)
	natsFlags := registerNATSFlags(fs)
	mandator := fs.String("mandator", "", "show only this mandator (empty: all)")
	deadletter := fs.Bool("deadletter", false, "show dead letters too")
	jsonOut := fs.Bool("json", false, "print each outcome's JSON, and each dead letter as a JSON object with its headers and body")
	since := fs.String("since", "new", "new: only what arrives from now on; all: everything the streams hold; an RFC 3339 time or a duration back from now (2h): what was stored since then")
	outcomeStream := fs.String("outcome-stream", "LESSON_OUTCOMES", "stream of the outcome events")
	deadletterStream := fs.String("deadletter-stream", "LESSON_DEADLETTER", "stream of the dead letters")
	outcomeSubject := fs.String("outcome-subject", publisher.DefaultSubjects().Outcomes, "subject prefix of outcome events")
	deadletterSubject := fs.String("deadletter-subject", publisher.DefaultSubjects().DeadLetter, "subject prefix of dead letters")
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	ns, errs := natsFlags.settings("watch", osFS{})
	bad := func(name, value, why string) { errs = append(errs, flagProblem("watch", name, value, why)) }
	if *mandator != "" && !mandatorToken.MatchString(*mandator) {
		bad("mandator", *mandator, "must match [A-Za-z0-9_-]{1,64}")
	}
	var policy jetstream.DeliverPolicy
	var startTime *time.Time
	switch *since {
	case "new":
		policy = jetstream.DeliverNewPolicy
	case "all":
		policy = jetstream.DeliverAllPolicy
	default:
		t, err := parseReplayTime(*since, time.Now())
		if err != nil || t.IsZero() {
			bad("since", *since, "must be new, all, an RFC 3339 time (2025-12-22T16:00:00Z) or a positive duration back from now (2h)")
		}
		policy, startTime = jetstream.DeliverByStartTimePolicy, &t
	}
	if len(errs) > 0 {
		return fmt.Errorf("watch: %w", errors.Join(errs...))
	}

	type source struct {
		stream, filter string
		format         func(jetstream.Msg) string
	}
	outFilter, dlFilter := *outcomeSubject+".>", *deadletterSubject+".>"
	if *mandator != "" {
		outFilter, dlFilter = *outcomeSubject+"."+*mandator+".>", *deadletterSubject+"."+*mandator
	}
	sources := []source{{*outcomeStream, outFilter, outcomeLine}}
	if *deadletter {
		sources = append(sources, source{*deadletterStream, dlFilter, deadLetterLine})
	}
	if *jsonOut {
		sources[0].format = outcomeJSON
		if *deadletter {
			sources[1].format = deadLetterJSON
		}
	}

	nc, err := dialNATS(ns, "lessonbridge watch", nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer nc.Close()
	js, err := ns.newJetStream(nc)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}

	// A failed write to stdout (a closed pipe) ends the watch with that error.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errWrite := errors.New("watch: write")
	out, errOut := &linePrinter{w: stdout}, &linePrinter{w: stderr}
	var running []jetstream.ConsumeContext
	stopAll := func() {
		for _, cc := range running {
			cc.Stop()
			<-cc.Closed()
		}
		out.close()
		errOut.close()
	}
	var watching []string
	for _, src := range sources {
		if err := waitForStream(ctx, js, src.stream, watchStreamWait, errOut); err != nil {
			stopAll()
			return err
		}
		cons, err := js.OrderedConsumer(ctx, src.stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{src.filter},
			DeliverPolicy:  policy,
			OptStartTime:   startTime,
		})
		if err != nil {
			stopAll()
			return fmt.Errorf("watch: stream %s: %w (the bridge creates it at start-up)", src.stream, err)
		}
		format := src.format
		cc, err := cons.Consume(func(msg jetstream.Msg) {
			if err := out.println(format(msg)); err != nil {
				cancel(fmt.Errorf("%w: %w", errWrite, err))
			}
		}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			_ = errOut.println(fmt.Sprintf("watch: stream %s: %v", src.stream, err))
		}))
		if err != nil {
			stopAll()
			return fmt.Errorf("watch: stream %s: %w", src.stream, err)
		}
		running = append(running, cc)
		watching = append(watching, fmt.Sprintf("%s (%s)", src.stream, src.filter))
	}
	_ = errOut.println(fmt.Sprintf("watching %s since %s; interrupt to stop", strings.Join(watching, " and "), *since))

	<-ctx.Done()
	stopAll()
	if err := context.Cause(ctx); errors.Is(err, errWrite) {
		return err
	}
	return nil
}

// watchStreamWait is how long watch waits for a stream the bridge has not created yet (watch
// started together with the bridge).
var watchStreamWait = 30 * time.Second

// waitForStream returns once stream exists, waiting up to wait (saying so once on errOut) while it
// does not; then, or on any other error, it fails naming the stream.
func waitForStream(ctx context.Context, js jetstream.JetStream, stream string, wait time.Duration, errOut *linePrinter) error {
	deadline := time.Now().Add(wait)
	said := false
	for {
		_, err := js.Stream(ctx, stream)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("watch: stream %s: %w", stream, err)
		case !time.Now().Before(deadline):
			return fmt.Errorf("watch: stream %s: %w after waiting %s (the bridge creates it at start-up)", stream, err, wait)
		}
		if !said {
			_ = errOut.println(fmt.Sprintf("watch: stream %s does not exist yet (the bridge creates it at start-up); waiting up to %s", stream, wait))
			said = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("watch: stream %s: %w", stream, ctx.Err())
		case <-time.After(min(250*time.Millisecond, time.Until(deadline))):
		}
	}
}

// linePrinter serialises lines of several consumers and drops those that arrive after close.
type linePrinter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (p *linePrinter) println(line string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	_, err := io.WriteString(p.w, line+"\n")
	return err
}

func (p *linePrinter) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

func outcomeLine(msg jetstream.Msg) string {
	var o schemas.Outcome
	if err := json.Unmarshal(msg.Data(), &o); err != nil {
		return fmt.Sprintf("%s ? %s: undecodable outcome: %s", clock(msgTime(msg)), msg.Subject(), oneLine(err.Error()))
	}
	return formatOutcome(&o)
}

func outcomeJSON(msg jetstream.Msg) string {
	var b bytes.Buffer
	if err := json.Compact(&b, msg.Data()); err != nil {
		return oneLine(string(msg.Data()))
	}
	return b.String()
}

func deadLetterLine(msg jetstream.Msg) string {
	return formatDeadLetter(msg.Subject(), msg.Headers(), msgTime(msg))
}

func deadLetterJSON(msg jetstream.Msg) string {
	h := msg.Headers()
	seq, _ := strconv.ParseUint(h.Get(schemas.HeaderStreamSeq), 10, 64)
	body := json.RawMessage(msg.Data())
	if !json.Valid(body) {
		b, _ := json.Marshal(string(msg.Data())) // cannot fail for a string
		body = b
	}
	var compact bytes.Buffer
	if json.Compact(&compact, body) == nil {
		body = compact.Bytes()
	}
	b, err := json.Marshal(struct {
		Subject       string          `json:"subject"`
		Time          time.Time       `json:"time"`
		Reason        string          `json:"reason"`
		Error         string          `json:"error"`
		BatchID       string          `json:"batchId,omitempty"`
		OriginSubject string          `json:"originSubject"`
		StreamSeq     uint64          `json:"streamSeq"`
		Body          json.RawMessage `json:"body"`
	}{
		msg.Subject(), msgTime(msg).UTC(), h.Get(schemas.HeaderReason), h.Get(schemas.HeaderError),
		h.Get(schemas.HeaderBatchID), h.Get(schemas.HeaderSubject), seq, body,
	})
	if err != nil {
		return fmt.Sprintf(`{"subject":%q,"error":%q}`, msg.Subject(), err.Error())
	}
	return string(b)
}

// msgTime is when JetStream stored msg, or now when that is unknown.
func msgTime(msg jetstream.Msg) time.Time {
	if md, err := msg.Metadata(); err == nil {
		return md.Timestamp
	}
	return time.Now()
}

// formatOutcome renders an outcome as one line in local time, e.g.
//
//	16:03:10 ✔ succeeded zh-kanti create batch=12345 lessons=3 events=3 polls=6 jobs=lb-20251222-...
//	16:03:10 ✘ failed    zh-kanti update batch=12346 reason=import_failed class=data lessons=2: Fehler: ...
func formatOutcome(o *schemas.Outcome) string {
	d := &o.Data
	at := o.Time
	if at.IsZero() {
		at = d.FinishedAt
	}
	lessons := d.LessonCount
	if lessons == 0 {
		lessons = len(d.LessonIDs)
	}
	mark := "?"
	switch d.Status {
	case schemas.StatusSucceeded:
		mark = "✔"
	case schemas.StatusFailed:
		mark = "✘"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %-9s %s %s batch=%s", clock(at), mark, oneLine(d.Status), orDash(d.Mandator), orDash(string(d.Action)), orDash(d.BatchID))
	if d.Status != schemas.StatusSucceeded {
		fmt.Fprintf(&b, " reason=%s class=%s", orDash(d.Reason), orDash(d.ErrorClass))
	}
	fmt.Fprintf(&b, " lessons=%d events=%d polls=%d", lessons, len(d.EventIDs), d.Polls)
	if len(d.JobIDs) > 0 {
		jobs := d.JobIDs
		more := ""
		if len(jobs) > 3 {
			jobs, more = jobs[:3], fmt.Sprintf(",+%d", len(d.JobIDs)-3)
		}
		fmt.Fprintf(&b, " jobs=%s%s", strings.Join(jobs, ","), more)
	}
	if len(d.ErrorMessages) > 0 {
		fmt.Fprintf(&b, ": %s", cut(oneLine(strings.Join(d.ErrorMessages, "; ")), maxShownError))
	}
	return b.String()
}

// formatDeadLetter renders a dead letter stored at at on subject (<prefix>.<mandator>, or
// <prefix>._invalid.mandator for events whose subject names no valid mandator) with the
// Lessonbridge-* headers h as one line in local time, e.g.
//
//	16:03:11 ☠ deadletter zh-kanti reason=invalid_event seq=42: data.end "..." is not after data.start
func formatDeadLetter(subject string, h nats.Header, at time.Time) string {
	mandator := deadLetterMandator(subject)
	var b strings.Builder
	fmt.Fprintf(&b, "%s ☠ deadletter %s reason=%s", clock(at), orDash(mandator), orDash(oneLine(h.Get(schemas.HeaderReason))))
	if batch := h.Get(schemas.HeaderBatchID); batch != "" {
		fmt.Fprintf(&b, " batch=%s", oneLine(batch))
	}
	fmt.Fprintf(&b, " seq=%s", orDash(oneLine(h.Get(schemas.HeaderStreamSeq))))
	if e := h.Get(schemas.HeaderError); e != "" {
		fmt.Fprintf(&b, ": %s", cut(oneLine(e), maxShownError))
	}
	return b.String()
}

func clock(t time.Time) string { return t.Local().Format("15:04:05") }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine replaces control characters (newlines included) by spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// cut shortens s to at most n runes, ending in "…" when it did.
func cut(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos] + "…"
		}
		i++
	}
	return s
}

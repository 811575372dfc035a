package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/lessonbridge/lessonbridge/publisher"
)

const defaultNATSURL = "nats://127.0.0.1:4222"

// publishChunk is how many NDJSON lines are read before they are published; it bounds memory for
// large inputs.
const publishChunk = 10_000

// maxLineWarnings is how many per-line warnings publish prints before it only counts them.
const maxLineWarnings = 10

var mandatorToken = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// runPublish publishes lesson-change events from NDJSON (--file or stdin) or --sample N generated
// ones to <subject>.<mandator>, each with Nats-Msg-Id, and waits until JetStream confirmed them all.
// Lines are published as they are, also when they are not valid events (the bridge dead-letters
// them), so publish doubles as a tool to inject poison.
func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("publish", stderr)
	natsFlags := registerNATSFlags(fs)
	mandator := fs.String("mandator", "demo", "mandator of events without a data.mandator")
	file := fs.String("file", "", `NDJSON file, one CloudEvent per line ("" or "-": stdin)`)
	sample := fs.Int("sample", 0, "publish N generated sample events instead of reading input")
	failRate := fs.Float64("fail-rate", 0, "fraction of --sample events made invalid on purpose (0..1)")
	seed := fs.Int64("seed", 1, "seed of the --sample mix (the event ids are fresh on every run)")
	window := fs.Int("window", publisher.DefaultWindow, "publishes awaiting confirmation at most")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	prefix := fs.String("subject", publisher.DefaultSubjects().Changes, "subject prefix of lesson changes")
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	ns, errs := natsFlags.settings("publish", osFS{})
	bad := func(name, value, why string) { errs = append(errs, flagProblem("publish", name, value, why)) }
	if !mandatorToken.MatchString(*mandator) {
		bad("mandator", *mandator, "must match [A-Za-z0-9_-]{1,64}")
	}
	if *sample < 0 {
		bad("sample", fmt.Sprint(*sample), "must not be negative")
	}
	if *sample > 0 && *file != "" {
		bad("file", *file, "--sample and --file exclude each other")
	}
	if *failRate < 0 || *failRate > 1 {
		bad("fail-rate", fmt.Sprint(*failRate), "must be within 0..1")
	}
	if len(errs) > 0 {
		return fmt.Errorf("publish: %w", errors.Join(errs...))
	}
	subjects := publisher.DefaultSubjects()
	subjects.Changes = *prefix

	var in io.Reader = os.Stdin
	if *sample == 0 && *file != "" && *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		defer f.Close()
		in = f
	}

	nc, err := dialNATS(ns, "lessonbridge publish")
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer nc.Close()
	js, err := ns.newJetStream(nc)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	p, err := publisher.New(js, publisher.WithSubjects(subjects))
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}

	began := time.Now()
	prog := &progress{w: stderr, quiet: *quiet, began: began, last: began}
	mandators := map[string]bool{}
	var total publisher.Counts
	send := func(changes []publisher.RawChange) error {
		for _, c := range changes {
			mandators[c.Mandator] = true
		}
		base := total.Stored + total.Duplicates
		counts, err := p.PublishChangesCounted(ctx, changes, *window, func(done int) { prog.update(base + done) })
		total.Stored += counts.Stored
		total.Duplicates += counts.Duplicates
		return err
	}

	if *sample > 0 {
		prog.total = *sample
		err = send(publisher.SampleEvents(*sample, *mandator, *seed, *failRate))
	} else {
		err = publishNDJSON(in, *mandator, stderr, send)
	}
	n := total.Stored + total.Duplicates
	if err != nil {
		return fmt.Errorf("publish: %d events confirmed before: %w", n, err)
	}
	_, err = fmt.Fprintf(stdout, "published %d events (%d duplicates) to %s in %s\n",
		n, total.Duplicates, subjectSummary(subjects.Changes, mandators), time.Since(began).Round(time.Millisecond))
	return err
}

// publishNDJSON reads one event per line and hands them to send in chunks. Blank lines are skipped.
// Every other line is published as it is; lines without a usable id get a generated Nats-Msg-Id and
// a warning on stderr (the first maxLineWarnings of them, then a count).
func publishNDJSON(in io.Reader, mandator string, stderr io.Writer, send func([]publisher.RawChange) error) error {
	r := bufio.NewReaderSize(in, 64<<10)
	chunk := make([]publisher.RawChange, 0, publishChunk)
	warnings := 0
	for lineNo := 1; ; lineNo++ {
		line, readErr := r.ReadBytes('\n')
		if readErr != nil && !errors.Is(readErr, io.EOF) {
			return fmt.Errorf("read line %d: %w", lineNo, readErr)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(bytes.TrimSpace(line)) > 0 {
			c, warning := rawChange(line, mandator)
			if warning != "" {
				warnings++
				if warnings <= maxLineWarnings {
					fmt.Fprintf(stderr, "publish: line %d: %s\n", lineNo, warning)
				}
			}
			chunk = append(chunk, c)
		}
		if len(chunk) == publishChunk || (errors.Is(readErr, io.EOF) && len(chunk) > 0) {
			if err := send(chunk); err != nil {
				return err
			}
			chunk = chunk[:0]
		}
		if errors.Is(readErr, io.EOF) {
			break
		}
	}
	if warnings > maxLineWarnings {
		fmt.Fprintf(stderr, "publish: %d more lines with warnings\n", warnings-maxLineWarnings)
	}
	return nil
}

// rawChange turns one NDJSON line into a publish: the mandator from data.mandator when it is a valid
// token (else mandator), the Nats-Msg-Id from the "id" member. A line that has no usable id, or is
// not JSON at all, is published with a generated id, and warning says so.
func rawChange(line []byte, mandator string) (c publisher.RawChange, warning string) {
	c = publisher.RawChange{Mandator: mandator, Body: bytes.Clone(line)}
	var ev struct {
		ID   json.RawMessage `json:"id"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		c.ID = generatedID()
		return c, fmt.Sprintf("not a JSON object; published as it is with generated Nats-Msg-Id %s", c.ID)
	}
	var warnings []string
	var id string
	if json.Unmarshal(ev.ID, &id) != nil || id == "" || strings.IndexFunc(id, unicode.IsControl) >= 0 {
		c.ID = generatedID()
		warnings = append(warnings, fmt.Sprintf("no usable \"id\"; published with generated Nats-Msg-Id %s", c.ID))
	} else {
		c.ID = id
	}
	var data struct {
		Mandator *string `json:"mandator"`
	}
	if json.Unmarshal(ev.Data, &data) == nil && data.Mandator != nil {
		if mandatorToken.MatchString(*data.Mandator) {
			c.Mandator = *data.Mandator
		} else {
			warnings = append(warnings, fmt.Sprintf("data.mandator %q is not a subject token; published for mandator %q", *data.Mandator, mandator))
		}
	}
	return c, strings.Join(warnings, "; ")
}

func generatedID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// subjectSummary names the subjects published to: one subject, a few, or a wildcard with a count.
func subjectSummary(prefix string, mandators map[string]bool) string {
	names := make([]string, 0, len(mandators))
	for m := range mandators {
		names = append(names, prefix+"."+m)
	}
	slices.Sort(names)
	switch {
	case len(names) == 0:
		return prefix + ".<mandator>"
	case len(names) <= 3:
		return strings.Join(names, ", ")
	default:
		return fmt.Sprintf("%s.* (%d mandators)", prefix, len(names))
	}
}

// progress prints a line on stderr every second, and at every 10 % when the total is known.
type progress struct {
	w      io.Writer
	quiet  bool
	total  int // 0: unknown
	began  time.Time
	last   time.Time
	decile int
}

func (p *progress) update(done int) {
	if p.quiet || done == p.total {
		return
	}
	now := time.Now()
	decile := 0
	if p.total > 0 {
		decile = done * 10 / p.total
	}
	if now.Sub(p.last) < time.Second && decile == p.decile {
		return
	}
	p.last, p.decile = now, decile
	rate := float64(done) / max(now.Sub(p.began).Seconds(), 1e-3)
	if p.total > 0 {
		fmt.Fprintf(p.w, "publish: %d/%d confirmed (%d%%), %.0f/s\n", done, p.total, done*100/p.total, rate)
	} else {
		fmt.Fprintf(p.w, "publish: %d confirmed, %.0f/s\n", done, rate)
	}
}

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/term"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// What dev prints: one short line per thing (an accepted batch, an outcome, an invalid event), in
// colour on a terminal. The details (JobIDs, every error message, the bridge's own log lines) are
// in the log file dev names, and in `watch --json`.

// devMaxError is how many runes of an error a dev line shows.
const devMaxError = 120

// palette colours text with ANSI escapes when on.
type palette struct{ on bool }

func (p palette) paint(code, s string) string {
	if !p.on || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}
func (p palette) green(s string) string  { return p.paint("32", s) }
func (p palette) red(s string) string    { return p.paint("31", s) }
func (p palette) yellow(s string) string { return p.paint("33", s) }
func (p palette) cyan(s string) string   { return p.paint("36", s) }
func (p palette) dim(s string) string    { return p.paint("2", s) }
func (p palette) bold(s string) string   { return p.paint("1", s) }

// useColor decides --color: "always", "never", or "auto" (colour when out is a terminal and
// NO_COLOR is unset or empty, see no-color.org).
func useColor(mode string, out io.Writer) (bool, error) {
	switch mode {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "auto":
		if os.Getenv("NO_COLOR") != "" {
			return false, nil
		}
		f, ok := out.(*os.File)
		return ok && term.IsTerminal(int(f.Fd())), nil
	}
	return false, fmt.Errorf("--color %q: want auto, always or never", mode)
}

// selfCommand is how the user can run this binary again: "lessonbridge" when that is on PATH and
// is this binary, "go run ./cmd/lessonbridge" when this is a binary `go run` (or `go test`) built,
// else its path.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "go run ./cmd/lessonbridge"
	}
	if p, err := exec.LookPath("lessonbridge"); err == nil {
		if a, b := canonical(p), canonical(exe); a == b {
			return "lessonbridge"
		}
	}
	if strings.Contains(filepath.ToSlash(exe), "/go-build") {
		return "go run ./cmd/lessonbridge"
	}
	return exe
}

func canonical(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	if a, err := filepath.Abs(p); err == nil {
		p = a
	}
	return p
}

// devAcceptedLine: 10:09:35 → demo create batch 12346 accepted: 37 lessons (37 events)
func devAcceptedLine(p palette, at time.Time, b consumer.BatchInfo) string {
	return fmt.Sprintf("%s %s %s %s batch %s accepted: %s (%s)", p.dim(clock(at)), p.cyan("→"), orDash(b.Mandator),
		orDash(b.Action), orDash(b.BatchID), plural(b.Lessons, "lesson", "lessons"), plural(b.Events, "event", "events"))
}

// devOutcomeLine renders an outcome, e.g.
//
//	10:09:36 ✔ demo create batch 12346 imported: 37 lessons (37 events, 3 polls)
//	10:09:36 ✘ annex create batch 12345 failed, import_failed (data): 3 events dead-lettered: Fehler: Ressource 'Raum 9.99' nicht gefunden ×3
func devOutcomeLine(p palette, o *schemas.Outcome) string {
	d := &o.Data
	at := o.Time
	if at.IsZero() {
		at = d.FinishedAt
	}
	lessons := d.LessonCount
	if lessons == 0 {
		lessons = len(d.LessonIDs)
	}
	head := fmt.Sprintf("%s %%s %s %s batch %s", p.dim(clock(at)), orDash(oneLine(d.Mandator)), orDash(oneLine(string(d.Action))), orDash(oneLine(d.BatchID)))
	if d.Status == schemas.StatusSucceeded {
		return fmt.Sprintf(head, p.green("✔")) + fmt.Sprintf(" imported: %s (%s, %s)", plural(lessons, "lesson", "lessons"),
			plural(len(d.EventIDs), "event", "events"), plural(d.Polls, "poll", "polls"))
	}
	var b strings.Builder
	b.WriteString(fmt.Sprintf(head, p.red("✘")))
	fmt.Fprintf(&b, " failed, %s (%s): %s dead-lettered", p.red(orDash(oneLine(d.Reason))), orDash(oneLine(d.ErrorClass)),
		plural(len(d.EventIDs), "event", "events"))
	if n := len(d.ResubmittedEventIDs); n > 0 {
		fmt.Fprintf(&b, ", %s resubmitted", plural(n, "event", "events"))
	}
	if s := summarizeErrors(d.ErrorMessages, devMaxError); s != "" {
		b.WriteString(": " + s)
	}
	return b.String()
}

// devDeadLetterLine renders a dead letter that no outcome line accounts for (an invalid event), e.g.
//
//	10:09:34 ☠ demo invalid_event (seq 8): data.start "08.03.2026 08:00" is not an RFC 3339 date-time
//
// and reports false for the dead letters of a failed batch, which its outcome line counts already.
func devDeadLetterLine(p palette, subject string, h nats.Header, at time.Time) (string, bool) {
	if h.Get(schemas.HeaderBatchID) != "" {
		return "", false
	}
	mandator := subject[strings.LastIndexByte(subject, '.')+1:]
	line := fmt.Sprintf("%s %s %s %s (seq %s)", p.dim(clock(at)), p.yellow("☠"), orDash(oneLine(mandator)),
		p.yellow(orDash(oneLine(h.Get(schemas.HeaderReason)))), orDash(oneLine(h.Get(schemas.HeaderStreamSeq))))
	if e := h.Get(schemas.HeaderError); e != "" {
		line += ": " + cut(oneLine(e), devMaxError)
	}
	return line, true
}

// errorDetail is the per-job part of a JobManager error message, e.g. "(JobID lb-..., LektionId A-1)".
var errorDetail = regexp.MustCompile(`\s*\((?:JobID|LektionId|delete|create|update)[^)]*\)`)

// summarizeErrors shortens a list of error messages to one line: messages that differ only in
// their JobID/LektionId details are counted ("×3"), distinct ones are joined with "; " up to about
// max runes, and what is left out is counted ("+2 more").
func summarizeErrors(msgs []string, max int) string {
	type group struct {
		text string
		n    int
	}
	var groups []*group
	byText := map[string]*group{}
	for _, m := range msgs {
		t := strings.TrimSpace(oneLine(errorDetail.ReplaceAllString(m, "")))
		if t == "" {
			continue
		}
		if g, ok := byText[t]; ok {
			g.n++
			continue
		}
		g := &group{text: t, n: 1}
		byText[t] = g
		groups = append(groups, g)
	}
	var parts []string
	used := 0
	for i, g := range groups {
		s := g.text
		if g.n > 1 {
			s += fmt.Sprintf(" ×%d", g.n)
		}
		if i > 0 && used+len([]rune(s)) > max {
			parts = append(parts, fmt.Sprintf("+%d more", len(groups)-i))
			break
		}
		if i == 0 {
			s = cut(s, max)
		}
		parts = append(parts, s)
		used += len([]rune(s)) + 2
	}
	return strings.Join(parts, "; ")
}

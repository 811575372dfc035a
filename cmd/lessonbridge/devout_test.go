package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/schemas"
)

func TestSummarizeErrors(t *testing.T) {
	same := []string{
		"Fehler: Ressource 'Raum 9.99' nicht gefunden (JobID lb-20261201-01a23114-c637-7295-89d5-562db73d82db, LektionId A-00001)",
		"Fehler: Ressource 'Raum 9.99' nicht gefunden (JobID lb-20261201-01a23114-c637-7295-89d5-562db73d82db, LektionId A-00002)",
		"Fehler: Ressource 'Raum 9.99' nicht gefunden (JobID lb-20261201-01a23114-c637-7295-89d5-562db73d82db, LektionId A-00003)",
	}
	assert.Equal(t, "Fehler: Ressource 'Raum 9.99' nicht gefunden ×3", summarizeErrors(same, 120))

	var many []string
	for _, r := range []string{"A", "B", "C", "D", "E", "F", "G", "H"} {
		many = append(many, "Fehler: Ressource 'Raum "+r+"' nicht gefunden (LektionId L-1)")
	}
	got := summarizeErrors(many, 120)
	assert.True(t, strings.HasPrefix(got, "Fehler: Ressource 'Raum A' nicht gefunden; Fehler: Ressource 'Raum B' nicht gefunden; "), got)
	assert.Regexp(t, `; \+\d more$`, got)
	assert.LessOrEqual(t, len([]rune(got)), 140)

	long := strings.Repeat("x", 500)
	assert.Equal(t, strings.Repeat("x", 120)+"…", summarizeErrors([]string{long}, 120))
	assert.Empty(t, summarizeErrors(nil, 120))
}

func TestDevLines(t *testing.T) {
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.Local)
	o := &schemas.Outcome{Time: at, Data: schemas.OutcomeData{Status: schemas.StatusFailed, Reason: schemas.ReasonImportFailed,
		ErrorClass: "data", Mandator: "annex", Action: "create", BatchID: "12345", EventIDs: []string{"e1", "e2"},
		ResubmittedEventIDs: []string{"e3"}, JobIDs: []string{strings.Repeat("j", 60), strings.Repeat("k", 60)},
		ErrorMessages: []string{"Fehler: X (LektionId A)", "Fehler: X (LektionId B)"}}}
	assert.Equal(t, "09:00:00 ✘ annex create batch 12345 failed, import_failed (data): 2 events dead-lettered, 1 event resubmitted: Fehler: X ×2",
		devOutcomeLine(palette{}, o), "no JobIDs on the line")
	colored := devOutcomeLine(palette{on: true}, o)
	assert.Contains(t, colored, "\x1b[31m✘\x1b[0m")

	h := nats.Header{}
	h.Set(schemas.HeaderReason, schemas.ReasonInvalidEvent)
	h.Set(schemas.HeaderStreamSeq, "8")
	h.Set(schemas.HeaderError, "data.lessonId is required")
	line, ok := devDeadLetterLine(palette{}, "lessons.deadletter.demo", h, at)
	require.True(t, ok)
	assert.Equal(t, "09:00:00 ☠ demo invalid_event (seq 8): data.lessonId is required", line)
	h.Set(schemas.HeaderBatchID, "12345")
	_, ok = devDeadLetterLine(palette{}, "lessons.deadletter.demo", h, at)
	assert.False(t, ok, "a failed batch's dead letter is counted by its outcome line")
}

func TestUseColor(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	require.NoError(t, err)
	defer f.Close()
	t.Setenv("NO_COLOR", "")
	on, err := useColor("auto", f)
	require.NoError(t, err)
	assert.False(t, on, "a file is no terminal")
	on, _ = useColor("always", f)
	assert.True(t, on)
	on, _ = useColor("never", os.Stdout)
	assert.False(t, on)
	t.Setenv("NO_COLOR", "1")
	on, _ = useColor("auto", os.Stdout)
	assert.False(t, on, "NO_COLOR turns colours off even on a terminal")
	_, err = useColor("pink", f)
	assert.ErrorContains(t, err, `--color "pink"`)
}

func TestSelfCommandUnderGoTest(t *testing.T) {
	// This test binary was built by `go test` into a go-build directory, like a `go run` binary.
	assert.Equal(t, "go run ./cmd/lessonbridge", selfCommand())
}

// TestDevLogger: every entry goes to the file; on the terminal only errors that are not about a
// batch (the outcome line reports those), one short line each.
func TestDevLogger(t *testing.T) {
	file := &lockedBuffer{}
	var shown []string
	log, err := newDevLogger("info", "console", file, func(msg string) { shown = append(shown, msg) })
	require.NoError(t, err)
	log.Info("bridge started")
	log.Warn("invalid event dead-lettered", zap.Uint64("streamSeq", 1))
	log.Error("resume pulling", zap.Error(assert.AnError))
	log.With(zap.String("batchKey", "b-1")).Error("batch failed", zap.Strings("errorMessages", []string{strings.Repeat("x", 900)}))
	log.Error("poll timeout", zap.String("batchId", "12345"))
	log.Error(strings.Repeat("y", 900))
	require.NoError(t, log.Sync())
	assert.Equal(t, []string{"resume pulling: " + assert.AnError.Error(), strings.Repeat("y", 200) + "…"}, shown)
	for _, msg := range []string{"bridge started", "invalid event dead-lettered", "resume pulling", "batch failed", "poll timeout"} {
		assert.Contains(t, file.String(), msg)
	}
}

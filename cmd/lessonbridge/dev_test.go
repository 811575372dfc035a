package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// TestRunDev runs the README's first command with --exit-when-done: the whole sample workload is
// settled (every event accounted for by an outcome or an invalid_event dead letter), the summary
// says so, and everything is shut down and cleaned up afterwards. What it prints is one short line
// per thing: no bridge log lines (they are in the log file it names), no dead letter twice, the
// failed batch's repeated error counted instead of repeated, and hints a `go run` user can run.
func TestRunDev(t *testing.T) {
	clearRunEnv(t)
	leaks := goleak.IgnoreCurrent()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	logFile := filepath.Join(t.TempDir(), "dev.log")
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	err = runDev(ctx, []string{"--exit-when-done", "--events", "30", "--http-addr", busy.Addr().String(), "--log-file", logFile}, stdout, stderr)
	out := stdout.String()
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out, stderr)
	require.NoError(t, ctx.Err(), "dev finished before the deadline")

	m := regexp.MustCompile(`(\d+) events: (\d+) imported in (\d+) batch(?:es)?, (\d+) failed import in 1 batch, (\d+) dead-lettered as invalid \(all settled in`).
		FindStringSubmatch(out)
	require.NotNil(t, m, "no summary line in\n%s", out)
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	assert.Equal(t, 30, n(1))
	assert.Equal(t, devBrokenEvents, n(4), "the batch with the unknown room failed")
	assert.Equal(t, 2, n(5), "round(24*0.1) sample events are invalid")
	assert.Equal(t, 30, n(2)+n(4)+n(5))
	assert.Positive(t, n(3))
	assert.Contains(t, out, fmt.Sprintf("; failure isolation: %d imported after isolating %d bad ones", devAnnexGood, devBrokenEvents),
		"the good lessons of the failing batch are imported by a follow-up batch")

	// The printed lines account for every event on their own, each once: the events of each outcome
	// line plus one line per invalid_event dead letter (the failed batch's dead letters are counted
	// by its outcome line, not printed again).
	settled, deadLetterLines := 0, 0
	okRE := regexp.MustCompile(`✔ \S+ \S+ batch \S+ imported: \d+ lessons? \((\d+) events?, `)
	failRE := regexp.MustCompile(`✘ \S+ \S+ batch \S+ failed, import_failed \(data\): (\d+) events? dead-lettered, 3 events resubmitted: (.*)$`)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		assert.LessOrEqual(t, utf8.RuneCountInString(line), 200, "a long line: %s", line)
		assert.NotContains(t, line, `{"`, "no JSON on the terminal")
		switch {
		case strings.Contains(line, "✔"):
			em := okRE.FindStringSubmatch(line)
			require.NotNil(t, em, line)
			k, _ := strconv.Atoi(em[1])
			settled += k
		case strings.Contains(line, "✘"):
			em := failRE.FindStringSubmatch(line)
			require.NotNil(t, em, line)
			k, _ := strconv.Atoi(em[1])
			settled += k
			assert.Equal(t, "Fehler: Ressource 'Raum 9.99' nicht gefunden ×3", em[2], "the same error three times is counted, not repeated")
		case strings.Contains(line, "☠"):
			deadLetterLines++
			assert.Contains(t, line, "invalid_event", "only dead letters no outcome line counts are printed")
			settled++
		}
	}
	assert.Equal(t, 30, settled, out)
	assert.Equal(t, n(5), deadLetterLines, "each invalid event's dead letter printed once")
	assert.Contains(t, out, "batch 12345 accepted:")
	assert.Contains(t, out, "was busy)", "a busy --http-addr falls back to a free port")
	assert.NotContains(t, out, "\x1b[", "no colours when stdout is not a terminal")

	// The hints are commands this test binary's user can run (a `go test`/`go run` build).
	assert.Regexp(t, `(?m)^    go run \./cmd/lessonbridge watch --nats-url nats://\S+ --deadletter$`, out)
	assert.Contains(t, out, "go install ./cmd/lessonbridge")

	// The bridge's own log lines are in the named file, not on the terminal.
	assert.Contains(t, out, "bridge log  "+logFile)
	assert.Empty(t, stderr.String())
	logged, err := os.ReadFile(logFile)
	require.NoError(t, err)
	assert.Contains(t, string(logged), "invalid event dead-lettered")
	assert.Contains(t, string(logged), "batch failed")
	assert.NotContains(t, out, "invalid event dead-lettered")

	// Everything is gone: the store directory and the NATS server.
	dir := regexp.MustCompile(`store (\S+), removed at exit`).FindStringSubmatch(out)
	require.NotNil(t, dir, out)
	_, err = os.Stat(dir[1])
	assert.True(t, os.IsNotExist(err), "store %s still exists", dir[1])
	url := regexp.MustCompile(`NATS\s+(nats://\S+)`).FindStringSubmatch(out)
	require.NotNil(t, url, out)
	_, err = nats.Connect(url[1], nats.Timeout(500*time.Millisecond))
	assert.Error(t, err, "the embedded NATS server is shut down")
	goleak.VerifyNone(t, leaks)
}

// TestRunDevOAuth2 runs dev with the simulator's OAuth2 token endpoint and one-second tokens: the
// workload is settled with tokens the bridge got (and replaced) from the endpoint.
func TestRunDevOAuth2(t *testing.T) {
	clearRunEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	stdout := &lockedBuffer{}
	err := runDev(ctx, []string{"--exit-when-done", "--events", "12", "--oauth2", "--oauth2-token-ttl", "1s",
		"--http-addr", "127.0.0.1:0", "--log-file", filepath.Join(t.TempDir(), "dev.log")}, stdout, &lockedBuffer{})
	out := stdout.String()
	require.NoError(t, err, out)
	sum := regexp.MustCompile(`12 events: (\d+) imported in \d+ batch(?:es)?, 3 failed import in 1 batch, (\d+) dead-lettered as invalid`).FindStringSubmatch(out)
	require.NotNil(t, sum, out)
	imported, _ := strconv.Atoi(sum[1])
	invalid, _ := strconv.Atoi(sum[2])
	assert.Equal(t, 12, imported+3+invalid)
	assert.Contains(t, out, "OAuth2 tokens from http://127.0.0.1:")
	m := regexp.MustCompile(`OAuth2: the token endpoint issued (\d+) tokens?`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	issued, _ := strconv.Atoi(m[1])
	assert.GreaterOrEqual(t, issued, 2, "the workload takes seconds: one-second tokens are replaced")
	assert.NotContains(t, out, devOAuth2Secret)
}

func TestRunDevFlags(t *testing.T) {
	clearRunEnv(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--events", "-1"}, "--events -1 is negative"},
		{[]string{"--fail-rate", "2"}, "--fail-rate 2 is not within 0..1"},
		{[]string{"--mandator", "a b"}, `--mandator "a b"`},
		{[]string{"--log-level", "loud"}, `log level "loud"`},
		{[]string{"--color", "pink"}, `--color "pink": want auto, always or never`},
		{[]string{"--oauth2", "--oauth2-token-ttl", "500ms"}, "--oauth2-token-ttl 500ms: at least 1s"},
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where dev would create its log file
	for _, tt := range tests {
		err := runDev(context.Background(), tt.args, &lockedBuffer{}, &lockedBuffer{})
		require.Error(t, err, tt.args)
		assert.Contains(t, err.Error(), tt.want)
	}
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	assert.Empty(t, left, "a refused start leaves no log file behind")
}

// TestDevWorkload checks that the simulator knows every room of the sample (so only the annex batch
// fails import) and that the annex events are valid creations for their own mandator.
func TestDevWorkload(t *testing.T) {
	changes, annex, broken := devWorkload(200, "demo", 3, 0)
	require.Len(t, changes, 200)
	assert.Equal(t, devBrokenEvents, broken)
	assert.Equal(t, "annex", annex)
	annexN, unknown := 0, 0
	for _, c := range changes {
		ev, err := schemas.Decode(c.Body, c.Mandator)
		require.NoError(t, err, string(c.Body))
		if ev.Type == schemas.TypeLessonDeleted {
			continue
		}
		if c.Mandator == annex {
			annexN++
			if ev.Data.Resource == devUnknownResource {
				unknown++
			}
			assert.Equal(t, "annex-move", ev.Data.Group, "one job: good and bad lessons meet in one batch")
			assert.Equal(t, schemas.TypeLessonCreated, ev.Type)
		} else {
			assert.True(t, slices.Contains(devResources, ev.Data.Resource), "room %q unknown to the dev simulator", ev.Data.Resource)
		}
	}

	assert.Equal(t, devBrokenEvents+devAnnexGood, annexN)
	assert.Equal(t, devBrokenEvents, unknown)

	small, _, broken := devWorkload(5, "annex", 1, 0)
	assert.Len(t, small, 5)
	assert.Zero(t, broken, "a small workload has no failing batch")
	for _, c := range small {
		assert.Equal(t, "annex", c.Mandator)
	}
	_, annex2, _ := devWorkload(20, "annex", 1, 0)
	assert.Equal(t, "annex-2", annex2, "the failing batch never shares the sample's mandator")
}

// TestDevTrackerSettlesByOutcomeAndBody feeds the tracker directly: outcomes of others' events are
// not counted, invalid events are recognised by their bytes, and the summary is printed once.
func TestDevTrackerSettlesByOutcomeAndBody(t *testing.T) {
	changes := []publisher.RawChange{
		{Mandator: "demo", ID: "e1", Body: []byte(`{"id":"e1"}`)},
		{Mandator: "demo", ID: "e2", Body: []byte(`{"id":"e2"}`)},
		{Mandator: "demo", ID: "e3", Body: []byte(`not json`)},
	}
	out := &lockedBuffer{}
	tr := newDevTracker(&linePrinter{w: out}, changes)
	outcome := func(status, reason string, ids ...string) []byte {
		b, err := json.Marshal(schemas.Outcome{Data: schemas.OutcomeData{Status: status, Reason: reason, Mandator: "demo", EventIDs: ids}})
		require.NoError(t, err)
		return b
	}
	tr.settleOutcome(outcome(schemas.StatusSucceeded, "", "e1", "other"))
	tr.settleDeadLetter(schemas.ReasonImportFailed, []byte(`{"id":"e2"}`))
	tr.settleDeadLetter(schemas.ReasonInvalidEvent, []byte(`unrelated`))
	select {
	case <-tr.done:
		t.Fatal("done before every event was settled")
	default:
	}
	tr.settleOutcome(outcome(schemas.StatusFailed, schemas.ReasonPollTimeout, "e2"))
	tr.settleDeadLetter(schemas.ReasonInvalidEvent, []byte(`not json`))
	select {
	case <-tr.done:
	default:
		t.Fatal("not done after every event was settled")
	}
	tr.settleDeadLetter(schemas.ReasonInvalidEvent, []byte(`not json`))
	assert.Equal(t, 1, strings.Count(out.String(), "3 events: "), out.String())
	assert.Contains(t, out.String(), "3 events: 1 imported in 1 batch, 1 failed (poll_timeout) in 1 batch, 1 dead-lettered as invalid")
}

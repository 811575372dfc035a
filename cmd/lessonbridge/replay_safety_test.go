package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// rpDeadLetters stores n import_failed dead letters of zh-kanti, of input sequences from first on.
func rpDeadLetters(t *testing.T, js jetstream.JetStream, first, n int) {
	t.Helper()
	pub, err := publisher.New(js)
	require.NoError(t, err)
	for i := range n {
		_, err := pub.PublishDeadLetter(t.Context(), publisher.DeadLetter{Mandator: "zh-kanti",
			Body: []byte(fmt.Sprintf(`{"id":"e%d"}`, first+i)), Reason: schemas.ReasonImportFailed, BatchID: "12345",
			Error: "Fehler", Subject: "lessons.changes.zh-kanti", StreamSeq: uint64(first + i), StoredAt: time.Now()})
		require.NoError(t, err)
	}
}

// withTerminal makes replay believe it runs on a terminal that answers answer.
func withTerminal(t *testing.T, terminal bool, answer string) {
	t.Helper()
	in, isTerm := replayInput, replayInputIsTerminal
	t.Cleanup(func() { replayInput, replayInputIsTerminal = in, isTerm })
	replayInput = strings.NewReader(answer)
	replayInputIsTerminal = func() bool { return terminal }
}

// Replaying twice republishes once: replayed dead letters are marked and skipped (before, a dry run
// listed them again and a second run imported them again); --again repeats them.
func TestReplayTwiceIsSafe(t *testing.T) {
	url, js := rpServer(t)
	rpDeadLetters(t, js, 100, 3)

	out, _, err := rpReplay(t, url)
	require.NoError(t, err)
	assert.Contains(t, out, "replayed 3 of 3 dead letters (0 skipped by filter, 0 errors)\n")
	require.Len(t, rpMsgs(t, js, "LESSONS", ""), 3)
	kv, err := js.KeyValue(t.Context(), replayMarksBucket)
	require.NoError(t, err)
	keys, err := kv.ListKeys(t.Context())
	require.NoError(t, err)
	var got []string
	for k := range keys.Keys() {
		got = append(got, k)
	}
	assert.ElementsMatch(t, []string{"LESSON_DEADLETTER.1", "LESSON_DEADLETTER.2", "LESSON_DEADLETTER.3"}, got)

	out, _, err = rpReplay(t, url, "--dry-run")
	require.NoError(t, err)
	assert.Equal(t, "would replay 0 of 3 dead letters (0 skipped by filter, 0 errors, 3 already replayed (--again repeats them))\n"+
		"  import_failed: 0 to replay, 0 skipped, 0 errors, 3 already replayed (--again repeats them)\n", out, "no line per dead letter")

	out, _, err = rpReplay(t, url)
	require.NoError(t, err)
	assert.Contains(t, out, "replayed 0 of 3 dead letters (0 skipped by filter, 0 errors, 3 already replayed (--again repeats them))")
	assert.Len(t, rpMsgs(t, js, "LESSONS", ""), 3, "nothing republished the second time")

	// A new dead letter is replayed; the marked ones stay skipped.
	rpDeadLetters(t, js, 200, 1)
	out, _, err = rpReplay(t, url)
	require.NoError(t, err)
	assert.Contains(t, out, "replayed 1 of 4 dead letters (0 skipped by filter, 0 errors, 3 already replayed")
	assert.Len(t, rpMsgs(t, js, "LESSONS", ""), 4)

	out, _, err = rpReplay(t, url, "--again")
	require.NoError(t, err)
	assert.Contains(t, out, "replayed 4 of 4 dead letters (0 skipped by filter, 0 errors)\n")
	assert.Len(t, rpMsgs(t, js, "LESSONS", ""), 8)

	// A re-created stream reuses sequence numbers: the old marks do not match its dead letters.
	require.NoError(t, js.DeleteStream(t.Context(), "LESSON_DEADLETTER"))
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "LESSON_DEADLETTER", Subjects: []string{"lessons.deadletter.>"},
		Storage: jetstream.MemoryStorage})
	require.NoError(t, err)
	rpDeadLetters(t, js, 300, 1)
	out, _, err = rpReplay(t, url)
	require.NoError(t, err)
	assert.Contains(t, out, "replayed 1 of 1 dead letters (0 skipped by filter, 0 errors)\n")
}

// On a terminal replay asks first; without one it refuses unless --yes or --dry-run.
func TestReplayConfirmation(t *testing.T) {
	url, js := rpServer(t)
	rpDeadLetters(t, js, 100, 2)
	run := func(args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		var out, errOut lockedBuffer
		err := runReplay(ctx, append([]string{"--nats-url", url}, args...), &out, &errOut)
		return out.String(), errOut.String(), err
	}

	withTerminal(t, false, "")
	_, _, err := run()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "standard input is not a terminal")
	assert.Contains(t, err.Error(), "pass --yes")
	out, _, err := run("--dry-run")
	require.NoError(t, err)
	assert.Contains(t, out, "would replay 2 of 2")
	assert.Empty(t, rpMsgs(t, js, "LESSONS", ""))

	withTerminal(t, true, "n\n")
	_, errOut, err := run()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not confirmed; nothing was republished")
	assert.Contains(t, errOut, "replay: republish 2 dead letters (import_failed 2) to lessons.changes.*? [y/N] ")
	assert.Empty(t, rpMsgs(t, js, "LESSONS", ""))

	withTerminal(t, true, "")
	_, _, err = run()
	require.Error(t, err, "no answer (EOF) is no")
	assert.Empty(t, rpMsgs(t, js, "LESSONS", ""))

	withTerminal(t, true, "yes\n")
	out, _, err = run("--limit", "1")
	require.NoError(t, err)
	assert.Contains(t, out, "replayed 1 of 2 dead letters")
	assert.Len(t, rpMsgs(t, js, "LESSONS", ""), 1)

	// The question counts only what is left; with nothing left there is no question.
	withTerminal(t, true, "y\n")
	_, errOut, err = run()
	require.NoError(t, err)
	assert.Contains(t, errOut, "republish 1 dead letters (import_failed 1) to lessons.changes.*; 1 replayed before are skipped")
	withTerminal(t, true, "")
	out, errOut, err = run()
	require.NoError(t, err)
	assert.NotContains(t, errOut, "[y/N]")
	assert.Contains(t, out, "replayed 0 of 2 dead letters")
	assert.Len(t, rpMsgs(t, js, "LESSONS", ""), 2)
}

// replay fails at once when NATS refuses (before, it retried for 15 s).
func TestReplayFailsFastWhenNATSRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	began := time.Now()
	err := runReplay(ctx, []string{"--nats-url", "nats://127.0.0.1:1", "--yes"}, &lockedBuffer{}, &lockedBuffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nats connect nats://127.0.0.1:1")
	assert.Less(t, time.Since(began), 5*time.Second)
}

// Dead letters of events whose subject names no valid mandator are stored under
// lessons.deadletter._invalid.mandator (contract section 5): their token is _invalid, not
// "mandator" (before, replay took the last token and called the mandator "mandator").
func TestReplayInvalidMandatorSubject(t *testing.T) {
	url, js := rpServer(t)
	msg := &nats.Msg{Subject: "lessons.deadletter._invalid.mandator", Data: []byte(`{"id":"x"}`), Header: nats.Header{}}
	msg.Header.Set(schemas.HeaderReason, schemas.ReasonInvalidEvent)
	msg.Header.Set(schemas.HeaderError, "subject names no valid mandator")
	msg.Header.Set(schemas.HeaderSubject, "lessons.changes.a.b")
	_, err := js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)

	out, errOut, err := rpReplay(t, url, "--dry-run")
	require.NoError(t, err)
	assert.Contains(t, out, "would replay 0 of 1 dead letters (0 skipped by filter, 0 errors, 1 without a valid mandator)")
	assert.Contains(t, errOut, "seq 1 (lessons.deadletter._invalid.mandator, reason invalid_event) skipped: it came from "+
		"lessons.changes.a.b, which names no valid mandator; select it with --mandator _invalid")

	out, _, err = rpReplay(t, url, "--mandator", "_invalid")
	require.NoError(t, err)
	assert.Contains(t, out, "replayed 1 of 1 dead letters")
	msgs := rpMsgs(t, js, "LESSONS", "")
	require.Len(t, msgs, 1)
	assert.Equal(t, "lessons.changes.a.b", msgs[0].Subject)

	line := formatDeadLetter("lessons.deadletter._invalid.mandator", msg.Header, time.Now())
	assert.Contains(t, line, "☠ deadletter _invalid reason=invalid_event")
}

package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
)

// pwServer starts a server with the contract's three streams and returns its URL and a client.
func pwServer(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	s := natstest.Start(t)
	_, js := s.Connect()
	for name, subj := range map[string]string{
		"LESSONS":           "lessons.changes.>",
		"LESSON_OUTCOMES":   "lessons.outcomes.>",
		"LESSON_DEADLETTER": "lessons.deadletter.>",
	} {
		_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Storage: jetstream.MemoryStorage})
		require.NoError(t, err)
	}
	return s.URL(), js
}

// pwMsgs returns all messages of a stream in order.
func pwMsgs(t *testing.T, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	return natstest.StreamMsgs(t, js, stream)
}

func TestPublishSample(t *testing.T) {
	url, js := pwServer(t)
	var stdout, stderr lockedBuffer
	err := runPublish(t.Context(), []string{"--nats-url", url, "--sample", "3000", "--fail-rate", "0.1", "--mandator", "zh-kanti", "--window", "64"}, &stdout, &stderr)
	require.NoError(t, err)

	assert.Regexp(t, `^published 3000 events \(0 duplicates\) to lessons\.changes\.zh-kanti in \S+\n$`, stdout.String())
	msgs := pwMsgs(t, js, "LESSONS")
	require.Len(t, msgs, 3000)
	ids := map[string]bool{}
	valid := 0
	for _, m := range msgs {
		assert.Equal(t, "lessons.changes.zh-kanti", m.Subject)
		id := m.Header.Get(jetstream.MsgIDHeader)
		ids[id] = true
		var ev struct{ ID string }
		if json.Unmarshal(m.Data, &ev) == nil && ev.ID == id {
			valid++
		}
	}
	assert.Len(t, ids, 3000, "every event has its own Nats-Msg-Id")
	assert.Greater(t, valid, 2900, "the id header is the event's id (only non-JSON bodies differ)")
	assert.Contains(t, stderr.String(), "(50%)", "progress at every 10 %")
}

func TestPublishNDJSON(t *testing.T) {
	url, js := pwServer(t)
	lines := []string{
		`{"specversion":"1.0","id":"ev-1","source":"/t","type":"lesson.created","data":{"lessonId":"L-1"}}`,
		`{"specversion":"1.0","id":"ev-2","source":"/t","type":"lesson.deleted","data":{"lessonId":"L-2","mandator":"zh-kanti"}}`,
		``,
		`{"specversion":"1.0","source":"/t","type":"lesson.deleted","data":{"lessonId":"L-3"}}`,
		`this is not JSON {`,
		`{"specversion":"1.0","id":"ev-5","source":"/t","type":"lesson.deleted","data":{"lessonId":"L-5","mandator":"bad.mandator"}}` + "\r",
	}
	file := filepath.Join(t.TempDir(), "events.ndjson")
	require.NoError(t, os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600))

	var stdout, stderr lockedBuffer
	require.NoError(t, runPublish(t.Context(), []string{"--nats-url", url, "--file", file, "--quiet"}, &stdout, &stderr))
	assert.Regexp(t, `^published 5 events \(0 duplicates\) to lessons\.changes\.demo, lessons\.changes\.zh-kanti in `, stdout.String())

	msgs := pwMsgs(t, js, "LESSONS")
	require.Len(t, msgs, 5)
	tests := []struct {
		subject, id, body string
	}{
		{"lessons.changes.demo", "ev-1", lines[0]},
		{"lessons.changes.zh-kanti", "ev-2", lines[1]},
		{"lessons.changes.demo", "", lines[3]},
		{"lessons.changes.demo", "", lines[4]},
		{"lessons.changes.demo", "ev-5", strings.TrimSuffix(lines[5], "\r")},
	}
	for i, tt := range tests {
		assert.Equal(t, tt.subject, msgs[i].Subject, "message %d", i)
		assert.Equal(t, tt.body, string(msgs[i].Data), "message %d", i)
		id := msgs[i].Header.Get(jetstream.MsgIDHeader)
		if tt.id == "" {
			assert.NotEmpty(t, id, "message %d gets a generated id", i)
			assert.Contains(t, stderr.String(), id, "the generated id is reported")
		} else {
			assert.Equal(t, tt.id, id, "message %d", i)
		}
	}
	assert.Contains(t, stderr.String(), `line 4: no usable "id"`)
	assert.Contains(t, stderr.String(), "line 5: not a JSON object")
	assert.Contains(t, stderr.String(), `line 6: data.mandator "bad.mandator" is not a subject token`)
	assert.NotContains(t, stderr.String(), "confirmed", "--quiet: no progress")

	// The same file again: the events with ids are de-duplicated, the others get new ids.
	stdout = lockedBuffer{}
	require.NoError(t, runPublish(t.Context(), []string{"--nats-url", url, "--file", file, "--quiet"}, &stdout, &stderr))
	assert.Contains(t, stdout.String(), "published 5 events (3 duplicates)")
	assert.Len(t, pwMsgs(t, js, "LESSONS"), 7)
}

func TestPublishErrors(t *testing.T) {
	url, js := pwServer(t)
	bare := natstest.Start(t) // JetStream without streams
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad mandator", []string{"--nats-url", url, "--sample", "5", "--mandator", "a.b"}, `"a.b"`},
		{"sample and file", []string{"--nats-url", url, "--sample", "5", "--file", "x"}, "exclude each other"},
		{"fail rate", []string{"--nats-url", url, "--sample", "5", "--fail-rate", "1.5"}, "--fail-rate"},
		{"missing file", []string{"--nats-url", url, "--file", filepath.Join(t.TempDir(), "none")}, "no such file"},
		{"no server", []string{"--nats-url", "nats://127.0.0.1:1", "--sample", "5"}, "connect"},
		{"no stream", []string{"--nats-url", bare.URL(), "--sample", "5"}, "no response from stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var stdout, stderr lockedBuffer
			err := runPublish(ctx, tt.args, &stdout, &stderr)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Empty(t, stdout.String())
		})
	}
	assert.Empty(t, pwMsgs(t, js, "LESSONS"))
}

func TestRawChange(t *testing.T) {
	tests := []struct {
		name, line, mandator, id, warning string
	}{
		{"plain", `{"id":"a","data":{}}`, "demo", "a", ""},
		{"data.mandator", `{"id":"a","data":{"mandator":"m1"}}`, "m1", "a", ""},
		{"numeric id", `{"id":7,"data":{}}`, "demo", "", `no usable "id"`},
		{"empty id", `{"id":"","data":{}}`, "demo", "", `no usable "id"`},
		{"newline in id", `{"id":"a\nb"}`, "demo", "", `no usable "id"`},
		{"array", `[1,2]`, "demo", "", "not a JSON object"},
		{"data not an object", `{"id":"a","data":"x"}`, "demo", "a", ""},
		{"wildcard data.mandator", `{"id":"a","data":{"mandator":"*"}}`, "demo", "a", `data.mandator "*"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, warning := rawChange([]byte(tt.line), "demo")
			assert.Equal(t, tt.mandator, c.Mandator)
			assert.Equal(t, tt.line, string(c.Body))
			if tt.id != "" {
				assert.Equal(t, tt.id, c.ID)
			} else {
				assert.NotEmpty(t, c.ID)
			}
			if tt.warning == "" {
				assert.Empty(t, warning)
			} else {
				assert.Contains(t, warning, tt.warning)
			}
		})
	}
}

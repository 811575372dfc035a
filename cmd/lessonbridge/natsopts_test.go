package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// securedServer starts a JetStream server that only admits user "bridge" with password "s3cret",
// with the contract's three streams, and returns its URL and an authenticated client.
func securedServer(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true, Username: "bridge", Password: "s3cret"})
	require.NoError(t, err)
	go s.Start()
	require.True(t, s.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("bridge", "s3cret"))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for name, subj := range map[string]string{"LESSONS": "lessons.changes.>", "LESSON_OUTCOMES": "lessons.outcomes.>",
		"LESSON_DEADLETTER": "lessons.deadletter.>"} {
		_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Storage: jetstream.MemoryStorage})
		require.NoError(t, err)
	}
	return s.ClientURL(), js
}

// writeNATSContext writes a NATS CLI context NAME into a fresh $XDG_CONFIG_HOME.
func writeNATSContext(t *testing.T, name string, ctx map[string]any) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", home)
	dir := filepath.Join(home, "nats", "context")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	b, err := json.Marshal(ctx)
	require.NoError(t, err)
	path := filepath.Join(dir, name+".json")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return path
}

// Every command that talks to NATS takes the same connection options, a NATS CLI context among
// them. Before, publish and watch knew only --nats-url and failed against a secured server.
func TestNATSOptionsEveryCommand(t *testing.T) {
	clearRunEnv(t)
	url, js := securedServer(t)
	ctxPath := writeNATSContext(t, "school", map[string]any{"url": url, "user": "bridge", "password": "s3cret", "description": "test"})

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	// Without credentials the tools fail at once, naming the reason.
	began := time.Now()
	err := runPublish(ctx, []string{"--nats-url", url, "--sample", "1", "--quiet"}, &lockedBuffer{}, &lockedBuffer{})
	require.Error(t, err)
	assert.Contains(t, strings.ToLower(err.Error()), "authorization violation")
	err = runReplay(ctx, []string{"--nats-url", url, "--dry-run"}, &lockedBuffer{}, &lockedBuffer{})
	require.Error(t, err)
	assert.Contains(t, strings.ToLower(err.Error()), "authorization violation")
	assert.Less(t, time.Since(began), natsDialTimeout, "refused connections fail fast, not after retries")

	// User and password flags.
	var out lockedBuffer
	require.NoError(t, runPublish(ctx, []string{"--nats-url", url, "--nats-user", "bridge", "--nats-password", "s3cret",
		"--sample", "2", "--quiet", "--mandator", "zh-kanti"}, &out, &lockedBuffer{}))
	assert.Contains(t, out.String(), "published 2 events")

	// The context by name, by NATS_CONTEXT and by path.
	out = lockedBuffer{}
	require.NoError(t, runPublish(ctx, []string{"--context", "school", "--sample", "1", "--quiet", "--mandator", "zh-kanti"}, &out, &lockedBuffer{}))
	assert.Contains(t, out.String(), "published 1 events")
	t.Setenv("NATS_CONTEXT", "school")
	require.NoError(t, runPublish(ctx, []string{"--sample", "1", "--quiet", "--mandator", "zh-kanti"}, &lockedBuffer{}, &lockedBuffer{}))
	require.NoError(t, os.Unsetenv("NATS_CONTEXT"))
	require.NoError(t, runPublish(ctx, []string{"--context", ctxPath, "--sample", "1", "--quiet", "--mandator", "zh-kanti"}, &lockedBuffer{}, &lockedBuffer{}))
	assert.Len(t, pwMsgs(t, js, "LESSONS"), 5)

	// watch and replay with the context.
	p, err := publisher.New(js)
	require.NoError(t, err)
	o := pwOutcome("o-ctx", "zh-kanti", schemas.StatusSucceeded)
	_, err = p.PublishOutcome(ctx, o)
	require.NoError(t, err)
	stdout, _, stop := pwWatch(t, []string{"--context", "school", "--since", "all"})
	require.Eventually(t, func() bool { return len(pwLines(stdout)) >= 1 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, stop())
	assert.Equal(t, []string{formatOutcome(o)}, pwLines(stdout))
	out = lockedBuffer{}
	require.NoError(t, runReplay(ctx, []string{"--context", "school", "--dry-run"}, &out, &lockedBuffer{}))
	assert.Contains(t, out.String(), "would replay 0 of 0 dead letters")

	// run resolves the same options.
	s, errs := parseRunFlags(t, "--context", "school", "--jobmanager-url", "http://jm").settings(osFS{})
	require.Empty(t, errs)
	assert.Equal(t, url, s.NATS.URL)
	assert.Equal(t, "context school: user bridge", s.NATS.authLabel())
}

func TestNATSContextMerging(t *testing.T) {
	clearRunEnv(t)
	dir := t.TempDir()
	creds := filepath.Join(dir, "user.creds")
	ca := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(creds, []byte("creds"), 0o600))
	require.NoError(t, os.WriteFile(ca, selfSignedPEM(t), 0o600))
	t.Setenv("CREDS_DIR", dir)
	writeNATSContext(t, "prod", map[string]any{"url": "nats://a:4222,nats://b:4222", "creds": "$CREDS_DIR/user.creds",
		"ca": ca, "jetstream_domain": "hub"})
	settings := func(args ...string) (natsSettings, []string) {
		fs := newFlagSet("watch", &strings.Builder{})
		f := registerNATSFlags(fs)
		require.NoError(t, parseFlags(fs, args, nil))
		s, errs := f.settings("watch", osFS{})
		return s, errorTexts(errs)
	}

	s, errs := settings("--context", "prod")
	require.Empty(t, errs)
	assert.Equal(t, "nats://a:4222,nats://b:4222", s.URL)
	assert.Equal(t, creds, s.Creds, "$VARIABLES are expanded in paths")
	assert.Equal(t, ca, s.CAFile)
	assert.Equal(t, "hub", s.natsCtx.JSDomain)

	// Explicit flags win field by field; the same kind of authentication replaces the context's.
	other := filepath.Join(dir, "other.creds")
	require.NoError(t, os.WriteFile(other, []byte("creds"), 0o600))
	t.Setenv("LESSONBRIDGE_NATS_URL", "nats://c:4222")
	s, errs = settings("--context", "prod", "--nats-creds", other)
	require.Empty(t, errs)
	assert.Equal(t, "nats://c:4222", s.URL)
	assert.Equal(t, other, s.Creds)
	require.NoError(t, os.Unsetenv("LESSONBRIDGE_NATS_URL"))

	tests := []struct {
		name string
		args []string
		ctx  map[string]any
		want string
	}{
		{"another kind of authentication", []string{"--context", "prod", "--nats-token", "t"}, nil,
			`--nats-token (LESSONBRIDGE_NATS_TOKEN) "(set)": context "prod" authenticates with creds; give --nats-creds to replace it, or no --context`},
		{"unknown context", []string{"--context", "nope"}, nil,
			`--context (LESSONBRIDGE_CONTEXT, NATS_CONTEXT) "nope": no such NATS context (looked for `},
		{"bad name", []string{"--context", "a b"}, nil, `--context (LESSONBRIDGE_CONTEXT, NATS_CONTEXT) "a b": is not a context name`},
		{"unsupported field", []string{"--context", "proxy"}, map[string]any{"socks_proxy": "x:1080"},
			`sets "socks_proxy", which lessonbridge does not support`},
		{"secret reference", []string{"--context", "op"}, map[string]any{"user": "u", "password": "op://vault/nats/password"},
			`"password" uses a op:// reference, which lessonbridge does not resolve; give the value with --nats-password instead`},
		{"unreadable file in the context", []string{"--context", "gone"}, map[string]any{"nkey": "/nonexistent/seed.nk"},
			`--context (LESSONBRIDGE_CONTEXT, NATS_CONTEXT) "gone": its nkey /nonexistent/seed.nk cannot be read`},
		{"not JSON", []string{"--context", "broken"}, map[string]any{}, `is not a NATS context file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ctx != nil {
				path := writeNATSContext(t, tt.args[1], tt.ctx)
				if tt.name == "not JSON" {
					require.NoError(t, os.WriteFile(path, []byte("url: nats://x"), 0o600))
				}
			}
			_, errs := settings(tt.args...)
			require.Len(t, errs, 1, "%v", errs)
			assert.Contains(t, errs[0], tt.want)
		})
	}
}

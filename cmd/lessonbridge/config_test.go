package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/jobmanager"
)

// clearRunEnv removes every LESSONBRIDGE_* variable, NATS_URL and NATS_CONTEXT for the test, so that the machine's
// environment cannot change what the flags say.
func clearRunEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LESSONBRIDGE_") || k == "NATS_URL" || k == "NATS_CONTEXT" {
			t.Setenv(k, "") // restores the value at cleanup
			require.NoError(t, os.Unsetenv(k))
		}
	}
}

// parseRunFlags parses args (and the environment) as `run` does.
func parseRunFlags(t *testing.T, args ...string) *runFlags {
	t.Helper()
	fs := newFlagSet("run", io.Discard)
	f := registerRunFlags(fs)
	require.NoError(t, parseFlags(fs, args, runFlagExtraEnv))
	return f
}

func errorTexts(errs []error) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestRunSettingsDefaults(t *testing.T) {
	clearRunEnv(t)
	s, errs := parseRunFlags(t, "--jobmanager-url", "http://jm:8080").settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	c := s.Bridge
	assert.Equal(t, []time.Duration{3 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second}, c.PollSchedule)
	assert.Equal(t, 30*time.Minute, c.PollTimeout)
	assert.Equal(t, 2*time.Minute, c.NotFoundGrace)
	assert.Equal(t, 2*time.Second, c.BatchLinger)
	assert.Equal(t, 500, c.BatchMaxLessons)
	assert.Equal(t, 30*time.Second, c.AckWait)
	assert.Equal(t, 100000, c.MaxHeld)
	assert.Equal(t, 10*time.Second, c.ShutdownGrace)
	assert.Zero(t, c.TechnicalRetries, "no blind retries unless asked for")
	assert.False(t, c.IsolateOff, "failure isolation is on by default")
	require.NotNil(t, c.EnsureTopology)
	assert.True(t, *c.EnsureTopology)
	assert.Empty(t, c.Mandators)
	assert.Empty(t, c.PriorityGroup)
	assert.Nil(t, c.MessageRules, "nil means the engine's defaults")
	assert.Equal(t, "LESSONS", c.InputStream)
	assert.Equal(t, "LESSON_OUTCOMES", c.OutcomeStream)
	assert.Equal(t, "LESSON_DEADLETTER", c.DeadLetterStream)
	assert.Equal(t, "lessons.changes", c.ChangesPrefix)
	assert.Equal(t, "lessons.outcomes", c.OutcomesPrefix)
	assert.Equal(t, "lessons.deadletter", c.DeadLetterPrefix)
	assert.Equal(t, "lessonbridge", c.ConsumerName)
	assert.Equal(t, "lessonbridge_ledger", c.LedgerBucket)
	assert.Equal(t, "lb", c.JobIDPrefix)
	assert.Equal(t, "nats://127.0.0.1:4222", s.NATS.URL)
	assert.Equal(t, "127.0.0.1:8081", s.HTTPAddr)
	assert.Equal(t, "info", s.LogLevel)
	assert.Equal(t, "json", s.LogFormat)
	assert.Equal(t, "http://jm:8080", s.JobManager.URL)
}

func TestRunSettingsMapping(t *testing.T) {
	clearRunEnv(t)
	fsys := fstest.MapFS{
		"rules.txt":         {Data: []byte("# ours\ntechnical Wartungsfenster\n")},
		"tokens/default":    {Data: []byte("t0")},
		"ca.pem":            {Data: selfSignedPEM(t)},
		"nats.creds":        {Data: []byte("creds")},
		"nats-ca.pem":       {Data: selfSignedPEM(t)},
		"client-cert.pem":   {Data: []byte("cert")},
		"client-key.pem":    {Data: []byte("key")},
		"unused-token.file": {Data: []byte("x")},
	}
	s, errs := parseRunFlags(t,
		"--nats-url", "nats://a:4222,nats://b:4222", "--nats-creds", "nats.creds", "--nats-ca", "nats-ca.pem",
		"--nats-cert", "client-cert.pem", "--nats-key", "client-key.pem",
		"--jobmanager-url", "https://jm.example/api", "--jobmanager-token-dir", "tokens", "--jobmanager-ca", "ca.pem",
		"--poll-schedule", "250ms, 1s", "--poll-timeout", "5m", "--not-found-grace", "30s", "--batch-linger", "100ms",
		"--batch-max-lessons", "50", "--ack-wait", "9s", "--max-held", "10", "--shutdown-grace", "1s",
		"--technical-retries", "2", "--technical-retry-delay", "5m",
		"--mandators", "zh-kanti, be_gym", "--ensure-topology=false", "--priority-group", "lessonbridge",
		"--message-rules-file", "rules.txt",
		"--input-stream", "IN", "--outcome-stream", "OUT", "--deadletter-stream", "DL",
		"--changes-subject", "a.changes", "--outcome-subject", "a.outcomes", "--deadletter-subject", "a.dl",
		"--consumer", "lb2", "--ledger-bucket", "led", "--job-id-prefix", "zz",
		"--http-addr", "", "--log-level", "debug", "--log-format", "console",
	).settings(fsys)
	require.Empty(t, errorTexts(errs))
	c := s.Bridge
	assert.Equal(t, []time.Duration{250 * time.Millisecond, time.Second}, c.PollSchedule)
	assert.Equal(t, 5*time.Minute, c.PollTimeout)
	assert.Equal(t, 30*time.Second, c.NotFoundGrace)
	assert.Equal(t, 100*time.Millisecond, c.BatchLinger)
	assert.Equal(t, 50, c.BatchMaxLessons)
	assert.Equal(t, 9*time.Second, c.AckWait)
	assert.Equal(t, 10, c.MaxHeld)
	assert.Equal(t, time.Second, c.ShutdownGrace)
	assert.Equal(t, 2, c.TechnicalRetries)
	assert.Equal(t, 5*time.Minute, c.TechnicalRetryDelay)
	assert.Equal(t, []string{"zh-kanti", "be_gym"}, c.Mandators)
	require.NotNil(t, c.EnsureTopology)
	assert.False(t, *c.EnsureTopology)
	assert.Equal(t, "lessonbridge", c.PriorityGroup)
	require.NotNil(t, c.MessageRules)
	assert.Equal(t, jobmanager.ClassTechnical, c.MessageRules.Classify([]string{"Fehler: Wartungsfenster aktiv"}),
		"the operator's rule comes before the defaults")
	assert.Equal(t, "IN", c.InputStream)
	assert.Equal(t, "OUT", c.OutcomeStream)
	assert.Equal(t, "DL", c.DeadLetterStream)
	assert.Equal(t, "a.changes", c.ChangesPrefix)
	assert.Equal(t, "a.outcomes", c.OutcomesPrefix)
	assert.Equal(t, "a.dl", c.DeadLetterPrefix)
	assert.Equal(t, "lb2", c.ConsumerName)
	assert.Equal(t, "led", c.LedgerBucket)
	assert.Equal(t, "zz", c.JobIDPrefix)
	assert.Equal(t, natsSettings{URL: "nats://a:4222,nats://b:4222", Creds: "nats.creds", CAFile: "nats-ca.pem",
		CertFile: "client-cert.pem", KeyFile: "client-key.pem"}, s.NATS)
	assert.Equal(t, "tokens", s.JobManager.TokenDir)
	assert.NotNil(t, s.JobManager.RootCAs)
	assert.Empty(t, s.HTTPAddr)
	assert.Equal(t, "debug", s.LogLevel)
	assert.Equal(t, "console", s.LogFormat)
}

func TestRunSettingsFromEnvironment(t *testing.T) {
	clearRunEnv(t)
	t.Setenv("NATS_URL", "nats://from-nats-url:4222")
	t.Setenv("LESSONBRIDGE_JOBMANAGER_URL", "http://jm")
	t.Setenv("LESSONBRIDGE_POLL_SCHEDULE", "1s,2s")
	t.Setenv("LESSONBRIDGE_ENSURE_TOPOLOGY", "false")
	t.Setenv("LESSONBRIDGE_MANDATORS", "a,b")
	s, errs := parseRunFlags(t, "--poll-timeout", "1m").settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	assert.Equal(t, "nats://from-nats-url:4222", s.NATS.URL)
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second}, s.Bridge.PollSchedule)
	assert.False(t, *s.Bridge.EnsureTopology)
	assert.Equal(t, []string{"a", "b"}, s.Bridge.Mandators)
	assert.Equal(t, time.Minute, s.Bridge.PollTimeout)

	t.Setenv("LESSONBRIDGE_NATS_URL", "nats://ours:4222")
	s, errs = parseRunFlags(t).settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	assert.Equal(t, "nats://ours:4222", s.NATS.URL, "LESSONBRIDGE_NATS_URL wins over NATS_URL")

	s, errs = parseRunFlags(t, "--isolate", "off").settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	assert.True(t, s.Bridge.IsolateOff, "--isolate off")
	t.Setenv("LESSONBRIDGE_ISOLATE", "OFF")
	s, errs = parseRunFlags(t).settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	assert.True(t, s.Bridge.IsolateOff, "LESSONBRIDGE_ISOLATE=OFF")
	s, errs = parseRunFlags(t, "--isolate", "on").settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	assert.False(t, s.Bridge.IsolateOff, "the flag wins over the environment")

	t.Setenv("LESSONBRIDGE_ACK_WAIT", "soon")
	t.Setenv("LESSONBRIDGE_ENSURE_TOPOLOGY", "maybe")
	t.Setenv("LESSONBRIDGE_ISOLATE", "sometimes")
	_, errs = parseRunFlags(t).settings(fstest.MapFS{})
	assert.ElementsMatch(t, []string{
		`--ack-wait (LESSONBRIDGE_ACK_WAIT) "soon": not a duration (use Go syntax such as 250ms, 2s, 30m)`,
		`--ensure-topology (LESSONBRIDGE_ENSURE_TOPOLOGY) "maybe": must be true or false`,
		`--isolate (LESSONBRIDGE_ISOLATE) "sometimes": must be on or off`,
	}, errorTexts(errs))
}

func TestRunSettingsReportsEveryBadValue(t *testing.T) {
	clearRunEnv(t)
	_, errs := parseRunFlags(t,
		"--nats-url", " ",
		"--poll-schedule", "3s,x", "--poll-timeout", "0s", "--not-found-grace", "-1s", "--batch-linger", "2",
		"--batch-max-lessons", "0", "--ack-wait", "x", "--max-held", "many", "--shutdown-grace", "",
		"--technical-retries", "-1",
		"--mandators", "ok,bad mandator", "--ensure-topology=yes please", "--priority-group", "a.b",
		"--input-stream", "IN.PUT", "--changes-subject", "lessons.*", "--job-id-prefix", "a_b",
		"--http-addr", "localhost", "--log-level", "loud", "--log-format", "xml",
	).settings(fstest.MapFS{})
	want := []string{
		`--nats-url (LESSONBRIDGE_NATS_URL, NATS_URL) " ": must name at least one server`,
		`--jobmanager-url (LESSONBRIDGE_JOBMANAGER_URL) "": is required`,
		`--poll-schedule (LESSONBRIDGE_POLL_SCHEDULE) "3s,x": "x" is not a duration`,
		`--poll-timeout (LESSONBRIDGE_POLL_TIMEOUT) "0s": must be positive`,
		`--not-found-grace (LESSONBRIDGE_NOT_FOUND_GRACE) "-1s": must be positive`,
		`--batch-linger (LESSONBRIDGE_BATCH_LINGER) "2": not a duration`,
		`--batch-max-lessons (LESSONBRIDGE_BATCH_MAX_LESSONS) "0": must be at least 1`,
		`--ack-wait (LESSONBRIDGE_ACK_WAIT) "x": not a duration`,
		`--max-held (LESSONBRIDGE_MAX_HELD) "many": not an integer`,
		`--shutdown-grace (LESSONBRIDGE_SHUTDOWN_GRACE) "": not a duration`,
		`--technical-retries (LESSONBRIDGE_TECHNICAL_RETRIES) "-1": must be a whole number, 0 or more`,
		`--mandators (LESSONBRIDGE_MANDATORS) "ok,bad mandator": "bad mandator" must match`,
		`--ensure-topology (LESSONBRIDGE_ENSURE_TOPOLOGY) "yes please": must be true or false`,
		`--priority-group (LESSONBRIDGE_PRIORITY_GROUP) "a.b"`,
		`--input-stream (LESSONBRIDGE_INPUT_STREAM) "IN.PUT"`,
		`--changes-subject (LESSONBRIDGE_CHANGES_SUBJECT) "lessons.*"`,
		`--job-id-prefix (LESSONBRIDGE_JOB_ID_PREFIX) "a_b"`,
		`--http-addr (LESSONBRIDGE_HTTP_ADDR) "localhost": must be host:port`,
		`--log-level (LESSONBRIDGE_LOG_LEVEL) "loud"`,
		`--log-format (LESSONBRIDGE_LOG_FORMAT) "xml"`,
	}
	got := errorTexts(errs)
	assert.Len(t, got, len(want), "one error per bad value:\n%s", strings.Join(got, "\n"))
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, w)
		}
		assert.True(t, found, "missing %s in\n%s", w, strings.Join(got, "\n"))
	}
}

func TestRunSettingsConflictsAndFiles(t *testing.T) {
	fsys := fstest.MapFS{
		"token":          {Data: []byte("t")},
		"tokens/default": {Data: []byte("t")},
		"rules-bad.txt":  {Data: []byte("data (unclosed\n")},
		"not-pem.txt":    {Data: []byte("hello")},
		"seed.nk":        {Data: []byte("SU...")},
	}
	tests := []struct {
		name string
		args []string
		want []string // prefixes of the errors, in any order
	}{
		{"two token options", []string{"--jobmanager-token", "abc", "--jobmanager-token-file", "token"},
			[]string{`--jobmanager-token-file (LESSONBRIDGE_JOBMANAGER_TOKEN_FILE) "token": only one of`}},
		{"token with a space", []string{"--jobmanager-token", "a b"},
			[]string{`--jobmanager-token (LESSONBRIDGE_JOBMANAGER_TOKEN) "(set)": contains whitespace`}},
		{"missing token file", []string{"--jobmanager-token-file", "nope"},
			[]string{`--jobmanager-token-file (LESSONBRIDGE_JOBMANAGER_TOKEN_FILE) "nope": cannot be read`}},
		{"token dir is a file", []string{"--jobmanager-token-dir", "token"},
			[]string{`--jobmanager-token-dir (LESSONBRIDGE_JOBMANAGER_TOKEN_DIR) "token": is not a directory`}},
		{"token dir", []string{"--jobmanager-token-dir", "tokens"}, nil},
		{"bad URL", []string{"--jobmanager-url", "ftp://jm"}, []string{`--jobmanager-url (LESSONBRIDGE_JOBMANAGER_URL) "ftp://jm":`}},
		{"URL without scheme", []string{"--jobmanager-url", "jm.example:8080/jobmanager"},
			[]string{`--jobmanager-url (LESSONBRIDGE_JOBMANAGER_URL) "jm.example:8080/jobmanager": needs a scheme: give http://jm.example:8080/jobmanager or https://jm.example:8080/jobmanager`}},
		{"URL with mandator and API path", []string{"--jobmanager-url", "http://host/zh-kanti/api/v2.0"},
			[]string{`--jobmanager-url (LESSONBRIDGE_JOBMANAGER_URL) "http://host/zh-kanti/api/v2.0": must stop before /{mandator}/api/v2.0 (the bridge adds both per event): give http://host`}},
		{"URL with API path under a prefix", []string{"--jobmanager-url", "https://host/jm/zh-kanti/API/v2.0/jobs/"},
			[]string{`--jobmanager-url (LESSONBRIDGE_JOBMANAGER_URL) "https://host/jm/zh-kanti/API/v2.0/jobs/": must stop before /{mandator}/api/v2.0 (the bridge adds both per event): give https://host/jm`}},
		{"URL ending in an allowed mandator", []string{"--jobmanager-url", "https://host/jm/zh-kanti", "--mandators", "be-gym,zh-kanti"},
			[]string{`--jobmanager-url (LESSONBRIDGE_JOBMANAGER_URL) "https://host/jm/zh-kanti": ends in or contains the mandator "zh-kanti", which the bridge adds per event: give https://host/jm`}},
		{"URL with a proxy prefix", []string{"--jobmanager-url", "https://host/jm/", "--mandators", "zh-kanti"}, nil},
		{"bad rules", []string{"--message-rules-file", "rules-bad.txt"},
			[]string{`--message-rules-file (LESSONBRIDGE_MESSAGE_RULES_FILE) "rules-bad.txt":`}},
		{"CA without PEM", []string{"--jobmanager-ca", "not-pem.txt", "--nats-ca", "not-pem.txt"},
			[]string{`--jobmanager-ca (LESSONBRIDGE_JOBMANAGER_CA) "not-pem.txt": holds no PEM certificate`,
				`--nats-ca (LESSONBRIDGE_NATS_CA) "not-pem.txt": holds no PEM certificate`}},
		{"two NATS auths", []string{"--nats-nkey", "seed.nk", "--nats-token", "x"},
			[]string{`--nats-token (LESSONBRIDGE_NATS_TOKEN) "(set)": only one NATS authentication`}},
		{"user without password", []string{"--nats-user", "u"},
			[]string{`--nats-password (LESSONBRIDGE_NATS_PASSWORD) "(unset)": must be given with --nats-user`}},
		{"cert without key", []string{"--nats-cert", "token"},
			[]string{`--nats-key (LESSONBRIDGE_NATS_KEY) "": must be given with --nats-cert`}},
		{"same subjects", []string{"--outcome-subject", "x.y", "--deadletter-subject", "x.y"},
			[]string{`--outcome-subject (LESSONBRIDGE_OUTCOME_SUBJECT) "x.y": must differ`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearRunEnv(t)
			args := tt.args
			if !strings.Contains(strings.Join(args, " "), "--jobmanager-url") {
				args = append(args, "--jobmanager-url", "http://jm")
			}
			_, errs := parseRunFlags(t, args...).settings(fsys)
			got := errorTexts(errs)
			require.Len(t, got, len(tt.want), "%s", strings.Join(got, "\n"))
			for _, w := range tt.want {
				found := false
				for _, g := range got {
					found = found || strings.HasPrefix(g, w)
				}
				assert.True(t, found, "missing %s in\n%s", w, strings.Join(got, "\n"))
			}
			for _, g := range got {
				assert.NotContains(t, g, "abc", "a token value must never be shown")
			}
		})
	}
}

func TestLogFieldsShowNoSecrets(t *testing.T) {
	clearRunEnv(t)
	s, errs := parseRunFlags(t, "--jobmanager-url", "http://jm", "--jobmanager-token", "jm-s3cret",
		"--nats-url", "nats://alice:nats-pw@n1:4222,nats://tok-s3cret@n2:4222", "--nats-user", "bob",
		"--nats-password", "bob-pw").settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	var buf bytes.Buffer
	log, err := newLogger("info", "json", &buf)
	require.NoError(t, err)
	log.Info("start", s.logFields()...)
	line := buf.String()
	for _, secret := range []string{"jm-s3cret", "nats-pw", "tok-s3cret", "bob-pw"} {
		assert.NotContains(t, line, secret)
	}
	assert.Contains(t, line, `"jobmanagerToken":"(set)"`)
	assert.Contains(t, line, `"natsPassword":"(set)"`)
	assert.Contains(t, line, `"natsToken":"(unset)"`)
	assert.Contains(t, line, `"natsAuth":"user bob"`)
	assert.Contains(t, line, `nats://redacted@n1:4222,nats://redacted@n2:4222`)
	assert.Contains(t, line, `"pollSchedule":["3s","5s","10s","20s","30s"]`)
}

func TestRunBridgeReportsConfigErrors(t *testing.T) {
	clearRunEnv(t)
	var stderr bytes.Buffer
	err := runBridge(context.Background(), []string{"--poll-schedule", "3s,x", "--batch-max-lessons", "0",
		"--jobmanager-token", "hidden-token", "--jobmanager-token-file", "/nonexistent"}, io.Discard, &stderr)
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, `--poll-schedule (LESSONBRIDGE_POLL_SCHEDULE) "3s,x": "x" is not a duration`)
	assert.Contains(t, msg, `--batch-max-lessons (LESSONBRIDGE_BATCH_MAX_LESSONS) "0": must be at least 1`)
	assert.Contains(t, msg, `--jobmanager-url (LESSONBRIDGE_JOBMANAGER_URL) "": is required`)
	assert.Contains(t, msg, `--jobmanager-token-file (LESSONBRIDGE_JOBMANAGER_TOKEN_FILE) "/nonexistent": only one of`)
	assert.NotContains(t, msg, "hidden-token")
}

func TestRedactURLs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://u:p@h:1", "nats://redacted@h:1"},
		{"nats://token@h:1, tls://h2:2", "nats://redacted@h:1, tls://h2:2"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, redactURLs(tt.in), tt.in)
	}
}

// TestRunConcurrencyFlags: the engine's concurrency and size knobs are run flags (issue 13), with the
// engine's defaults and a clear error for each bad value.
func TestRunConcurrencyFlags(t *testing.T) {
	clearRunEnv(t)
	s, errs := parseRunFlags(t, "--jobmanager-url", "http://jm:8080").settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	d := consumer.Config{}.Defaults()
	got := s.Bridge.Defaults()
	assert.Equal(t, d.MaxConcurrentSubmits, got.MaxConcurrentSubmits)
	assert.Equal(t, d.MaxConcurrentPolls, got.MaxConcurrentPolls)
	assert.Equal(t, d.PullBatch, got.PullBatch)
	assert.Equal(t, d.BatchMaxBytes, got.BatchMaxBytes)
	assert.Equal(t, got.AckWait, got.PinnedTTL, "the pinned TTL follows --ack-wait unless given")

	s, errs = parseRunFlags(t, "--jobmanager-url", "http://jm:8080", "--max-concurrent-submits", "8",
		"--max-concurrent-polls", "32", "--pull-batch", "500", "--batch-max-bytes", "65536", "--pinned-ttl", "45s").settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	c := s.Bridge
	assert.Equal(t, 8, c.MaxConcurrentSubmits)
	assert.Equal(t, 32, c.MaxConcurrentPolls)
	assert.Equal(t, 500, c.PullBatch)
	assert.Equal(t, 65536, c.BatchMaxBytes)
	assert.Equal(t, 45*time.Second, c.PinnedTTL)

	_, errs = parseRunFlags(t, "--jobmanager-url", "http://jm:8080", "--max-concurrent-submits", "0",
		"--max-concurrent-polls", "x", "--pull-batch", "-1", "--batch-max-bytes", "100", "--pinned-ttl", "0s").settings(fstest.MapFS{})
	assert.ElementsMatch(t, []string{
		`--max-concurrent-submits (LESSONBRIDGE_MAX_CONCURRENT_SUBMITS) "0": must be at least 1`,
		`--max-concurrent-polls (LESSONBRIDGE_MAX_CONCURRENT_POLLS) "x": not an integer`,
		`--pull-batch (LESSONBRIDGE_PULL_BATCH) "-1": must be at least 1`,
		`--batch-max-bytes (LESSONBRIDGE_BATCH_MAX_BYTES) "100": must be at least 1024`,
		`--pinned-ttl (LESSONBRIDGE_PINNED_TTL) "0s": must be positive`,
	}, errorTexts(errs))
}

// TestRunHelpListsIsolate: `run --help` shows --isolate with its default and what off means.
func TestRunHelpListsIsolate(t *testing.T) {
	assert.True(t, subcommandFlags(t, "run")["isolate"])
	var stderr bytes.Buffer
	require.Error(t, run(context.Background(), []string{"run", "--help"}, io.Discard, &stderr))
	help := stderr.String()
	i := strings.Index(help, "--isolate")
	require.GreaterOrEqual(t, i, 0)
	assert.Contains(t, help[i:min(len(help), i+400)], "off: the whole batch fails")
	assert.Contains(t, help[i:min(len(help), i+400)], "(env LESSONBRIDGE_ISOLATE, default on)")
}

// TestPprofFlag: --pprof on serves the profiles on --http-addr; off (the default) does not; a bad
// value or on without an HTTP address is refused with the flag and the value.
func TestPprofFlag(t *testing.T) {
	clearRunEnv(t)
	s, errs := parseRunFlags(t, "--jobmanager-url", "http://jm:8080").settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	assert.False(t, s.Pprof, "off by default")
	s, errs = parseRunFlags(t, "--jobmanager-url", "http://jm:8080", "--pprof", "on").settings(fstest.MapFS{})
	require.Empty(t, errorTexts(errs))
	assert.True(t, s.Pprof)
	_, errs = parseRunFlags(t, "--jobmanager-url", "http://jm:8080", "--pprof", "yes").settings(fstest.MapFS{})
	assert.Equal(t, []string{`--pprof (LESSONBRIDGE_PPROF) "yes": must be on or off`}, errorTexts(errs))
	_, errs = parseRunFlags(t, "--jobmanager-url", "http://jm:8080", "--pprof", "on", "--http-addr", "").settings(fstest.MapFS{})
	assert.Equal(t, []string{`--pprof (LESSONBRIDGE_PPROF) "on": needs --http-addr (it is served there)`}, errorTexts(errs))

}

// The collector's target: 200 unless the operator set GOGC, which is left as it is.
func TestGCDefaultUnlessGOGCIsSet(t *testing.T) {
	was := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(was) })

	env := map[string]string{}
	assert.Equal(t, "200", gcDefault(func(k string) string { return env[k] }))
	assert.Equal(t, 200, debug.SetGCPercent(100), "no GOGC: the bridge's default is in effect")

	env["GOGC"] = "50"
	debug.SetGCPercent(50) // as the runtime does at start for GOGC=50
	assert.Equal(t, "50", gcDefault(func(k string) string { return env[k] }))
	assert.Equal(t, 50, debug.SetGCPercent(100), "GOGC set: left as the operator chose")
}

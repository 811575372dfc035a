package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/publisher"
)

func TestRunSettingsOAuth2(t *testing.T) {
	clearRunEnv(t)
	fsys := fstest.MapFS{
		"secrets/default":    {Data: []byte("pw\n")},
		"secrets/kanti":      {Data: []byte("kpw\n")},
		"secrets/only.js":    {Data: []byte(`{"zh-kanti": {"clientId": "kanti", "clientSecretFile": "kanti"}}`)},
		"secrets/clients.js": {Data: []byte(`{"zh-kanti": {"clientId": "kanti", "clientSecretFile": "kanti", "scopes": ["jobs", "zh"]}, "be-gym": {"tokenUrl": "https://auth.be.example/token"}}`)},
	}
	s, errs := parseRunFlags(t, "--jobmanager-url", "http://jm",
		"--jobmanager-oauth2-token-url", "https://auth.example/oauth/token",
		"--jobmanager-oauth2-client-id", "bridge",
		"--jobmanager-oauth2-client-secret-file", "secrets/default",
		"--jobmanager-oauth2-scopes", "jobs.read, jobs.write",
		"--jobmanager-oauth2-clients-file", "secrets/clients.js").settings(fsys)
	require.Empty(t, errorTexts(errs))
	c := s.JobManager.OAuth2
	require.NotNil(t, c)
	assert.Equal(t, jobmanager.OAuth2Client{TokenURL: "https://auth.example/oauth/token", ClientID: "bridge",
		ClientSecretFile: "secrets/default", Scopes: []string{"jobs.read", "jobs.write"}}, c.Client)
	assert.Equal(t, map[string]jobmanager.OAuth2Client{
		"zh-kanti": {TokenURL: "https://auth.example/oauth/token", ClientID: "kanti", ClientSecretFile: filepath.Join("secrets", "kanti"), Scopes: []string{"jobs", "zh"}},
		"be-gym":   {TokenURL: "https://auth.be.example/token", ClientSecretFile: "secrets/default", Scopes: []string{"jobs.read", "jobs.write"}},
	}, c.Mandators, "a relative secret file is next to the clients file; unset fields come from the flags")
	auth := ""
	for _, f := range s.logFields() {
		if f.Key == "jobmanagerAuth" {
			auth = f.String
		}
	}
	assert.Equal(t, `oauth2 client bridge at https://auth.example/oauth/token (secret file secrets/default, scopes "jobs.read jobs.write"); oauth2 clients of their own for be-gym,zh-kanti`, auth)

	// Only a clients file: no default client, so other mandators have no token.
	s, errs = parseRunFlags(t, "--jobmanager-url", "http://jm", "--jobmanager-oauth2-token-url", "https://auth.example/t",
		"--jobmanager-oauth2-clients-file", "secrets/only.js").settings(fsys)
	require.Empty(t, errorTexts(errs))
	assert.Empty(t, s.JobManager.OAuth2.Client.ClientID)
	assert.Contains(t, errorTexts(func() []error {
		_, e := parseRunFlags(t, "--jobmanager-url", "http://jm", "--jobmanager-oauth2-clients-file", "secrets/clients.js").settings(fsys)
		return e
	}()), `--jobmanager-oauth2-clients-file`+envHint("jobmanager-oauth2-clients-file")+`"secrets/clients.js": mandator be-gym: ClientID is empty`)
}

// envHint is what flagError puts between a flag and its value, whatever the environment scheme.
func envHint(flagName string) string {
	e := flagError(flagName, "", "")
	s := strings.TrimPrefix(e.Error(), "--"+flagName)
	return strings.TrimSuffix(s, `"": `)
}

func TestRunSettingsOAuth2Errors(t *testing.T) {
	fsys := fstest.MapFS{
		"secret":       {Data: []byte("pw")},
		"token":        {Data: []byte("t")},
		"bad.json":     {Data: []byte(`{"zh": {"clientSecret": "inline"}}`)},
		"empty.json":   {Data: []byte(`{}`)},
		"missing.json": {Data: []byte(`{"zh": {"clientId": "z", "clientSecretFile": "/nope/zh"}}`)},
	}
	full := []string{"--jobmanager-oauth2-token-url", "https://auth/t", "--jobmanager-oauth2-client-id", "c", "--jobmanager-oauth2-client-secret-file", "secret"}
	tests := []struct {
		name string
		args []string
		want []string // flag and the start of the reason
	}{
		{"complete", full, nil},
		{"no client id", []string{"--jobmanager-oauth2-token-url", "https://auth/t"}, []string{"jobmanager-oauth2-client-id|is required with --jobmanager-oauth2-token-url"}},
		{"no token url", []string{"--jobmanager-oauth2-client-id", "c"}, []string{"jobmanager-oauth2-token-url|is required"}},
		{"no secret", []string{"--jobmanager-oauth2-token-url", "https://auth/t", "--jobmanager-oauth2-client-id", "c"}, []string{"jobmanager-oauth2-client-secret-file|is required"}},
		{"relative token url", []string{"--jobmanager-oauth2-token-url", "auth/t", "--jobmanager-oauth2-client-id", "c", "--jobmanager-oauth2-client-secret-file", "secret"},
			[]string{`jobmanager-oauth2-token-url|TokenURL "auth/t": want an absolute http or https URL`}},
		{"unreadable secret", []string{"--jobmanager-oauth2-token-url", "https://auth/t", "--jobmanager-oauth2-client-id", "c", "--jobmanager-oauth2-client-secret-file", "nope"},
			[]string{"jobmanager-oauth2-client-secret-file|secret file nope cannot be read"}},
		{"bad scope", append([]string{"--jobmanager-oauth2-scopes", `a"b`}, full...), []string{`jobmanager-oauth2-scopes|client c: scope "a\"b"`}},
		{"with a static token", append([]string{"--jobmanager-token-file", "token"}, full...), []string{"jobmanager-token-file|cannot be combined with the --jobmanager-oauth2-* flags"}},
		{"unknown field", []string{"--jobmanager-oauth2-clients-file", "bad.json"}, []string{`jobmanager-oauth2-clients-file|not a JSON object of mandator -> {tokenUrl, clientId, clientSecretFile, scopes}: json: unknown field "clientSecret"`}},
		{"empty clients", []string{"--jobmanager-oauth2-clients-file", "empty.json"}, []string{"jobmanager-oauth2-clients-file|lists no mandator"}},
		{"missing clients file", []string{"--jobmanager-oauth2-clients-file", "nope.json"}, []string{"jobmanager-oauth2-clients-file|cannot be read"}},
		{"missing entry secret", []string{"--jobmanager-oauth2-token-url", "https://auth/t", "--jobmanager-oauth2-clients-file", "missing.json"},
			[]string{"jobmanager-oauth2-clients-file|secret file /nope/zh cannot be read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearRunEnv(t)
			_, errs := parseRunFlags(t, append(tt.args, "--jobmanager-url", "http://jm")...).settings(fsys)
			got := errorTexts(errs)
			require.Len(t, got, len(tt.want), "%s", strings.Join(got, "\n"))
			for i, w := range tt.want {
				flagName, why, _ := strings.Cut(w, "|")
				assert.True(t, strings.HasPrefix(got[i], "--"+flagName+" "), got[i])
				assert.Contains(t, got[i], why)
				assert.NotContains(t, got[i], "inline")
				assert.NotContains(t, got[i], `"pw"`)
			}
		})
	}
}

// TestOAuth2AgainstSimulator runs `jobmanager-sim --oauth2` and the run command's JobManager client
// built from the OAuth2 flags: the API refuses requests without a token and takes the ones the
// client gets from the simulator's token endpoint.
func TestOAuth2AgainstSimulator(t *testing.T) {
	clearRunEnv(t)
	base, stderr, stop := simStart(t, "--oauth2", "--oauth2-client-id", "bridge", "--oauth2-client-secret", "sim-secret",
		"--oauth2-token-ttl", "2s", "--oauth2-scopes", "jobs", "--creation-delay", "0s", "--not-found-lag", "0s")
	defer func() { assert.NoError(t, stop()) }()

	resp, err := http.Get(base + "/demo/api/v2.0/jobs/batches")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the API wants a token from the endpoint")

	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte("sim-secret\n"), 0o600))
	s, errs := parseRunFlags(t, "--jobmanager-url", base,
		"--jobmanager-oauth2-token-url", base+jobmanagertest.OAuth2TokenPath,
		"--jobmanager-oauth2-client-id", "bridge", "--jobmanager-oauth2-client-secret-file", secret,
		"--jobmanager-oauth2-scopes", "jobs").settings(osFS{})
	require.Empty(t, errorTexts(errs))
	jm, err := newJobManagerClient(s.JobManager)
	require.NoError(t, err)
	list, err := jm.Batches(context.Background(), "demo")
	require.NoError(t, err)
	assert.Empty(t, list)
	assert.Contains(t, stderr.String(), `"tokenUrl":"`+base+jobmanagertest.OAuth2TokenPath+`"`)
	assert.NotContains(t, stderr.String(), "sim-secret")

	// The wrong secret: the error names the endpoint and the client, not the secret.
	require.NoError(t, os.WriteFile(secret, []byte("wrong-one"), 0o600))
	jm2, err := newJobManagerClient(s.JobManager)
	require.NoError(t, err)
	_, err = jm2.Batches(context.Background(), "demo")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid_client")
	assert.Contains(t, err.Error(), "client bridge")
	assert.NotContains(t, err.Error(), "wrong-one")
}

func TestSimOAuth2BadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--oauth2"}, "--oauth2 needs --oauth2-client-secret"},
		{[]string{"--oauth2", "--oauth2-client-secret", "x", "--token", "t"}, "--oauth2 replaces --token"},
		{[]string{"--oauth2", "--oauth2-client-secret", "x", "--oauth2-token-ttl", "0s"}, "--oauth2-token-ttl 0s must be positive"},
	} {
		var stdout, stderr lockedBuffer
		err := runSim(context.Background(), append([]string{"--addr", "127.0.0.1:0"}, tt.args...), &stdout, &stderr)
		require.Error(t, err, tt.args)
		assert.Contains(t, err.Error(), tt.want)
		assert.Empty(t, stdout.String(), "nothing listens")
	}
}

// TestRunBridgeWithOAuth2 runs `run` with the OAuth2 flags against the simulator behind its token
// endpoint (one-second tokens) and an embedded NATS: every event is settled with imported batches,
// the tokens were fetched from the endpoint, and neither the secret nor a token is logged.
func TestRunBridgeWithOAuth2(t *testing.T) {
	clearRunEnv(t)
	ns := natstest.Start(t)
	_, js := ns.Connect()
	sim := jobmanagertest.New(jobmanagertest.Config{})
	oauth, err := jobmanagertest.NewOAuth2(jobmanagertest.OAuth2Config{
		Clients:  []jobmanagertest.OAuth2Client{{ID: "bridge", Secret: "run-client-secret", Mandators: []string{"demo"}}},
		TokenTTL: time.Second,
	}, sim)
	require.NoError(t, err)
	jmSrv := httptest.NewServer(oauth)
	t.Cleanup(jmSrv.Close)
	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte("run-client-secret\n"), 0o600))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runBridge(ctx, []string{"--nats-url", ns.URL(), "--jobmanager-url", jmSrv.URL,
			"--jobmanager-oauth2-token-url", jmSrv.URL + jobmanagertest.OAuth2TokenPath,
			"--jobmanager-oauth2-client-id", "bridge", "--jobmanager-oauth2-client-secret-file", secret,
			"--poll-schedule", "20ms", "--batch-linger", "20ms", "--ack-wait", "2s", "--shutdown-grace", "1s",
			"--http-addr", "", "--mandators", "demo"}, &bytes.Buffer{}, stderr)
	}()
	pub, err := publisher.New(js)
	require.NoError(t, err)
	var cons jetstream.Consumer
	require.Eventually(t, func() bool {
		cons, err = js.Consumer(ctx, "LESSONS", "lessonbridge")
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "the bridge creates its stream and consumer:\n%s", stderr)
	require.NoError(t, pub.PublishChanges(ctx, publisher.SampleEvents(20, "demo", 7, 0), 0, nil))
	require.Eventually(t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == 20
	}, 20*time.Second, 20*time.Millisecond, "every input message settled:\n%s", stderr)
	cancel()
	require.NoError(t, <-done)

	assert.NotEmpty(t, sim.Batches("demo"), "JobManager got the batches")
	assert.GreaterOrEqual(t, oauth.Issued("bridge"), 1)
	logs := stderr.String()
	assert.NotContains(t, logs, "run-client-secret")
	assert.NotContains(t, logs, "sim-", "no token in the log")
	assert.NotContains(t, logs, `"level":"error"`)
	assert.Contains(t, logs, `"jobmanagerAuth":"oauth2 client bridge at `+jmSrv.URL+jobmanagertest.OAuth2TokenPath)
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/publisher"
)

// lockedBuffer is a bytes.Buffer safe for a writer and a reader in different goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLines decodes the JSON log lines written so far.
func logLines(t *testing.T, b *lockedBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

// TestRunBridge runs `lessonbridge run` against an embedded NATS server and the simulator: it
// becomes ready, imports a published workload (everything acked), logs its configuration without
// the token, and stops cleanly when ctx ends.
func TestRunBridge(t *testing.T) {
	clearRunEnv(t)
	const token = "run-s3cret-token"
	ns := natstest.Start(t)
	_, js := ns.Connect()
	sim := jobmanagertest.New(jobmanagertest.Config{Token: token})
	jmSrv := httptest.NewServer(sim)
	t.Cleanup(jmSrv.Close)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runBridge(ctx, []string{"--nats-url", ns.URL(), "--jobmanager-url", jmSrv.URL,
			"--jobmanager-token-file", tokenFile, "--poll-schedule", "20ms", "--batch-linger", "20ms",
			"--ack-wait", "2s", "--shutdown-grace", "1s", "--http-addr", "127.0.0.1:0", "--mandators", "demo"},
			&bytes.Buffer{}, stderr)
	}()

	var addr string
	require.Eventually(t, func() bool {
		for _, l := range logLines(t, stderr) {
			if a, ok := l["httpAddr"].(string); ok && strings.HasPrefix(l["msg"].(string), "serving") {
				addr = a
			}
		}
		return addr != ""
	}, 10*time.Second, 10*time.Millisecond, "no serving line in\n%s", stderr)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)

	pub, err := publisher.New(js)
	require.NoError(t, err)
	require.NoError(t, pub.PublishChanges(ctx, publisher.SampleEvents(20, "demo", 7, 0), 0, nil))
	cons, err := js.Consumer(ctx, "LESSONS", "lessonbridge")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == 20
	}, 20*time.Second, 20*time.Millisecond, "every input message settled")
	outcomes, err := js.Stream(ctx, "LESSON_OUTCOMES")
	require.NoError(t, err)
	info, err := outcomes.Info(ctx)
	require.NoError(t, err)
	assert.Positive(t, info.State.Msgs)
	assert.NotEmpty(t, sim.Batches("demo"), "JobManager got the batches")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
	logs := stderr.String()
	assert.NotContains(t, logs, token)
	var start map[string]any
	for _, l := range logLines(t, stderr) {
		if l["msg"] == "lessonbridge starting" {
			start = l
		}
	}
	require.NotNil(t, start, logs)
	assert.Equal(t, "token file "+tokenFile, start["jobmanagerAuth"])
	assert.Equal(t, "(unset)", start["jobmanagerToken"])
	assert.Equal(t, []any{"20ms"}, start["pollSchedule"])
	assert.Contains(t, logs, `"msg":"lessonbridge stopped"`)
}

// TestRunBridgeWaitsForNATS shows that run keeps trying while no NATS server answers and stops
// without error when ctx ends meanwhile.
func TestRunBridgeWaitsForNATS(t *testing.T) {
	clearRunEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runBridge(ctx, []string{"--nats-url", "nats://127.0.0.1:1", "--jobmanager-url", "http://127.0.0.1:1",
			"--http-addr", ""}, &bytes.Buffer{}, stderr)
	}()
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "nats not reachable yet") },
		10*time.Second, 10*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop")
	}
	assert.Contains(t, stderr.String(), "stopped before NATS was reachable")
}

// TestRunBridgeHealthBeforeNATS: the HTTP endpoints answer from the first second. While NATS is
// unreachable /healthz is 200 and /readyz 503 saying "connecting"; once a server comes up on the
// URL the bridge connects and becomes ready. Before, nothing listened until NATS was connected.
func TestRunBridgeHealthBeforeNATS(t *testing.T) {
	clearRunEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	natsPort := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	sim := jobmanagertest.New(jobmanagertest.Config{Token: "t"})
	jmSrv := httptest.NewServer(sim)
	t.Cleanup(jmSrv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runBridge(ctx, []string{"--nats-url", fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "--jobmanager-url", jmSrv.URL,
			"--jobmanager-token", "t", "--http-addr", "127.0.0.1:0", "--ack-wait", "2s", "--shutdown-grace", "1s"}, &bytes.Buffer{}, stderr)
	}()
	var addr string
	require.Eventually(t, func() bool {
		for _, l := range logLines(t, stderr) {
			if a, ok := l["httpAddr"].(string); ok && strings.HasPrefix(l["msg"].(string), "serving") {
				addr = a
			}
		}
		return addr != ""
	}, 10*time.Second, 10*time.Millisecond, "no serving line in\n%s", stderr)
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "nats not reachable yet") }, 10*time.Second, 10*time.Millisecond)

	code, body := get(t, "http://"+addr+"/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok\n", body)
	code, body = get(t, "http://"+addr+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.JSONEq(t, `{"ready":false,"nats":"connecting","bridge":"starting",
		"reason":"nats connecting; bridge waiting for NATS before ensuring the topology"}`, body)
	code, body = get(t, "http://"+addr+"/batches")
	assert.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `[]`, body)
	code, body = get(t, "http://"+addr+"/")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, `<td id="nats">connecting</td>`)

	srv, err := natstest.StartServer(t.TempDir(), natsPort)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	require.Eventually(t, func() bool {
		code, _ := get(t, "http://"+addr+"/readyz")
		return code == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "ready once NATS is up")
	code, body = get(t, "http://"+addr+"/")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `<td id="nats">connected</td>`)
	assert.Contains(t, body, `lessonbridge_events_received_total`)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
}

package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
)

// fakeBridge is a bridgeView whose answers the test sets.
type fakeBridge struct {
	ready   atomic.Bool
	batches []consumer.BatchInfo
}

func (f *fakeBridge) Ready() bool                   { return f.ready.Load() }
func (f *fakeBridge) Batches() []consumer.BatchInfo { return f.batches }

// get fetches url and returns status and body; failures fail the test.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestHTTPAPIEndpoints(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fb := &fakeBridge{batches: []consumer.BatchInfo{{Key: "k1", Mandator: "demo", Action: "create", BatchID: "12345",
		State: "polling", Created: created, Polls: 2, Lessons: 3, Events: 4, LastStatus: "AwaitingLessonProcessing"}}}
	var natsUp atomic.Bool
	api, err := newHTTPAPI(fb, nil, natsUp.Load, nil, "")
	require.NoError(t, err)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)

	code, body := get(t, srv.URL+"/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok\n", body)

	code, body = get(t, srv.URL+"/batches")
	assert.Equal(t, http.StatusOK, code)
	var got []consumer.BatchInfo
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	assert.Equal(t, fb.batches, got)

	fb.batches = nil
	_, body = get(t, srv.URL+"/batches")
	assert.JSONEq(t, "[]", body, "no batches is an empty list, not null")

	tests := []struct {
		nats, bridge bool
		code         int
		body         string
	}{
		{false, false, 503, `{"ready":false,"nats":"disconnected","bridge":"not ready",
			"reason":"nats disconnected; bridge ensuring the topology, recovering the ledger or binding the consumer"}`},
		{true, false, 503, `{"ready":false,"nats":"connected","bridge":"not ready",
			"reason":"bridge ensuring the topology, recovering the ledger or binding the consumer"}`},
		{false, true, 503, `{"ready":false,"nats":"disconnected","bridge":"ready","reason":"nats disconnected"}`},
		{true, true, 200, `{"ready":true,"nats":"connected","bridge":"ready"}`},
	}
	for _, tt := range tests {
		natsUp.Store(tt.nats)
		fb.ready.Store(tt.bridge)
		code, body := get(t, srv.URL+"/readyz")
		assert.Equal(t, tt.code, code, "nats %v bridge %v", tt.nats, tt.bridge)
		assert.JSONEq(t, tt.body, body)
	}

	code, body = get(t, srv.URL+"/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "go_goroutines")
	assert.Contains(t, body, `lessonbridge_build_info{version="dev"} 1`)

	resp, err := http.Post(srv.URL+"/batches", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestJMProbeCachesAndReports(t *testing.T) {
	sim := jobmanagertest.New(jobmanagertest.Config{Token: "probe-s3cret"})
	var calls atomic.Int32
	jmSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(jmSrv.Close)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	newProbe := func(token string) *jmProbe {
		jm, err := jobmanager.New(jmSrv.URL, jobmanager.WithToken(token))
		require.NoError(t, err)
		return &jmProbe{jm: jm, mandator: "demo", ttl: 10 * time.Second, now: func() time.Time { return now }}
	}

	p := newProbe("probe-s3cret")
	r := p.check(context.Background())
	assert.True(t, r.Reachable)
	assert.Empty(t, r.Error)
	assert.Equal(t, "demo", r.Mandator)
	now = now.Add(9 * time.Second)
	p.check(context.Background())
	assert.Equal(t, int32(1), calls.Load(), "answered from the cache within the TTL")
	now = now.Add(2 * time.Second)
	p.check(context.Background())
	assert.Equal(t, int32(2), calls.Load(), "asked again after the TTL")

	bad := newProbe("wrong-token")
	r = bad.check(context.Background())
	assert.False(t, r.Reachable)
	assert.Contains(t, r.Error, "401")
	assert.NotContains(t, r.Error, "wrong-token")

	jmSrv.Close()
	now = now.Add(time.Minute)
	r = p.check(context.Background())
	assert.False(t, r.Reachable, "a JobManager that is gone is reported")
	assert.NotEmpty(t, r.Error)
}

// TestReadyzFollowsNATS runs a real bridge and shows /readyz failing while NATS is away and
// recovering when it returns; JobManager's reachability is reported alongside.
func TestReadyzFollowsNATS(t *testing.T) {
	ns := natstest.Start(t)
	nc, js := ns.Connect()
	sim := jobmanagertest.New(jobmanagertest.Config{Token: "tok"})
	jmSrv := httptest.NewServer(sim)
	t.Cleanup(jmSrv.Close)
	jm, err := jobmanager.New(jmSrv.URL, jobmanager.WithToken("tok"))
	require.NoError(t, err)
	cfg := consumer.Config{AckWait: 2 * time.Second, ShutdownGrace: time.Second, Logger: zaptest.NewLogger(t)}
	bridge, err := consumer.New(js, jm, cfg)
	require.NoError(t, err)
	api, err := newHTTPAPI(bridge, bridge.Metrics(), nc.IsConnected, jm, "demo")
	require.NoError(t, err)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bridge.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})

	readyz := func() (int, readiness) {
		code, body := get(t, srv.URL+"/readyz")
		var rd readiness
		require.NoError(t, json.Unmarshal([]byte(body), &rd), body)
		return code, rd
	}
	require.Eventually(t, func() bool { c, _ := readyz(); return c == http.StatusOK }, 10*time.Second, 20*time.Millisecond)
	_, rd := readyz()
	require.NotNil(t, rd.JobManager)
	assert.True(t, rd.JobManager.Reachable)

	ns.Stop()
	require.Eventually(t, func() bool { c, _ := readyz(); return c == http.StatusServiceUnavailable }, 10*time.Second, 20*time.Millisecond)
	_, rd = readyz()
	assert.Equal(t, "disconnected", rd.NATS)
	assert.False(t, rd.Ready)

	ns.Restart()
	require.Eventually(t, func() bool { c, _ := readyz(); return c == http.StatusOK }, 15*time.Second, 20*time.Millisecond)

	_, body := get(t, srv.URL+"/metrics")
	assert.Contains(t, body, "lessonbridge_events_received_total", "the bridge's own metrics are served")
	assert.Contains(t, body, "process_cpu_seconds_total")
}

// healthyBridge is a bridgeView that also reports Health, as the engine will.
type healthyBridge struct {
	fakeBridge
	reason string
}

func (h *healthyBridge) Health() (bool, string) { return h.ready.Load(), h.reason }

// Once the engine has Health, its reason is what /readyz says.
func TestReadyzUsesBridgeHealth(t *testing.T) {
	hb := &healthyBridge{reason: "recovering 3 ledger records"}
	api, err := newHTTPAPI(hb, nil, func() bool { return true }, nil, "")
	require.NoError(t, err)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	code, body := get(t, srv.URL+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.JSONEq(t, `{"ready":false,"nats":"connected","bridge":"not ready","reason":"bridge recovering 3 ledger records"}`, body)
}

// The status page at / is plain HTML (well-formed, no script) showing readiness, the batches and
// the key metrics; its status code is /readyz's.
func TestStatusPage(t *testing.T) {
	created := time.Now().Add(-95 * time.Second)
	fb := &fakeBridge{batches: []consumer.BatchInfo{{Key: "k1", Mandator: "zh-kanti", Action: "create", BatchID: "12345",
		State: "polling", Created: created, Polls: 2, Lessons: 3, Events: 4, LastStatus: "AwaitingLessonProcessing"},
		{Key: "k2", Mandator: "demo", Action: "delete", State: "submitting", Created: created, Lessons: 1, Events: 1}}}
	var natsUp atomic.Bool
	api, err := newHTTPAPI(fb, nil, natsUp.Load, nil, "")
	require.NoError(t, err)
	received := prometheus.NewCounter(prometheus.CounterOpts{Name: "lessonbridge_events_received_total", Help: "h"})
	received.Add(1234)
	batches := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lessonbridge_batches_total", Help: "h"}, []string{"status", "reason"})
	batches.WithLabelValues("succeeded", "").Add(40)
	batches.WithLabelValues("failed", "import_failed").Add(2)
	batches.WithLabelValues("failed", "rejected").Add(1)
	require.NoError(t, api.registry.Register(received))
	require.NoError(t, api.registry.Register(batches))
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	page := string(b)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	assertWellFormedHTML(t, page)
	assert.NotContains(t, page, "<script")
	assert.Contains(t, page, `<title>lessonbridge NOT READY</title>`)
	assert.Contains(t, page, `<td id="nats">disconnected</td>`)
	assert.Contains(t, page, `<td id="reason">nats disconnected; bridge ensuring the topology`)
	assert.Contains(t, page, `Batches in flight (2)`)
	assert.Regexp(t, `<tr><td>zh-kanti</td><td>create</td><td>12345</td><td>polling</td><td class="num">1m3[56]s</td><td class="num">2</td><td class="num">3</td><td class="num">4</td><td>AwaitingLessonProcessing</td></tr>`, page)
	assert.Contains(t, page, `<tr><td>demo</td><td>delete</td><td>-</td><td>submitting</td>`)
	assert.Contains(t, page, `<tr><th>input events taken over</th><td class="num">1234</td>`)
	assert.Contains(t, page, `<tr><th>batches succeeded</th><td class="num">40</td>`)
	assert.Contains(t, page, `<tr><th>batches failed</th><td class="num">3</td>`)
	assert.Contains(t, page, `<tr><th>input messages held</th><td class="num">-</td>`, "not registered: shown as -")
	assert.Contains(t, page, `&#34;ready&#34;: false`, "the /readyz body, escaped")

	natsUp.Store(true)
	fb.ready.Store(true)
	fb.batches = nil
	code, page := get(t, srv.URL+"/")
	assert.Equal(t, http.StatusOK, code)
	assertWellFormedHTML(t, page)
	assert.Contains(t, page, `<span id="state" class="state ready">ready</span>`)
	assert.Contains(t, page, `<p id="batches">none</p>`)
	assert.NotContains(t, page, `id="reason"`)

	// Only / itself: other paths stay 404.
	code, _ = get(t, srv.URL+"/nope")
	assert.Equal(t, http.StatusNotFound, code)
}

// assertWellFormedHTML parses page strictly (HTML void elements and entities allowed), so an
// unclosed or misnested tag fails.
func assertWellFormedHTML(t *testing.T, page string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(strings.TrimPrefix(page, "<!DOCTYPE html>")))
	d.Strict, d.AutoClose, d.Entity = true, xml.HTMLAutoClose, xml.HTMLEntity
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		require.NoError(t, err, "the status page is not well-formed")
	}
}

// The status page in a real headless browser: Chromium loads it, and the DOM it built shows the
// state. Runs where a Chromium is installed (apt-get install chromium); the HTML test above covers
// the page everywhere else.
func TestStatusPageInChromium(t *testing.T) {
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("no Chromium on PATH (apt-get install chromium); TestStatusPage checks the HTML")
	}
	fb := &fakeBridge{batches: []consumer.BatchInfo{{Key: "k1", Mandator: "zh-kanti", Action: "update", BatchID: "777",
		State: "polling", Created: time.Now(), Lessons: 5, Events: 5}}}
	api, err := newHTTPAPI(fb, nil, func() bool { return true }, nil, "")
	require.NoError(t, err)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--dump-dom", srv.URL+"/")
	out, err := cmd.Output()
	require.NoError(t, err)
	dom := string(out)
	assert.Contains(t, dom, `<span id="state" class="state notready">not ready</span>`)
	assert.Contains(t, dom, `<td id="nats">connected</td>`)
	assert.Contains(t, dom, `<td>zh-kanti</td><td>update</td><td>777</td><td>polling</td>`)
}

// TestPprofEndpoints: /debug/pprof/ is served only with --pprof on.
func TestPprofEndpoints(t *testing.T) {
	for _, on := range []bool{false, true} {
		api, err := newHTTPAPI(nil, nil, func() bool { return true }, nil, "")
		require.NoError(t, err)
		api.pprof = on
		srv := httptest.NewServer(api.Handler())
		code, body := get(t, srv.URL+"/debug/pprof/goroutine?debug=1")
		srv.Close()
		if on {
			assert.Equal(t, http.StatusOK, code)
			assert.Contains(t, body, "goroutine profile:")
		} else {
			assert.Equal(t, http.StatusNotFound, code)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/jobmanager"
)

// bridgeView is the part of *consumer.Bridge the HTTP endpoints read.
type bridgeView interface {
	Ready() bool
	Batches() []consumer.BatchInfo
}

// jmProbeTTL is how long a JobManager reachability result is reused.
const jmProbeTTL = 10 * time.Second

// jmProbeTimeout bounds one reachability request.
const jmProbeTimeout = 3 * time.Second

// httpAPI serves /metrics, /healthz, /readyz and /batches for a running bridge.
type httpAPI struct {
	bridge        bridgeView
	natsConnected func() bool
	registry      *prometheus.Registry
	probe         *jmProbe                    // nil: JobManager reachability is not reported
	leaders       atomic.Pointer[leaderWatch] // nil: not checked; else the JetStream leader check (cluster.go)
}

// newHTTPAPI returns the endpoints of bridge. metrics is registered in a dedicated registry with the
// Go and process collectors. natsConnected reports the NATS connection's state. When jm is not nil
// and mandator is not empty, /readyz also reports whether JobManager answers the batch list of
// mandator (as information: it never makes the bridge unready).
func newHTTPAPI(bridge bridgeView, metrics *consumer.Metrics, natsConnected func() bool, jm *jobmanager.Client, mandator string) (*httpAPI, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "lessonbridge_build_info", Help: "Always 1; the version label names the build.",
		ConstLabels: prometheus.Labels{"version": version}})
	info.Set(1)
	if err := reg.Register(info); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if metrics != nil {
		if err := metrics.Register(reg); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	api := &httpAPI{bridge: bridge, natsConnected: natsConnected, registry: reg}
	if jm != nil && mandator != "" {
		api.probe = &jmProbe{jm: jm, mandator: mandator, ttl: jmProbeTTL, now: time.Now}
	}
	return api, nil
}

// Handler routes the endpoints.
func (a *httpAPI) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{Registry: a.registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("GET /batches", func(w http.ResponseWriter, _ *http.Request) {
		batches := a.bridge.Batches()
		if batches == nil {
			batches = []consumer.BatchInfo{}
		}
		writeJSON(w, http.StatusOK, batches)
	})
	return mux
}

// readiness is the body of /readyz.
type readiness struct {
	Ready      bool            `json:"ready"`
	NATS       string          `json:"nats"`   // connected or disconnected
	Bridge     string          `json:"bridge"` // ready or not ready
	JobManager *jmReachability `json:"jobmanager,omitempty"`
	JetStream  string          `json:"jetstream,omitempty"` // leaders present, or why not
}

// jmReachability is the information part of /readyz: whether JobManager answered lately.
type jmReachability struct {
	Mandator  string    `json:"mandator"`
	Reachable bool      `json:"reachable"`
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checkedAt"`
}

// readyz answers 200 when NATS is connected and the bridge is ready, else 503; the body says which
// part is missing and, as information only, whether JobManager is reachable.
func (a *httpAPI) readyz(w http.ResponseWriter, r *http.Request) {
	rd := readiness{NATS: "disconnected", Bridge: "not ready"}
	natsOK, bridgeOK := a.natsConnected(), a.bridge.Ready()
	if natsOK {
		rd.NATS = "connected"
	}
	if bridgeOK {
		rd.Bridge = "ready"
	}
	rd.Ready = natsOK && bridgeOK
	if w := a.leaders.Load(); w != nil {
		rd.JetStream = "leaders present"
		if err := w.Err(); err != nil {
			rd.JetStream, rd.Ready = err.Error(), false
		}
	}
	if a.probe != nil {
		res := a.probe.check(r.Context())
		rd.JobManager = &res
	}
	code := http.StatusOK
	if !rd.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rd)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// jmProbe asks JobManager for a mandator's batch list at most once per ttl and caches the answer.
type jmProbe struct {
	jm       *jobmanager.Client
	mandator string
	ttl      time.Duration
	now      func() time.Time

	mu   sync.Mutex // held during a probe, so concurrent callers share one request
	last jmReachability
}

func (p *jmProbe) check(ctx context.Context) jmReachability {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if !p.last.CheckedAt.IsZero() && now.Sub(p.last.CheckedAt) < p.ttl {
		return p.last
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jmProbeTimeout)
	defer cancel()
	_, err := p.jm.Batches(ctx, p.mandator)
	p.last = jmReachability{Mandator: p.mandator, Reachable: err == nil, CheckedAt: now}
	if err != nil {
		p.last.Error = err.Error() // never holds the token (package jobmanager redacts it)
	}
	return p.last
}

// httpServer is a started HTTP server; Addr is where it listens.
type httpServer struct {
	Addr string
	srv  *http.Server
	done chan error
}

// startHTTP listens on addr and serves h until Shutdown. A listen error (such as a busy port) is
// returned at once.
func startHTTP(addr string, h http.Handler, log *zap.Logger) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	s := &httpServer{
		Addr: ln.Addr().String(),
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second,
			ErrorLog: zap.NewStdLog(log.Named("http"))},
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Shutdown stops the server, waiting up to timeout for requests in progress, and returns the serve
// error, if any.
func (s *httpServer) Shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	return <-s.done
}

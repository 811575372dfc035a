package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
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

// httpAPI serves /metrics, /healthz, /readyz, /batches and the status page / for a bridge, from
// before the bridge exists: run starts it before NATS is connected and the topology ensured, so
// that /healthz answers from the first second and /readyz says what the bridge waits for.
type httpAPI struct {
	bridgeRef     atomic.Pointer[bridgeRef] // nil until setBridge
	natsConnected func() bool
	natsState     func() string // nil: natsConnected decides between connected and disconnected
	registry      *prometheus.Registry
	probe         *jmProbe                    // nil: JobManager reachability is not reported
	leaders       atomic.Pointer[leaderWatch] // nil: not checked; else the JetStream leader check (cluster.go)
	started       time.Time
	pprof         bool // serve /debug/pprof/ (run --pprof on)
}

type bridgeRef struct{ v bridgeView }

// bridgeHealth is what the engine's Bridge.Health reports once it has it: ready, and why not.
type bridgeHealth interface {
	Health() (ready bool, reason string)
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
		ConstLabels: prometheus.Labels{"version": buildVersion()}})
	info.Set(1)
	if err := reg.Register(info); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if metrics != nil {
		if err := metrics.Register(reg); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	api := &httpAPI{natsConnected: natsConnected, registry: reg, started: time.Now()}
	if bridge != nil {
		api.bridgeRef.Store(&bridgeRef{bridge})
	}
	if jm != nil && mandator != "" {
		api.probe = &jmProbe{jm: jm, mandator: mandator, ttl: jmProbeTTL, now: time.Now}
	}
	return api, nil
}

// setBridge hands the endpoints the bridge once it exists and registers its metrics.
func (a *httpAPI) setBridge(bridge bridgeView, metrics *consumer.Metrics) error {
	if metrics != nil {
		if err := metrics.Register(a.registry); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	a.bridgeRef.Store(&bridgeRef{bridge})
	return nil
}

// bridge is the bridge, nil before setBridge.
func (a *httpAPI) bridge() bridgeView {
	if r := a.bridgeRef.Load(); r != nil {
		return r.v
	}
	return nil
}

// batches is the bridge's batch list, empty (not nil) before the bridge exists.
func (a *httpAPI) batches() []consumer.BatchInfo {
	var batches []consumer.BatchInfo
	if b := a.bridge(); b != nil {
		batches = b.Batches()
	}
	if batches == nil {
		batches = []consumer.BatchInfo{}
	}
	return batches
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
		writeJSON(w, http.StatusOK, a.batches())
	})
	mux.HandleFunc("GET /{$}", a.statusPage)
	if a.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index) // heap, goroutine, block, mutex, allocs, threadcreate
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// readiness is the body of /readyz.
type readiness struct {
	Ready      bool            `json:"ready"`
	NATS       string          `json:"nats"`   // connecting, connected, reconnecting, disconnected or closed
	Bridge     string          `json:"bridge"` // starting (waiting for NATS), ready or not ready
	Reason     string          `json:"reason,omitempty"`
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
// part is missing and why and, as information only, whether JobManager is reachable.
func (a *httpAPI) readyz(w http.ResponseWriter, r *http.Request) {
	rd := a.readiness(r.Context())
	code := http.StatusOK
	if !rd.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rd)
}

// readiness is the state /readyz and the status page report.
func (a *httpAPI) readiness(ctx context.Context) readiness {
	rd := readiness{NATS: "disconnected", Bridge: "not ready"}
	if a.natsState != nil {
		rd.NATS = a.natsState()
	} else if a.natsConnected() {
		rd.NATS = "connected"
	}
	natsOK := rd.NATS == "connected"
	bridgeOK, bridgeReason := false, ""
	switch b := a.bridge().(type) {
	case nil:
		rd.Bridge, bridgeReason = "starting", "waiting for NATS before ensuring the topology"
	case bridgeHealth:
		bridgeOK, bridgeReason = b.Health()
	default:
		// Until consumer.Bridge.Health (ready, reason) is merged the engine says only Ready(); its
		// reason goes here (the case above picks Health up by itself once the method exists).
		bridgeOK = b.Ready()
		if !bridgeOK {
			bridgeReason = "ensuring the topology, recovering the ledger or binding the consumer"
		}
	}
	if bridgeOK {
		rd.Bridge = "ready"
	}
	rd.Ready = natsOK && bridgeOK
	var why []string
	if !natsOK {
		why = append(why, "nats "+rd.NATS)
	}
	if !bridgeOK && bridgeReason != "" {
		why = append(why, "bridge "+bridgeReason)
	}
	if w := a.leaders.Load(); w != nil {
		rd.JetStream = "leaders present"
		if err := w.Err(); err != nil {
			rd.JetStream, rd.Ready = err.Error(), false
			why = append(why, "jetstream "+err.Error())
		}
	}
	rd.Reason = strings.Join(why, "; ")
	if a.probe != nil {
		res := a.probe.check(ctx)
		rd.JobManager = &res
	}
	return rd
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

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/internal/tracing"
	"github.com/lessonbridge/lessonbridge/jobmanager"
)

// httpShutdownTimeout bounds how long the HTTP endpoints wait for requests in progress at exit.
const httpShutdownTimeout = 3 * time.Second

// defaultGCPercent is the collector's target for `run` unless GOGC is set: the bridge allocates per
// message and keeps little between batches, and at 200 it spent about 14 % less CPU per event in
// the black-box benchmark than at Go's 100 (BENCHMARKS.md), for a heap that may grow to three times
// what is live instead of two. GOMEMLIMIT (honoured by the Go runtime) bounds it in a container.
const defaultGCPercent = 200

// gcDefault sets the collector's target to defaultGCPercent unless the operator set GOGC, and
// returns the target in effect, for the start-up line.
func gcDefault(getenv func(string) string) string {
	if v := getenv("GOGC"); v != "" {
		return v
	}
	debug.SetGCPercent(defaultGCPercent)
	return strconv.Itoa(defaultGCPercent)
}

// runBridge is `lessonbridge run`: the bridge daemon. It checks every flag first (reporting all bad
// values at once), logs the effective configuration without secrets, serves the HTTP endpoints,
// connects to NATS (reconnecting forever) and runs the engine until ctx ends (SIGINT/SIGTERM).
func runBridge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", stderr)
	flags := registerRunFlags(fs)
	if err := parseFlags(fs, args, runFlagExtraEnv); err != nil {
		return err
	}
	s, errs := flags.settings(osFS{})
	if len(errs) > 0 {
		lines := make([]string, len(errs))
		for i, e := range errs {
			lines[i] = "  " + strings.ReplaceAll(e.Error(), "\n", "\n  ")
		}
		return fmt.Errorf("run: invalid configuration:\n%s", strings.Join(lines, "\n"))
	}
	log, err := newLogger(s.LogLevel, s.LogFormat, stderr)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	defer func() { _ = log.Sync() }()
	log.Info("lessonbridge starting", append(s.logFields(), zap.String("gogc", gcDefault(os.Getenv)))...)

	tp, err := tracing.Setup(ctx, buildVersion(), os.Getenv)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("tracing shutdown", zap.Error(err))
		}
	}()
	if tp.Enabled() {
		log.Info("tracing on: spans exported over OTLP/HTTP (OTEL_EXPORTER_OTLP_*)")
	}
	s.JobManager.Tracing = tp
	jm, err := newJobManagerClient(s.JobManager)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	cfg := s.Bridge
	cfg.Logger = log
	cfg.Tracing = tp
	cfg.Hooks = faultHooks() // the chaos test's fault injection (fault.go); zero unless its variables are set

	// The HTTP endpoints come first: /healthz answers while NATS is still unreachable, and /readyz
	// says what the bridge waits for.
	var natsConn atomic.Pointer[nats.Conn]
	var api *httpAPI
	if s.HTTPAddr != "" {
		probeMandator := ""
		if len(cfg.Mandators) > 0 {
			probeMandator = cfg.Mandators[0]
		}
		api, err = newHTTPAPI(nil, nil, func() bool { return natsState(natsConn.Load()) == "connected" }, jm, probeMandator)
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		api.natsState = func() string { return natsState(natsConn.Load()) }
		if s.Pprof {
			api.pprof = true
			// Blocking and lock contention are sampled only with --pprof on: sampling costs a little
			// on every blocking channel operation and contended lock.
			runtime.SetBlockProfileRate(int(100 * time.Microsecond))
			runtime.SetMutexProfileFraction(10)
			log.Warn("serving Go profiles at /debug/pprof/ (--pprof on): keep --http-addr private", zap.String("httpAddr", s.HTTPAddr))
		}
		srv, err := startHTTP(s.HTTPAddr, api.Handler(), log)
		if err != nil {
			return fmt.Errorf("run: --http-addr %s: %w", s.HTTPAddr, err)
		}
		log.Info("serving /, /metrics, /healthz, /readyz and /batches", zap.String("httpAddr", srv.Addr))
		defer func() {
			if err := srv.Shutdown(httpShutdownTimeout); err != nil {
				log.Warn("http server", zap.Error(err))
			}
		}()
	}

	nc, err := connectNATS(ctx, s.NATS, "lessonbridge run", log, &natsConn)
	if err != nil {
		if ctx.Err() != nil {
			log.Info("lessonbridge stopped before NATS was reachable")
			return nil
		}
		return fmt.Errorf("run: %w", err)
	}
	defer nc.Close()
	js, err := s.NATS.newJetStream(nc)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	bridge, err := consumer.New(js, jm, cfg)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	leaders := newLeaderWatch(js, cfg, log) // readiness and moving off a cut-off server (cluster.go)
	defer leaders.start(ctx)()
	if api != nil {
		if err := api.setBridge(bridge, bridge.Metrics()); err != nil {
			return fmt.Errorf("run: %w", err)
		}
		if err := registerObservability(api, js, cfg); err != nil {
			return fmt.Errorf("run: %w", err)
		}
		if err := leaders.serve(api); err != nil {
			return fmt.Errorf("run: %w", err)
		}
	}

	err = bridge.Run(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("run: %w", err)
	}
	log.Info("lessonbridge stopped")
	return nil
}

// newJobManagerClient builds the JobManager client: the token option given (static, file or
// per-mandator directory) and, with a CA file, an HTTP client that trusts only those CAs.
func newJobManagerClient(s jmSettings) (*jobmanager.Client, error) {
	var opts []jobmanager.Option
	switch {
	case s.Token != "":
		opts = append(opts, jobmanager.WithToken(s.Token))
	case s.TokenFile != "":
		opts = append(opts, jobmanager.WithTokenFile(s.TokenFile))
	case s.TokenDir != "":
		opts = append(opts, jobmanager.WithTokenSource(jobmanager.TokenDir(s.TokenDir)))
	case s.OAuth2 != nil:
		ts, err := newOAuth2Source(s)
		if err != nil {
			return nil, err
		}
		opts = append(opts, jobmanager.WithTokenSource(ts))
	}
	if s.RootCAs != nil || s.Tracing.Enabled() {
		var tr http.RoundTripper = http.DefaultTransport
		if s.RootCAs != nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.TLSClientConfig = &tls.Config{RootCAs: s.RootCAs, MinVersion: tls.VersionTLS12}
			tr = t
		}
		if s.Tracing.Enabled() {
			tr = s.Tracing.Transport(tr) // the calls carry their span's traceparent
		}
		opts = append(opts, jobmanager.WithHTTPClient(&http.Client{
			Transport: tr,
			Timeout:   jobmanager.DefaultTimeout,
			// Like the client's default: a redirect is an answer to report, not to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}))
	}
	opts = append(opts, jobmanager.WithUserAgent("lessonbridge/"+buildVersion()))
	return jobmanager.New(s.URL, opts...)
}

// natsState names the state of a connection for /readyz: connecting (also before there is one),
// connected, reconnecting, disconnected, draining or closed.
func natsState(nc *nats.Conn) string {
	if nc == nil {
		return "connecting"
	}
	switch nc.Status() {
	case nats.CONNECTED:
		return "connected"
	case nats.CONNECTING:
		return "connecting"
	case nats.RECONNECTING:
		return "reconnecting"
	case nats.DRAINING_SUBS, nats.DRAINING_PUBS:
		return "draining"
	case nats.CLOSED:
		return "closed"
	}
	return "disconnected"
}

// connectNATS connects with the configured authentication and TLS, reconnecting forever, and logs
// disconnects and reconnects. When no server is reachable at start it keeps trying (logging each
// failure) until it connects or ctx ends. Once connected, the connection is also stored in conn (when
// not nil), for /readyz; until then /readyz says "connecting".
func connectNATS(ctx context.Context, s natsSettings, name string, log *zap.Logger, conn *atomic.Pointer[nats.Conn]) (nc *nats.Conn, err error) {
	connected := make(chan struct{}, 1)
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", zap.String("server", nc.ConnectedUrlRedacted()))
			select {
			case connected <- struct{}{}:
			default:
			}
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected; reconnecting", zap.Error(err))
			} else {
				log.Info("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Debug("nats reconnect attempt failed", zap.Error(err))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats asynchronous error", zap.String("subject", subject), zap.Error(err))
		}),
	}
	auth, err := s.authOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth...)
	nc, err = nats.Connect(s.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", redactURLs(s.URL), err)
	}
	if nc.IsConnected() {
		if conn != nil {
			conn.Store(nc)
		}
		return nc, nil
	}
	log.Warn("nats not reachable yet; retrying", zap.String("natsUrl", redactURLs(s.URL)))
	select {
	case <-connected:
		if conn != nil {
			conn.Store(nc)
		}
		return nc, nil
	case <-ctx.Done():
		nc.Close()
		return nil, fmt.Errorf("nats connect %s: %w", redactURLs(s.URL), ctx.Err())
	}
}

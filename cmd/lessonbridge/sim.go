package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
)

// simShutdownTimeout bounds how long jobmanager-sim waits for requests in flight at shutdown.
const simShutdownTimeout = 5 * time.Second

// runSim serves the JobManager simulator until ctx ends. It prints the listening address (the
// bound one, so --addr 127.0.0.1:0 works) to stdout as "jobmanager-sim listening on http://<addr>"
// and logs to stderr: a startup line at info, one line per request at debug.
func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("jobmanager-sim", stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (port 0 picks a free port)")
	tok := fs.String("token", "", "required bearer token; empty accepts any request")
	creation := fs.Duration("creation-delay", time.Second, "time a batch stays AwaitingLessonCreation")
	processing := fs.Duration("processing-delay", 2*time.Second, "time a batch stays AwaitingLessonProcessing at least")
	lag := fs.Duration("not-found-lag", 500*time.Millisecond, "a new batch's status answers 404 for this long")
	resources := fs.String("resources", "", "comma-separated known RessourceName values; empty accepts any")
	mandators := fs.String("mandators", "", "comma-separated known mandators; empty accepts any valid name")
	strict := fs.Bool("strict-create", false, `a create of an existing lesson fails ("existiert bereits") instead of replacing it`)
	maxBody := fs.Int64("max-body-bytes", jobmanagertest.DefaultMaxBodyBytes, "largest submit body accepted")
	latency := fs.Duration("latency", 0, "delay before every API answer")
	failSubmit := fs.Float64("fail-submit-rate", 0, "fraction of submits answered 503 (not recorded)")
	lose := fs.Float64("lose-response-rate", 0, "fraction of submits recorded but answered 502 or dropped (see --lose-mode)")
	loseMode := fs.String("lose-mode", "502", "how a lost answer is lost: 502 or close")
	failStatus := fs.Float64("fail-status-rate", 0, "fraction of status requests answered 503")
	failImport := fs.Float64("fail-import-rate", 0, "fraction of batches failing with a technical error")
	seed := fs.Int64("seed", 1, "seed of the random faults")
	errorStyle := fs.String("error-style", "lessons", "wording of a failed batch's ErrorMessages: lessons, jobid, anonymous or first-error")
	badLessons := fs.String("bad-lessons", "", "comma-separated LektionIds that always fail validation")
	badResources := fs.String("bad-resources", "", "comma-separated RessourceName values that fail validation as unknown")
	level := fs.String("log-level", "info", "log level: debug logs every request")
	oauth := registerSimOAuth2Flags(fs)
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}

	lvl, err := zapcore.ParseLevel(*level)
	if err != nil {
		return fmt.Errorf("jobmanager-sim: --log-level: %w", err)
	}
	log := zap.New(zapcore.NewCore(
		zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.Lock(zapcore.AddSync(stderr)), lvl))
	defer func() { _ = log.Sync() }()

	cfg := jobmanagertest.Config{
		Token:           *tok,
		CreationDelay:   *creation,
		ProcessingDelay: *processing,
		NotFoundLag:     *lag,
		Resources:       simSplitList(*resources),
		Mandators:       simSplitList(*mandators),
		StrictCreate:    *strict,
		MaxBodyBytes:    *maxBody,
		Random: jobmanagertest.RandomFaults{
			Seed:             *seed,
			SubmitFailRate:   *failSubmit,
			LoseResponseRate: *lose,
			StatusFailRate:   *failStatus,
			ImportFailRate:   *failImport,
		},
	}
	if cfg.ErrorStyle, err = jobmanagertest.ParseErrorStyle(*errorStyle); err != nil {
		return fmt.Errorf("jobmanager-sim: --error-style: %w", err)
	}
	cfg.BadLessons, cfg.BadResources = simSplitList(*badLessons), simSplitList(*badResources)
	switch *loseMode {
	case "502":
		cfg.Random.LoseMode = jobmanagertest.LoseWith502
	case "close":
		cfg.Random.LoseMode = jobmanagertest.LoseByClose
	default:
		return fmt.Errorf("jobmanager-sim: --lose-mode %q: want 502 or close", *loseMode)
	}
	if *latency < 0 {
		return fmt.Errorf("jobmanager-sim: --latency is negative: %v", *latency)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("jobmanager-sim: %w", err)
	}
	sim := jobmanagertest.New(cfg)
	sim.Latency(*latency)
	api, err := oauth.wrap(sim, *tok)
	if err != nil {
		return fmt.Errorf("jobmanager-sim: %w", err)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("jobmanager-sim: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           simLogRequests(log, api),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	bound := ln.Addr().String()
	log.Info("jobmanager-sim listening", zap.String("addr", bound),
		zap.Bool("tokenRequired", *tok != ""), zap.Duration("creationDelay", *creation),
		zap.Duration("processingDelay", *processing), zap.Duration("notFoundLag", *lag))
	if oauth.On {
		log.Info("jobmanager-sim OAuth2 token endpoint", zap.String("tokenUrl", "http://"+bound+jobmanagertest.OAuth2TokenPath),
			zap.String("clientId", oauth.ClientID), zap.Duration("tokenTtl", oauth.TTL))
	}
	if _, err := fmt.Fprintf(stdout, "jobmanager-sim listening on http://%s\n", bound); err != nil {
		_ = ln.Close()
		return fmt.Errorf("jobmanager-sim: %w", err)
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("jobmanager-sim: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), simShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("jobmanager-sim: shutdown: %w", err)
	}
	log.Info("jobmanager-sim stopped")
	return nil
}

// simSplitList splits a comma-separated flag value, dropping empty items and surrounding spaces.
func simSplitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// simLogRequests logs one debug line per request: method, path, status code (0 when the
// connection was dropped) and duration. It never logs headers, so no token.
func simLogRequests(log *zap.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !log.Core().Enabled(zapcore.DebugLevel) {
			next.ServeHTTP(w, r)
			return
		}
		cw := &simCodeWriter{ResponseWriter: w}
		began := time.Now()
		defer func() {
			log.Debug("request", zap.String("method", r.Method), zap.String("path", r.URL.Path),
				zap.Int("status", cw.code), zap.Duration("duration", time.Since(began)))
		}()
		next.ServeHTTP(cw, r)
	})
}

// simCodeWriter remembers the status code; Unwrap keeps Hijack reachable for dropped answers.
type simCodeWriter struct {
	http.ResponseWriter
	code int
}

func (w *simCodeWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *simCodeWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *simCodeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

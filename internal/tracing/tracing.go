// Package tracing owns the bridge's OpenTelemetry tracing: setting it up from the standard
// OTEL_* environment (off unless an OTLP endpoint is configured), the spans of a batch's life (one
// span per batch, a child span per submit and per status poll, each input event's CloudEvents
// traceparent linked into the batch span), the traceparent an outcome event carries, and the
// http.RoundTripper that puts traceparent on the JobManager HTTP calls.
//
// Everything here works when tracing is off: spans are then non-recording, TraceParent returns ""
// and the transport adds nothing. A nil *Provider and a nil *Batch are valid and do nothing.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/lessonbridge/lessonbridge/schemas"
)

// Span names and attribute keys of the bridge's spans.
const (
	SpanBatch  = "lessonbridge.batch"
	SpanSubmit = "lessonbridge.submit"
	SpanPoll   = "lessonbridge.poll"

	AttrBatchKey     = attribute.Key("lessonbridge.batch.key")
	AttrBatchID      = attribute.Key("lessonbridge.batch.id") // JobManager's BatchId
	AttrMandator     = attribute.Key("lessonbridge.mandator")
	AttrAction       = attribute.Key("lessonbridge.action")
	AttrLessons      = attribute.Key("lessonbridge.batch.lessons")
	AttrEvents       = attribute.Key("lessonbridge.batch.events")
	AttrJobIDs       = attribute.Key("lessonbridge.batch.job_ids")
	AttrAttempt      = attribute.Key("lessonbridge.attempt")
	AttrImportStatus = attribute.Key("lessonbridge.import_status")
	AttrStatus       = attribute.Key("lessonbridge.outcome.status")
	AttrReason       = attribute.Key("lessonbridge.outcome.reason")
	AttrErrorClass   = attribute.Key("lessonbridge.outcome.error_class")
)

// maxLinks bounds the links of one batch span (the SDK's default span limit is 128).
const maxLinks = 128

// instrumentation is the tracer's name.
const instrumentation = "github.com/lessonbridge/lessonbridge"

// Provider makes the bridge's spans. Use Setup in programs and New in tests; the zero value is
// not usable, a nil *Provider is (it traces nothing).
type Provider struct {
	tp       trace.TracerProvider
	tracer   trace.Tracer
	shutdown func(context.Context) error // nil when there is nothing to flush
	enabled  bool
}

// traceContext is the W3C propagator used for events, outcomes and HTTP.
var traceContext = propagation.TraceContext{}

// Enabled reports whether spans are exported.
func (p *Provider) Enabled() bool { return p != nil && p.enabled }

// Setup reads the standard OpenTelemetry environment through getenv (os.Getenv in programs) and
// returns a Provider that exports spans over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, and a no-op one otherwise or when OTEL_SDK_DISABLED
// is true or OTEL_TRACES_EXPORTER is none. The exporter itself reads the other OTEL_EXPORTER_OTLP_*
// variables (headers, timeout, TLS, compression); OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
// name the service (default service.name lessonbridge). Only the http/protobuf protocol is
// supported: another OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL is an error naming the variable. Nothing
// is contacted here; spans are sent in batches in the background until Shutdown.
func Setup(ctx context.Context, version string, getenv func(string) string) (*Provider, error) {
	off := &Provider{tp: noop.NewTracerProvider()}
	off.tracer = off.tp.Tracer(instrumentation)
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") ||
		strings.EqualFold(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")), "none") {
		return off, nil
	}
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return off, nil
	}
	if e := getenv("OTEL_TRACES_EXPORTER"); e != "" && !strings.EqualFold(e, "otlp") {
		return nil, fmt.Errorf("tracing: OTEL_TRACES_EXPORTER=%q: only otlp (or none) is supported", e)
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := getenv(name); v != "" {
			if v != "http/protobuf" {
				return nil, fmt.Errorf("tracing: %s=%q: only http/protobuf is supported", name, v)
			}
			break
		}
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "lessonbridge"), attribute.String("service.version", version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Provider{tp: tp, tracer: tp.Tracer(instrumentation), shutdown: tp.Shutdown, enabled: true}, nil
}

// New returns a Provider on tp (tests use an SDK provider with an in-memory exporter). Shutdown
// does not shut tp down.
func New(tp trace.TracerProvider) *Provider {
	return &Provider{tp: tp, tracer: tp.Tracer(instrumentation), enabled: true}
}

// Shutdown flushes the spans not yet exported and stops the exporter; ctx bounds the wait. It is
// a no-op when tracing is off.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.shutdown == nil {
		return nil
	}
	if err := p.shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// Transport returns base (http.DefaultTransport when nil) wrapped so that every request gets a
// client span, child of the span in the request's context (the submit or poll span), and carries
// that span's W3C traceparent header. With tracing off it returns base unchanged.
func (p *Provider) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if !p.Enabled() {
		return base
	}
	return otelhttp.NewTransport(base, otelhttp.WithTracerProvider(p.tp), otelhttp.WithPropagators(traceContext),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "JobManager " + r.Method }))
}

// SpanContextOf parses a W3C traceparent (as schemas.LessonChange.TraceParent holds it). ok is
// false for an empty or invalid one.
func SpanContextOf(traceparent string) (sc trace.SpanContext, ok bool) {
	if !schemas.ValidTraceParent(traceparent) {
		return trace.SpanContext{}, false
	}
	ctx := traceContext.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	sc = trace.SpanContextFromContext(ctx)
	return sc, sc.IsValid()
}

// TraceParent returns the W3C traceparent of the span in ctx, or "" when there is none that is
// sampled and valid (tracing off).
func TraceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	return c["traceparent"]
}

// BatchInfo describes a batch for its span.
type BatchInfo struct {
	Key      string // the bridge's batch key (b-<uuid>), also the outcome's id
	Mandator string
	Action   string
	Lessons  int
	Events   int
	JobIDs   []string
}

// Batch is the span of one batch from its cut to its settlement. Its methods are safe for
// concurrent use (the SDK's spans are); a nil *Batch does nothing.
type Batch struct {
	ctx    context.Context
	span   trace.Span
	tracer trace.Tracer
}

// StartBatch starts the span of a batch at start (zero: now), a new trace root, linked to the
// span of each input event's traceparent (invalid and empty ones are skipped, duplicates linked
// once, at most 128). The runner calls it when the batch is cut (or adopted after a restart) and
// keeps the *Batch with the batch until End.
func (p *Provider) StartBatch(ctx context.Context, b BatchInfo, traceparents []string, start time.Time) *Batch {
	if p == nil {
		return nil
	}
	links := make([]trace.Link, 0, min(len(traceparents), maxLinks))
	seen := make(map[string]bool, len(traceparents))
	for _, tp := range traceparents {
		if seen[tp] || len(links) == maxLinks {
			continue
		}
		seen[tp] = true
		if sc, ok := SpanContextOf(tp); ok {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithLinks(links...), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(AttrBatchKey.String(b.Key), AttrMandator.String(b.Mandator), AttrAction.String(b.Action),
			AttrLessons.Int(b.Lessons), AttrEvents.Int(b.Events), AttrJobIDs.StringSlice(b.JobIDs))}
	if !start.IsZero() {
		opts = append(opts, trace.WithTimestamp(start))
	}
	ctx, span := p.tracer.Start(ctx, SpanBatch, opts...)
	return &Batch{ctx: ctx, span: span, tracer: p.tracer}
}

// Context is a context carrying the batch span (for work the runner does on its behalf).
func (b *Batch) Context() context.Context {
	if b == nil {
		return context.Background()
	}
	return b.ctx
}

// TraceParent is the batch span's W3C traceparent, for the outcome event (Outcome.TraceParent);
// "" when tracing is off.
func (b *Batch) TraceParent() string {
	if b == nil {
		return ""
	}
	return TraceParent(b.ctx)
}

// Step is a submit or poll span; End it once with what came of it.
type Step struct{ span trace.Span }

// StartSubmit starts the span of one submit attempt (1 for the first) as a child of the batch
// span and returns ctx carrying it: pass that ctx to jobmanager.Client.Submit, so that the HTTP
// call (through Transport) is its child and carries its traceparent.
func (b *Batch) StartSubmit(ctx context.Context, attempt int) (context.Context, *Step) {
	return b.step(ctx, SpanSubmit, attempt)
}

// StartPoll starts the span of one status poll (n counts the polls of the batch, from 1) as a
// child of the batch span; pass the returned ctx to jobmanager.Client.Batch.
func (b *Batch) StartPoll(ctx context.Context, n int) (context.Context, *Step) {
	return b.step(ctx, SpanPoll, n)
}

func (b *Batch) step(ctx context.Context, name string, n int) (context.Context, *Step) {
	if b == nil {
		return ctx, nil
	}
	// The step's parent is the batch span, whatever ctx carries; ctx keeps its deadline and values.
	parent := trace.ContextWithSpan(ctx, b.span)
	ctx, span := b.tracer.Start(parent, name,
		trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(AttrAttempt.Int(n)))
	return ctx, &Step{span: span}
}

// End ends the step: batchID is JobManager's BatchId (when known), importStatus the status
// JobManager answered (when any), err the call's error (nil on success).
func (s *Step) End(batchID, importStatus string, err error) {
	if s == nil {
		return
	}
	if batchID != "" {
		s.span.SetAttributes(AttrBatchID.String(batchID))
	}
	if importStatus != "" {
		s.span.SetAttributes(AttrImportStatus.String(importStatus))
	}
	if err != nil {
		s.span.RecordError(err)
		s.span.SetStatus(codes.Error, err.Error())
	}
	s.span.End()
}

// Accepted records JobManager's BatchId on the batch span once a submit was accepted.
func (b *Batch) Accepted(batchID string) {
	if b != nil && batchID != "" {
		b.span.SetAttributes(AttrBatchID.String(batchID))
	}
}

// End ends the batch span with the batch's outcome: status succeeded or failed, reason and
// errorClass as in the outcome event. A failed batch's span has status Error.
func (b *Batch) End(status, reason, errorClass string) {
	if b == nil {
		return
	}
	b.span.SetAttributes(AttrStatus.String(status))
	if reason != "" {
		b.span.SetAttributes(AttrReason.String(reason), AttrErrorClass.String(errorClass))
	}
	if status != schemas.StatusSucceeded {
		b.span.SetStatus(codes.Error, strings.TrimSpace(reason+" "+errorClass))
	}
	b.span.End()
}

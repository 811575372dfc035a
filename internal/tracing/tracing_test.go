package tracing

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	eventTP1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	eventTP2 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
)

func recorder(t *testing.T) (*Provider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return New(tp), exp
}

func byName(spans tracetest.SpanStubs, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// TestBatchSpans: a batch span linked to its events' traceparents, a submit and two polls as its
// children, the JobManager HTTP calls as their children carrying traceparent, and the outcome's
// traceparent naming the batch span.
func TestBatchSpans(t *testing.T) {
	p, exp := recorder(t)
	var got []string
	jm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("traceparent"))
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(jm.Close)
	client := &http.Client{Transport: p.Transport(nil)}
	call := func(ctx context.Context) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, jm.URL, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
	}

	b := p.StartBatch(context.Background(), BatchInfo{Key: "b-1", Mandator: "zh-kanti", Action: "create", Lessons: 2, Events: 3, JobIDs: []string{"lb-1"}},
		[]string{eventTP1, eventTP2, eventTP1, "00-bad", "", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, time.Time{})
	ctx, submit := b.StartSubmit(context.Background(), 1)
	call(ctx)
	submit.End("4711", "AwaitingLessonCreation", nil)
	b.Accepted("4711")
	for n := 1; n <= 2; n++ {
		ctx, poll := b.StartPoll(context.Background(), n)
		call(ctx)
		var err error
		if n == 1 {
			err = errors.New("jobmanager: 503")
		}
		poll.End("4711", "LessonsImportFailed", err)
	}
	outcomeTP := b.TraceParent()
	b.End("failed", "import_failed", "data")

	spans := exp.GetSpans()
	batches := byName(spans, SpanBatch)
	require.Len(t, batches, 1)
	batch := batches[0]
	assert.False(t, batch.Parent.IsValid(), "a batch span is a trace root")
	require.Len(t, batch.Links, 2, "valid traceparents linked once each")
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", batch.Links[0].SpanContext.TraceID().String())
	assert.Equal(t, "00f067aa0ba902b7", batch.Links[0].SpanContext.SpanID().String())
	assert.Equal(t, "0af7651916cd43dd8448eb211c80319c", batch.Links[1].SpanContext.TraceID().String())
	assert.Equal(t, codes.Error, batch.Status.Code)
	attrs := map[string]string{}
	for _, a := range batch.Attributes {
		attrs[string(a.Key)] = a.Value.String()
	}
	assert.Equal(t, "b-1", attrs[string(AttrBatchKey)])
	assert.Equal(t, "4711", attrs[string(AttrBatchID)])
	assert.Equal(t, "import_failed", attrs[string(AttrReason)])

	steps := append(byName(spans, SpanSubmit), byName(spans, SpanPoll)...)
	require.Len(t, steps, 3)
	for _, s := range steps {
		assert.Equal(t, batch.SpanContext.SpanID(), s.Parent.SpanID(), "%s is a child of the batch span", s.Name)
		assert.Equal(t, batch.SpanContext.TraceID(), s.SpanContext.TraceID())
	}
	assert.Equal(t, codes.Error, byName(spans, SpanPoll)[0].Status.Code, "the failed poll")

	// Each HTTP call is a client span under its step and carried that span's traceparent.
	require.Len(t, got, 3)
	https := byName(spans, "JobManager POST")
	require.Len(t, https, 3)
	for i, h := range https {
		assert.Equal(t, trace.SpanKindClient, h.SpanKind)
		assert.Equal(t, steps[i].SpanContext.SpanID(), h.Parent.SpanID())
		assert.Equal(t, "00-"+h.SpanContext.TraceID().String()+"-"+h.SpanContext.SpanID().String()+"-01", got[i])
	}

	assert.Equal(t, "00-"+batch.SpanContext.TraceID().String()+"-"+batch.SpanContext.SpanID().String()+"-01", outcomeTP)
	sc, ok := SpanContextOf(outcomeTP)
	require.True(t, ok)
	assert.Equal(t, batch.SpanContext.SpanID(), sc.SpanID())
}

func TestSetup(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	ctx := context.Background()

	p, err := Setup(ctx, "test", env(nil))
	require.NoError(t, err)
	assert.False(t, p.Enabled(), "off without an OTLP endpoint")
	b := p.StartBatch(ctx, BatchInfo{Key: "b-1"}, []string{eventTP1}, time.Time{})
	assert.Empty(t, b.TraceParent(), "no traceparent when tracing is off")
	assert.Same(t, http.DefaultTransport, p.Transport(nil), "no wrapping when off")
	b.End("succeeded", "", "")
	require.NoError(t, p.Shutdown(ctx))

	p, err = Setup(ctx, "test", env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}))
	require.NoError(t, err)
	assert.False(t, p.Enabled(), "OTEL_SDK_DISABLED wins")

	p, err = Setup(ctx, "test", env(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}))
	require.NoError(t, err)
	assert.True(t, p.Enabled())
	assert.NotSame(t, http.DefaultTransport, p.Transport(nil))
	require.NoError(t, p.Shutdown(ctx), "nothing to flush")

	_, err = Setup(ctx, "test", env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}))
	require.ErrorContains(t, err, `OTEL_EXPORTER_OTLP_PROTOCOL="grpc": only http/protobuf is supported`)
	_, err = Setup(ctx, "test", env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "zipkin"}))
	require.ErrorContains(t, err, `OTEL_TRACES_EXPORTER="zipkin"`)
}

// TestNil: a nil Provider and a nil Batch are valid and do nothing.
func TestNil(t *testing.T) {
	var p *Provider
	b := p.StartBatch(context.Background(), BatchInfo{}, nil, time.Time{})
	assert.Nil(t, b)
	ctx, s := b.StartSubmit(context.Background(), 1)
	s.End("", "", nil)
	assert.NotNil(t, ctx)
	b.Accepted("x")
	assert.Empty(t, b.TraceParent())
	b.End("failed", "x", "y")
	require.NoError(t, p.Shutdown(context.Background()))
}

func TestSpanContextOf(t *testing.T) {
	_, ok := SpanContextOf("")
	assert.False(t, ok)
	_, ok = SpanContextOf("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")
	assert.False(t, ok, "upper case is not W3C")
	sc, ok := SpanContextOf(eventTP1)
	require.True(t, ok)
	assert.True(t, sc.IsSampled())
	assert.True(t, sc.IsRemote())
}

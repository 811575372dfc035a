package consumer

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lessonbridge/lessonbridge/internal/tracing"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// TestBatchSpans: with tracing on, a batch has a span linked to its input events' traceparents, a
// child span per submit and per poll (the JobManager calls carry their traceparent), and the
// outcome event carries the batch span's traceparent (issue 12).
func TestBatchSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = sdk.Shutdown(t.Context()) })
	tp := tracing.New(sdk)

	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) { c.Tracing = tp })
	var mu sync.Mutex
	var headers []string
	sim := h.sim
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		headers = append(headers, r.Header.Get("traceparent"))
		mu.Unlock()
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	var err error
	h.jm, err = jobmanager.New(hs.URL, jobmanager.WithToken(testToken),
		jobmanager.WithHTTPClient(&http.Client{Transport: tp.Transport(http.DefaultTransport), Timeout: 5 * time.Second}))
	require.NoError(t, err)
	h.start()

	const upstream = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	a, b := event(schemas.TypeLessonCreated, "L-1", ""), event(schemas.TypeLessonCreated, "L-2", "")
	a.TraceParent = upstream
	h.publish("m1", a, b)
	os := h.waitEvents(2, 10*time.Second)
	require.Len(t, os, 1)

	var batch tracetest.SpanStub
	var submits, polls []tracetest.SpanStub
	require.Eventually(t, func() bool {
		submits, polls = nil, nil
		for _, s := range exp.GetSpans() {
			switch s.Name {
			case tracing.SpanBatch:
				batch = s
			case tracing.SpanSubmit:
				submits = append(submits, s)
			case tracing.SpanPoll:
				polls = append(polls, s)
			}
		}
		return batch.Name != "" && len(submits) > 0 && len(polls) > 0
	}, 5*time.Second, 10*time.Millisecond, "batch, submit and poll spans")

	require.Len(t, batch.Links, 1, "linked to the one event that carried a traceparent")
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", batch.Links[0].SpanContext.TraceID().String())
	for _, s := range append(submits, polls...) {
		assert.Equal(t, batch.SpanContext.SpanID(), s.Parent.SpanID(), "%s is a child of the batch span", s.Name)
		assert.Equal(t, batch.SpanContext.TraceID(), s.SpanContext.TraceID())
	}
	sc, ok := tracing.SpanContextOf(os[0].TraceParent)
	require.True(t, ok, "the outcome carries a traceparent: %q", os[0].TraceParent)
	assert.Equal(t, batch.SpanContext.TraceID(), sc.TraceID())
	assert.Equal(t, batch.SpanContext.SpanID(), sc.SpanID())

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, headers)
	for _, hdr := range headers {
		hsc, ok := tracing.SpanContextOf(hdr)
		if assert.True(t, ok, "every JobManager call carries a traceparent, got %q", hdr) {
			assert.Equal(t, batch.SpanContext.TraceID(), hsc.TraceID())
		}
	}
}

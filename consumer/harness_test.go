package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// harness is a real NATS server, the JobManager simulator over HTTP and a bridge, all in process.
type harness struct {
	t      *testing.T
	srv    *natstest.Server
	js     jetstream.JetStream
	sim    *jobmanagertest.Sim
	jm     *jobmanager.Client
	pub    *publisher.Publisher
	cfg    Config
	bridge *Bridge
	cancel context.CancelFunc
	done   chan error
}

const testToken = "s3cret-token"

// fastConfig has millisecond timings so that whole flows run in well under a second.
func fastConfig() Config {
	return Config{
		PollSchedule:     []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
		PollJitter:       0.05,
		PollTimeout:      10 * time.Second,
		NotFoundGrace:    2 * time.Second,
		BatchLinger:      20 * time.Millisecond,
		SubmitBackoff:    10 * time.Millisecond,
		SubmitMaxBackoff: 50 * time.Millisecond,
		AckWait:          2 * time.Second,
		ShutdownGrace:    2 * time.Second,
	}
}

func newHarness(t *testing.T, simCfg jobmanagertest.Config, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, srv: natstest.Start(t)}
	_, h.js = h.srv.Connect()
	simCfg.Token = testToken
	h.sim = jobmanagertest.New(simCfg)
	hs := httptest.NewServer(h.sim)
	t.Cleanup(hs.Close)
	var err error
	h.jm, err = jobmanager.New(hs.URL, jobmanager.WithToken(testToken))
	require.NoError(t, err)
	h.pub, err = publisher.New(h.js)
	require.NoError(t, err)
	h.cfg = fastConfig()
	h.cfg.Logger = zaptest.NewLogger(t)
	if mod != nil {
		mod(&h.cfg)
	}
	return h
}

// start runs a bridge until the test ends (or stop is called).
func (h *harness) start() *Bridge {
	h.t.Helper()
	b, err := New(h.js, h.jm, h.cfg)
	require.NoError(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	h.bridge, h.cancel, h.done = b, cancel, make(chan error, 1)
	go func() { h.done <- b.Run(ctx) }()
	require.Eventually(h.t, b.Ready, 5*time.Second, 5*time.Millisecond, "bridge not ready")
	h.t.Cleanup(func() { h.stop() })
	return b
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		assert.NoError(h.t, err)
	case <-time.After(15 * time.Second):
		h.t.Error("bridge did not stop")
	}
	h.cancel = nil
}

// event returns a valid lesson-change event.
func event(typ, lessonID, group string) *schemas.LessonChange {
	start := time.Date(2025, 12, 23, 8, 0, 0, 0, time.UTC)
	ev := &schemas.LessonChange{
		SpecVersion: "1.0", ID: uuid.Must(uuid.NewV7()).String(), Source: "/test", Type: typ,
		Data: schemas.LessonData{LessonID: lessonID, Group: group},
	}
	if typ != schemas.TypeLessonDeleted {
		ev.Data.Start, ev.Data.End, ev.Data.Resource = start, start.Add(2*time.Hour), "Raum 1.01"
	}
	return ev
}

func (h *harness) publish(mandator string, evs ...*schemas.LessonChange) {
	h.t.Helper()
	for _, ev := range evs {
		_, err := h.pub.PublishChange(context.Background(), mandator, ev)
		require.NoError(h.t, err)
	}
}

func (h *harness) publishRaw(subject string, body []byte) {
	h.t.Helper()
	_, err := h.js.Publish(context.Background(), subject, body, jetstream.WithMsgID(uuid.NewString()))
	require.NoError(h.t, err)
}

// streamMsgs returns every message of a stream, in order.
func (h *harness) streamMsgs(stream string) []*jetstream.RawStreamMsg {
	h.t.Helper()
	return natstest.StreamMsgs(h.t, h.js, stream)
}

// outcomes decodes every outcome event, checking each against the outcome schema.
func (h *harness) outcomes() []*schemas.Outcome {
	h.t.Helper()
	var out []*schemas.Outcome
	for _, m := range h.streamMsgs("LESSON_OUTCOMES") {
		require.NoError(h.t, schemas.ValidateSchema("outcome", m.Data), string(m.Data))
		o := &schemas.Outcome{}
		require.NoError(h.t, json.Unmarshal(m.Data, o))
		require.Equal(h.t, fmt.Sprintf("lessons.outcomes.%s.%s", o.Data.Mandator, o.Data.Status), m.Subject)
		out = append(out, o)
	}
	return out
}

// waitEvents waits until outcomes settle n events in total and returns the outcomes.
func (h *harness) waitEvents(n int, timeout time.Duration) []*schemas.Outcome {
	h.t.Helper()
	var got []*schemas.Outcome
	require.Eventually(h.t, func() bool {
		got = h.outcomes()
		c := 0
		for _, o := range got {
			c += len(o.Data.EventIDs)
		}
		return c >= n
	}, timeout, 10*time.Millisecond, "outcomes did not settle %d events", n)
	return got
}

func (h *harness) consumerInfo() *jetstream.ConsumerInfo {
	h.t.Helper()
	c, err := h.js.Consumer(context.Background(), "LESSONS", "lessonbridge")
	require.NoError(h.t, err)
	info, err := c.Info(context.Background())
	require.NoError(h.t, err)
	return info
}

// waitPolled waits until the bridge works on exactly one batch, accepted and polled at least polls times.
func (h *harness) waitPolled(polls int) {
	h.t.Helper()
	require.Eventually(h.t, func() bool {
		bs := h.bridge.Batches()
		return len(bs) == 1 && bs[0].BatchID != "" && bs[0].Polls >= polls
	}, 5*time.Second, 5*time.Millisecond, "no accepted batch polled %d times", polls)
}

// waitDrained waits until the consumer has nothing pending or unacknowledged.
func (h *harness) waitDrained(timeout time.Duration) {
	h.t.Helper()
	require.Eventually(h.t, func() bool {
		ci := h.consumerInfo()
		return ci.NumAckPending == 0 && ci.NumPending == 0
	}, timeout, 10*time.Millisecond)
}

// eventSettlements counts how many outcomes name each event id.
func eventSettlements(os []*schemas.Outcome) map[string]int {
	m := map[string]int{}
	for _, o := range os {
		for _, id := range o.Data.EventIDs {
			m[id]++
		}
	}
	return m
}

var _ sync.Mutex

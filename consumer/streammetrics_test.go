package consumer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// gatherValues collects c into "name{label=value,...}" -> value.
func gatherValues(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	fams, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			if len(m.GetLabel()) > 0 {
				key += "{"
				for i, l := range m.GetLabel() {
					if i > 0 {
						key += ","
					}
					key += l.GetName() + "=" + l.GetValue()
				}
				key += "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestStreamCollector: lag, stored outcomes and dead letters by mandator (top N plus "other"),
// cached for the TTL, and the configured limits.
func TestStreamCollector(t *testing.T) {
	ns := natstest.Start(t)
	_, js := ns.Connect()
	ctx := context.Background()
	cfg := Config{PollTimeout: 90 * time.Second, MaxHeld: 500}.Defaults()
	for name, subj := range map[string]string{cfg.InputStream: "lessons.changes.>", cfg.OutcomeStream: "lessons.outcomes.>", cfg.DeadLetterStream: "lessons.deadletter.>"} {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}})
		require.NoError(t, err)
	}
	_, err := js.CreateOrUpdateConsumer(ctx, cfg.InputStream, jetstream.ConsumerConfig{Durable: cfg.ConsumerName, AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	pub, err := publisher.New(js)
	require.NoError(t, err)
	for i := range 5 {
		_, err := pub.PublishRawChange(ctx, "m1", fmt.Sprintf("e%d", i), []byte(`{}`))
		require.NoError(t, err)
	}
	outcome := func(id, mandator, status string) {
		_, err := pub.PublishOutcome(ctx, &schemas.Outcome{ID: id, Data: schemas.OutcomeData{Mandator: mandator, Status: status}})
		require.NoError(t, err)
	}
	outcome("o1", "big", schemas.StatusSucceeded)
	outcome("o2", "big", schemas.StatusSucceeded)
	outcome("o3", "big", schemas.StatusFailed)
	outcome("o4", "mid", schemas.StatusSucceeded)
	outcome("o5", "mid", schemas.StatusFailed)
	outcome("o6", "small", schemas.StatusFailed)
	outcome("o7", "tiny", schemas.StatusFailed)
	_, err = pub.PublishDeadLetter(ctx, publisher.DeadLetter{Mandator: "big", Body: []byte("x"), Reason: "invalid_event", Subject: "lessons.changes.big", StreamSeq: 1, StoredAt: time.Now()})
	require.NoError(t, err)

	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewStreamCollector(js, cfg, StreamCollectorOptions{TTL: time.Minute, TopMandators: 2, Now: func() time.Time { return now }})
	got := gatherValues(t, c)
	assert.Equal(t, map[string]float64{
		"lessonbridge_stream_info_up":                                 1,
		"lessonbridge_poll_timeout_seconds":                           90,
		"lessonbridge_max_held_messages":                              500,
		"lessonbridge_consumer_pending_messages":                      5,
		"lessonbridge_consumer_ack_pending_messages":                  0,
		"lessonbridge_consumer_redelivered_messages":                  0,
		"lessonbridge_outcomes_stored{mandator=big,status=succeeded}": 2,
		"lessonbridge_outcomes_stored{mandator=big,status=failed}":    1,
		"lessonbridge_outcomes_stored{mandator=mid,status=succeeded}": 1,
		"lessonbridge_outcomes_stored{mandator=mid,status=failed}":    1,
		"lessonbridge_outcomes_stored{mandator=other,status=failed}":  2,
		"lessonbridge_deadletters_stored{mandator=big}":               1,
	}, got)

	// Within the TTL the cached answers are reused; after it the server is asked again.
	_, err = pub.PublishRawChange(ctx, "m1", "e-late", []byte(`{}`))
	require.NoError(t, err)
	require.Eventually(t, func() bool { // the server counts a new message into NumPending asynchronously
		ci, err := js.Consumer(ctx, cfg.InputStream, cfg.ConsumerName)
		return err == nil && ci.CachedInfo().NumPending == 6
	}, 5*time.Second, time.Millisecond)
	assert.Equal(t, 5.0, gatherValues(t, c)["lessonbridge_consumer_pending_messages"])
	now = now.Add(time.Minute)
	assert.Equal(t, 6.0, gatherValues(t, c)["lessonbridge_consumer_pending_messages"])

	// An allow-list names the label values; everything else is "other".
	c = NewStreamCollector(js, Config{Mandators: []string{"tiny"}}, StreamCollectorOptions{})
	got = gatherValues(t, c)
	assert.Equal(t, 1.0, got["lessonbridge_outcomes_stored{mandator=tiny,status=failed}"])
	assert.Equal(t, 3.0, got["lessonbridge_outcomes_stored{mandator=other,status=failed}"])
	assert.Equal(t, 3.0, got["lessonbridge_outcomes_stored{mandator=other,status=succeeded}"])

	// Without the consumer, up is 0 and the lag is not reported.
	require.NoError(t, js.DeleteConsumer(ctx, cfg.InputStream, cfg.ConsumerName))
	got = gatherValues(t, NewStreamCollector(js, cfg, StreamCollectorOptions{}))
	assert.Equal(t, 0.0, got["lessonbridge_stream_info_up"])
	assert.NotContains(t, got, "lessonbridge_consumer_pending_messages")
	problems, err := testutil.CollectAndLint(NewStreamCollector(js, cfg, StreamCollectorOptions{}))
	require.NoError(t, err)
	assert.Empty(t, problems, "metric names and help follow the Prometheus conventions")
}

package consumer

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// scrape reads a Prometheus text exposition into "name{labels}" -> value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return out
}

// TestMetricsEqualWhatHappened runs a mixed workload and checks the scraped counters against the
// outcome and dead-letter streams and the simulator's own request counts.
func TestMetricsEqualWhatHappened(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{Resources: []string{"Raum 1.01", "Raum 1.02", "Raum 2.14", "Aula",
		"Turnhalle A", "Labor 3.05"}}, func(c *Config) { c.BatchMaxLessons = 50 })
	b := h.start()
	reg := prometheus.NewRegistry()
	require.NoError(t, b.Metrics().Register(reg))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	changes := publisher.SampleEvents(200, "m1", 3, 0.05)
	require.NoError(t, h.pub.PublishChanges(context.Background(), changes, 64, nil))
	valid := 0
	for _, c := range changes {
		if _, err := schemas.Decode(c.Body, "m1"); err == nil {
			valid++
		}
	}
	bad := event(schemas.TypeLessonCreated, "X-1", "")
	bad.Data.Resource = "Besenkammer" // unknown to JobManager: import_failed
	h.publish("m2", bad)
	h.publishRaw("lessons.changes.m2", []byte("{")) // invalid
	valid++

	os := h.waitEvents(valid, 20*time.Second)
	h.waitDrained(5 * time.Second)
	var m map[string]float64
	require.Eventually(t, func() bool { // gauges are refreshed by the loop a few times a second
		m = scrape(t, srv.URL)
		return m["lessonbridge_held_messages"] == 0 && m["lessonbridge_batches_in_flight"] == 0
	}, 5*time.Second, 20*time.Millisecond)

	byOutcome := map[string]float64{}
	for _, o := range os {
		byOutcome[`lessonbridge_batches_total{reason="`+o.Data.Reason+`",status="`+o.Data.Status+`"}`]++
	}
	for k, want := range byOutcome {
		assert.Equal(t, want, m[k], k)
	}
	assert.Equal(t, 1.0, m[`lessonbridge_batches_total{reason="import_failed",status="failed"}`])
	invalid := float64(len(changes) + 2 - valid)
	assert.Equal(t, float64(len(changes)+2), m["lessonbridge_events_received_total"])
	assert.Equal(t, invalid, m[`lessonbridge_events_invalid_total{kind="schema"}`])
	assert.Equal(t, invalid, float64(len(deadLetters(h))-1), "dead letters: the invalid events and the failed import")
	assert.Equal(t, float64(h.sim.Submits()), m[`lessonbridge_jobmanager_responses_total{call="submit",code="2xx"}`])
	assert.Equal(t, float64(h.sim.Submits()), m["lessonbridge_submit_seconds_count"])
	polls := h.sim.Requests()[jobmanagertest.RequestKey{Kind: jobmanagertest.KindStatus, Code: 200}]
	assert.Equal(t, float64(polls), m[`lessonbridge_jobmanager_responses_total{call="status",code="2xx"}`])
	assert.Zero(t, m["lessonbridge_events_redelivered_while_held_total"])
	assert.Zero(t, m["lessonbridge_oldest_batch_age_seconds"])
}

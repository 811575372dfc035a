package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/publisher"
)

const (
	alertsFile    = "../../deploy/prometheus/alerts.yml"
	dashboardFile = "../../deploy/grafana/lessonbridge.json"
)

// promRules is the shape of a Prometheus rule file.
type promRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var metricNameRE = regexp.MustCompile(`\blessonbridge_[a-z0-9_]+\b`)

// deployExprs returns every PromQL expression of the alert rules and the dashboard, by where it is.
func deployExprs(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}

	raw, err := os.ReadFile(alertsFile)
	require.NoError(t, err)
	var rules promRules
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&rules), alertsFile)
	require.NotEmpty(t, rules.Groups)
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		require.NotEmpty(t, g.Name)
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "a rule without alert name in %s", alertsFile)
			assert.False(t, seen[r.Alert], "alert %s twice", r.Alert)
			seen[r.Alert] = true
			assert.NotEmpty(t, r.Expr, r.Alert)
			assert.Contains(t, []string{"critical", "warning"}, r.Labels["severity"], "%s: severity", r.Alert)
			assert.NotEmpty(t, r.Annotations["summary"], "%s: summary", r.Alert)
			if r.For != "" {
				_, err := time.ParseDuration(r.For)
				assert.NoError(t, err, "%s: for %q", r.Alert, r.For)
			}
			exprs["alert "+r.Alert] = r.Expr
		}
	}

	raw, err = os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var dash map[string]any
	require.NoError(t, json.Unmarshal(raw, &dash), dashboardFile)
	assert.Equal(t, "lessonbridge", dash["uid"])
	panels, ok := dash["panels"].([]any)
	require.True(t, ok, "panels")
	require.NotEmpty(t, panels)
	for _, p := range panels {
		panel := p.(map[string]any)
		title, _ := panel["title"].(string)
		require.NotEmpty(t, title)
		targets, _ := panel["targets"].([]any)
		require.NotEmpty(t, targets, "panel %q has no query", title)
		for i, tg := range targets {
			expr, _ := tg.(map[string]any)["expr"].(string)
			require.NotEmpty(t, expr, "panel %q target %d", title, i)
			exprs["panel "+title+" #"+string(rune('A'+i))] = expr
		}
	}
	for where, e := range exprs {
		assert.True(t, balanced(e), "%s: unbalanced brackets in %q", where, e)
	}
	return exprs
}

// balanced reports whether (), [] and {} nest properly in e, outside double-quoted strings.
func balanced(e string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for i, r := range e {
		switch {
		case r == '"' && (i == 0 || e[i-1] != '\\'):
			inString = !inString
		case inString:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !inString
}

// TestDeployFilesUseExistingMetrics: the alert rules and the dashboard parse, and every
// lessonbridge_* metric they use is on a running bridge's /metrics (after a small workload, so
// that the labelled series exist).
func TestDeployFilesUseExistingMetrics(t *testing.T) {
	exprs := deployExprs(t)
	used := map[string][]string{}
	for where, e := range exprs {
		for _, m := range metricNameRE.FindAllString(e, -1) {
			used[m] = append(used[m], where)
		}
	}
	require.NotEmpty(t, used)

	clearRunEnv(t)
	ns := natstest.Start(t)
	_, js := ns.Connect()
	sim := jobmanagertest.New(jobmanagertest.Config{Token: "t"})
	jm := newTestServer(t, sim)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runBridge(ctx, []string{"--nats-url", ns.URL(), "--jobmanager-url", jm, "--jobmanager-token", "t",
			"--poll-schedule", "20ms", "--batch-linger", "20ms", "--ack-wait", "2s", "--shutdown-grace", "1s",
			"--http-addr", "127.0.0.1:0"}, &bytes.Buffer{}, stderr)
	}()
	var addr string
	require.Eventually(t, func() bool {
		for _, l := range logLines(t, stderr) {
			// Only the serving line: the configuration line logs --http-addr as given (port 0).
			if a, ok := l["httpAddr"].(string); ok && strings.HasPrefix(l["msg"].(string), "serving") {
				addr = a
			}
		}
		return addr != ""
	}, 10*time.Second, 10*time.Millisecond, "no serving line in\n%s", stderr)
	require.Eventually(t, func() bool {
		_, err := js.Consumer(ctx, "LESSONS", "lessonbridge")
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)

	pub, err := publisher.New(js)
	require.NoError(t, err)
	require.NoError(t, pub.PublishChanges(ctx, publisher.SampleEvents(10, "demo", 7, 0.3), 0, nil))
	// Outcomes and dead letters stored before the first scrape (the stream gauges are cached).
	for _, stream := range []string{"LESSON_OUTCOMES", "LESSON_DEADLETTER"} {
		require.Eventually(t, func() bool {
			s, err := js.Stream(ctx, stream)
			if err != nil {
				return false
			}
			info, err := s.Info(ctx)
			return err == nil && info.State.Msgs > 0
		}, 20*time.Second, 10*time.Millisecond, stream)
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	exposed := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		exposed[name] = true
	}
	require.NoError(t, sc.Err())
	var missing []string
	for m, where := range used {
		if !exposed[m] {
			sort.Strings(where)
			missing = append(missing, m+" (used by "+strings.Join(where, ", ")+")")
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "metrics the deploy files use that /metrics does not have")
	cancel()
	require.NoError(t, <-done)
}

// newTestServer serves h over real HTTP until the test ends and returns its URL.
func newTestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

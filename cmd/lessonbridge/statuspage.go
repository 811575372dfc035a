package main

import (
	"bytes"
	"encoding/json"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/lessonbridge/lessonbridge/consumer"
)

// The status page at /: one plain HTML page (no script, no build step) that shows at a glance
// what /readyz, /batches and the key metrics say. It reloads itself every statusRefresh.

const statusRefresh = 5 * time.Second

// statusMetric is one line of the page's metrics table.
type statusMetric struct {
	Name, Help string
	Value      string
}

// statusMetrics are the metrics the page shows, in order: name, how to sum it, and what it means.
var statusMetrics = []struct{ name, help string }{
	{"lessonbridge_events_received_total", "input events taken over"},
	{"lessonbridge_events_invalid_total", "dead-lettered as invalid"},
	{"lessonbridge_batches_total{status=succeeded}", "batches succeeded"},
	{"lessonbridge_batches_total{status=failed}", "batches failed"},
	{"lessonbridge_batches_in_flight", "batches open now"},
	{"lessonbridge_oldest_batch_age_seconds", "age of the oldest open batch (s)"},
	{"lessonbridge_held_messages", "input messages held"},
	{"lessonbridge_events_redelivered_while_held_total", "redelivered while held (should stay 0)"},
	{"lessonbridge_jobmanager_responses_total{code=transport}", "JobManager calls without an answer"},
}

type statusBatch struct {
	consumer.BatchInfo
	Age string
}

type statusData struct {
	Version   string
	Now       string
	Uptime    string
	Refresh   int
	Ready     readiness
	ReadyJSON string
	Batches   []statusBatch
	Metrics   []statusMetric
}

var statusTemplate = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta http-equiv="refresh" content="{{.Refresh}}" />
<title>lessonbridge {{if .Ready.Ready}}ready{{else}}NOT READY{{end}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; }
.state { display: inline-block; padding: 0.2em 0.7em; border-radius: 0.3em; color: #fff; font-weight: bold; }
.ready { background: #2e7d32; } .notready { background: #c62828; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f5f5f5; padding: 0.6em; overflow-x: auto; }
small { color: #666; }
</style>
</head>
<body>
<h1>lessonbridge <span id="state" class="state {{if .Ready.Ready}}ready{{else}}notready{{end}}">{{if .Ready.Ready}}ready{{else}}not ready{{end}}</span></h1>
<p><small>version {{.Version}} · up {{.Uptime}} · {{.Now}} · reloads every {{.Refresh}} s ·
<a href="/readyz">/readyz</a> · <a href="/batches">/batches</a> · <a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a></small></p>

<h2>Readiness</h2>
<table id="readiness">
<tr><th>NATS</th><td id="nats">{{.Ready.NATS}}</td></tr>
<tr><th>bridge</th><td id="bridge">{{.Ready.Bridge}}</td></tr>
{{if .Ready.Reason}}<tr><th>why not ready</th><td id="reason">{{.Ready.Reason}}</td></tr>{{end}}
{{with .Ready.JobManager}}<tr><th>JobManager ({{.Mandator}})</th><td id="jobmanager">{{if .Reachable}}reachable{{else}}unreachable: {{.Error}}{{end}} <small>checked {{.CheckedAt.Format "15:04:05"}}</small></td></tr>{{end}}
</table>

<h2>Batches in flight ({{len .Batches}})</h2>
{{if .Batches}}<table id="batches">
<tr><th>mandator</th><th>action</th><th>batch</th><th>state</th><th>age</th><th>polls</th><th>lessons</th><th>events</th><th>last status</th></tr>
{{range .Batches}}<tr><td>{{.Mandator}}</td><td>{{.Action}}</td><td>{{or .BatchID "-"}}</td><td>{{.State}}</td><td class="num">{{.Age}}</td><td class="num">{{.Polls}}</td><td class="num">{{.Lessons}}</td><td class="num">{{.Events}}</td><td>{{or .LastStatus "-"}}</td></tr>
{{end}}</table>{{else}}<p id="batches">none</p>{{end}}

<h2>Key metrics</h2>
<table id="metrics">
{{range .Metrics}}<tr><th>{{.Help}}</th><td class="num">{{.Value}}</td><td><small>{{.Name}}</small></td></tr>
{{end}}</table>

<h2>/readyz</h2>
<pre id="readyz">{{.ReadyJSON}}</pre>
</body>
</html>
`))

// statusPage renders the page; its HTTP status is /readyz's, so that a glance at a probe also works.
func (a *httpAPI) statusPage(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	rd := a.readiness(r.Context())
	readyJSON, _ := json.MarshalIndent(rd, "", "  ") // cannot fail for this type
	d := statusData{Version: buildVersion(), Now: now.UTC().Format(time.RFC3339), Uptime: now.Sub(a.started).Round(time.Second).String(),
		Refresh: int(statusRefresh / time.Second), Ready: rd, ReadyJSON: string(readyJSON), Metrics: a.keyMetrics()}
	for _, b := range a.batches() {
		age := "-"
		if !b.Created.IsZero() {
			age = now.Sub(b.Created).Round(time.Second).String()
		}
		d.Batches = append(d.Batches, statusBatch{BatchInfo: b, Age: age})
	}
	var buf bytes.Buffer
	if err := statusTemplate.Execute(&buf, d); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !rd.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write(buf.Bytes())
}

// keyMetrics reads statusMetrics from the registry; a selector {label=value} sums only the series
// with that label value, without one every series of the family is summed. A metric not (yet)
// registered shows "-".
func (a *httpAPI) keyMetrics() []statusMetric {
	families := map[string]*dto.MetricFamily{}
	if mfs, err := a.registry.Gather(); err == nil {
		for _, mf := range mfs {
			families[mf.GetName()] = mf
		}
	}
	out := make([]statusMetric, 0, len(statusMetrics))
	for _, m := range statusMetrics {
		name, selector, _ := strings.Cut(strings.TrimSuffix(m.name, "}"), "{")
		label, want, _ := strings.Cut(selector, "=")
		mf := families[name]
		value := "-"
		if mf != nil {
			sum := 0.0
			for _, s := range mf.GetMetric() {
				if label != "" && !hasLabel(s, label, want) {
					continue
				}
				switch {
				case s.GetCounter() != nil:
					sum += s.GetCounter().GetValue()
				case s.GetGauge() != nil:
					sum += s.GetGauge().GetValue()
				}
			}
			value = formatMetric(sum)
		}
		out = append(out, statusMetric{Name: m.name, Help: m.help, Value: value})
	}
	return out
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}

// formatMetric shows whole numbers as they are and others with one decimal.
func formatMetric(v float64) string {
	if v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

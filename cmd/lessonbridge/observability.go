package main

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lessonbridge/lessonbridge/consumer"
)

// registerObservability adds to the endpoints' registry what the alert rules and the dashboard
// under deploy/ need beyond the engine's own metrics: lessonbridge_ready (what /readyz answers, as
// a gauge) and the NATS-side collector of consumer.NewStreamCollector (lag, stored outcomes and
// dead letters by mandator, the configured limits).
func registerObservability(api *httpAPI, js jetstream.JetStream, cfg consumer.Config) error {
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lessonbridge_ready",
		Help: "1 when NATS is connected and the consumer is bound (what /readyz answers with 200), else 0."},
		func() float64 {
			if api.readiness(context.Background()).Ready {
				return 1
			}
			return 0
		})
	for _, c := range []prometheus.Collector{ready, consumer.NewStreamCollector(js, cfg, consumer.StreamCollectorOptions{})} {
		if err := api.registry.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}

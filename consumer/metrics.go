package consumer

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the bridge's Prometheus collectors. Register them with Register; the bridge updates
// them whether or not they are registered.
type Metrics struct {
	received       prometheus.Counter
	invalid        *prometheus.CounterVec
	redelivered    prometheus.Counter
	pullStalls     prometheus.Counter
	deliveryGaps   prometheus.Counter
	pinLost        prometheus.Counter
	leaseLapsed    prometheus.Counter
	ownerWaits     prometheus.Counter
	ownerDead      prometheus.Counter
	livenessFailed prometheus.Counter
	batches        *prometheus.CounterVec
	submitLatency  prometheus.Histogram
	pollLatency    prometheus.Histogram
	jmResponses    *prometheus.CounterVec
	held           prometheus.Gauge
	inFlight       prometheus.Gauge
	oldestAge      prometheus.Gauge
	heartbeats     prometheus.Counter
	ledgerRecords  prometheus.Gauge
	resubmits      prometheus.Counter
	techResubmits  prometheus.Counter

	// Engine state for alerting (issue 12). The engine sets them; each comment says where.

	// paused is 1 while pulling is paused because MaxHeld messages are held, 0 once it resumed
	// (set where the Consume context is stopped and restarted).
	paused prometheus.Gauge
	// barrierParked is the number of events parked at the start-up barrier, 0 while it is open
	// (set where events are parked and where the barrier opens).
	barrierParked prometheus.Gauge
	// authFailing is 1 while JobManager's last answer was an authentication failure (401/403
	// after the token was re-read), 0 after the next answer that was not (set by the breaker,
	// core.go jmAnswered).
	authFailing       prometheus.Gauge
	breakerOpen       prometheus.Gauge
	breakerTrips      *prometheus.CounterVec
	deadLetterRefused prometheus.Counter
	takenOver         prometheus.Counter
	orderRisk         prometheus.Counter

	// Failure isolation (isolate.go).
	lessonsIsolated    prometheus.Counter
	lessonsResubmitted prometheus.Counter
	isolationSubmits   prometheus.Counter
}

func newMetrics() *Metrics {
	const ns = "lessonbridge"
	buckets := []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	return &Metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "events_received_total",
			Help: "Input messages taken over by the bridge (redeliveries of held messages not counted)."}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "events_invalid_total",
			Help: "Input messages dead-lettered as invalid, by kind (schema, subject, mandator_not_allowed)."}, []string{"kind"}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "events_redelivered_while_held_total",
			Help: "Redeliveries of messages the bridge still held (a heartbeat came too late)."}),
		pullStalls: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "pull_stalls_total",
			Help: "Pull requests the server stopped answering (no idle heartbeat); the bridge pulled again."}),
		deliveryGaps: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "delivery_gaps_total",
			Help: "Deliveries that skipped consumer sequences (the missing ones went to another instance or were lost on the way); each arms the barrier."}),
		pinLost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "pin_lost_total",
			Help: "Times the server moved the priority group's pin away from this instance; what it held outside batches went back (Nak)."}),
		leaseLapsed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "lease_lapsed_total",
			Help: "Times heartbeats did not reach the server for longer than AckWait (held messages may have gone elsewhere): what was not in a recorded batch went back (Nak)."}),
		ownerWaits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "owner_waits_total",
			Help: "Recorded batches of another instance whose messages all came back here, checked for a live owner before any resubmit (owner liveness)."}),
		ownerDead: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "owner_takeovers_total",
			Help: "Recorded batches resubmitted here because no live instance's liveness entry named them any more."}),
		livenessFailed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "liveness_write_failures_total",
			Help: "Liveness entry writes that failed; written again at the next heartbeat."}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "batches_total",
			Help: "Settled batches by outcome status and reason."}, []string{"status", "reason"}),
		submitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "submit_seconds",
			Help: "Latency of JobManager submit requests.", Buckets: buckets}),
		pollLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "poll_seconds",
			Help: "Latency of JobManager status requests.", Buckets: buckets}),
		jmResponses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "jobmanager_responses_total",
			Help: "JobManager answers by call (submit, status) and HTTP status code (or transport)."}, []string{"call", "code"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "held_messages",
			Help: "Input messages held (pending, waiting, in flight), kept alive with InProgress."}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "batches_in_flight",
			Help: "Batches cut and not yet settled."}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "oldest_batch_age_seconds",
			Help: "Age of the oldest batch in flight (0 when none)."}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "heartbeats_total",
			Help: "InProgress signals sent for held messages."}),
		ledgerRecords: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "ledger_records_recovered",
			Help: "Open ledger records found at the last start."}),
		resubmits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "recovery_resubmits_total",
			Help: "Recorded but unconfirmed batches resubmitted with their JobIDs after a restart (in-doubt windows)."}),
		techResubmits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "technical_resubmits_total",
			Help: "Batches failed with a technical error and resubmitted as new batches with new JobIDs (opt-in)."}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "consumer_paused",
			Help: "1 while pulling is paused because the hold limit (--max-held) is reached, else 0."}),
		barrierParked: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "barrier_parked_messages",
			Help: "Events parked at the barrier until messages outstanding elsewhere (another instance's, or deliveries lost on the way) are back or settled (0: barrier open)."}),
		authFailing: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "jobmanager_auth_failing",
			Help: "1 while JobManager's last answer was an authentication failure (401/403 after re-reading the token), else 0."}),
		breakerOpen: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "jobmanager_breaker_open",
			Help: "1 while JobManager refuses our credentials or is unreachable: submits and polls wait, messages stay held."}),
		breakerTrips: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "jobmanager_breaker_trips_total",
			Help: "Times the JobManager circuit breaker opened, by reason (unauthorized, unreachable)."}, []string{"reason"}),
		deadLetterRefused: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "deadletters_refused_total",
			Help: "Dead letters the server refused permanently; the event was terminated without a copy (it stays in the input stream)."}),
		takenOver: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "batches_taken_over_total",
			Help: "Batches whose ledger record another instance changed; their messages were left to it."}),
		orderRisk: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "recovered_lessons_in_flight_total",
			Help: "Lessons of a recovered ledger record that were in flight here already (per-lesson order across a takeover not guaranteed)."}),
		lessonsIsolated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "lessons_isolated_total",
			Help: "Lessons that failure isolation showed to be at fault in a failed batch (dead-lettered, import_failed)."}),
		lessonsResubmitted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "lessons_resubmitted_total",
			Help: "Lessons of failed batches that failure isolation resubmitted in follow-up batches with new JobIDs."}),
		isolationSubmits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "isolation_submits_total",
			Help: "Follow-up batches created by failure isolation (each one submit to JobManager)."}),
	}
}

// Register registers every collector with r.
func (m *Metrics) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.received, m.invalid, m.redelivered, m.pullStalls, m.deliveryGaps, m.pinLost, m.leaseLapsed, m.ownerWaits, m.ownerDead, m.livenessFailed, m.batches, m.submitLatency,
		m.pollLatency, m.jmResponses, m.held, m.inFlight, m.oldestAge, m.heartbeats, m.ledgerRecords, m.resubmits, m.techResubmits,
		m.paused, m.barrierParked, m.authFailing,
		m.breakerOpen, m.breakerTrips, m.deadLetterRefused, m.takenOver, m.orderRisk,
		m.lessonsIsolated, m.lessonsResubmitted, m.isolationSubmits} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

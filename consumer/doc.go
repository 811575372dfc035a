// Package consumer is the bridge engine: it owns everything between a lesson-change message arriving
// from JetStream and its final Ack or Term.
//
// It is two parts. The core (type core, core.go and the files named below) is a synchronous,
// deterministic state machine that takes every decision: no goroutines, no I/O, no clock; inputs
// carry the time, effects come out (its doc comment is the state table). The runner (Bridge,
// bridge.go) executes the effects with nats.go and the JobManager client on worker goroutines and
// feeds the results back from one loop. sim_test.go drives the same core against a simulated
// JetStream and JobManager in virtual time.
//
//	intake.go   decode + validate (schemas.Decode) --invalid--> dead letter + Term
//	gate.go     per lesson (mandator + lessonId): at most one pending entry or in-flight batch;
//	            later events of the lesson wait behind it, in publish order (asserted)
//	            grouper: pending groups per (mandator, action); jobs per data.group; the same lesson
//	            twice with the same action is coalesced; cut on BatchMaxLessons, BatchMaxBytes, BatchLinger
//	batch.go    ledger record before the submit; same JobIDs on every retry; budget; breaker-aware
//	poll.go     one heap for all batches: PollSchedule with jitter, Retry-After, 404 grace, PollTimeout
//	settle.go   verdict in the ledger -> outcome confirmed -> dead letters (failed) -> every Ack/Term
//	            confirmed -> record deleted -> gate released
//	ledger.go   versioned records (CAS, timeouts told from conflicts), recovery and takeover
//	barrier.go  per-lesson order across crashes, pin moves and lost deliveries: new events wait for
//	            messages outstanding elsewhere (a dead or unpinned instance's, or lost on the way)
//	core.go     the core, timers, retry budgets, heartbeat, flow control, the JobManager breaker
//	bridge.go   the runner
//
// The package parses no flags and reads no environment: cmd/lessonbridge does that.
package consumer

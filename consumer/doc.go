// Package consumer is the bridge engine: it owns everything between a lesson-change message arriving
// from JetStream and its final Ack or Term.
//
// One goroutine (the loop) owns all state; the Consume callback only decodes and hands messages over,
// and workers (submit, poll, settle, heartbeat, dead letters) report back to the loop with closures.
//
//	intake     decode + validate (schemas.Decode) --invalid--> dead letter + Term
//	gate       per lesson (mandator + lessonId): at most one pending entry or in-flight batch;
//	           later events of the lesson wait behind it, in publish order
//	grouper    pending groups per (mandator, action); jobs per data.group; the same lesson twice with
//	           the same action is coalesced to the latest; cut on BatchMaxLessons, BatchMaxBytes or BatchLinger
//	ledger     KV record written before the submit (JobIDs, stream sequences), updated by CAS
//	submit     same JobIDs on every retry; transient errors retried with backoff and a budget
//	poller     one timer heap for all batches: PollSchedule with jitter, Retry-After, 404 grace, PollTimeout
//	settle     outcome confirmed -> dead letters (failed) -> Ack / Term -> gate released -> record deleted
//	heartbeat  InProgress for every held message every Heartbeat (AckWait/3)
//	recovery   open ledger records (at start, or re-read when an unknown redelivery arrives: a takeover):
//	           accepted batches resume polling (never resubmitted), recorded ones are resubmitted with
//	           their JobIDs (in_doubt if JobManager names them duplicates), settling ones finish their
//	           stored verdict; a record goes only when the consumer's ack floor covers its messages
//	barrier    when messages start arriving, everything is parked until the messages another (dead)
//	           instance held are back, then admitted in stream order: per-lesson order across crashes
//
// The package parses no flags and reads no environment: cmd/lessonbridge does that.
package consumer

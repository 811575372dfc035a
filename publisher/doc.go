// Package publisher owns JetStream publishing for lessonbridge: lesson-change events (for upstream Go
// programs and the `publish` command), batch outcomes and dead letters (for the bridge).
//
// Every publish carries a Nats-Msg-Id and returns only after JetStream confirmed it with a PubAck, so
// a publish repeated after a crash or a timeout is de-duplicated by the stream's duplicate window
// (PubAck.Duplicate is then true, which is not an error). The subjects follow contract section 2:
//
//	<Changes>.<mandator>             lesson changes
//	<Outcomes>.<mandator>.<status>   batch outcomes, status succeeded or failed
//	<DeadLetter>.<mandator>          dead letters, original bytes plus Lessonbridge-* headers
//
// The package does not create streams: that belongs to the bridge engine (package consumer), which
// sets up LESSONS, LESSON_OUTCOMES and LESSON_DEADLETTER. Publishing to a subject no stream captures
// fails with an error (jetstream.ErrNoStreamResponse) instead of hanging.
//
// SampleEvents generates realistic workloads for `lessonbridge publish --sample`, `dev` and benchmarks.
package publisher

// Package jobmanager is the client of JobManager's REST API v2 (the lesson import):
// submitting jobs (Client.Submit), reading a batch's status (Client.Batch) and listing
// batches (Client.Batches), tolerant of the ways real servers differ from their
// documentation (case-insensitive field names, BatchId as string or number, ErrorMessages
// as string or array).
//
// It owns the wire types and their JSON (types.go, json.go), the bearer-token sources
// (StaticToken, TokenFile, TokenDir; a file is re-read when JobManager answers 401; OAuth2, the
// client-credentials grant with per-mandator clients, tokens cached and replaced before they
// expire and once more after a 401), the
// typed error (*Error with the sentinels ErrNotFound, ErrUnauthorized, ErrNoBatchID) and
// the classification the bridge retries by: Classify for a failed call, Ambiguous for "a
// failed submit may have been stored anyway", MessageRules for the ErrorMessages of a failed
// import, DuplicateJobIDs for recognising an in-doubt resubmit, and Attribute for the lessons
// and JobIDs of a failed batch that its ErrorMessages name (failure isolation).
//
// It knows nothing about NATS, events or the bridge's state; it never retries on its own
// (except once after a 401 when the token changed) and never logs. No error or excerpt it
// produces contains the token.
package jobmanager

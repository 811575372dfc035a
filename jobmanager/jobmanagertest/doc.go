// Package jobmanagertest owns the JobManager simulator: an http.Handler that behaves like
// JobManager's REST API v2 as the vendor's usage guide and section 1 of the contract describe it
// (submit answering 202 with a BatchId, status polling through AwaitingLessonCreation and
// AwaitingLessonProcessing to LessonsCreated or LessonsImportFailed, a 404 lag for new batches,
// "Duplicate JobId" over a mandator's whole history, atomic per-batch application in submit order).
//
// It is for tests (in process with httptest.NewServer), for `lessonbridge dev` and for the
// standalone `lessonbridge jobmanager-sim`. Faults can be injected at run time (status codes on
// submit and status, lost submit answers, technical import failures, latency, holding batches), bad
// lessons can be configured (by LektionId or RessourceName) with the ErrorMessages worded in one of
// four styles (naming lessons, naming only JobIDs, anonymous, first error only), and
// everything it received and applied can be inspected, from Go (Lessons, History, Creations,
// JobIDs, JobIDConflicts, Batches, Requests) or over HTTP (GET /_sim/state).
//
// OAuth2 (oauth2.go) puts an OAuth2 token endpoint (client-credentials grant, short-lived tokens)
// in front of the simulator, for `jobmanager-sim --oauth2` and tests of the OAuth2 token source.
//
// It is independent of package jobmanager's client on purpose: it decodes requests itself, matching
// member names case-insensitively, so that a client bug cannot hide behind a shared decoder.
// Non-test code other than cmd/lessonbridge must not import it.
package jobmanagertest

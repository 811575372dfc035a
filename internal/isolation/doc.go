// Package isolation owns the failure-isolation planner of contract section 4a: given a batch that
// JobManager failed with a data-class LessonsImportFailed, it decides which lessons are at fault
// (settled by that batch's outcome, dead-lettered with reason import_failed) and which go on into
// new batches, and how. It is pure: no I/O, no clock, no goroutines, no randomness; the same
// input gives the same Decision.
//
// # The algorithm
//
// The failed batch's ErrorMessages are attributed (jobmanager.Attribute): a named LektionId puts
// its lesson at fault; a named JobID whose job has no named lesson puts that job's lessons under
// suspicion. Everything neither at fault nor suspected is resubmitted at once as one part ("rest"),
// expected to succeed. Each suspected job is bisected: split in halves ("half"), each submitted on
// its own; a suspected set of at most four lessons is submitted lesson by lesson ("single"), which
// is never dearer than halving it further. When nothing can be attributed, the whole batch is the
// suspected set. A part that fails again (a second bad lesson, a JobManager that reports only its
// first error) is planned again the same way, except that when a resubmitted batch fails naming
// lessons again, its rest goes on as two batches instead of one, so that against a JobManager
// that reports only its first error the search runs in parallel (50 bad lessons in 500: 9 rounds
// instead of 51, for 100 submits instead of 51). A part of one lesson that fails is at fault.
//
// # The bound
//
// For k bad lessons among n, a JobManager that fails exactly the batches holding a bad lesson costs
// at most 2·k·⌈log2 n⌉ + 2 submits, whatever its message style (the property test checks it), and
// far fewer when it names lessons (at most 2·k + 1). Whatever JobManager answers, an original batch of n lessons
// never costs more than its budget: 2·n − 2 submits, or Limits.MaxSubmits if that is lower. The
// budget is not a shared counter: Start gives the original batch its budget, and each Decision
// hands every part an allotment (State.Budget) taken from the failed batch's own, after paying for
// the parts' submits. 2·s − 2 is enough to finish isolating any part of s lessons, so with the
// default budget isolation always finishes; with a lower cap, a part whose allotment is spent fails
// as JobManager said (Decision.Unproven). Parts of one isolation can therefore run and fail in any
// order, and a crash loses no budget: each part's record carries its own State.
//
// # Order and identity
//
// The planner only partitions: a part lists indices into the failed batch's lessons in ascending
// order, and all entries of one LektionId stay in one part. The engine keeps the lessons of every
// part held in its per-lesson gate until the part settles, builds each part's jobs with new JobIDs
// (Part.Jobs groups them as the failed batch did) and persists the Decision in the failed batch's
// ledger record before its outcome is published (JSON, versioned by V; indices as ranges, so it is
// small).
package isolation

package jobmanagertest

import "time"

// Forever, as the count of a fault method, keeps the fault until it is cleared with a count of 0.
const Forever = -1

// LoseMode is how a submit's answer is lost.
type LoseMode int

const (
	// LoseWith502 answers 502 Bad Gateway, as a proxy whose upstream timed out would.
	LoseWith502 LoseMode = iota
	// LoseByClose closes the connection without an answer.
	LoseByClose
)

// countdown is a fault that fires for the next n requests (n > 0), until cleared (n < 0), or not
// at all (n == 0).
type countdown struct{ n int }

func (c *countdown) take() bool {
	if c.n == 0 {
		return false
	}
	if c.n > 0 {
		c.n--
	}
	return true
}

type faults struct {
	submit     countdown
	submitCode int
	retryAfter time.Duration
	lose       countdown
	loseMode   LoseMode
	status     countdown
	statusCode int
	importFail countdown
	importMsgs []string
	latency    time.Duration
}

// SubmitStatus answers the next n submits (Forever: every one until cleared with n = 0) with
// status code, e.g. 503, 429 or 500, and, when retryAfter > 0, a Retry-After header in whole
// seconds (at least 1). Such submits are counted in Submits, JobIDs and JobIDConflicts, but no
// batch is created and their JobIDs do not count as duplicates later.
func (s *Sim) SubmitStatus(code, n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.submit = countdown{n}
	s.faults.submitCode, s.faults.retryAfter = code, retryAfter
}

// LoseSubmitResponse makes the next n submits (Forever: until cleared with n = 0) lose their
// answer as mode says. The batch IS created and processed like any other: a client that retries
// with the same JobIDs gets a second batch failing with "Duplicate JobId".
func (s *Sim) LoseSubmitResponse(n int, mode LoseMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.lose = countdown{n}
	s.faults.loseMode = mode
}

// StatusStatus answers the next n status requests (GET .../jobs/batches/{batchId}; Forever: until
// cleared with n = 0) with status code.
func (s *Sim) StatusStatus(code, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.status = countdown{n}
	s.faults.statusCode = code
}

// FailImport makes the next n batches to complete (Forever: until cleared with n = 0) end
// LessonsImportFailed with messages as ErrorMessages (TechnicalErrorMessage when none are given),
// without validating or applying anything. Batches that were due before the call complete as
// they would have.
func (s *Sim) FailImport(n int, messages ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(s.now())
	if len(messages) == 0 {
		messages = []string{TechnicalErrorMessage}
	}
	s.faults.importFail = countdown{n}
	s.faults.importMsgs = append([]string(nil), messages...)
}

// Latency delays the answer to every API request by d (zero: no delay) before anything else is
// done; a request whose context ends first gets no answer. /_sim/state is not delayed.
func (s *Sim) Latency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.latency = d
}

// Hold(true) keeps batches from completing: they reach AwaitingLessonProcessing and stay there.
// Hold(false) releases them; those that were due meanwhile complete, in order, at the release time.
// Batches that were due before Hold(true) complete as they would have.
func (s *Sim) Hold(hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.advance(now)
	if s.held && !hold {
		s.releasedAt = now
	}
	s.held = hold
	s.advance(now)
}

// takeImportFault reports whether the batch completing now fails technically, and with which
// messages. s.mu is held.
func (s *Sim) takeImportFault() ([]string, bool) {
	if s.faults.importFail.take() {
		return append([]string(nil), s.faults.importMsgs...), true
	}
	if s.chance(s.cfg.Random.ImportFailRate) {
		return []string{TechnicalErrorMessage}, true
	}
	return nil, false
}

// chance draws from the seeded source; a rate of 0 draws nothing, so that runs without random
// faults do not consume the source. s.mu is held.
func (s *Sim) chance(rate float64) bool {
	if rate <= 0 {
		return false
	}
	return s.rnd.Float64() < rate
}

// SetDelays changes Config.CreationDelay and Config.ProcessingDelay for batches submitted from now
// on; batches already submitted keep theirs. A fast batch submitted after a slow one still
// completes after it (batches of a mandator complete in submit order).
func (s *Sim) SetDelays(creation, processing time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creationDelay, s.processingDelay = max(creation, 0), max(processing, 0)
}

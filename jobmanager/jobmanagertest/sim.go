package jobmanagertest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sync"
	"time"
)

// Import states, as the vendor guide names them.
const (
	StatusAwaitingLessonCreation   = "AwaitingLessonCreation"
	StatusAwaitingLessonProcessing = "AwaitingLessonProcessing"
	StatusLessonsCreated           = "LessonsCreated"
	StatusLessonsImportFailed      = "LessonsImportFailed"
)

// FirstBatchID is the BatchId of a Sim's first accepted batch; later ones count up from it.
const FirstBatchID = 12345

// DefaultMaxBodyBytes is the submit body limit when Config.MaxBodyBytes is zero.
const DefaultMaxBodyBytes = 10 << 20

// Config configures a Sim. The zero value is a working simulator: any token, any mandator, batches
// that complete on the next request, any resource name.
type Config struct {
	// Token is the bearer token every API request must carry. Empty accepts any request, with or
	// without an Authorization header.
	Token string
	// CreationDelay is how long a batch stays AwaitingLessonCreation after its submit.
	CreationDelay time.Duration
	// ProcessingDelay is how long a batch stays AwaitingLessonProcessing at least. A batch also waits
	// for every earlier batch of its mandator, and for Hold(false).
	ProcessingDelay time.Duration
	// NotFoundLag is how long after its submit a batch's status answers 404 (and the batch is missing
	// from the list), like a JobManager whose status store lags behind its queue.
	NotFoundLag time.Duration
	// Resources, when non-empty, are the known RessourceName values; any other fails validation.
	Resources []string
	// Mandators, when non-empty, are the known mandators; any other answers 404. When empty every
	// mandator matching [A-Za-z0-9_-]{1,64} is known.
	Mandators []string
	// StrictCreate makes a create of an existing lesson a validation error ("existiert bereits").
	// By default a create of an existing lesson replaces it (upsert) and counts as another creation
	// in Creations, so tests can detect lessons created twice.
	StrictCreate bool
	// Now is the clock; nil means time.Now. Tests inject a fake clock: every state change is computed
	// from it when a request or an inspection call arrives.
	Now func() time.Time
	// MaxBodyBytes limits a submit body; larger ones answer 413. Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Random injects faults at random, in addition to the explicit ones of the fault methods
	// (which take precedence). The zero value injects none.
	Random RandomFaults
	// BadLessons are LektionIds that always fail validation ("Lektion <id> abgelehnt"), whatever
	// the action: a configurable bad lesson for failure-isolation tests.
	BadLessons []string
	// BadResources are RessourceName values that fail validation as unknown ("Ressource '<name>'
	// nicht gefunden"), also when Resources is empty: an unknown room.
	BadResources []string
	// ErrorStyle is how a failed batch's lesson problems are worded in ErrorMessages (the zero
	// value, StyleLessons, names each lesson). Job-level problems (Duplicate JobId, a missing JobID
	// or LektionList) keep their wording except under StyleFirstError. Every style fails the whole
	// batch and applies nothing.
	ErrorStyle ErrorStyle
}

// ErrorStyle is how a JobManager words the problems of a failed batch.
type ErrorStyle int

// The error styles.
const (
	// StyleLessons lists every problem, naming the lesson and its JobID:
	// "Fehler: Ressource 'X' nicht gefunden (JobID j-1, LektionId L-1)".
	StyleLessons ErrorStyle = iota
	// StyleJobID names only the JobIDs of the jobs with a problem, one message per job:
	// "Fehler: Validierung fehlgeschlagen (JobID j-1)".
	StyleJobID
	// StyleAnonymous says only that validation failed, once: "Fehler: Validierung fehlgeschlagen".
	StyleAnonymous
	// StyleFirstError reports only the first problem, worded as StyleLessons, as a JobManager
	// that stops at the first error does.
	StyleFirstError
)

// ValidationFailedMessage is the message of StyleAnonymous, and the start of StyleJobID's.
const ValidationFailedMessage = "Fehler: Validierung fehlgeschlagen"

var errorStyleNames = []string{"lessons", "jobid", "anonymous", "first-error"}

// String returns the style's name as ParseErrorStyle reads it.
func (s ErrorStyle) String() string {
	if s >= 0 && int(s) < len(errorStyleNames) {
		return errorStyleNames[s]
	}
	return fmt.Sprintf("ErrorStyle(%d)", int(s))
}

// ParseErrorStyle reads a style name: lessons, jobid, anonymous or first-error.
func ParseErrorStyle(name string) (ErrorStyle, error) {
	for i, n := range errorStyleNames {
		if n == name {
			return ErrorStyle(i), nil
		}
	}
	return 0, fmt.Errorf("jobmanagertest: error style %q: want one of %v", name, errorStyleNames)
}

// RandomFaults injects faults with fixed probabilities, drawn from a math/rand source seeded with
// Seed, so a run with the same seed and the same request order injects the same faults.
type RandomFaults struct {
	Seed int64
	// SubmitFailRate is the fraction of submits answered 503 (with Retry-After: 1) and not recorded.
	SubmitFailRate float64
	// LoseResponseRate is the fraction of submits that are recorded and processed but whose answer
	// is lost as LoseMode says.
	LoseResponseRate float64
	// LoseMode is how a lost answer is lost (LoseWith502 by default).
	LoseMode LoseMode
	// StatusFailRate is the fraction of status requests (GET .../batches/{batchId}) answered 503.
	StatusFailRate float64
	// ImportFailRate is the fraction of batches that fail with a technical error
	// (TechnicalErrorMessage) instead of being applied.
	ImportFailRate float64
}

// TechnicalErrorMessage is the ErrorMessages of a batch failed by FailImport without messages or
// by RandomFaults.ImportFailRate.
const TechnicalErrorMessage = "Fehler: Datenbank nicht erreichbar"

// Validate reports a Config that New would reject.
func (c Config) Validate() error {
	for name, d := range map[string]time.Duration{
		"CreationDelay": c.CreationDelay, "ProcessingDelay": c.ProcessingDelay, "NotFoundLag": c.NotFoundLag,
	} {
		if d < 0 {
			return fmt.Errorf("jobmanagertest: %s is negative: %v", name, d)
		}
	}
	if c.MaxBodyBytes < 0 {
		return fmt.Errorf("jobmanagertest: MaxBodyBytes is negative: %d", c.MaxBodyBytes)
	}
	for _, m := range c.Mandators {
		if !mandatorRE.MatchString(m) {
			return fmt.Errorf("jobmanagertest: mandator %q does not match %s", m, mandatorRE)
		}
	}
	for name, r := range map[string]float64{
		"SubmitFailRate": c.Random.SubmitFailRate, "LoseResponseRate": c.Random.LoseResponseRate,
		"StatusFailRate": c.Random.StatusFailRate, "ImportFailRate": c.Random.ImportFailRate,
	} {
		if r < 0 || r > 1 || r != r {
			return fmt.Errorf("jobmanagertest: Random.%s is %v, want a fraction in [0, 1]", name, r)
		}
	}
	if c.ErrorStyle < 0 || int(c.ErrorStyle) >= len(errorStyleNames) {
		return fmt.Errorf("jobmanagertest: ErrorStyle %d is unknown", int(c.ErrorStyle))
	}
	if c.Random.LoseMode != LoseWith502 && c.Random.LoseMode != LoseByClose {
		return fmt.Errorf("jobmanagertest: Random.LoseMode %d is unknown", c.Random.LoseMode)
	}
	return nil
}

var mandatorRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Sim is a JobManager REST API v2 simulator: an http.Handler that follows the vendor's usage guide
// and section 1 of the contract. Create one with New; it is safe for concurrent use. It starts no
// goroutines: batches advance lazily, computed from Config.Now whenever a request or an inspection
// call arrives, so nothing needs closing.
//
// Routes:
//
//	POST {mandator}/api/v2.0/jobs/{create|update|delete}  202 {"BatchId":"12345","ImportStatus":"AwaitingLessonCreation"}
//	GET  {mandator}/api/v2.0/jobs/batches/{batchId}       200 status object, 404 unknown or still lagging
//	GET  {mandator}/api/v2.0/jobs/batches                 200 JSON array of the mandator's non-terminal batches
//	GET  /_sim/state                                      200 JSON summary of everything (no token needed)
//
// API requests without the right bearer token answer 401, unknown routes and mandators 404, a wrong
// method 405, a submit that is not Content-Type application/json 415, a body that is not a JSON array
// of jobs 400, a body over Config.MaxBodyBytes 413. Error bodies are {"error":"..."}.
//
// A batch goes AwaitingLessonCreation -> AwaitingLessonProcessing (LessonCount set) -> LessonsCreated
// or LessonsImportFailed. The batches of a mandator complete in submit order. Each batch is applied
// atomically when it completes: every job is validated against the mandator's lessons as left by the
// earlier batches (and the earlier jobs of the same batch); on any problem nothing is applied and
// ErrorMessages lists them all, worded as Config.ErrorStyle says (Config.BadLessons and
// Config.BadResources make chosen lessons fail). A create stores a lesson (see Config.StrictCreate), an update needs an
// existing lesson and replaces its fields, a delete needs an existing lesson and removes it (its
// lessons need only LektionId). A JobID that any earlier accepted request of the mandator carried, or
// that occurs twice in one request, fails its batch with "Fehler: Duplicate JobId: <JobID>".
type Sim struct {
	cfg          Config
	now          func() time.Time
	resources    map[string]bool
	mandators    map[string]bool
	badLessons   map[string]bool
	badResources map[string]bool

	mu              sync.Mutex
	nextID          int
	byID            map[string]*batch
	state           map[string]*mandatorState
	order           []string // mandators in order of first submit
	creationDelay   time.Duration
	processingDelay time.Duration
	held            bool
	releasedAt      time.Time
	requests        map[RequestKey]int
	submits         int
	faults          faults
	rnd             *rand.Rand
}

// New returns a simulator configured by cfg. It panics if cfg.Validate fails: a simulator is
// configured by tests and commands that check their input first.
func New(cfg Config) *Sim {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	s := &Sim{
		cfg:      cfg,
		now:      cfg.Now,
		nextID:   FirstBatchID,
		byID:     map[string]*batch{},
		state:    map[string]*mandatorState{},
		requests: map[RequestKey]int{},
		rnd:      rand.New(rand.NewPCG(uint64(cfg.Random.Seed), 0x5eed)),
	}
	s.creationDelay, s.processingDelay = cfg.CreationDelay, cfg.ProcessingDelay
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.MaxBodyBytes == 0 {
		s.cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if len(cfg.Resources) > 0 {
		s.resources = map[string]bool{}
		for _, r := range cfg.Resources {
			s.resources[r] = true
		}
	}
	s.badLessons, s.badResources = setOf(cfg.BadLessons), setOf(cfg.BadResources)
	if len(cfg.Mandators) > 0 {
		s.mandators = map[string]bool{}
		for _, m := range cfg.Mandators {
			s.mandators[m] = true
		}
	}
	return s
}

// setOf returns the items as a set, nil for none.
func setOf(items []string) map[string]bool {
	if len(items) == 0 {
		return nil
	}
	set := make(map[string]bool, len(items))
	for _, it := range items {
		set[it] = true
	}
	return set
}

func (s *Sim) knownMandator(m string) bool {
	if s.mandators != nil {
		return s.mandators[m]
	}
	return mandatorRE.MatchString(m)
}

// StoredLesson is a lesson as the simulator stores it: the four known fields and every other member
// of the lesson object, as sent.
type StoredLesson struct {
	LektionID     string                     `json:"LektionId"`
	Beginn        string                     `json:"Beginn,omitempty"`
	Ende          string                     `json:"Ende,omitempty"`
	RessourceName string                     `json:"RessourceName,omitempty"`
	Extra         map[string]json.RawMessage `json:"Extra,omitempty"`
}

// Applied is one operation applied to a lesson.
type Applied struct {
	Action  string       `json:"action"` // create, update or delete
	JobID   string       `json:"jobId"`
	BatchID string       `json:"batchId"`
	At      time.Time    `json:"at"`     // when the batch completed, by Config.Now
	Lesson  StoredLesson `json:"lesson"` // the lesson as sent in the job
}

// BatchInfo describes one accepted batch.
type BatchInfo struct {
	BatchID       string    `json:"batchId"`
	Mandator      string    `json:"mandator"`
	Action        string    `json:"action"`
	ImportStatus  string    `json:"importStatus"`
	LessonCount   int       `json:"lessonCount"`
	ErrorMessages []string  `json:"errorMessages,omitempty"`
	JobIDs        []string  `json:"jobIds"`
	LessonIDs     []string  `json:"lessonIds"`
	SubmittedAt   time.Time `json:"submittedAt"`
	FinishedAt    time.Time `json:"finishedAt,omitzero"` // zero until terminal
}

// RequestKind classifies requests for Requests.
type RequestKind string

// The request kinds.
const (
	KindSubmit RequestKind = "submit" // POST .../jobs/{action}
	KindStatus RequestKind = "status" // GET .../jobs/batches/{batchId}
	KindList   RequestKind = "list"   // GET .../jobs/batches
	KindState  RequestKind = "state"  // GET /_sim/state
	KindOther  RequestKind = "other"  // anything else (404)
)

// RequestKey counts requests of one kind answered with one status code. Code is 0 for a request
// whose connection was closed without an answer.
type RequestKey struct {
	Kind RequestKind
	Code int
}

// batch is one accepted submit.
type batch struct {
	id, mandator, action string
	index                int // in mandatorState.batches
	jobs                 []job
	dup                  []bool // per job: JobID seen before (history or earlier in the request)
	submittedAt          time.Time
	createdAt            time.Time // -> AwaitingLessonProcessing
	dueAt                time.Time // earliest completion
	finishedAt           time.Time
	status               string
	lessonCount          int
	errs                 []string
}

func (b *batch) info() BatchInfo {
	bi := BatchInfo{
		BatchID: b.id, Mandator: b.mandator, Action: b.action, ImportStatus: b.status,
		LessonCount: b.lessonCount, ErrorMessages: append([]string(nil), b.errs...),
		SubmittedAt: b.submittedAt, FinishedAt: b.finishedAt,
		JobIDs: []string{}, LessonIDs: []string{},
	}
	for _, j := range b.jobs {
		bi.JobIDs = append(bi.JobIDs, j.JobID)
		for _, l := range j.Lessons {
			bi.LessonIDs = append(bi.LessonIDs, l.LektionID)
		}
	}
	return bi
}

// mandatorState is everything the simulator knows about one mandator.
type mandatorState struct {
	batches          []*batch               // submit order
	next             int                    // index of the first batch not yet terminal
	creating         int                    // index of the first batch that may be AwaitingLessonCreation
	createdUnordered bool                   // some batch has an earlier createdAt than the batch before it
	lessons          map[string]lessonState // every LektionId an operation was applied to
	applied          opLog                  // every operation applied, in order
	received         []string               // every JobID of every decoded submit body, in order
	accepted         map[string]bool        // JobIDs of accepted requests
	content          map[string]jobContent  // JobID -> action and lessons first seen with it
	conflicts        []string               // JobIDs seen with differing content, in order of detection
}

// lessonState is what a mandator knows about one LektionId. It holds no pointers, so the garbage
// collector scans only the keys of mandatorState.lessons; the lesson's fields are those its last
// operation sent (mandatorState.stored).
type lessonState struct {
	last      int32 // 1 + index in mandatorState.applied of the lesson's last operation
	creations int32 // creates applied (Creations)
	live      bool  // stored: the last operation was a create or an update, not a delete
}

// stored returns the lesson as its last operation sent it; e.live must be true.
func (ms *mandatorState) stored(e lessonState) StoredLesson {
	return ms.applied.at(e.last).lessonOf(ms)
}

// opLog is the log of applied operations, in chunks of opChunk entries: it grows without copying
// what it holds (an append-grown slice of 200,000 entries would have allocated and copied five
// times its size on the way).
type opLog struct {
	chunks [][]appliedOp
	n      int32
}

// opChunk is the number of entries in a chunk of an opLog.
const opChunk = 4096

// add appends op and returns its position: 1 + its index.
func (l *opLog) add(op appliedOp) int32 {
	if l.n%opChunk == 0 {
		l.chunks = append(l.chunks, make([]appliedOp, 0, opChunk))
	}
	c := &l.chunks[len(l.chunks)-1]
	*c = append(*c, op)
	l.n++
	return l.n
}

// at returns the entry at position pos (1 + its index).
func (l *opLog) at(pos int32) appliedOp {
	i := pos - 1
	return l.chunks[i/opChunk][i%opChunk]
}

// appliedOp is one operation applied to a lesson: lesson of job of batch (indexes into
// mandatorState.batches, the batch's jobs and the job's lessons). prev is 1 + the index of the
// lesson's previous operation in mandatorState.applied, 0 for its first. It holds no pointers, so
// the log costs the garbage collector nothing to scan; int32 indexes bound a mandator to 2^31
// operations, far more than fit in memory as batches.
type appliedOp struct {
	batch, job, lesson int32
	prev               int32
}

// lessonOf returns the lesson the operation applied, as sent.
func (op appliedOp) lessonOf(ms *mandatorState) StoredLesson {
	return ms.batches[op.batch].jobs[op.job].Lessons[op.lesson]
}

// resolve returns the operation as History reports it.
func (op appliedOp) resolve(ms *mandatorState) Applied {
	b := ms.batches[op.batch]
	j := b.jobs[op.job]
	return Applied{Action: b.action, JobID: j.JobID, BatchID: b.id, At: b.finishedAt, Lesson: j.Lessons[op.lesson]}
}

// jobContent is what a JobID was first sent with. Two contents are the same when their actions
// are and json.Marshal encodes their lessons alike (sameLessons).
type jobContent struct {
	action  string
	lessons []StoredLesson
}

func (s *Sim) mandator(m string) *mandatorState {
	ms := s.state[m]
	if ms == nil {
		ms = &mandatorState{
			lessons: map[string]lessonState{}, accepted: map[string]bool{}, content: map[string]jobContent{},
		}
		s.state[m] = ms
		s.order = append(s.order, m)
	}
	return ms
}

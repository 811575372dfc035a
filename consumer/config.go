package consumer

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/internal/tracing"
	"github.com/lessonbridge/lessonbridge/jobmanager"
)

// Config configures a Bridge. The zero value of a field means its default (see Defaults); Validate
// reports every value that cannot work, naming the field.
type Config struct {
	// Stream names and subject prefixes (contract section 2).
	InputStream      string // default LESSONS
	OutcomeStream    string // default LESSON_OUTCOMES
	DeadLetterStream string // default LESSON_DEADLETTER
	ChangesPrefix    string // default lessons.changes
	OutcomesPrefix   string // default lessons.outcomes
	DeadLetterPrefix string // default lessons.deadletter
	ConsumerName     string // durable pull consumer, default lessonbridge
	LedgerBucket     string // KV bucket, default lessonbridge_ledger

	// EnsureTopology creates missing streams, consumer and bucket at start. Existing streams are
	// checked, never changed. Nil means true.
	EnsureTopology *bool

	// PriorityGroup, when set, makes the consumer a pinned-client priority group consumer so that of
	// several bridges exactly one pulls at a time (high availability). PinnedTTL is how long the
	// server waits for a silent pinned client before pinning another (default 2*AckWait/3... see Defaults).
	PriorityGroup string
	PinnedTTL     time.Duration

	// PollSchedule are the waits between status polls; the last one repeats. Each wait is jittered
	// by up to ±PollJitter (a fraction, default 0.1).
	PollSchedule  []time.Duration
	PollJitter    float64
	PollTimeout   time.Duration // give up polling a batch after this (default 30m)
	NotFoundGrace time.Duration // a 404 on status counts as "not known yet" this long (default 2m)

	// Grouping.
	BatchLinger     time.Duration // a group waits this long for more events (default 2s)
	BatchMaxLessons int           // lessons per submit at most (default 500)
	BatchMaxBytes   int           // estimated request body size at most (default 4 MiB)
	JobIDPrefix     string        // default lb

	// Submit retries of transient (technical) errors, with the same JobIDs.
	SubmitMaxAttempts int           // default 8
	SubmitMaxElapsed  time.Duration // default 10m
	SubmitBackoff     time.Duration // first wait, doubled per attempt (default 1s)
	SubmitMaxBackoff  time.Duration // default 30s

	// TechnicalRetries, when positive, resubmits a batch that JobManager failed with a technical
	// error (MessageRules) as a NEW batch with new JobIDs, at most this many times and each after
	// TechnicalRetryDelay (default 1m); then it fails for manual clarification (dead letter). Off by
	// default: the guide warns against blind retries.
	TechnicalRetries    int
	TechnicalRetryDelay time.Duration

	// IsolateOff turns failure isolation (contract 4a, docs/isolation.md) off: a batch that
	// JobManager fails with a data-class error then fails as a whole, as JobManager said. By
	// default (false) the bridge finds the lessons at fault and resubmits the others in new
	// batches with new JobIDs (--isolate on|off).
	IsolateOff bool

	// Concurrency towards JobManager.
	MaxConcurrentSubmits int // default 8 (chosen over 4 with the black-box clock that started late; not re-measured since)
	MaxConcurrentPolls   int // default 32

	// Flow control: AckWait of the consumer, how many messages the bridge holds at most (it stops
	// pulling above), and how many the client buffers per pull.
	AckWait       time.Duration // default 30s
	MaxHeld       int           // default 100000
	PullBatch     int           // default 1000
	Heartbeat     time.Duration // InProgress period, default AckWait/3
	ShutdownGrace time.Duration // how long Run waits for in-flight batches at shutdown (default 10s)

	// Mandators, when non-empty, is the allow-list: events for other mandators are dead-lettered.
	Mandators []string

	// MessageRules classify LessonsImportFailed ErrorMessages; nil means jobmanager.DefaultMessageRules().
	MessageRules *jobmanager.MessageRules

	// Logger; nil means a no-op logger.
	Logger *zap.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Hooks lets tests and the chaos harness observe or interrupt the engine; nil fields are skipped.
	Hooks Hooks
	// Tracing makes a span per batch with child spans per submit and poll (internal/tracing); nil:
	// no tracing.
	Tracing *tracing.Provider

	// Cluster: replicas and limits of what the bridge creates (topology.go documents the defaults
	// and applies them; existing streams and buckets are never changed).
	Replicas         int           // replicas of created streams, consumer and bucket (default 1, at most 5)
	InputMaxAge      time.Duration // max age of a created input stream (default 7 days; negative: none)
	OutcomeMaxAge    time.Duration // max age of a created outcome stream (default 30 days; negative: none)
	DeadLetterMaxAge time.Duration // max age of a created dead-letter stream (default 90 days; negative: none)
	LedgerMarkerTTL  time.Duration // how long a settled batch's removal marker stays in the ledger (default 1m)
}

// Hooks are called synchronously at fixed points of a batch's life (for fault injection in tests).
type Hooks struct {
	// AfterSubmit runs after JobManager accepted a batch and before the ledger records that. A
	// non-nil error abandons the batch there, as a crash would: no ledger update, no result.
	AfterSubmit func(batchID string) error
	// AfterOutcome runs after a batch's outcome was confirmed and before its dead letters and acks.
	// A non-nil error abandons the batch there, as a crash would.
	AfterOutcome func(batchKey string) error
}

// Defaults returns c with every zero field set to its default.
func (c Config) Defaults() Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.InputStream, "LESSONS")
	def(&c.OutcomeStream, "LESSON_OUTCOMES")
	def(&c.DeadLetterStream, "LESSON_DEADLETTER")
	def(&c.ChangesPrefix, "lessons.changes")
	def(&c.OutcomesPrefix, "lessons.outcomes")
	def(&c.DeadLetterPrefix, "lessons.deadletter")
	def(&c.ConsumerName, "lessonbridge")
	def(&c.LedgerBucket, "lessonbridge_ledger")
	def(&c.JobIDPrefix, "lb")
	if c.EnsureTopology == nil {
		t := true
		c.EnsureTopology = &t
	}
	if len(c.PollSchedule) == 0 {
		c.PollSchedule = []time.Duration{3 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second}
	}
	if c.PollJitter == 0 {
		c.PollJitter = 0.1
	}
	durDef := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	intDef := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	durDef(&c.PollTimeout, 30*time.Minute)
	durDef(&c.NotFoundGrace, 2*time.Minute)
	durDef(&c.BatchLinger, 2*time.Second)
	intDef(&c.BatchMaxLessons, 500)
	intDef(&c.BatchMaxBytes, 4<<20)
	intDef(&c.SubmitMaxAttempts, 8)
	durDef(&c.SubmitMaxElapsed, 10*time.Minute)
	durDef(&c.SubmitBackoff, time.Second)
	durDef(&c.SubmitMaxBackoff, 30*time.Second)
	durDef(&c.TechnicalRetryDelay, time.Minute)
	intDef(&c.MaxConcurrentSubmits, 8)
	intDef(&c.MaxConcurrentPolls, 32)
	durDef(&c.AckWait, 30*time.Second)
	intDef(&c.MaxHeld, 100000)
	intDef(&c.PullBatch, 1000)
	durDef(&c.Heartbeat, c.AckWait/3)
	durDef(&c.ShutdownGrace, 10*time.Second)
	durDef(&c.PinnedTTL, c.AckWait)
	if c.MessageRules == nil {
		r := jobmanager.DefaultMessageRules()
		c.MessageRules = &r
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	subjectRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	mandatorRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Validate reports every field of a defaulted config that cannot work, each naming field and value.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, fmt.Errorf("%s %v: %s", field, v, why))
	}
	for f, v := range map[string]string{"InputStream": c.InputStream, "OutcomeStream": c.OutcomeStream,
		"DeadLetterStream": c.DeadLetterStream, "ConsumerName": c.ConsumerName, "LedgerBucket": c.LedgerBucket} {
		if !nameRE.MatchString(v) {
			bad(f, fmt.Sprintf("%q", v), "must be letters, digits, '-' or '_'")
		}
	}
	for f, v := range map[string]string{"ChangesPrefix": c.ChangesPrefix, "OutcomesPrefix": c.OutcomesPrefix,
		"DeadLetterPrefix": c.DeadLetterPrefix} {
		if !subjectRE.MatchString(v) {
			bad(f, fmt.Sprintf("%q", v), "must be dot-separated tokens without wildcards")
		}
	}
	if c.ChangesPrefix == c.OutcomesPrefix || c.ChangesPrefix == c.DeadLetterPrefix || c.OutcomesPrefix == c.DeadLetterPrefix {
		bad("ChangesPrefix/OutcomesPrefix/DeadLetterPrefix", c.ChangesPrefix+","+c.OutcomesPrefix+","+c.DeadLetterPrefix, "must differ")
	}
	if !mandatorRE.MatchString(c.JobIDPrefix) || strings.Contains(c.JobIDPrefix, "_") {
		bad("JobIDPrefix", fmt.Sprintf("%q", c.JobIDPrefix), "must be 1-64 letters, digits or '-'")
	}
	for i, d := range c.PollSchedule {
		if d <= 0 {
			bad(fmt.Sprintf("PollSchedule[%d]", i), d, "must be positive")
		}
	}
	if c.PollJitter < 0 || c.PollJitter >= 1 {
		bad("PollJitter", c.PollJitter, "must be in [0,1)")
	}
	pos := map[string]time.Duration{"PollTimeout": c.PollTimeout, "NotFoundGrace": c.NotFoundGrace,
		"BatchLinger": c.BatchLinger, "SubmitMaxElapsed": c.SubmitMaxElapsed, "SubmitBackoff": c.SubmitBackoff,
		"SubmitMaxBackoff": c.SubmitMaxBackoff, "AckWait": c.AckWait, "Heartbeat": c.Heartbeat,
		"ShutdownGrace": c.ShutdownGrace, "PinnedTTL": c.PinnedTTL}
	for f, d := range pos {
		if d < 0 {
			bad(f, d, "must not be negative")
		}
	}
	if c.Heartbeat >= c.AckWait {
		bad("Heartbeat", c.Heartbeat, fmt.Sprintf("must be well inside AckWait %v", c.AckWait))
	}
	ints := map[string]int{"BatchMaxLessons": c.BatchMaxLessons, "BatchMaxBytes": c.BatchMaxBytes,
		"SubmitMaxAttempts": c.SubmitMaxAttempts, "MaxConcurrentSubmits": c.MaxConcurrentSubmits,
		"MaxConcurrentPolls": c.MaxConcurrentPolls, "MaxHeld": c.MaxHeld, "PullBatch": c.PullBatch}
	for f, v := range ints {
		if v < 1 {
			bad(f, v, "must be at least 1")
		}
	}
	if c.TechnicalRetries < 0 {
		bad("TechnicalRetries", c.TechnicalRetries, "must not be negative")
	}
	for _, m := range c.Mandators {
		if !mandatorRE.MatchString(m) {
			bad("Mandators", fmt.Sprintf("%q", m), "must match [A-Za-z0-9_-]{1,64}")
		}
	}
	if c.PriorityGroup != "" && !nameRE.MatchString(c.PriorityGroup) {
		bad("PriorityGroup", fmt.Sprintf("%q", c.PriorityGroup), "must be letters, digits, '-' or '_'")
	}
	if len(errs) > 0 {
		return fmt.Errorf("consumer: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

package schemas

import (
	"encoding/json"
	"time"
)

// CloudEvents and event type constants of the contract (sections 3 and 4).
const (
	SpecVersion = "1.0"

	TypeLessonCreated = "lesson.created"
	TypeLessonUpdated = "lesson.updated"
	TypeLessonDeleted = "lesson.deleted"

	TypeBatchSucceeded = "lesson.batch.succeeded"
	TypeBatchFailed    = "lesson.batch.failed"

	// OutcomeSource is the CloudEvents source of every outcome event.
	OutcomeSource = "lessonbridge"
)

// Action is the JobManager endpoint a lesson change goes to.
type Action string

// The three JobManager endpoints.
const (
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionDelete Action = "delete"
)

// ActionForType maps a lesson-change event type to its action; ok is false for any other type.
func ActionForType(eventType string) (a Action, ok bool) {
	switch eventType {
	case TypeLessonCreated:
		return ActionCreate, true
	case TypeLessonUpdated:
		return ActionUpdate, true
	case TypeLessonDeleted:
		return ActionDelete, true
	}
	return "", false
}

// LessonChange is a lesson-change event (contract section 3): a CloudEvents 1.0 envelope in
// structured JSON mode. Values returned by Decode are valid; the zero value is not.
type LessonChange struct {
	SpecVersion     string     `json:"specversion"`
	ID              string     `json:"id"`
	Source          string     `json:"source"`
	Type            string     `json:"type"`
	Time            *time.Time `json:"time,omitempty"`
	Subject         string     `json:"subject,omitempty"`
	DataContentType string     `json:"datacontenttype,omitempty"`
	DataSchema      string     `json:"dataschema,omitempty"`
	Data            LessonData `json:"data"`
	// TraceParent is the CloudEvents distributed-tracing extension attribute: a W3C traceparent
	// (https://www.w3.org/TR/trace-context/#traceparent-header). Decode keeps it only when it is
	// valid (ValidTraceParent); an invalid one is dropped, never an error.
	TraceParent string `json:"traceparent,omitempty"`
}

// Action is the JobManager action the event's type selects. It is empty for an invalid type.
func (e *LessonChange) Action() Action {
	a, _ := ActionForType(e.Type)
	return a
}

// LessonData is the data member of a lesson-change event.
type LessonData struct {
	// LessonID maps to JobManager's LektionId; always required.
	LessonID string `json:"lessonId"`
	// Start and End (RFC 3339) map to Beginn and Ende; required for created and updated, zero when absent.
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	// Resource maps to RessourceName; required for created and updated.
	Resource string `json:"resource,omitempty"`
	// Group puts lessons of the same mandator and type into the same job; empty means no group.
	Group string `json:"group,omitempty"`
	// Mandator, when present, must equal the subject's last token.
	Mandator string `json:"mandator,omitempty"`
	// Attributes are copied into the JobManager lesson object as they are.
	Attributes map[string]json.RawMessage `json:"attributes,omitempty"`
}

// Outcome statuses.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
)

// Outcome reasons (contract section 4) and the dead-letter reason for invalid events (section 5).
const (
	ReasonImportFailed = "import_failed"
	ReasonRejected     = "rejected"
	ReasonSubmitGaveUp = "submit_gave_up"
	ReasonPollTimeout  = "poll_timeout"
	ReasonBatchUnknown = "batch_unknown"
	ReasonInDoubt      = "in_doubt"
	ReasonInvalidEvent = "invalid_event"
)

// Error classes of a failed outcome.
const (
	ErrorClassData      = "data"
	ErrorClassTechnical = "technical"
)

// Outcome is a batch-outcome event (contract section 4), published once per batch.
type Outcome struct {
	SpecVersion     string      `json:"specversion"`
	ID              string      `json:"id"`
	Source          string      `json:"source"`
	Type            string      `json:"type"`
	Time            time.Time   `json:"time"`
	Subject         string      `json:"subject,omitempty"`
	DataContentType string      `json:"datacontenttype"`
	Data            OutcomeData `json:"data"`
	// TraceParent is the W3C traceparent of the batch's span (CloudEvents distributed-tracing
	// extension); empty when tracing is off.
	TraceParent string `json:"traceparent,omitempty"`
}

// OutcomeData is the data member of an outcome event. Slices are never nil when encoded by NewOutcome.
type OutcomeData struct {
	Status        string   `json:"status"`
	Reason        string   `json:"reason"`
	BatchID       string   `json:"batchId"`
	Mandator      string   `json:"mandator"`
	Action        Action   `json:"action"`
	ImportStatus  string   `json:"importStatus"`
	ErrorMessages []string `json:"errorMessages"`
	ErrorClass    string   `json:"errorClass"`
	JobIDs        []string `json:"jobIds"`
	LessonCount   int      `json:"lessonCount"`
	LessonIDs     []string `json:"lessonIds"`
	EventIDs      []string `json:"eventIds"`
	// ResubmittedEventIDs and ResubmittedLessonIDs (contract 4, 4a) name the events and lessons of
	// this JobManager batch that were not at fault and went on into a later batch. Never nil in an
	// outcome the bridge publishes: present, possibly empty.
	ResubmittedEventIDs  []string  `json:"resubmittedEventIds"`
	ResubmittedLessonIDs []string  `json:"resubmittedLessonIds"`
	SubmittedAt          time.Time `json:"submittedAt,omitzero"`
	FinishedAt           time.Time `json:"finishedAt"`
	Polls                int       `json:"polls"`
}

// Dead-letter headers (contract section 5).
const (
	HeaderReason    = "Lessonbridge-Reason"
	HeaderError     = "Lessonbridge-Error"
	HeaderBatchID   = "Lessonbridge-Batch-Id"
	HeaderSubject   = "Lessonbridge-Subject"
	HeaderStreamSeq = "Lessonbridge-Stream-Seq"
	// HeaderTruncated is set on a dead letter whose original body was too large for the server's
	// max_payload: the original size in bytes (the body is then cut).
	HeaderTruncated = "Lessonbridge-Truncated"
)

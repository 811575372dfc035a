package jobmanager

import (
	"encoding/json"
	"strings"
)

// Action selects the submit endpoint: {base}/{mandator}/api/v2.0/jobs/{action}.
type Action string

// The three submit endpoints.
const (
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionDelete Action = "delete"
)

// ImportStatus is a batch's state as JobManager reports it.
type ImportStatus string

// The import states of the vendor guide.
const (
	StatusAwaitingLessonCreation   ImportStatus = "AwaitingLessonCreation"
	StatusAwaitingLessonProcessing ImportStatus = "AwaitingLessonProcessing"
	StatusLessonsCreated           ImportStatus = "LessonsCreated"
	StatusLessonsImportFailed      ImportStatus = "LessonsImportFailed"
)

// Terminal reports whether s is a final state (LessonsCreated or LessonsImportFailed).
// Unknown states are not terminal.
func (s ImportStatus) Terminal() bool {
	return s == StatusLessonsCreated || s == StatusLessonsImportFailed
}

// Known reports whether s is one of the four states of the guide.
func (s ImportStatus) Known() bool {
	switch s {
	case StatusAwaitingLessonCreation, StatusAwaitingLessonProcessing, StatusLessonsCreated, StatusLessonsImportFailed:
		return true
	}
	return false
}

// Lesson is one entry of a job's LektionList. Extra members (the event's data.attributes) are
// written into the same JSON object after the four known fields; an Extra key that names a
// known field (case-insensitively) is ignored so it cannot overwrite it.
type Lesson struct {
	LektionID     string
	Beginn        string // RFC 3339; empty is omitted (deletes)
	Ende          string
	RessourceName string
	Extra         map[string]json.RawMessage
}

// Job is one JobManager job: a unique JobID and its lessons.
type Job struct {
	JobID       string   `json:"JobID"`
	LektionList []Lesson `json:"LektionList"`
}

// BatchStatus is JobManager's answer to a submit (202) or a status request (200).
type BatchStatus struct {
	BatchID       string
	ImportStatus  ImportStatus
	LessonCount   *int     // nil when absent
	ErrorMessages []string // a single string is returned as one element
}

func isKnownLessonField(k string) bool {
	switch strings.ToLower(k) {
	case "lektionid", "beginn", "ende", "ressourcename":
		return true
	}
	return false
}

package schemas

import (
	"encoding/json"
	"errors"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSchemaFiles(t *testing.T) {
	files, err := fs.Glob(SchemaFiles(), "*.schema.json")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{
		"lesson-change.schema.json", "outcome.schema.json", "deadletter-headers.schema.json",
	}, files)
	for _, name := range files {
		b, err := fs.ReadFile(SchemaFiles(), name)
		require.NoError(t, err)
		var doc struct {
			Schema string `json:"$schema"`
			ID     string `json:"$id"`
		}
		require.NoError(t, json.Unmarshal(b, &doc), name)
		assert.Equal(t, "https://json-schema.org/draft/2020-12/schema", doc.Schema, name)
		assert.Contains(t, doc.ID, "/schemas/"+name, name)
	}
}

func TestValidateSchemaErrors(t *testing.T) {
	err := ValidateSchema("lesson", []byte(`{}`))
	assert.ErrorContains(t, err, `schemas: unknown schema "lesson"`)

	err = ValidateSchema(SchemaOutcome, []byte(`{"id":`))
	assert.ErrorContains(t, err, "schemas: outcome: parse document")

	err = ValidateSchema(SchemaLessonChange, []byte(`{"specversion":"1.0"}`))
	var ve *jsonschema.ValidationError
	assert.True(t, errors.As(err, &ve), "wraps *jsonschema.ValidationError: %v", err)
}

// sampleOutcome returns an outcome as the bridge builds it from the Go types.
func sampleOutcome(status string) Outcome {
	o := Outcome{
		SpecVersion:     SpecVersion,
		ID:              "outcome-1",
		Source:          OutcomeSource,
		Type:            TypeBatchSucceeded,
		Time:            time.Date(2025, 12, 22, 16, 3, 10, 0, time.UTC),
		Subject:         "12345",
		DataContentType: "application/json",
		Data: OutcomeData{
			Status:               StatusSucceeded,
			BatchID:              "12345",
			Mandator:             "zh-kanti",
			Action:               ActionCreate,
			ImportStatus:         "LessonsCreated",
			ErrorMessages:        []string{},
			JobIDs:               []string{"lb-20251222-0193f0c2"},
			LessonCount:          1,
			LessonIDs:            []string{"L-0001"},
			EventIDs:             []string{"e-1"},
			ResubmittedEventIDs:  []string{},
			ResubmittedLessonIDs: []string{},
			SubmittedAt:          time.Date(2025, 12, 22, 16, 0, 2, 0, time.UTC),
			FinishedAt:           time.Date(2025, 12, 22, 16, 3, 10, 0, time.UTC),
			Polls:                6,
		},
	}
	if status == StatusFailed {
		o.Type = TypeBatchFailed
		o.Data.Status = StatusFailed
		o.Data.Reason = ReasonSubmitGaveUp
		o.Data.ErrorClass = ErrorClassTechnical
		o.Data.BatchID = ""
		o.Data.ImportStatus = ""
		o.Data.SubmittedAt = time.Time{}
		o.Data.ErrorMessages = []string{"503 Service Unavailable"}
	}
	return o
}

// TestOutcomeSchemaMatchesGoType checks that outcomes encoded from the Go type conform,
// and that the schema catches what a careless encoder would get wrong.
func TestOutcomeSchemaMatchesGoType(t *testing.T) {
	tests := []struct {
		name   string
		status string
		change func(o *Outcome)
		valid  bool
	}{
		{name: "succeeded", status: StatusSucceeded, valid: true},
		{name: "failed without batch", status: StatusFailed, valid: true},
		{name: "nil slice encodes as null", status: StatusSucceeded, change: func(o *Outcome) { o.Data.ErrorMessages = nil }},
		{name: "no event ids", status: StatusSucceeded, change: func(o *Outcome) { o.Data.EventIDs = []string{} }},
		{name: "failed isolation step settling no event", status: StatusFailed, valid: true, change: func(o *Outcome) {
			o.Data.EventIDs, o.Data.LessonIDs = []string{}, []string{}
			o.Data.ResubmittedEventIDs, o.Data.ResubmittedLessonIDs = []string{"e-1"}, []string{"L-0001"}
		}},
		{name: "failed without resubmitted ids", status: StatusFailed, change: func(o *Outcome) { o.Data.ResubmittedEventIDs = nil }},
		{name: "failed without resubmitted lesson ids", status: StatusFailed, change: func(o *Outcome) { o.Data.ResubmittedLessonIDs = nil }},
		{name: "failed without reason", status: StatusFailed, change: func(o *Outcome) { o.Data.Reason = "" }},
		{name: "failed without error class", status: StatusFailed, change: func(o *Outcome) { o.Data.ErrorClass = "" }},
		{name: "succeeded with a reason", status: StatusSucceeded, change: func(o *Outcome) { o.Data.Reason = ReasonImportFailed }},
		{name: "succeeded without batch", status: StatusSucceeded, change: func(o *Outcome) { o.Data.BatchID = "" }},
		{name: "type and status disagree", status: StatusFailed, change: func(o *Outcome) { o.Type = TypeBatchSucceeded }},
		{name: "zero action", status: StatusSucceeded, change: func(o *Outcome) { o.Data.Action = "" }},
		{name: "bad mandator", status: StatusSucceeded, change: func(o *Outcome) { o.Data.Mandator = "zh.kanti" }},
		{name: "no content type", status: StatusSucceeded, change: func(o *Outcome) { o.DataContentType = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := sampleOutcome(tt.status)
			if tt.change != nil {
				tt.change(&o)
			}
			raw, err := json.Marshal(o)
			require.NoError(t, err)
			err = ValidateSchema(SchemaOutcome, raw)
			if tt.valid {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

func TestDeadLetterHeadersSchema(t *testing.T) {
	headers := func(change func(h map[string]string)) []byte {
		h := map[string]string{
			HeaderReason:    ReasonImportFailed,
			HeaderError:     "Fehler: Duplicate JobId: job-20251223-001",
			HeaderBatchID:   "12346",
			HeaderSubject:   "lessons.changes.zh-kanti",
			HeaderStreamSeq: "18446744073709551615",
			"Nats-Msg-Id":   "e-1",
		}
		if change != nil {
			change(h)
		}
		raw, err := json.Marshal(h)
		require.NoError(t, err)
		return raw
	}
	assert.NoError(t, ValidateSchema(SchemaDeadLetterHeaders, headers(nil)))
	assert.NoError(t, ValidateSchema(SchemaDeadLetterHeaders, headers(func(h map[string]string) {
		h[HeaderReason] = ReasonInvalidEvent
		delete(h, HeaderBatchID)
	})))
	for name, change := range map[string]func(h map[string]string){
		"invalid event with batch": func(h map[string]string) { h[HeaderReason] = ReasonInvalidEvent },
		"no error":                 func(h map[string]string) { delete(h, HeaderError) },
		"empty error":              func(h map[string]string) { h[HeaderError] = "" },
		"no subject":               func(h map[string]string) { delete(h, HeaderSubject) },
		"subject with space":       func(h map[string]string) { h[HeaderSubject] = "lessons changes" },
		"no stream seq":            func(h map[string]string) { delete(h, HeaderStreamSeq) },
		"stream seq not a number":  func(h map[string]string) { h[HeaderStreamSeq] = "x" },
		"reason upper case":        func(h map[string]string) { h[HeaderReason] = "Import_Failed" },
		"other header multi-line":  func(h map[string]string) { h["X"] = "a\r\nb" },
	} {
		assert.Error(t, ValidateSchema(SchemaDeadLetterHeaders, headers(change)), name)
	}
}

func TestValidateSchemaConcurrent(t *testing.T) {
	raw := []byte(benchEvent)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = ValidateSchema(SchemaLessonChange, raw) })
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
}

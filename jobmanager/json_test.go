package jobmanager

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLessonMarshalJSON(t *testing.T) {
	tests := []struct {
		name    string
		lesson  Lesson
		want    string
		wantErr string
	}{
		{
			name:   "all fields",
			lesson: Lesson{LektionID: "L-0001", Beginn: "2025-12-23T08:00:00Z", Ende: "2025-12-23T10:00:00Z", RessourceName: "Raum 1.01"},
			want:   `{"LektionId":"L-0001","Beginn":"2025-12-23T08:00:00Z","Ende":"2025-12-23T10:00:00Z","RessourceName":"Raum 1.01"}`,
		},
		{
			name:   "delete carries only LektionId",
			lesson: Lesson{LektionID: "L-0002"},
			want:   `{"LektionId":"L-0002"}`,
		},
		{
			name: "extra sorted, known names skipped case-insensitively, compacted, nil is null",
			lesson: Lesson{LektionID: "L-3", Beginn: "b", Extra: map[string]json.RawMessage{
				"Zeta": json.RawMessage(`"z"`), "alpha": json.RawMessage(`{ "a" : [1, 2] }`),
				"beginn": json.RawMessage(`"evil"`), "LEKTIONID": json.RawMessage(`"evil"`), "Nil": nil,
			}},
			want: `{"LektionId":"L-3","Beginn":"b","Nil":null,"Zeta":"z","alpha":{"a":[1,2]}}`,
		},
		{
			name: "unicode spellings of known names are skipped too",
			lesson: Lesson{LektionID: "L-5", Extra: map[string]json.RawMessage{
				"ENDE": json.RawMessage(`1`), "reſſourcename": json.RawMessage(`1`), "LEKTİONID": json.RawMessage(`1`), "Endet": json.RawMessage(`2`),
			}},
			want: `{"LektionId":"L-5","Endet":2}`,
		},
		{
			name:   "escaping",
			lesson: Lesson{LektionID: "q\"b\\n\n\t\x01<&>\u2028\xff"},
			want:   `{"LektionId":"q\"b\\n\n\t\u0001\u003c\u0026\u003e\u2028\ufffd"}`,
		},
		{
			name:    "invalid extra JSON",
			lesson:  Lesson{LektionID: "L-4", Extra: map[string]json.RawMessage{"x": json.RawMessage(`{nope`)}},
			wantErr: `jobmanager: lesson "L-4": extra member "x"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.lesson.MarshalJSON()
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(got))
			viaJSON, err := json.Marshal(tt.lesson)
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(viaJSON), "encoding/json leaves the output as it is")
		})
	}
}

func TestLessonStringsDecodeToTheSameText(t *testing.T) {
	for _, s := range []string{"plain", "ä ö ü ß", "\"quoted\"", "back\\slash", "ctl\x00\x1f\x7f", "<html>&", "\u2028\u2029", "emoji 🙂"} {
		b, err := json.Marshal(Lesson{LektionID: s})
		require.NoError(t, err)
		var back Lesson
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, s, back.LektionID)
	}
}

func TestLessonUnmarshalJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Lesson
		wantErr string
	}{
		{
			name: "vendor spelling",
			in:   `{"LektionId":"L-1","Beginn":"a","Ende":"b","RessourceName":"R"}`,
			want: Lesson{LektionID: "L-1", Beginn: "a", Ende: "b", RessourceName: "R"},
		},
		{
			name: "any case, number id, null field, unknown members to Extra",
			in:   `{"lektionID":12345678901234567890,"BEGINN":"a","ende":null,"ressourcename":"R","Kurs":"MATH","n":[1, 2]}`,
			want: Lesson{LektionID: "12345678901234567890", Beginn: "a", RessourceName: "R",
				Extra: map[string]json.RawMessage{"Kurs": json.RawMessage(`"MATH"`), "n": json.RawMessage(`[1, 2]`)}},
		},
		{name: "object for a known field", in: `{"LektionId":{"x":1}}`, wantErr: `lesson field "LektionId"`},
		{name: "not an object", in: `["L-1"]`, wantErr: "want a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Lesson
			err := json.Unmarshal([]byte(tt.in), &got)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestJobJSONRoundTrip(t *testing.T) {
	jobs := []Job{
		{JobID: "lb-20251222-0193f0c2", LektionList: []Lesson{
			{LektionID: "L-1", Beginn: "2025-12-23T08:00:00Z", Ende: "2025-12-23T10:00:00Z", RessourceName: "Raum 1.01",
				Extra: map[string]json.RawMessage{"Kurs": json.RawMessage(`"MATH-3A"`), "Meta": json.RawMessage(`{"a":[1,true,null]}`)}},
			{LektionID: "L-2"},
		}},
		{JobID: "job-2", LektionList: []Lesson{{LektionID: "L-3", Beginn: "x", Ende: "y", RessourceName: "z"}}},
	}
	b, err := json.Marshal(jobs)
	require.NoError(t, err)
	direct, err := appendJobs(nil, jobs)
	require.NoError(t, err)
	assert.Equal(t, string(b), string(direct), "the submit body equals json.Marshal's output")

	var back []Job
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, jobs, back)
}

func TestJobUnmarshalJSONSpellings(t *testing.T) {
	for _, in := range []string{
		`{"JobID":"j-1","LektionList":[{"LektionId":"L-1"}]}`,
		`{"JobId":"j-1","LektionList":[{"LektionId":"L-1"}]}`,
		`{"jobid":"j-1","lektionlist":[{"lektionid":"L-1"}],"unknown":1}`,
	} {
		var j Job
		require.NoError(t, json.Unmarshal([]byte(in), &j), in)
		assert.Equal(t, Job{JobID: "j-1", LektionList: []Lesson{{LektionID: "L-1"}}}, j, in)
	}
	var j Job
	assert.Error(t, json.Unmarshal([]byte(`{"JobID":true}`), &j))
}

func TestBatchStatusDecoding(t *testing.T) {
	n := func(i int) *int { return &i }
	tests := []struct {
		name    string
		in      string
		want    BatchStatus
		wantErr string
	}{
		{
			name: "guide example",
			in:   `{"BatchId":"12345","ImportStatus":"LessonsImportFailed","ErrorMessages":"Fehler: Duplicate JobId: job-20251223-001"}`,
			want: BatchStatus{BatchID: "12345", ImportStatus: StatusLessonsImportFailed, ErrorMessages: []string{"Fehler: Duplicate JobId: job-20251223-001"}},
		},
		{
			name: "number BatchId keeps its digits, lowercase keys, LessonCount",
			in:   `{"batchId":123456789012345678901,"importStatus":"AwaitingLessonProcessing","lessonCount":7}`,
			want: BatchStatus{BatchID: "123456789012345678901", ImportStatus: StatusAwaitingLessonProcessing, LessonCount: n(7)},
		},
		{
			name: "BATCHID, array messages with a non-string, null count",
			in:   `{"BATCHID":"b","ImportStatus":"LessonsImportFailed","ErrorMessages":["a",null,{"code":1}],"LessonCount":null}`,
			want: BatchStatus{BatchID: "b", ImportStatus: StatusLessonsImportFailed, ErrorMessages: []string{"a", `{"code":1}`}},
		},
		{
			name: "null messages, numeric string count, unknown status kept, unknown members ignored",
			in:   `{"BatchID":"b","ImportStatus":"Paused","ErrorMessages":null,"LessonCount":"3","Other":{}}`,
			want: BatchStatus{BatchID: "b", ImportStatus: "Paused", LessonCount: n(3)},
		},
		{
			name: "empty string message is no message",
			in:   `{"BatchId":"b","ErrorMessages":""}`,
			want: BatchStatus{BatchID: "b"},
		},
		{
			name: "members matching one field: the last counts",
			in:   `{"BatchId":"a","batchid":"b","LESSONCOUNT":1,"LessonCount":2}`,
			want: BatchStatus{BatchID: "b", LessonCount: n(2)},
		},
		{name: "not an object", in: `["b"]`, wantErr: "batch status: want a JSON object, got array"},
		{name: "BatchId object", in: `{"BatchId":{}}`, wantErr: `batch status field "BatchId"`},
		{name: "fractional count", in: `{"LessonCount":1.5}`, wantErr: `batch status field "LessonCount"`},
		{name: "trailing data", in: `{"BatchId":"b"} x`, wantErr: "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got BatchStatus
			err := json.Unmarshal([]byte(tt.in), &got)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.want.ImportStatus.Known(), got.ImportStatus.Known())

			b, err := json.Marshal(got)
			require.NoError(t, err)
			var again BatchStatus
			require.NoError(t, json.Unmarshal(b, &again))
			assert.Equal(t, got, again, "round trip through MarshalJSON")
		})
	}
}

func TestBatchStatusMarshalJSON(t *testing.T) {
	n := 2
	b, err := json.Marshal(BatchStatus{BatchID: "1", ImportStatus: StatusAwaitingLessonCreation, LessonCount: &n})
	require.NoError(t, err)
	assert.JSONEq(t, `{"BatchId":"1","ImportStatus":"AwaitingLessonCreation","LessonCount":2}`, string(b))
}

func TestDecodeBatchList(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string // BatchIDs
		wantErr string
	}{
		{name: "array", in: `[{"BatchId":"1"},{"batchId":2}]`, want: []string{"1", "2"}},
		{name: "wrapped Batches", in: `{"Batches":[{"BatchId":"1"}],"Total":1}`, want: []string{"1"}},
		{name: "wrapped items with another array", in: `{"links":[],"items":[{"BatchId":"3"}]}`, want: []string{"3"}},
		{name: "any single array member", in: `{"data":[{"BatchId":"4"}],"count":1}`, want: []string{"4"}},
		{name: "empty body", in: ``, want: nil},
		{name: "null", in: `null`, want: nil},
		{name: "Batches null", in: `{"Batches":null}`, want: nil},
		{name: "no array", in: `{"count":0}`, wantErr: "0 array members"},
		{name: "two anonymous arrays", in: `{"a":[],"b":[]}`, wantErr: "2 array members"},
		{name: "not JSON", in: `<html>`, wantErr: "batch list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := decodeBatchList([]byte(tt.in))
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			var ids []string
			for _, b := range list {
				ids = append(ids, b.BatchID)
			}
			assert.Equal(t, tt.want, ids)
		})
	}
}

package jobmanager

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzBatchStatus: decoding never panics, and what decodes survives MarshalJSON unchanged.
func FuzzBatchStatus(f *testing.F) {
	for _, s := range []string{
		`{"BatchId":"12345","ImportStatus":"LessonsImportFailed","ErrorMessages":"Fehler: Duplicate JobId: job-1"}`,
		`{"batchid":12,"lessonCount":"3","errorMessages":["a",null,1]}`,
		`[{"BatchId":"1"}]`, `{"Batches":[]}`, `null`, `{"LessonCount":1e3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = decodeBatchList(data)
		var st BatchStatus
		if json.Unmarshal(data, &st) != nil {
			return
		}
		b, err := json.Marshal(st)
		require.NoError(t, err)
		var again BatchStatus
		require.NoError(t, json.Unmarshal(b, &again))
		assert.Equal(t, st, again)
	})
}

// FuzzLessonRoundTrip: a lesson that decodes marshals to valid JSON that decodes to the same
// known fields.
func FuzzLessonRoundTrip(f *testing.F) {
	for _, s := range []string{
		`{"LektionId":"L-1","Beginn":"a","Ende":"b","RessourceName":"R","Kurs":{"x":[1]}}`,
		`{"lektionid":1,"beginn":null,"BEGINN":"x"}`,
		"{\"LektionId\":\"\\u2028<\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var l Lesson
		if json.Unmarshal(data, &l) != nil {
			return
		}
		b, err := l.MarshalJSON()
		require.NoError(t, err)
		require.True(t, json.Valid(b), "%s", b)
		var back Lesson
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, l.LektionID, back.LektionID)
		assert.Equal(t, l.Beginn, back.Beginn)
		assert.Equal(t, l.Ende, back.Ende)
		assert.Equal(t, l.RessourceName, back.RessourceName)
		assert.Equal(t, len(l.Extra), len(back.Extra))
	})
}

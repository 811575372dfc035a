package jobmanagertest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeJobs(t *testing.T) {
	jobs, err := decodeJobs([]byte(` [{"JobId":"j","LektionList":[{"LektionID":"L","beginn":"b","X":[1, 2]}]},{"LektionList":null}]`))
	require.NoError(t, err)
	require.Len(t, jobs, 2)
	assert.Equal(t, "j", jobs[0].JobID)
	assert.True(t, jobs[0].HasJobID)
	assert.Equal(t, "L", jobs[0].Lessons[0].LektionID)
	assert.Equal(t, "b", jobs[0].Lessons[0].Beginn)
	assert.Equal(t, `[1,2]`, string(jobs[0].Lessons[0].Extra["X"]), "extras are kept, compacted")
	assert.False(t, jobs[1].HasJobID)
	assert.False(t, jobs[1].HasLessons)
}

// FuzzDecodeJobs checks that the decoder never panics and that whatever it accepts is usable.
func FuzzDecodeJobs(f *testing.F) {
	for _, seed := range []string{
		`[{"JobID":"job-20251223-001","LektionList":[{"LektionId":"L-0001","Beginn":"2025-12-23T08:00:00Z","Ende":"2025-12-23T10:00:00Z","RessourceName":"Raum 1.01"}]}]`,
		`[{"jobid":"a","JobId":"b"}]`, `[]`, `null`, `[null]`, `[{"LektionList":[null]}]`, `{"a":1}`, `[{"LektionList":[{"Beginn":7}]}]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		jobs, err := decodeJobs(body)
		if err != nil {
			assert.Nil(t, jobs)
			return
		}
		assert.NotEmpty(t, jobs)
		for _, j := range jobs {
			assert.Equal(t, j.HasJobID, j.JobID != "")
			assert.NotEmpty(t, j.canonLesson)
		}
	})
}

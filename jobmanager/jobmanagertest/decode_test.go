package jobmanagertest

import (
	"strings"
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

// decodeSeeds are bodies whose decoding decodeJobs and stdDecodeJobs must agree on: the
// tolerances, every error, and the corners of JSON syntax.
var decodeSeeds = []string{
	`[{"JobID":"job-20251223-001","LektionList":[{"LektionId":"L-0001","Beginn":"2025-12-23T08:00:00Z","Ende":"2025-12-23T10:00:00Z","RessourceName":"Raum 1.01"}]}]`,
	`[{"jobid":"a","JobId":"b"}]`, `[]`, `[ ]`, `null`, `[null]`, `[{"LektionList":[null]}]`, `{"a":1}`, `[{"LektionList":[{"Beginn":7}]}]`,
	`[1]`, `["x"]`, `[[]]`, `[{}]`, `[{},]`, `[{}]x`, `[{}] `, "[{}]\u00a0", `[{"JobID":1}]`, `[{"JobID":null,"LektionList":{}}]`,
	`[{"JobID":"","LektionList":[]}]`, `[{"LektionList":"x"}]`, `[{"LektionList":[1]}]`, `[{"LektionList":[{"a":1,"A":2}]}]`,
	`[{"LektionList":[{"a":1,"a":2}]}]`, `[{"LektionList":[{"Beginn":7,"Beginn":"x"}]}]`, `[{"JobID":7,"JobID":"ok"}]`,
	`[{"LektionList":[{"Beginn":7}],"LektionList":[]}]`, `[{"LektionList":[{"Beginn":7}],"lektionlist":[]}]`,
	`[{"x":1,"X":2,"LektionList":[{"Beginn":7}]}]`, `[{"JobID":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}]`,
	`[{"JobID":"a"},{"JobID":5}]`, `[{"JobID":5},{"JobID":"a"} x]`, `[{"LektionList":[{"Beginn":7}]}, {]`,
	"[{\"LektionList\":[{\"LektionId\":\"L\",\"x\":{ \"a\" : [ 1 , 2 ] },\"y\":\"a b\",\"z\":\"<&>\u2028\"}]}]",
	`[{"LektionList":[{"LEKTİONID":"L","Beginn":"b"}]}]`, `[{"LektionList":[{"LeKtionId":"L","lektionid":"M"}]}]`,
	`[{"LektionList":[{"LektionId":"L\u0041\n\"\\\/\b\f\r\t\u00e9\ud83d\ude00\ud800x","a\u0062":1,"ab":2}]}]`,
	"[{\"LektionList\":[{\"LektionId\":\"\xff\xfe\",\"\xffk\":\"\xc3\"}]}]", "[{\"JobID\":\"a\x01\"}]",
	`[{"LektionList":[{"n":-0.5e+10,"m":0,"o":-1,"p":1E5,"q":true,"r":false,"s":null}]}]`,
	`[{"a":01}]`, `[{"a":1.}]`, `[{"a":-}]`, `[{"a":.5}]`, `[{"a":1e}]`, `[{"a":tru}]`, `[{"a":nul}]`, `[{"a":"\x"}]`,
	`[{"a":"\u12"}]`, `[{"a" 1}]`, `[{1:1}]`, `[{"a":1,}]`, `[{"a":1}`, `["`, `[`, `[{"a":[1,]}]`, `[{"a":{"b":}}]`,
	`[{"LektionList":[{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"B":19}]}]`,
	`[{"LektionList":[{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"r":19}]}]`,
	"[{\"LektionList\":[{\"\u212a\":1,\"k\":2}]}]", `[{"LektionList":[{"Extra":{"Z":1,"a":[true]}}]}]`,
	`[{"JobID":"j","LektionList":[{"LektionId":"L","Beginn":"2025-12-23T08:00:00Z","Ende":"e","RessourceName":"r","t":"x"}]},{"JobID":"k"}]`,
	`[{"JobI\u0044":"j\u002d1","LektionList":[{"\u004cektionId":"L","Beginn":"\u00e9","Ende":"é","Ré":"x"}]}]`,
}

// FuzzDecodeJobs checks that the decoder never panics and that it agrees with stdDecodeJobs
// (the map-based reference) on every body: the same jobs, the same error messages, and the same
// content as sameLessons compares it (what JobIDConflicts is based on).
func FuzzDecodeJobs(f *testing.F) {
	for _, seed := range decodeSeeds {
		f.Add([]byte(seed))
	}
	f.Add([]byte(`[{"LektionList":[{"x":` + strings.Repeat("[", 9996) + strings.Repeat("]", 9996) + `}]}]`))
	f.Add([]byte(`[{"LektionList":[{"x":` + strings.Repeat("[", 9997) + strings.Repeat("]", 9997) + `}]}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		want, wantErr := stdDecodeJobs(body)
		jobs, err := decodeJobs(body)
		if wantErr != nil {
			require.Error(t, err)
			assert.Nil(t, jobs)
			if !strings.Contains(wantErr.Error(), "differ only in case") {
				assert.Equal(t, wantErr.Error(), err.Error())
			} else {
				assert.Contains(t, err.Error(), "differ only in case")
			}
			return
		}
		require.NoError(t, err)
		require.Len(t, jobs, len(want))
		for i, j := range jobs {
			assert.Equal(t, want[i], j)
			assert.Equal(t, j.HasJobID, j.JobID != "")
			assert.True(t, sameLessons(j.Lessons, want[i].Lessons))
		}
	})
}

package jobmanagertest

import (
	"bytes"
	"encoding/json"
)

// sameLessons reports whether json.Marshal encodes a and b alike: whether a job sent with a and
// one sent with b have the same content, for JobIDConflicts. It runs only when a JobID comes
// again (a resubmit), so it is written with json.Marshal rather than by hand (issue 13,
// docs/readme-throughput.md).
func sameLessons(a, b []StoredLesson) bool {
	if len(a) != len(b) {
		return false
	}
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && bytes.Equal(ja, jb)
}

package jobmanagertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// The decoder as it was before decodeJobs became a single-pass scanner: each object decoded into a
// map of json.RawMessage by encoding/json. It stays as the reference that FuzzDecodeJobs compares
// decodeJobs against, and as the encoding/json baseline of BenchmarkDecodeJobs500.

// stdDecodeJobs decodes a submit body: a JSON array of job objects. Member names are matched
// case-insensitively (JobID/JobId, LektionId/LektionID, ...). It returns an error, meant for a 400
// answer, when the body is not such an array or a known member has the wrong JSON type. Missing
// members are not errors here: they are validation errors of the batch. It is the straightforward
// encoding/json decoder that BenchmarkDecodeJobs500 measures decodeJobs against.
func stdDecodeJobs(body []byte) ([]job, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body, want a JSON array of jobs")
	}
	if body[0] != '[' {
		return nil, errors.New("body is not a JSON array of jobs")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, fmt.Errorf("body is not a JSON array of jobs: %w", err)
	}
	if len(raws) == 0 {
		return nil, errors.New("empty job array")
	}
	jobs := make([]job, 0, len(raws))
	for i, raw := range raws {
		j, err := legacyDecodeJob(raw)
		if err != nil {
			return nil, fmt.Errorf("job %d: %w", i, err)
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

func legacyDecodeJob(raw json.RawMessage) (job, error) {
	fields, err := legacyFoldObject(raw)
	if err != nil {
		return job{}, err
	}
	var j job
	if j.JobID, j.HasJobID, err = legacyStringMember(fields, "jobid"); err != nil {
		return job{}, err
	}
	j.HasJobID = j.HasJobID && j.JobID != ""
	list, ok := fields["lektionlist"]
	if ok && !legacyIsNull(list.value) {
		var items []json.RawMessage
		if err := json.Unmarshal(list.value, &items); err != nil {
			return job{}, fmt.Errorf("%s: want a JSON array of lessons", list.name)
		}
		j.HasLessons = true
		for k, item := range items {
			l, err := legacyDecodeLesson(item)
			if err != nil {
				return job{}, fmt.Errorf("%s[%d]: %w", list.name, k, err)
			}
			j.Lessons = append(j.Lessons, l)
		}
	}
	return j, nil
}

func legacyDecodeLesson(raw json.RawMessage) (StoredLesson, error) {
	fields, err := legacyFoldObject(raw)
	if err != nil {
		return StoredLesson{}, err
	}
	var l StoredLesson
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"lektionid", &l.LektionID},
		{"beginn", &l.Beginn},
		{"ende", &l.Ende},
		{"ressourcename", &l.RessourceName},
	} {
		if *f.dst, _, err = legacyStringMember(fields, f.key); err != nil {
			return StoredLesson{}, err
		}
	}
	for k, m := range fields {
		switch k {
		case "lektionid", "beginn", "ende", "ressourcename":
			continue
		}
		if l.Extra == nil {
			l.Extra = map[string]json.RawMessage{}
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, m.value); err != nil {
			return StoredLesson{}, fmt.Errorf("%s: %w", m.name, err)
		}
		l.Extra[m.name] = buf.Bytes()
	}
	return l, nil
}

type legacyMember struct {
	name  string // as sent
	value json.RawMessage
}

// legacyFoldObject decodes a JSON object into its members keyed by lower-case name. Two members whose
// names differ only in case are an error: the sender's intent is ambiguous.
func legacyFoldObject(raw json.RawMessage) (map[string]legacyMember, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, errors.New("not a JSON object")
	}
	out := make(map[string]legacyMember, len(obj))
	for name, v := range obj {
		key := strings.ToLower(name)
		if prev, dup := out[key]; dup {
			a, b := prev.name, name
			if a > b {
				a, b = b, a
			}
			return nil, fmt.Errorf("members %q and %q differ only in case", a, b)
		}
		out[key] = legacyMember{name: name, value: v}
	}
	return out, nil
}

// legacyStringMember returns the string legacyMember key; ok is false when it is absent or null.
func legacyStringMember(fields map[string]legacyMember, key string) (s string, ok bool, err error) {
	m, present := fields[key]
	if !present || legacyIsNull(m.value) {
		return "", false, nil
	}
	if err := json.Unmarshal(m.value, &s); err != nil {
		return "", false, fmt.Errorf("%s: want a string, got %s", m.name, legacyTruncate(string(m.value), 40))
	}
	return s, true, nil
}

func legacyIsNull(v json.RawMessage) bool {
	return string(bytes.TrimSpace(v)) == "null"
}

func legacyTruncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

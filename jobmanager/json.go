package jobmanager

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MarshalJSON writes the lesson as one JSON object: LektionId, then Beginn, Ende and
// RessourceName when they are not empty, then the Extra members sorted by key. An Extra key
// that names a known field case-insensitively is skipped, so attributes can never overwrite
// the four fields. An Extra value must be valid JSON (it is written compacted); a nil value is
// written as null.
func (l Lesson) MarshalJSON() ([]byte, error) {
	return appendLesson(make([]byte, 0, 128), &l)
}

// UnmarshalJSON reads a lesson object. The four known fields are matched case-insensitively
// and may be JSON strings, numbers (kept with their exact digits) or null; every other member
// goes into Extra unchanged. A JSON null leaves l unchanged.
func (l *Lesson) UnmarshalJSON(data []byte) error {
	if isNull(data) {
		return nil
	}
	var out Lesson
	err := eachMember(data, func(key string, raw json.RawMessage) error {
		var dst *string
		switch strings.ToLower(key) {
		case "lektionid":
			dst = &out.LektionID
		case "beginn":
			dst = &out.Beginn
		case "ende":
			dst = &out.Ende
		case "ressourcename":
			dst = &out.RessourceName
		default:
			if out.Extra == nil {
				out.Extra = make(map[string]json.RawMessage)
			}
			out.Extra[key] = raw
			return nil
		}
		s, err := scalarString(raw)
		if err != nil {
			return fmt.Errorf("lesson field %q: %w", key, err)
		}
		*dst = s
		return nil
	})
	if err != nil {
		return fmt.Errorf("jobmanager: %w", err)
	}
	*l = out
	return nil
}

// MarshalJSON writes {"JobID": ..., "LektionList": [...]}; a nil LektionList is written as [].
// The lessons are written as by Lesson.MarshalJSON, without reflection.
func (j Job) MarshalJSON() ([]byte, error) {
	return appendJob(make([]byte, 0, 64+len(j.LektionList)*128), &j)
}

// UnmarshalJSON reads a job object. JobID and LektionList are matched case-insensitively
// (JobID and JobId both occur); other members are ignored. A JSON null leaves j unchanged.
func (j *Job) UnmarshalJSON(data []byte) error {
	if isNull(data) {
		return nil
	}
	var out Job
	err := eachMember(data, func(key string, raw json.RawMessage) error {
		switch strings.ToLower(key) {
		case "jobid":
			s, err := scalarString(raw)
			if err != nil {
				return fmt.Errorf("job field %q: %w", key, err)
			}
			out.JobID = s
		case "lektionlist":
			out.LektionList = nil
			if err := json.Unmarshal(raw, &out.LektionList); err != nil {
				return fmt.Errorf("job field %q: %w", key, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("jobmanager: %w", err)
	}
	*j = out
	return nil
}

// MarshalJSON writes the status with the vendor's spelling: BatchId, ImportStatus, then
// LessonCount when not nil and ErrorMessages when not empty.
func (b BatchStatus) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		BatchID       string       `json:"BatchId"`
		ImportStatus  ImportStatus `json:"ImportStatus"`
		LessonCount   *int         `json:"LessonCount,omitempty"`
		ErrorMessages []string     `json:"ErrorMessages,omitempty"`
	}{b.BatchID, b.ImportStatus, b.LessonCount, b.ErrorMessages})
}

// UnmarshalJSON reads a status object tolerantly: member names are matched case-insensitively,
// as encoding/json matches struct fields (BatchId, batchId, BatchID); BatchId may be a string or
// a number (its exact digits are kept); LessonCount may be a number, a numeric string, null or
// absent; ErrorMessages may be a string, an array or null (array elements that are not strings
// are kept as their JSON text, an empty string means no message); an ImportStatus the guide does
// not name is kept as it is. Unknown members are ignored; of members that match the same field
// the last counts. A JSON null leaves b unchanged.
func (b *BatchStatus) UnmarshalJSON(data []byte) error {
	if isNull(data) {
		return nil
	}
	st, err := decodeBatchStatus(data)
	if err != nil {
		return err
	}
	*b = *st
	return nil
}

// batchStatusWire is a status object as sent: encoding/json finds the members, the conversions
// of decodeBatchStatus read their values.
type batchStatusWire struct {
	BatchID       json.RawMessage `json:"BatchId"`
	ImportStatus  json.RawMessage
	LessonCount   json.RawMessage
	ErrorMessages json.RawMessage
}

// decodeBatchStatus reads one status object from a response body, as BatchStatus.UnmarshalJSON
// describes; a body that is JSON null is an empty status.
func decodeBatchStatus(body []byte) (*BatchStatus, error) {
	var w batchStatusWire
	if err := json.Unmarshal(body, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "" {
			return nil, fmt.Errorf("jobmanager: batch status: want a JSON object, got %s", te.Value)
		}
		return nil, fmt.Errorf("jobmanager: batch status: %w", err)
	}
	var st BatchStatus
	var err error
	if w.BatchID != nil {
		if st.BatchID, err = scalarString(w.BatchID); err != nil {
			return nil, statusFieldError("BatchId", err)
		}
	}
	if w.ImportStatus != nil {
		s, err := scalarString(w.ImportStatus)
		if err != nil {
			return nil, statusFieldError("ImportStatus", err)
		}
		st.ImportStatus = ImportStatus(s)
	}
	if w.LessonCount != nil {
		if st.LessonCount, err = decodeCount(w.LessonCount); err != nil {
			return nil, statusFieldError("LessonCount", err)
		}
	}
	if w.ErrorMessages != nil {
		if st.ErrorMessages, err = decodeMessages(w.ErrorMessages); err != nil {
			return nil, statusFieldError("ErrorMessages", err)
		}
	}
	return &st, nil
}

func statusFieldError(field string, err error) error {
	return fmt.Errorf("jobmanager: batch status field %q: %w", field, err)
}

// decodeBatchList reads the answer of the list call: a JSON array of status objects, or an
// object wrapping such an array under one member (a member named Batches or Items wins when
// there are several arrays). An empty body or null is an empty list.
func decodeBatchList(body []byte) ([]BatchStatus, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || isNull(body) {
		return nil, nil
	}
	if body[0] == '{' {
		var arrays []json.RawMessage
		var named json.RawMessage
		err := eachMember(body, func(key string, raw json.RawMessage) error {
			isArray := len(raw) > 0 && raw[0] == '['
			switch strings.ToLower(key) {
			case "batches", "items":
				if isArray || isNull(raw) {
					named = raw
				}
			}
			if isArray {
				arrays = append(arrays, raw)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("jobmanager: batch list: %w", err)
		}
		switch {
		case named != nil:
			body = named
		case len(arrays) == 1:
			body = arrays[0]
		default:
			return nil, fmt.Errorf("jobmanager: batch list: object has %d array members, want exactly one", len(arrays))
		}
		if isNull(body) {
			return nil, nil
		}
	}
	var list []BatchStatus
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("jobmanager: batch list: %w", err)
	}
	return list, nil
}

// eachMember calls fn for every member of the JSON object in data, in document order.
func eachMember(data []byte, fn func(key string, raw json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want a JSON object, got %s", describeToken(tok))
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string) // the decoder guarantees a string key here
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if err := fn(key, raw); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		return string(t)
	case string:
		return "a string"
	case nil:
		return "null"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}

func isNull(raw []byte) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// scalarString returns a JSON string's value, a number's exact text, or "" for null.
func scalarString(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", errors.New("empty value")
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case c == '-' || (c >= '0' && c <= '9'):
		return string(raw), nil // already validated as a JSON number by the decoder
	case isNull(raw):
		return "", nil
	}
	return "", fmt.Errorf("want a string or a number, got %s", raw)
}

func decodeCount(raw json.RawMessage) (*int, error) {
	s, err := scalarString(raw)
	if err != nil || s == "" {
		return nil, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != float64(int(f)) {
			return nil, fmt.Errorf("want an integer, got %s", raw)
		}
		n = int(f)
	}
	return &n, nil
}

func decodeMessages(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case isNull(raw):
		return nil, nil
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		if s == "" {
			return nil, nil
		}
		return []string{s}, nil
	case len(raw) > 0 && raw[0] == '[':
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, err
		}
		var msgs []string
		for _, it := range items {
			switch {
			case isNull(it):
				continue
			case it[0] == '"':
				var s string
				if err := json.Unmarshal(it, &s); err != nil {
					return nil, err
				}
				msgs = append(msgs, s)
			default:
				msgs = append(msgs, compactText(it))
			}
		}
		return msgs, nil
	}
	return []string{compactText(raw)}, nil
}

func compactText(raw []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

// appendJobs appends jobs as a JSON array; it is the submit body.
func appendJobs(dst []byte, jobs []Job) ([]byte, error) {
	dst = append(dst, '[')
	for i := range jobs {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = appendJob(dst, &jobs[i]); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

func appendJob(dst []byte, j *Job) ([]byte, error) {
	dst = append(dst, `{"JobID":`...)
	dst = appendString(dst, j.JobID)
	dst = append(dst, `,"LektionList":[`...)
	for i := range j.LektionList {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = appendLesson(dst, &j.LektionList[i]); err != nil {
			return nil, fmt.Errorf("jobmanager: job %q: %w", j.JobID, err)
		}
	}
	return append(dst, ']', '}'), nil
}

func appendLesson(dst []byte, l *Lesson) ([]byte, error) {
	dst = append(dst, `{"LektionId":`...)
	dst = appendString(dst, l.LektionID)
	if l.Beginn != "" {
		dst = append(dst, `,"Beginn":`...)
		dst = appendString(dst, l.Beginn)
	}
	if l.Ende != "" {
		dst = append(dst, `,"Ende":`...)
		dst = appendString(dst, l.Ende)
	}
	if l.RessourceName != "" {
		dst = append(dst, `,"RessourceName":`...)
		dst = appendString(dst, l.RessourceName)
	}
	if len(l.Extra) == 0 {
		return append(dst, '}'), nil
	}
	var small [8]string
	keys := small[:0]
	for k := range l.Extra {
		if !knownLessonKey(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		dst = append(dst, ',')
		dst = appendString(dst, k)
		dst = append(dst, ':')
		var err error
		if dst, err = appendRaw(dst, l.Extra[k]); err != nil {
			return nil, fmt.Errorf("jobmanager: lesson %q: extra member %q: %w", l.LektionID, k, err)
		}
	}
	return append(dst, '}'), nil
}

// knownLessonKey reports whether k names one of the four lesson fields. It matches what
// isKnownLessonField matches and also Unicode case folds such as "ſ" for "s" (which
// case-insensitive servers may treat alike); for ASCII keys it does not allocate.
func knownLessonKey(k string) bool {
	if strings.EqualFold(k, "LektionId") || strings.EqualFold(k, "Beginn") ||
		strings.EqualFold(k, "Ende") || strings.EqualFold(k, "RessourceName") {
		return true
	}
	for i := 0; i < len(k); i++ {
		if k[i] >= utf8.RuneSelf {
			return isKnownLessonField(k) // ToLower can map non-ASCII runes that do not fold, like "İ"
		}
	}
	return false
}

// appendRaw appends the JSON value v compacted; empty v is null.
func appendRaw(dst []byte, v json.RawMessage) ([]byte, error) {
	if len(v) == 0 {
		return append(dst, "null"...), nil
	}
	if !bytes.ContainsAny(v, " \t\r\n") {
		if !json.Valid(v) {
			var b bytes.Buffer
			return nil, json.Compact(&b, v) // for the scanner's precise error
		}
		return append(dst, v...), nil
	}
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

const hexDigits = "0123456789abcdef"

// plainASCII marks the bytes appendString copies unescaped.
var plainASCII = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD and U+2028/U+2029
// are escaped, and so are <, > and &: the output equals encoding/json's.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if plainASCII[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

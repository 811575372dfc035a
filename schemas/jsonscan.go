package schemas

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// This file holds the small JSON walker behind Decode. It runs only on input that
// json.Valid accepted, so it never has to report syntax errors: it finds the members of
// an object (matching keys case-sensitively, as CloudEvents requires, unlike
// encoding/json's case-insensitive struct matching) and hands out the raw values as
// spans of the input. Values are then converted with the helpers below, which fall back
// to encoding/json for the rare strings that need unescaping or UTF-8 repair.

// span is a half-open byte range [lo, hi) of the input; the zero span means "absent".
type span struct{ lo, hi int }

func (s span) present() bool { return s.hi > 0 }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// stringEnd returns the index just past the string literal that starts at b[i] == '"'.
func stringEnd(b []byte, i int) int {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		n := 0 // backslashes right before the quote
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i
		}
	}
}

// valueEnd returns the index just past the JSON value that starts at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = stringEnd(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default: // number, true, false, null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// members iterates over the members of the object at b[obj.lo:obj.hi].
type members struct {
	b []byte
	i int
}

func newMembers(b []byte, obj span) members {
	return members{b: b[:obj.hi], i: obj.lo + 1}
}

// next returns the next member's key (the span inside the quotes) and value.
func (m *members) next() (key, val span, ok bool) {
	b := m.b
	i := skipSpace(b, m.i)
	if i < len(b) && b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		return span{}, span{}, false
	}
	kEnd := stringEnd(b, i)
	key = span{i + 1, kEnd - 1}
	i = skipSpace(b, kEnd)
	i = skipSpace(b, i+1) // past ':'
	vEnd := valueEnd(b, i)
	m.i = vEnd
	return key, span{i, vEnd}, true
}

// keyBytes returns the key's name: the raw bytes inside the quotes, or for the rare
// escaped key its unescaped form.
func keyBytes(b []byte, key span) []byte {
	raw := b[key.lo:key.hi]
	if !hasEscape(raw) {
		return raw
	}
	var s string
	if json.Unmarshal(b[key.lo-1:key.hi+1], &s) != nil {
		return raw
	}
	return []byte(s)
}

func hasEscape(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

// jsonKind names the JSON type of the value that starts with c.
func jsonKind(c byte) string {
	switch c {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// plainString reports whether the string literal's content needs no unescaping or
// UTF-8 repair, so that it can be used as it is.
func plainString(content []byte) bool {
	high := false
	for _, c := range content {
		if c == '\\' {
			return false
		}
		if c >= utf8.RuneSelf {
			high = true
		}
	}
	return !high || utf8.Valid(content)
}

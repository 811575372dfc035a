package schemas

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// This file holds the small JSON walker behind Decode. It comes in two parts:
//
//   - the checking part (checkValue, checkedMembers) reads each byte once and rejects
//     exactly what json.Valid rejects: Decode walks the envelope with it, so that the
//     body's syntax is checked in the same pass that finds the envelope's members;
//   - the trusting part (valueEnd, members) runs only on spans that the checking part has
//     accepted, so it never has to report syntax errors: it re-walks data and
//     data.attributes cheaply.
//
// Both match keys case-sensitively, as CloudEvents requires, unlike encoding/json's
// case-insensitive struct matching, and hand out the raw values as spans of the input.
// Values are then converted with the helpers below, which fall back to encoding/json for
// the rare strings that need unescaping or UTF-8 repair.

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

// maxDepth is encoding/json's nesting limit: json.Valid rejects a value with more than
// this many objects and arrays open at once.
const maxDepth = 10000

// strPlain[c] is true for the bytes a JSON string may hold as they are: all but the
// control characters U+0000 to U+001F, '"' and '\\'. Bytes that are not valid UTF-8 count
// as plain, because json.Valid accepts them (Decode replaces them with U+FFFD).
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < len(t); c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// checkValue returns the index just past the JSON value that starts at b[i] (i may be
// len(b)), or -1 if there is no valid value there. depth is the number of objects and
// arrays the value is nested in. Whitespace before the value must have been skipped.
func checkValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; c {
	case '"':
		return checkString(b, i)
	case '{':
		m := checkedMembers{b: b, i: i + 1, depth: depth + 1}
		for {
			if _, _, ok := m.next(); !ok {
				return m.end
			}
		}
	case '[':
		return checkArray(b, i, depth+1)
	case 't':
		return checkLiteral(b, i, "true")
	case 'f':
		return checkLiteral(b, i, "false")
	case 'n':
		return checkLiteral(b, i, "null")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return checkNumber(b, i)
		}
		return -1
	}
}

// checkString returns the index just past the string literal that starts at
// b[i] == '"', or -1 if it is not a valid one: unterminated, holding a control
// character, or with an escape other than \" \\ \/ \b \f \n \r \t \uXXXX.
func checkString(b []byte, i int) int {
	i++
	for {
		for i < len(b) && strPlain[b[i]] {
			i++
		}
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return -1
				}
				i += 6
			default:
				return -1
			}
		default: // a control character
			return -1
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// checkNumber returns the index just past the number that starts at b[i], or -1 if
// there is none: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. What follows the
// number is the caller's to check ("01" is the number 0 followed by garbage).
func checkNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// checkLiteral returns the index just past lit if b continues with it at i, else -1.
func checkLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// checkArray returns the index just past the array that starts at b[i] == '[', or -1 if
// it is not valid. depth counts the array itself.
func checkArray(b []byte, i, depth int) int {
	if depth > maxDepth {
		return -1
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for {
		i = checkValue(b, i, depth)
		if i < 0 {
			return -1
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return i + 1
		default:
			return -1
		}
	}
}

// checkedMembers iterates over the members of an object, checking its syntax, values
// included, as it goes. Set b, i (just past the '{') and depth (the object's own, 1 for
// the body). When next reports no more members, end is the index just past the '}', or
// -1 if the object is not valid JSON; a member that next returned before that is then
// meaningless.
type checkedMembers struct {
	b       []byte
	i       int
	depth   int
	started bool
	end     int // 0 while the walk goes on
}

// next returns the next member's key (the span inside the quotes) and value.
func (m *checkedMembers) next() (key, val span, ok bool) {
	if m.end != 0 {
		return span{}, span{}, false
	}
	b := m.b
	i := skipSpace(b, m.i)
	switch {
	case m.depth > maxDepth || i >= len(b):
		m.end = -1
		return span{}, span{}, false
	case !m.started:
		m.started = true
		if b[i] == '}' {
			m.end = i + 1
			return span{}, span{}, false
		}
	case b[i] == ',':
		i = skipSpace(b, i+1)
	case b[i] == '}':
		m.end = i + 1
		return span{}, span{}, false
	default:
		m.end = -1
		return span{}, span{}, false
	}
	if i >= len(b) || b[i] != '"' {
		m.end = -1
		return span{}, span{}, false
	}
	kEnd := checkString(b, i)
	if kEnd < 0 {
		m.end = -1
		return span{}, span{}, false
	}
	key = span{i + 1, kEnd - 1}
	i = skipSpace(b, kEnd)
	if i >= len(b) || b[i] != ':' {
		m.end = -1
		return span{}, span{}, false
	}
	i = skipSpace(b, i+1)
	vEnd := checkValue(b, i, m.depth)
	if vEnd < 0 {
		m.end = -1
		return span{}, span{}, false
	}
	m.i = vEnd
	return key, span{i, vEnd}, true
}

package jobmanagertest

import (
	"bytes"
	"slices"
	"unicode/utf8"
)

// sameLessons reports whether json.Marshal encodes a and b alike: whether a job sent with a and
// one sent with b have the same content, for JobIDConflicts.
func sameLessons(a, b []StoredLesson) bool {
	if len(a) != len(b) {
		return false
	}
	var keys []string
	ja, jb := appendLessons(nil, a, &keys), appendLessons(nil, b, &keys)
	return bytes.Equal(ja, jb)
}

// appendLessons appends lessons as json.Marshal encodes them; keys is scratch space.
func appendLessons(b []byte, lessons []StoredLesson, keys *[]string) []byte {
	if lessons == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range lessons {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendLesson(b, &lessons[i], keys)
	}
	return append(b, ']')
}

func appendLesson(b []byte, l *StoredLesson, keys *[]string) []byte {
	b = append(b, `{"LektionId":`...)
	b = appendString(b, l.LektionID)
	if l.Beginn != "" {
		b = append(b, `,"Beginn":`...)
		b = appendString(b, l.Beginn)
	}
	if l.Ende != "" {
		b = append(b, `,"Ende":`...)
		b = appendString(b, l.Ende)
	}
	if l.RessourceName != "" {
		b = append(b, `,"RessourceName":`...)
		b = appendString(b, l.RessourceName)
	}
	if len(l.Extra) > 0 {
		ks := (*keys)[:0]
		for k := range l.Extra {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		*keys = ks
		b = append(b, `,"Extra":{`...)
		for i, k := range ks {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendHTMLEscaped(b, l.Extra[k])
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as encoding/json encodes a string: <, > and & escaped, invalid UTF-8
// as U+FFFD, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendHTMLEscaped appends the compact JSON value v as json.Marshal writes a json.RawMessage.
func appendHTMLEscaped(b []byte, v []byte) []byte {
	start := 0
	for i, c := range v {
		if c == '<' || c == '>' || c == '&' {
			b = append(b, v[start:i]...)
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			start = i + 1
		}
		if c == 0xE2 && i+2 < len(v) && v[i+1] == 0x80 && v[i+2]&^1 == 0xA8 {
			b = append(b, v[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[v[i+2]&0xF])
			start = i + 3
		}
	}
	return append(b, v[start:]...)
}

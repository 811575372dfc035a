package jobmanagertest

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
)

// The JSON scanner under decodeJobs: it accepts exactly what encoding/json accepts.

// maxDepth is encoding/json's nesting limit: containers nested deeper are a syntax error.
const maxDepth = 10000

// errSyntax reports malformed JSON. decodeJobs replaces it with encoding/json's message.
var errSyntax = errors.New("syntax error")

// decoder scans one submit body. Offsets index s; returned strings are substrings of s.
type decoder struct {
	s       string
	i       int            // next byte to read
	sawWS   bool           // ws skipped something since last cleared
	plain   bool           // the last string literal scanned has no escape and only ASCII bytes
	arena   []byte         // backing store of compact Extra values
	other   []span         // a lesson's unknown members, reused from lesson to lesson
	lessons []StoredLesson // a list's lessons, reused from list to list
}

func (d *decoder) peek() byte {
	if d.i < len(d.s) {
		return d.s[d.i]
	}
	return 0
}

// ws skips JSON whitespace.
func (d *decoder) ws() {
	start := d.i
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
			continue
		}
		break
	}
	if d.i != start {
		d.sawWS = true
	}
}

// more is called after a value inside a container closed by end: it consumes the separator and
// reports whether another element follows.
func (d *decoder) more(end byte) (bool, error) {
	d.ws()
	switch d.peek() {
	case ',':
		d.i++
		d.ws()
		return true, nil
	case end:
		d.i++
		return false, nil
	}
	return false, errSyntax
}

// open consumes the opening byte of a container and reports whether it is empty (and consumed
// whole).
func (d *decoder) open(end byte) bool {
	d.i++
	d.ws()
	if d.peek() == end {
		d.i++
		return true
	}
	return false
}

// key scans a member name and the colon after it, and returns the name unquoted and whether it
// is plain (no escape, only ASCII bytes).
func (d *decoder) key() (string, bool, error) {
	if d.peek() != '"' {
		return "", false, errSyntax
	}
	start := d.i
	if err := d.str(); err != nil {
		return "", false, err
	}
	plain := d.plain
	var name string
	if plain {
		name = d.s[start+1 : d.i-1]
	} else {
		var err error
		if name, err = unquote(d.s[start:d.i]); err != nil {
			return "", false, err
		}
	}
	d.ws()
	if d.peek() != ':' {
		return "", false, errSyntax
	}
	d.i++
	d.ws()
	return name, plain, nil
}

// str scans the string literal at d.i and sets d.plain: whether it has no escape and only ASCII
// bytes, so that its value is the literal without its quotes (no unquote needed).
func (d *decoder) str() error {
	s := d.s
	plain := true
	for i := d.i + 1; i < len(s); {
		switch c := s[i]; {
		case c == '"':
			d.i = i + 1
			d.plain = plain
			return nil
		case c == '\\':
			plain = false
			if i+1 >= len(s) {
				return errSyntax
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) || !isHex(s[i+2]) || !isHex(s[i+3]) || !isHex(s[i+4]) || !isHex(s[i+5]) {
					return errSyntax
				}
				i += 6
			default:
				return errSyntax
			}
		case c < 0x20:
			return errSyntax
		default:
			if c >= utf8.RuneSelf {
				plain = false
			}
			i++
		}
	}
	return errSyntax
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// unquote returns the value of a well-formed string literal as encoding/json decodes it.
func unquote(lit string) (string, error) {
	inner := lit[1 : len(lit)-1]
	plain := true
	for i := 0; i < len(inner); i++ {
		if c := inner[i]; c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain || (strings.IndexByte(inner, '\\') < 0 && utf8.ValidString(inner)) {
		return inner, nil
	}
	var s string // escapes, or invalid UTF-8 that becomes U+FFFD
	if err := json.Unmarshal([]byte(lit), &s); err != nil {
		return "", errSyntax
	}
	return s, nil
}

// skip scans the value at d.i, which sits inside depth open containers.
func (d *decoder) skip(depth int) error {
	switch c := d.peek(); {
	case c == '"':
		return d.str()
	case c == '{' || c == '[':
		return d.skipContainer(depth + 1)
	case c == 't':
		return d.lit("true")
	case c == 'f':
		return d.lit("false")
	case c == 'n':
		return d.lit("null")
	case c == '-' || '0' <= c && c <= '9':
		return d.num()
	}
	return errSyntax
}

func (d *decoder) skipContainer(depth int) error {
	if depth > maxDepth {
		return errSyntax
	}
	obj := d.s[d.i] == '{'
	end := byte(']')
	if obj {
		end = '}'
	}
	if d.open(end) {
		return nil
	}
	for {
		if obj {
			if d.peek() != '"' {
				return errSyntax
			}
			if err := d.str(); err != nil {
				return err
			}
			d.ws()
			if d.peek() != ':' {
				return errSyntax
			}
			d.i++
			d.ws()
		}
		if err := d.skip(depth); err != nil {
			return err
		}
		more, err := d.more(end)
		if err != nil || !more {
			return err
		}
	}
}

func (d *decoder) lit(word string) error {
	if !strings.HasPrefix(d.s[d.i:], word) {
		return errSyntax
	}
	d.i += len(word)
	return nil
}

// num scans a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *decoder) num() error {
	s, i := d.s, d.i
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		i = digits(s, i)
	default:
		return errSyntax
	}
	if i < len(s) && s[i] == '.' {
		if i++; i >= len(s) || s[i] < '0' || s[i] > '9' {
			return errSyntax
		}
		i = digits(s, i)
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		if i++; i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return errSyntax
		}
		i = digits(s, i)
	}
	d.i = i
	return nil
}

func digits(s string, i int) int {
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

package decodebench

import (
	"errors"
	"time"
)

// parseRFC3339 and its helpers: copied from schemas/rfc3339.go (not exported there).

var (
	errNotRFC3339 = errors.New("is not an RFC 3339 date-time")
	errLeapSecond = errors.New("has a leap second, which is not supported")
)

// parseRFC3339 parses an RFC 3339 date-time (section 5.6):
// YYYY-MM-DD "T" hh:mm:ss [.fraction] ("Z" | ±hh:mm), "T" and "Z" in either case.
// It is stricter than time.Parse(time.RFC3339, ...), which also takes one-digit hours,
// a comma before the fraction and offsets of 24 hours or more. Leap seconds (ss = 60)
// are rejected with errLeapSecond because time.Time cannot hold them; a fraction beyond nanoseconds is
// truncated.
func parseRFC3339(s string) (time.Time, error) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':' ||
		(s[10] != 'T' && s[10] != 't') {
		return time.Time{}, errNotRFC3339
	}
	year, ok1 := digits(s, 0, 4)
	month, ok2 := digits(s, 5, 2)
	day, ok3 := digits(s, 8, 2)
	hour, ok4 := digits(s, 11, 2)
	minute, ok5 := digits(s, 14, 2)
	sec, ok6 := digits(s, 17, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, errNotRFC3339
	}
	i, nsec := 19, 0
	if s[i] == '.' {
		i++
		start := i
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if i-start < 9 {
				nsec = nsec*10 + int(s[i]-'0')
			}
		}
		n := i - start
		if n == 0 {
			return time.Time{}, errNotRFC3339
		}
		for ; n < 9; n++ {
			nsec *= 10
		}
	}
	if i >= len(s) {
		return time.Time{}, errNotRFC3339
	}
	loc := time.UTC
	switch s[i] {
	case 'Z', 'z':
		if i+1 != len(s) {
			return time.Time{}, errNotRFC3339
		}
	case '+', '-':
		if len(s)-i != 6 || s[i+3] != ':' {
			return time.Time{}, errNotRFC3339
		}
		oh, okh := digits(s, i+1, 2)
		om, okm := digits(s, i+4, 2)
		if !okh || !okm || oh > 23 || om > 59 {
			return time.Time{}, errNotRFC3339
		}
		offset := (oh*60 + om) * 60
		if s[i] == '-' {
			offset = -offset
		}
		if offset != 0 {
			loc = time.FixedZone("", offset)
		}
	default:
		return time.Time{}, errNotRFC3339
	}
	if sec == 60 {
		return time.Time{}, errLeapSecond
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc), nil
}

func digits(s string, at, n int) (int, bool) {
	v := 0
	for i := at; i < at+n; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

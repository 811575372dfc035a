package schemas

import "strings"

// traceParentLen is the length of a version-00 traceparent; maxTraceParentLen bounds a later
// version's (which may append fields).
const (
	traceParentLen    = 55
	maxTraceParentLen = 512
)

// ValidTraceParent reports whether s is a W3C traceparent: version "-" trace-id "-" parent-id "-"
// flags in lower-case hex (2, 32, 16 and 2 digits), the version not ff, neither id all zeros;
// version 00 has exactly these fields, later versions may append "-" and more.
func ValidTraceParent(s string) bool {
	if len(s) < traceParentLen || len(s) > maxTraceParentLen || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	if !lowerHex(s[0:2]) || !lowerHex(s[3:35]) || !lowerHex(s[36:52]) || !lowerHex(s[53:55]) || s[0:2] == "ff" {
		return false
	}
	if s[0:2] == "00" && len(s) != traceParentLen || len(s) > traceParentLen && s[traceParentLen] != '-' {
		return false
	}
	return strings.Trim(s[3:35], "0") != "" && strings.Trim(s[36:52], "0") != ""
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

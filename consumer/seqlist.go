package consumer

import (
	"fmt"
	"strconv"
	"strings"
)

// seqList is an ordered list of stream sequences that encodes to JSON as a compact string of runs,
// "1-500,503,507-510", because a ledger record names up to a few thousand of them and is written
// several times per batch. Order is kept exactly: a run is consecutive ascending numbers.
type seqList []uint64

// MarshalJSON encodes the runs as one JSON string.
func (l seqList) MarshalJSON() ([]byte, error) {
	buf := make([]byte, 0, 2+8*len(l)/4+16)
	buf = append(buf, '"')
	for i := 0; i < len(l); {
		j := i
		for j+1 < len(l) && l[j+1] == l[j]+1 {
			j++
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendUint(buf, l[i], 10)
		if j > i {
			buf = append(buf, '-')
			buf = strconv.AppendUint(buf, l[j], 10)
		}
		i = j + 1
	}
	return append(buf, '"'), nil
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (l *seqList) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("sequence list %s: not a JSON string", b)
	}
	out := (*l)[:0]
	if s == "" {
		*l = out
		return nil
	}
	for _, run := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(run, "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return fmt.Errorf("sequence list %q: %q is not a number", s, lo)
		}
		bEnd := a
		if isRange {
			if bEnd, err = strconv.ParseUint(hi, 10, 64); err != nil || bEnd < a {
				return fmt.Errorf("sequence list %q: bad run %q", s, run)
			}
		}
		for v := a; v <= bEnd; v++ {
			out = append(out, v)
		}
	}
	*l = out
	return nil
}

package isolation

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Indices are positions in a failed batch's lesson list, strictly ascending. In JSON they are a
// string of ranges ("0-249,251,253-499"), so that a decision about 500 lessons stays a few bytes;
// the empty list is "".
type Indices []int

// MarshalJSON writes the ranges string. It fails for indices that are negative or not strictly
// ascending.
func (x Indices) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	for i := 0; i < len(x); {
		if x[i] < 0 || (i > 0 && x[i] <= x[i-1]) {
			return nil, fmt.Errorf("isolation: indices: %d at position %d is not ascending", x[i], i)
		}
		j := i
		for j+1 < len(x) && x[j+1] == x[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(x[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(x[j]))
		}
		i = j + 1
	}
	return json.Marshal(b.String())
}

// UnmarshalJSON reads the ranges string; an error names the range that is wrong.
func (x *Indices) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("isolation: indices: want a string of ranges: %w", err)
	}
	var out Indices
	if s != "" {
		for _, r := range strings.Split(s, ",") {
			lo, hi, isRange := strings.Cut(r, "-")
			a, err := strconv.Atoi(lo)
			b := a
			if err == nil && isRange {
				b, err = strconv.Atoi(hi)
			}
			if err != nil || a < 0 || b < a || (len(out) > 0 && a <= out[len(out)-1]) {
				return fmt.Errorf("isolation: indices: range %q of %q: want ascending n or n-m", r, s)
			}
			if b-a > 1<<20 {
				return fmt.Errorf("isolation: indices: range %q of %q is too long", r, s)
			}
			for i := a; i <= b; i++ {
				out = append(out, i)
			}
		}
	}
	*x = out
	return nil
}

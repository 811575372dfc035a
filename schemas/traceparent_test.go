package schemas

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const validTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestValidTraceParent(t *testing.T) {
	for _, s := range []string{validTP, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"} {
		assert.True(t, ValidTraceParent(s), s)
	}
	for _, s := range []string{"", "00", validTP + "-x", strings.ToUpper(validTP),
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"} {
		assert.False(t, ValidTraceParent(s), s)
	}
}

// TestDecodeTraceParent: a valid traceparent extension is kept; a bad one is dropped and never
// fails the event.
func TestDecodeTraceParent(t *testing.T) {
	withTP := func(v string) []byte {
		return []byte(strings.Replace(benchEvent, `"source":`, `"traceparent":`+v+`,"source":`, 1))
	}
	tests := []struct {
		name, value, want string
	}{
		{"valid", `"` + validTP + `"`, validTP},
		{"upper case", `"` + strings.ToUpper(validTP) + `"`, ""},
		{"too short", `"00-abc-01"`, ""},
		{"a number", `42`, ""},
		{"an object", `{"a":1}`, ""},
		{"null", `null`, ""},
		{"escaped", `"\u0030` + validTP[1:] + `"`, ""},
		{"all-zero trace id", `"00-00000000000000000000000000000000-00f067aa0ba902b7-01"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Decode(withTP(tt.value), "zh-kanti")
			require.NoError(t, err, "a traceparent never fails an event")
			assert.Equal(t, tt.want, e.TraceParent)
			assert.Equal(t, "L-0001", e.Data.LessonID)
		})
	}
	e, err := Decode([]byte(benchEvent), "zh-kanti")
	require.NoError(t, err)
	assert.Empty(t, e.TraceParent, "absent: empty")
}

func BenchmarkDecodeTraceParent(b *testing.B) {
	raw := []byte(strings.Replace(benchEvent, `"source":`, `"traceparent":"`+validTP+`","source":`, 1))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(raw, "zh-kanti"); err != nil {
			b.Fatal(err)
		}
	}
}

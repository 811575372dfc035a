package consumer

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSeqListRoundTrip(t *testing.T) {
	tests := []struct {
		in   seqList
		want string
	}{
		{seqList{}, `""`},
		{seqList{7}, `"7"`},
		{seqList{1, 2, 3, 4, 5}, `"1-5"`},
		{seqList{1, 2, 3, 7, 9, 10, 11}, `"1-3,7,9-11"`},
		{seqList{10, 3, 4, 5, 1}, `"10,3-5,1"`}, // order is kept, not sorted
		{seqList{5, 5}, `"5,5"`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.in)
		require.NoError(t, err)
		assert.Equal(t, tt.want, string(b))
		back := seqList{}
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, tt.in, back)
	}
	var bad seqList
	for _, in := range []string{`"x"`, `"5-3"`, `"1-"`, `[1,2]`, `"1,,2"`} {
		assert.Error(t, json.Unmarshal([]byte(in), &bad), in)
	}
}

func FuzzSeqList(f *testing.F) {
	f.Add([]byte{1, 2, 3, 9})
	f.Fuzz(func(t *testing.T, raw []byte) {
		l := make(seqList, len(raw))
		for i, v := range raw {
			l[i] = uint64(v)
		}
		b, err := json.Marshal(l)
		require.NoError(t, err)
		back := seqList{}
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, l, back)
	})
}

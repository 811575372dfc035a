package publisher_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// sampleMix decodes generated events leniently and checks each lesson's life: created first, then
// updated, at most one delete, nothing after it. It returns the number of valid-looking events.
func sampleMix(t *testing.T, changes []publisher.RawChange) (valid int) {
	t.Helper()
	state := map[string]string{} // lessonId -> "live" or "deleted"
	for i, c := range changes {
		var ev schemas.LessonChange
		if json.Unmarshal(c.Body, &ev) != nil || !plausible(&ev) {
			continue
		}
		valid++
		id := ev.Data.LessonID
		switch ev.Type {
		case schemas.TypeLessonCreated:
			assert.Empty(t, state[id], "event %d creates %s twice", i, id)
			state[id] = "live"
		case schemas.TypeLessonUpdated:
			assert.Equal(t, "live", state[id], "event %d updates %s", i, id)
		case schemas.TypeLessonDeleted:
			assert.Equal(t, "live", state[id], "event %d deletes %s", i, id)
			state[id] = "deleted"
		}
	}
	return valid
}

// plausible is a small stand-in for the schema check: what SampleEvents corrupts.
func plausible(ev *schemas.LessonChange) bool {
	if ev.SpecVersion != "1.0" || ev.ID == "" || ev.Source == "" || ev.Data.LessonID == "" || ev.Data.Mandator != "demo" {
		return false
	}
	switch ev.Type {
	case schemas.TypeLessonDeleted:
		return true
	case schemas.TypeLessonCreated, schemas.TypeLessonUpdated:
		return ev.Data.Resource != "" && ev.Data.End.After(ev.Data.Start)
	}
	return false
}

func TestSampleEvents(t *testing.T) {
	tests := []struct {
		name     string
		n        int
		failRate float64
		invalid  int
	}{
		{"all valid", 500, 0, 0},
		{"ten percent invalid", 500, 0.1, 50},
		{"all invalid", 40, 1, 40},
		{"rate above one is clamped", 10, 3, 10},
		{"none", 0, 0.5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changes := publisher.SampleEvents(tt.n, "demo", 42, tt.failRate)
			require.Len(t, changes, tt.n)
			assert.Equal(t, tt.n-tt.invalid, sampleMix(t, changes))

			ids := map[string]bool{}
			size := 0
			for _, c := range changes {
				assert.Equal(t, "demo", c.Mandator)
				assert.NotEmpty(t, c.ID)
				ids[c.ID] = true
				size += len(c.Body)
			}
			assert.Len(t, ids, tt.n, "ids are unique")
			if tt.n > 0 {
				assert.InDelta(t, 400, size/tt.n, 100, "about 400 bytes per event")
			}
		})
	}
}

func TestSampleEventsMix(t *testing.T) {
	changes := publisher.SampleEvents(1000, "demo", 1, 0)
	types := map[string]int{}
	groups := map[string]bool{}
	for _, c := range changes {
		var ev schemas.LessonChange
		require.NoError(t, json.Unmarshal(c.Body, &ev))
		assert.Equal(t, c.ID, ev.ID)
		types[ev.Type]++
		groups[ev.Data.Group] = true
	}
	assert.Greater(t, types[schemas.TypeLessonCreated], 500)
	assert.Greater(t, types[schemas.TypeLessonUpdated], 100)
	assert.Greater(t, types[schemas.TypeLessonDeleted], 30)
	assert.Greater(t, len(groups), 2)
}

func TestSampleEventsDeterministicMix(t *testing.T) {
	strip := func(changes []publisher.RawChange) []string {
		var out []string
		for _, c := range changes {
			var m map[string]any
			if json.Unmarshal(c.Body, &m) != nil {
				out = append(out, "not json")
				continue
			}
			delete(m, "id")
			delete(m, "time")
			b, err := json.Marshal(m)
			require.NoError(t, err)
			out = append(out, string(b))
		}
		return out
	}
	a := publisher.SampleEvents(200, "demo", 9, 0.2)
	b := publisher.SampleEvents(200, "demo", 9, 0.2)
	c := publisher.SampleEvents(200, "demo", 10, 0.2)
	assert.Equal(t, strip(a), strip(b), "same seed, same mix")
	assert.NotEqual(t, strip(a), strip(c), "other seed, other mix")
	assert.NotEqual(t, a[0].ID, b[0].ID, "fresh ids on every call")
}

func TestBacklogCreatesAreValidDistinctCreates(t *testing.T) {
	evs := publisher.BacklogCreates(200, "bb")
	require.Len(t, evs, 200)
	lessons, groups := map[string]bool{}, map[string]bool{}
	for _, rc := range evs {
		ev, err := schemas.Decode(rc.Body, rc.Mandator)
		require.NoError(t, err)
		assert.Equal(t, "bb", rc.Mandator)
		assert.Equal(t, rc.ID, ev.ID)
		assert.Equal(t, schemas.TypeLessonCreated, ev.Type)
		lessons[ev.Data.LessonID] = true
		groups[ev.Data.Group] = true
	}
	assert.Len(t, lessons, 200, "one lesson each")
	assert.Len(t, groups, 20)
}

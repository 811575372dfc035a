package consumer

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/schemas"
)

func TestSuccessGroupsIntoJobsAndAcks(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, nil)
	h.start()
	evs := []*schemas.LessonChange{
		event(schemas.TypeLessonCreated, "L-1", "math"),
		event(schemas.TypeLessonCreated, "L-2", "math"),
		event(schemas.TypeLessonCreated, "L-3", "art"),
		event(schemas.TypeLessonCreated, "L-4", ""),
	}
	evs[0].Data.Attributes = map[string]json.RawMessage{"Bemerkung": json.RawMessage(`"Doppellektion"`)}
	h.publish("zh-kanti", evs...)
	os := h.waitEvents(len(evs), 5*time.Second)
	h.waitDrained(5 * time.Second)

	require.Len(t, os, 1, "one linger window, one batch")
	o := os[0].Data
	assert.Equal(t, schemas.StatusSucceeded, o.Status)
	assert.Equal(t, "LessonsCreated", o.ImportStatus)
	assert.Equal(t, schemas.ActionCreate, o.Action)
	assert.NotEmpty(t, o.BatchID)
	assert.Len(t, o.JobIDs, 3, "math, art and the ungrouped lessons are three jobs")
	for _, id := range o.JobIDs {
		assert.Regexp(t, `^lb-\d{8}-[0-9a-f-]{36}$`, id)
	}
	assert.ElementsMatch(t, []string{"L-1", "L-2", "L-3", "L-4"}, o.LessonIDs)
	assert.Equal(t, 4, o.LessonCount)
	assert.GreaterOrEqual(t, o.Polls, 1)
	for _, l := range []string{"L-1", "L-2", "L-3", "L-4"} {
		assert.Equal(t, 1, h.sim.Creations("zh-kanti", l), l)
	}
	assert.Empty(t, h.streamMsgs("LESSON_DEADLETTER"))
}

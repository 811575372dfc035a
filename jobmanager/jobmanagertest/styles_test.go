package jobmanagertest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
)

// TestErrorStyles: one bad lesson (by LektionId) and one unknown room (by RessourceName) in a
// batch of three jobs fail the whole batch, apply nothing, and are worded per style; job-level
// problems keep their wording.
func TestErrorStyles(t *testing.T) {
	const begin, end = "2025-12-23T08:00:00Z", "2025-12-23T10:00:00Z"
	batch := body(
		jobJSON("j-1", okLesson("L-1"), okLesson("L-2")),
		jobJSON("j-2", okLesson("L-3"), lessonJSON("L-4", begin, end, "Raum 0.00")),
		jobJSON("j-3", okLesson("L-5"), okLesson("L-6")),
	)
	tests := []struct {
		style jobmanagertest.ErrorStyle
		want  []string
	}{
		{jobmanagertest.StyleLessons, []string{
			"Fehler: Lektion L-2 abgelehnt (JobID j-1, LektionId L-2)",
			"Fehler: Ressource 'Raum 0.00' nicht gefunden (JobID j-2, LektionId L-4)",
		}},
		{jobmanagertest.StyleJobID, []string{
			"Fehler: Validierung fehlgeschlagen (JobID j-1)",
			"Fehler: Validierung fehlgeschlagen (JobID j-2)",
		}},
		{jobmanagertest.StyleAnonymous, []string{"Fehler: Validierung fehlgeschlagen"}},
		{jobmanagertest.StyleFirstError, []string{"Fehler: Lektion L-2 abgelehnt (JobID j-1, LektionId L-2)"}},
	}
	for _, tt := range tests {
		t.Run(tt.style.String(), func(t *testing.T) {
			e := start(t, jobmanagertest.Config{
				ErrorStyle: tt.style, BadLessons: []string{"L-2"}, BadResources: []string{"Raum 0.00"},
			})
			s := e.statusOK(e.submitOK("create", batch))
			assert.Equal(t, jobmanagertest.StatusLessonsImportFailed, s.ImportStatus)
			assert.Equal(t, tt.want, s.messages(t))
			assert.Empty(t, e.sim.Lessons(mandator), "a failed batch applies nothing")

			// Without the bad lessons the same jobs succeed.
			s = e.statusOK(e.submitOK("create", body(
				jobJSON("j-4", okLesson("L-1")), jobJSON("j-5", okLesson("L-3"), okLesson("L-5")))))
			assert.Equal(t, jobmanagertest.StatusLessonsCreated, s.ImportStatus)
			assert.Equal(t, []string{"L-1", "L-3", "L-5"}, keys(e.sim.Lessons(mandator)))

			// Job-level problems keep their wording (but first-error keeps only the first).
			s = e.statusOK(e.submitOK("create", body(jobJSON("j-4", okLesson("L-7")), jobJSON("j-6", okLesson("L-2")))))
			want := []string{"Fehler: Duplicate JobId: j-4"}
			switch tt.style {
			case jobmanagertest.StyleLessons:
				want = append(want, "Fehler: Lektion L-2 abgelehnt (JobID j-6, LektionId L-2)")
			case jobmanagertest.StyleJobID:
				want = append(want, "Fehler: Validierung fehlgeschlagen (JobID j-6)")
			case jobmanagertest.StyleAnonymous:
				want = append(want, "Fehler: Validierung fehlgeschlagen")
			}
			assert.Equal(t, want, s.messages(t))
		})
	}
}

func TestBadLessonFailsEveryAction(t *testing.T) {
	e := start(t, jobmanagertest.Config{BadLessons: []string{"L-9"}})
	for _, action := range []string{"create", "update", "delete"} {
		s := e.statusOK(e.submitOK(action, body(jobJSON("j-"+action, okLesson("L-9")))))
		assert.Equal(t, jobmanagertest.StatusLessonsImportFailed, s.ImportStatus, action)
		assert.Contains(t, s.messages(t)[0], "Fehler: Lektion L-9 abgelehnt", action)
	}
}

func TestParseErrorStyle(t *testing.T) {
	for _, name := range []string{"lessons", "jobid", "anonymous", "first-error"} {
		s, err := jobmanagertest.ParseErrorStyle(name)
		require.NoError(t, err)
		assert.Equal(t, name, s.String())
	}
	_, err := jobmanagertest.ParseErrorStyle("first")
	assert.ErrorContains(t, err, `error style "first": want one of [lessons jobid anonymous first-error]`)
	assert.ErrorContains(t, jobmanagertest.Config{ErrorStyle: 9}.Validate(), "ErrorStyle 9 is unknown")
}

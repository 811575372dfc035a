package jobmanagertest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
)

func TestLifecycleWithNotFoundLag(t *testing.T) {
	e := start(t, jobmanagertest.Config{
		CreationDelay: 10 * time.Millisecond, ProcessingDelay: 20 * time.Millisecond, NotFoundLag: 5 * time.Millisecond,
	})
	id := e.submitOK("create", body(jobJSON("job-1", okLesson("L-1"), okLesson("L-2"))))
	assert.Equal(t, strconv.Itoa(jobmanagertest.FirstBatchID), id)

	r := e.status(id)
	assert.Equal(t, http.StatusNotFound, r.Code, "a new batch lags behind")
	list := e.do(http.MethodGet, "/"+mandator+"/api/v2.0/jobs/batches", auth(), "")
	assert.JSONEq(t, `[]`, list.Body, "a lagging batch is not listed")

	e.clock.Add(5 * time.Millisecond)
	s := e.statusOK(id)
	assert.Equal(t, jobmanagertest.StatusAwaitingLessonCreation, s.ImportStatus)
	assert.Nil(t, s.LessonCount)
	assert.Empty(t, e.sim.Lessons(mandator), "nothing applied before completion")

	e.clock.Add(5 * time.Millisecond)
	s = e.statusOK(id)
	assert.Equal(t, jobmanagertest.StatusAwaitingLessonProcessing, s.ImportStatus)
	require.NotNil(t, s.LessonCount)
	assert.Equal(t, 2, *s.LessonCount)
	list = e.do(http.MethodGet, "/"+mandator+"/api/v2.0/jobs/batches", auth(), "")
	assert.JSONEq(t, fmt.Sprintf(`[{"BatchId":%q,"ImportStatus":"AwaitingLessonProcessing","LessonCount":2}]`, id), list.Body)

	e.clock.Add(19 * time.Millisecond)
	assert.Equal(t, jobmanagertest.StatusAwaitingLessonProcessing, e.statusOK(id).ImportStatus)

	e.clock.Add(time.Millisecond)
	s = e.statusOK(id)
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, s.ImportStatus)
	assert.Empty(t, s.ErrorMessages)
	list = e.do(http.MethodGet, "/"+mandator+"/api/v2.0/jobs/batches", auth(), "")
	assert.JSONEq(t, `[]`, list.Body, "terminal batches are not listed")

	lessons := e.sim.Lessons(mandator)
	assert.Len(t, lessons, 2)
	assert.Equal(t, "Raum 1.01", lessons["L-1"].RessourceName)
	bs := e.sim.Batches(mandator)
	require.Len(t, bs, 1)
	assert.Equal(t, e.clock.Now(), bs[0].FinishedAt)
	assert.Equal(t, []string{"job-1"}, bs[0].JobIDs)
	assert.Equal(t, []string{"L-1", "L-2"}, bs[0].LessonIDs)

	assert.Equal(t, http.StatusNotFound, e.status("99999").Code, "unknown batch")
	other := e.do(http.MethodGet, "/other/api/v2.0/jobs/batches/"+id, auth(), "")
	assert.Equal(t, http.StatusNotFound, other.Code, "another mandator's batch")
}

func TestBatchesApplyInSubmitOrder(t *testing.T) {
	e := start(t, jobmanagertest.Config{ProcessingDelay: 100 * time.Millisecond})
	slow := e.submitOK("create", body(jobJSON("j-1", okLesson("L-1"))))
	e.sim.SetDelays(0, 0)
	e.clock.Add(time.Millisecond)
	fast := e.submitOK("update", body(jobJSON("j-2", lessonJSON("L-1", "2025-12-23T09:00:00Z", "2025-12-23T11:00:00Z", "Raum 2"))))

	e.clock.Add(50 * time.Millisecond)
	assert.Equal(t, jobmanagertest.StatusAwaitingLessonProcessing, e.statusOK(fast).ImportStatus,
		"a due batch waits for the earlier batch of its mandator")

	e.clock.Add(50 * time.Millisecond)
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(slow).ImportStatus)
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(fast).ImportStatus,
		"the update found the lesson the earlier create stored")
	bs := e.sim.Batches(mandator)
	require.Len(t, bs, 2)
	assert.Equal(t, bs[0].FinishedAt, bs[1].FinishedAt, "the fast batch completed when the slow one did")

	// Several batches completing in one step still apply in submit order.
	e.submitOK("delete", body(jobJSON("j-3", `{"LektionId":"L-1"}`)))
	e.submitOK("create", body(jobJSON("j-4", okLesson("L-1"))))
	e.clock.Add(time.Millisecond)

	var actions []string
	for _, a := range e.sim.History(mandator, "L-1") {
		actions = append(actions, a.Action+" "+a.JobID+" "+a.BatchID)
	}
	assert.Equal(t, []string{"create j-1 12345", "update j-2 12346", "delete j-3 12347", "create j-4 12348"}, actions)
	assert.Equal(t, 2, e.sim.Creations(mandator, "L-1"))
	assert.Equal(t, "Raum 1.01", e.sim.Lessons(mandator)["L-1"].RessourceName)
}

func TestMandatorsDoNotWaitForEachOther(t *testing.T) {
	e := start(t, jobmanagertest.Config{ProcessingDelay: 100 * time.Millisecond})
	e.submitOK("create", body(jobJSON("j-1", okLesson("L-1"))))
	e.sim.SetDelays(0, 0)
	r := e.do(http.MethodPost, "/other/api/v2.0/jobs/create", auth(), body(jobJSON("j-1", okLesson("L-1"))))
	require.Equal(t, http.StatusAccepted, r.Code)
	e.clock.Add(time.Millisecond)
	other := e.sim.Batches("other")
	require.Len(t, other, 1)
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, other[0].ImportStatus, "same JobID, other mandator: no duplicate")
	assert.Equal(t, jobmanagertest.StatusAwaitingLessonProcessing, e.sim.Batches(mandator)[0].ImportStatus)
}

func TestFailedBatchAppliesNothing(t *testing.T) {
	e := start(t, jobmanagertest.Config{})
	id := e.submitOK("create", body(
		jobJSON("j-1", okLesson("L-1"), okLesson("L-2")),
		jobJSON("j-2", okLesson("L-3"), lessonJSON("L-4", "", "2025-12-23T10:00:00Z", "Raum 1.01")),
	))
	s := e.statusOK(id)
	assert.Equal(t, jobmanagertest.StatusLessonsImportFailed, s.ImportStatus)
	assert.JSONEq(t, `"Fehler: Pflichtfeld Beginn fehlt (JobID j-2, LektionId L-4)"`, string(s.ErrorMessages),
		"a single message is a string")
	assert.Empty(t, e.sim.Lessons(mandator))
	assert.Empty(t, e.sim.History(mandator, "L-1"))
	assert.Zero(t, e.sim.Creations(mandator, "L-1"))
}

func TestValidationMessages(t *testing.T) {
	const begin, end = "2025-12-23T08:00:00Z", "2025-12-23T10:00:00Z"
	tests := []struct {
		name   string
		cfg    jobmanagertest.Config
		action string
		body   string
		want   []string
	}{
		{"missing Beginn", jobmanagertest.Config{}, "create",
			body(jobJSON("x", lessonJSON("L-1", "", end, "R"))),
			[]string{"Fehler: Pflichtfeld Beginn fehlt (JobID x, LektionId L-1)"}},
		{"missing Ende and RessourceName", jobmanagertest.Config{}, "update",
			body(jobJSON("x", `{"LektionId":"L-0","Beginn":"`+begin+`"}`)),
			[]string{"Fehler: Pflichtfeld Ende fehlt (JobID x, LektionId L-0)", "Fehler: Pflichtfeld RessourceName fehlt (JobID x, LektionId L-0)"}},
		{"missing LektionId", jobmanagertest.Config{}, "create",
			body(jobJSON("x", okLesson("L-1"), `{"Beginn":"`+begin+`"}`)),
			[]string{"Fehler: Pflichtfeld LektionId fehlt (JobID x, Lektion 2)"}},
		{"missing JobID", jobmanagertest.Config{}, "create",
			body(jobJSON("a", okLesson("L-1")), `{"LektionList":[`+okLesson("L-2")+`]}`),
			[]string{"Fehler: Pflichtfeld JobID fehlt (Job 2)"}},
		{"empty LektionList", jobmanagertest.Config{}, "create",
			body(jobJSON("x")),
			[]string{"Fehler: LektionList fehlt oder ist leer (JobID x)"}},
		{"Ende before Beginn", jobmanagertest.Config{}, "create",
			body(jobJSON("x", lessonJSON("L-1", end, begin, "R"))),
			[]string{"Fehler: Ende nicht nach Beginn (JobID x, LektionId L-1)"}},
		{"Ende equals Beginn", jobmanagertest.Config{}, "create",
			body(jobJSON("x", lessonJSON("L-1", begin, begin, "R"))),
			[]string{"Fehler: Ende nicht nach Beginn (JobID x, LektionId L-1)"}},
		{"bad time", jobmanagertest.Config{}, "create",
			body(jobJSON("x", lessonJSON("L-1", "morgen", end, "R"))),
			[]string{"Fehler: Beginn 'morgen' ist kein gültiger Zeitpunkt (JobID x, LektionId L-1)"}},
		{"unknown resource", jobmanagertest.Config{Resources: []string{"Raum 1.01"}}, "create",
			body(jobJSON("x", okLesson("L-1"), lessonJSON("L-2", begin, end, "X"))),
			[]string{"Fehler: Ressource 'X' nicht gefunden (JobID x, LektionId L-2)"}},
		{"update of a missing lesson", jobmanagertest.Config{}, "update",
			body(jobJSON("x", okLesson("L-9"))),
			[]string{"Fehler: Lektion L-9 existiert nicht (update, JobID x)"}},
		{"delete of a missing lesson", jobmanagertest.Config{}, "delete",
			body(jobJSON("x", `{"LektionId":"L-9"}`)),
			[]string{"Fehler: Lektion L-9 existiert nicht (delete, JobID x)"}},
		{"delete of the same lesson twice in one batch", jobmanagertest.Config{}, "delete",
			body(jobJSON("x", `{"LektionId":"L-0"}`), jobJSON("y", `{"LektionId":"L-0"}`)),
			[]string{"Fehler: Lektion L-0 existiert nicht (delete, JobID y)"}},
		{"strict create of an existing lesson", jobmanagertest.Config{StrictCreate: true}, "create",
			body(jobJSON("x", okLesson("L-0"))),
			[]string{"Fehler: Lektion L-0 existiert bereits (create, JobID x)"}},
		{"strict create of the same new lesson twice in one batch", jobmanagertest.Config{StrictCreate: true}, "create",
			body(jobJSON("x", okLesson("L-5")), jobJSON("y", okLesson("L-5"))),
			[]string{"Fehler: Lektion L-5 existiert bereits (create, JobID y)"}},
		{"duplicate JobId in one request", jobmanagertest.Config{}, "create",
			body(jobJSON("x", okLesson("L-1")), jobJSON("x", okLesson("L-2"))),
			[]string{"Fehler: Duplicate JobId: x"}},
		{"every problem listed", jobmanagertest.Config{Resources: []string{"R"}}, "update",
			body(jobJSON("x", lessonJSON("L-0", end, begin, "R")), jobJSON("y", lessonJSON("L-7", begin, end, "Q"))),
			[]string{
				"Fehler: Ende nicht nach Beginn (JobID x, LektionId L-0)",
				"Fehler: Lektion L-7 existiert nicht (update, JobID y)",
				"Fehler: Ressource 'Q' nicht gefunden (JobID y, LektionId L-7)",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.Resources != nil {
				cfg.Resources = append(cfg.Resources, "R-0")
			}
			e := start(t, cfg)
			// L-0 exists before the batch under test.
			e.submitOK("create", body(jobJSON("setup", lessonJSON("L-0", begin, end, "R-0"))))
			require.Len(t, e.sim.Lessons(mandator), 1)

			id := e.submitOK(tt.action, tt.body)
			s := e.statusOK(id)
			assert.Equal(t, jobmanagertest.StatusLessonsImportFailed, s.ImportStatus)
			assert.Equal(t, tt.want, s.messages(t))
			assert.Equal(t, tt.want, e.sim.Batches(mandator)[1].ErrorMessages)
			if len(tt.want) > 1 {
				assert.Equal(t, byte('['), s.ErrorMessages[0], "several messages are an array")
			}
			assert.Equal(t, []string{"L-0"}, keys(e.sim.Lessons(mandator)), "nothing applied")
			assert.Len(t, e.sim.History(mandator, "L-0"), 1)
		})
	}
}

func TestCreateOfExistingLessonIsUpsert(t *testing.T) {
	e := start(t, jobmanagertest.Config{})
	e.submitOK("create", body(jobJSON("a", okLesson("L-1"))))
	id := e.submitOK("create", body(jobJSON("b", lessonJSON("L-1", "2025-12-24T08:00:00Z", "2025-12-24T09:00:00Z", "Aula"))))
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(id).ImportStatus)
	assert.Equal(t, 2, e.sim.Creations(mandator, "L-1"), "created twice")
	assert.Equal(t, "Aula", e.sim.Lessons(mandator)["L-1"].RessourceName)
}

func TestUpdateReplacesFieldsAndDeleteRemoves(t *testing.T) {
	e := start(t, jobmanagertest.Config{})
	e.submitOK("create", body(jobJSON("a", `{"LektionId":"L-1","Beginn":"2025-12-23T08:00:00Z","Ende":"2025-12-23T10:00:00Z","RessourceName":"R","Fach":"Mathe"}`)))
	e.submitOK("update", body(jobJSON("b", lessonJSON("L-1", "2025-12-23T09:00:00Z", "2025-12-23T10:00:00Z", "R2"))))
	l := e.sim.Lessons(mandator)["L-1"]
	assert.Equal(t, jobmanagertest.StoredLesson{LektionID: "L-1", Beginn: "2025-12-23T09:00:00Z", Ende: "2025-12-23T10:00:00Z", RessourceName: "R2"}, l,
		"update replaces every field, extras included")
	id := e.submitOK("delete", body(jobJSON("c", `{"LektionId":"L-1"}`)))
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(id).ImportStatus)
	assert.Empty(t, e.sim.Lessons(mandator))
	assert.Len(t, e.sim.History(mandator, "L-1"), 3)
}

// TestDeleteThenCreateAgain: a deleted lesson leaves Lessons and /_sim/state's lessons but keeps
// its creations and history; a create after the delete stores the new fields and counts again.
func TestDeleteThenCreateAgain(t *testing.T) {
	e := start(t, jobmanagertest.Config{})
	e.submitOK("create", body(jobJSON("a", okLesson("L-1"), okLesson("L-2"))))
	id := e.submitOK("delete", body(jobJSON("b", `{"LektionId":"L-1"}`)))
	require.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(id).ImportStatus)
	assert.Equal(t, []string{"L-2"}, keys(e.sim.Lessons(mandator)))
	assert.Equal(t, 1, e.sim.Creations(mandator, "L-1"))
	st := e.sim.State().Mandators[mandator]
	assert.Equal(t, []string{"L-2"}, keys(st.Lessons))
	assert.Equal(t, map[string]int{"L-1": 1, "L-2": 1}, st.Creations)

	id = e.submitOK("create", body(jobJSON("c", lessonJSON("L-1", "2025-12-24T08:00:00Z", "2025-12-24T09:00:00Z", "Aula"))))
	require.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(id).ImportStatus)
	assert.Equal(t, "Aula", e.sim.Lessons(mandator)["L-1"].RessourceName)
	assert.Equal(t, 2, e.sim.Creations(mandator, "L-1"))
	var actions []string
	for _, a := range e.sim.History(mandator, "L-1") {
		actions = append(actions, a.Action+" "+a.JobID+" "+a.Lesson.RessourceName)
	}
	assert.Equal(t, []string{"create a Raum 1.01", "delete b ", "create c Aula"}, actions)
	assert.Equal(t, map[string]int{"L-1": 2, "L-2": 1}, e.sim.State().Mandators[mandator].Creations)
}

// TestHistoryAcrossManyOperations: History follows a lesson through an operation log longer than
// one of its chunks (4,096 entries), for lessons on either side of a chunk's end.
func TestHistoryAcrossManyOperations(t *testing.T) {
	e := start(t, jobmanagertest.Config{})
	lessons := make([]string, 5000)
	for i := range lessons {
		lessons[i] = okLesson(fmt.Sprintf("L-%d", i))
	}
	id := e.submitOK("create", body(jobJSON("many", lessons...)))
	require.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(id).ImportStatus)
	id = e.submitOK("update", body(jobJSON("upd", lessonJSON("L-4095", "2025-12-24T08:00:00Z", "2025-12-24T09:00:00Z", "A"),
		lessonJSON("L-4096", "2025-12-24T08:00:00Z", "2025-12-24T09:00:00Z", "B"))))
	require.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(id).ImportStatus)
	for _, tt := range []struct{ lesson, room string }{{"L-4095", "A"}, {"L-4096", "B"}, {"L-4999", ""}} {
		var got []string
		for _, a := range e.sim.History(mandator, tt.lesson) {
			got = append(got, a.Action+" "+a.JobID+" "+a.Lesson.LektionID+" "+a.Lesson.RessourceName)
		}
		want := []string{"create many " + tt.lesson + " Raum 1.01"}
		if tt.room != "" {
			want = append(want, "update upd "+tt.lesson+" "+tt.room)
		}
		assert.Equal(t, want, got, tt.lesson)
	}
	assert.Len(t, e.sim.Lessons(mandator), 5000)
}

func TestDuplicateJobIDAcrossHistory(t *testing.T) {
	e := start(t, jobmanagertest.Config{Resources: []string{"Raum 1.01"}})

	// A JobID whose request was refused with an injected 503 was never accepted: no duplicate later.
	e.sim.SubmitStatus(http.StatusServiceUnavailable, 1, 0)
	require.Equal(t, http.StatusServiceUnavailable, e.submit("create", body(jobJSON("j-1", okLesson("L-1")))).Code)
	first := e.submitOK("create", body(jobJSON("j-1", okLesson("L-1"))))
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(first).ImportStatus)

	// A failed batch's JobID counts too.
	failed := e.submitOK("create", body(jobJSON("j-2", lessonJSON("L-2", "2025-12-23T08:00:00Z", "2025-12-23T10:00:00Z", "nowhere"))))
	assert.Equal(t, jobmanagertest.StatusLessonsImportFailed, e.statusOK(failed).ImportStatus)

	for _, tt := range []struct{ jobID, action string }{{"j-1", "create"}, {"j-2", "create"}, {"j-1", "update"}} {
		id := e.submitOK(tt.action, body(jobJSON(tt.jobID, okLesson("L-1"))))
		s := e.statusOK(id)
		assert.Equal(t, jobmanagertest.StatusLessonsImportFailed, s.ImportStatus)
		assert.JSONEq(t, `"Fehler: Duplicate JobId: `+tt.jobID+`"`, string(s.ErrorMessages))
	}
	assert.Equal(t, 1, e.sim.Creations(mandator, "L-1"))
	assert.Equal(t, []string{"j-1", "j-1", "j-2", "j-1", "j-2", "j-1"}, e.sim.JobIDs(mandator))
	assert.Equal(t, []string{"j-2", "j-1"}, e.sim.JobIDConflicts(mandator),
		"j-2 came with other lessons, j-1 with another action")
}

func TestCaseInsensitiveMembersAndExtras(t *testing.T) {
	e := start(t, jobmanagertest.Config{})
	id := e.submitOK("create", `[{"jobid":"j-1","LEKTIONLIST":[{"lektionID":"L-1","BEGINN":"2025-12-23T08:00:00Z",
		"ende":"2025-12-23T10:00:00Z","ressourcename":"R","Fach":"Mathe","Lehrer":{"Kurz":"abc"}}]}]`)
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, e.statusOK(id).ImportStatus)
	l := e.sim.Lessons(mandator)["L-1"]
	assert.Equal(t, "2025-12-23T08:00:00Z", l.Beginn)
	assert.JSONEq(t, `"Mathe"`, string(l.Extra["Fach"]))
	assert.JSONEq(t, `{"Kurz":"abc"}`, string(l.Extra["Lehrer"]))
	assert.Equal(t, []string{"j-1"}, e.sim.JobIDs(mandator))
}

func TestRequestErrors(t *testing.T) {
	valid := body(jobJSON("j", okLesson("L-1")))
	hdr := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	tests := []struct {
		name       string
		cfg        jobmanagertest.Config
		method     string
		path       string
		header     map[string]string
		body       string
		want       int
		wantErrSub string
	}{
		{"no token", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", map[string]string{"Content-Type": "application/json"}, valid, 401, "bearer"},
		{"wrong token", jobmanagertest.Config{}, "GET", "/m/api/v2.0/jobs/batches/1", map[string]string{"Authorization": "Bearer nope"}, "", 401, "bearer"},
		{"basic auth", jobmanagertest.Config{}, "GET", "/m/api/v2.0/jobs/batches", map[string]string{"Authorization": "Basic " + token}, "", 401, "bearer"},
		{"token before route", jobmanagertest.Config{}, "GET", "/nothing", nil, "", 401, "bearer"},
		{"unknown route", jobmanagertest.Config{}, "GET", "/m/api/v2.0/jobs/nothing", hdr, "", 404, "no route"},
		{"old api version", jobmanagertest.Config{}, "POST", "/m/api/v1.0/jobs/create", hdr, valid, 404, "no route"},
		{"empty batch id", jobmanagertest.Config{}, "GET", "/m/api/v2.0/jobs/batches/", hdr, "", 404, "no route"},
		{"unknown mandator", jobmanagertest.Config{Mandators: []string{"a"}}, "POST", "/b/api/v2.0/jobs/create", hdr, valid, 404, "mandator"},
		{"invalid mandator", jobmanagertest.Config{}, "POST", "/a.b/api/v2.0/jobs/create", hdr, valid, 404, "mandator"},
		{"wrong method", jobmanagertest.Config{}, "GET", "/m/api/v2.0/jobs/create", hdr, "", 405, "POST"},
		{"no content type", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", map[string]string{"Authorization": "Bearer " + token}, valid, 415, "Content-Type"},
		{"form content type", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/x-www-form-urlencoded"}, valid, 415, "Content-Type"},
		{"too large", jobmanagertest.Config{MaxBodyBytes: 10}, "POST", "/m/api/v2.0/jobs/create", hdr, valid, 413, "larger than 10"},
		{"empty body", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", hdr, "", 400, "empty body"},
		{"object", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", hdr, jobJSON("j", okLesson("L-1")), 400, "not a JSON array"},
		{"empty array", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", hdr, "[]", 400, "empty job array"},
		{"broken JSON", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", hdr, `[{"JobID":`, 400, "not a JSON array"},
		{"trailing data", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", hdr, valid + "x", 400, "not a JSON array"},
		{"job not an object", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", hdr, `[1]`, 400, "job 0: not a JSON object"},
		{"JobID a number", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", hdr, `[{"JobID":7,"LektionList":[]}]`, 400, "JobID: want a string"},
		{"LektionList an object", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", hdr, `[{"JobID":"j","LektionList":{}}]`, 400, "LektionList: want a JSON array"},
		{"Beginn a number", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", hdr, `[{"JobID":"j","LektionList":[{"LektionId":"L","Beginn":1}]}]`, 400, "LektionList[0]: Beginn: want a string"},
		{"ambiguous members", jobmanagertest.Config{}, "POST", "/m/api/v2.0/jobs/create", hdr, `[{"JobID":"a","JobId":"b","LektionList":[]}]`, 400, "differ only in case"},
		{"state wrong method", jobmanagertest.Config{}, "POST", "/_sim/state", nil, "", 405, "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, tt.cfg)
			r := e.do(tt.method, tt.path, tt.header, tt.body)
			assert.Equal(t, tt.want, r.Code)
			var eb struct{ Error string }
			require.NoError(t, json.Unmarshal([]byte(r.Body), &eb), r.Body)
			assert.Contains(t, eb.Error, tt.wantErrSub)
			if tt.want == http.StatusUnauthorized {
				assert.Equal(t, `Bearer realm="JobManager"`, r.Header.Get("WWW-Authenticate"))
			}
			assert.Empty(t, e.sim.Batches("m"), "nothing accepted")
			assert.Empty(t, e.sim.JobIDs("m"), "nothing received")
		})
	}
}

func TestAuth(t *testing.T) {
	e := start(t, jobmanagertest.Config{})
	h := map[string]string{"Authorization": "bearer " + token}
	assert.Equal(t, http.StatusOK, e.do("GET", "/m/api/v2.0/jobs/batches", h, "").Code, "the scheme is case-insensitive")

	open := jobmanagertest.New(jobmanagertest.Config{}) // no token: any request passes
	rec := httptest.NewRecorder()
	open.ServeHTTP(rec, httptest.NewRequest("GET", "/m/api/v2.0/jobs/batches", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, `[]`, rec.Body.String())
}

func TestInspection(t *testing.T) {
	e := start(t, jobmanagertest.Config{})
	id := e.submitOK("create", body(jobJSON("j-1", okLesson("L-1"))))
	e.statusOK(id)
	e.status("404404")
	e.do("GET", "/"+mandator+"/api/v2.0/jobs/batches", auth(), "")
	e.do("GET", "/"+mandator+"/api/v2.0/jobs/batches", nil, "")
	e.submit("create", "{}")
	e.do("GET", "/nowhere", auth(), "")

	assert.Equal(t, 2, e.sim.Submits())
	assert.Equal(t, map[jobmanagertest.RequestKey]int{
		{Kind: jobmanagertest.KindSubmit, Code: 202}: 1,
		{Kind: jobmanagertest.KindSubmit, Code: 400}: 1,
		{Kind: jobmanagertest.KindStatus, Code: 200}: 1,
		{Kind: jobmanagertest.KindStatus, Code: 404}: 1,
		{Kind: jobmanagertest.KindList, Code: 200}:   1,
		{Kind: jobmanagertest.KindList, Code: 401}:   1,
		{Kind: jobmanagertest.KindOther, Code: 404}:  1,
	}, e.sim.Requests())

	r := e.do("GET", jobmanagertest.StatePath, nil, "")
	require.Equal(t, http.StatusOK, r.Code)
	var st jobmanagertest.State
	require.NoError(t, json.Unmarshal([]byte(r.Body), &st))
	assert.Equal(t, 2, st.Submits)
	m := st.Mandators[mandator]
	require.Len(t, m.Batches, 1)
	assert.Equal(t, id, m.Batches[0].BatchID)
	assert.Equal(t, jobmanagertest.StatusLessonsCreated, m.Batches[0].ImportStatus)
	assert.Equal(t, []string{"j-1"}, m.JobIDs)
	assert.Equal(t, 1, m.Creations["L-1"])
	assert.Contains(t, m.Lessons, "L-1")
	assert.Contains(t, st.Requests, jobmanagertest.RequestCount{Kind: jobmanagertest.KindOther, Code: 404, Count: 1})
	assert.Equal(t, 1, e.sim.Requests()[jobmanagertest.RequestKey{Kind: jobmanagertest.KindState, Code: 200}])

	b, ok := e.sim.Batch(id)
	assert.True(t, ok)
	assert.Equal(t, mandator, b.Mandator)
	_, ok = e.sim.Batch("1")
	assert.False(t, ok)
}

func TestConcurrentSubmits(t *testing.T) {
	e := start(t, jobmanagertest.Config{Now: time.Now})
	const n = 20
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", e.srv.URL+"/"+mandator+"/api/v2.0/jobs/create",
				strings.NewReader(body(jobJSON(fmt.Sprintf("j-%d", i), okLesson(fmt.Sprintf("L-%d", i))))))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := e.srv.Client().Do(req)
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			var s struct{ BatchId string }
			assert.NoError(t, json.NewDecoder(resp.Body).Decode(&s))
			ids[i] = s.BatchId
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	assert.Len(t, seen, n, "every batch got its own BatchId")
	assert.Len(t, e.sim.Lessons(mandator), n)
}

func TestCreationFollowsEachBatchsOwnDelay(t *testing.T) {
	tests := []struct {
		name   string
		delays []time.Duration // CreationDelay of each batch, set before its submit
		after  time.Duration   // clock advance after the last submit
		want   []string        // ImportStatus of each batch then
	}{
		{
			name: "in order: the first not yet due stops nothing before it", delays: []time.Duration{5, 10, 15},
			after: 10, want: []string{jobmanagertest.StatusAwaitingLessonProcessing, jobmanagertest.StatusAwaitingLessonProcessing, jobmanagertest.StatusAwaitingLessonCreation},
		},
		{
			name: "a shorter delay later: the later batch is created first", delays: []time.Duration{30, 5, 20},
			after: 10, want: []string{jobmanagertest.StatusAwaitingLessonCreation, jobmanagertest.StatusAwaitingLessonProcessing, jobmanagertest.StatusAwaitingLessonCreation},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, jobmanagertest.Config{ProcessingDelay: time.Hour})
			var ids []string
			for i, d := range tt.delays {
				e.sim.SetDelays(d*time.Millisecond, time.Hour)
				ids = append(ids, e.submitOK("create", body(jobJSON(fmt.Sprintf("j-%d", i), okLesson("L-1")))))
			}
			e.clock.Add(tt.after * time.Millisecond)
			for i, id := range ids {
				assert.Equal(t, tt.want[i], e.statusOK(id).ImportStatus, "batch %d", i)
			}
			e.clock.Add(time.Minute)
			for i, id := range ids {
				assert.Equal(t, jobmanagertest.StatusAwaitingLessonProcessing, e.statusOK(id).ImportStatus, "batch %d", i)
			}
		})
	}
}

func TestJobIDConflictsCompareContent(t *testing.T) {
	const first = `{"LektionId":"L-1","Beginn":"b","Ende":"e","RessourceName":"R","Fach":"M<1>","Lehrer":{"a":[1,2]}}`
	tests := []struct {
		name     string
		action   string
		again    string // the lesson list sent again with the same JobID
		conflict bool
	}{
		{"same", "create", first, false},
		{"known names in other case, order, spacing, escapes", "create", ` { "Lehrer" : { "a" : [ 1 , 2 ] } , "RESSOURCENAME":"R","ende":"e","beginn":"b","Fach":"M\u003c1>","lektionid":"L-1"}`, false},
		{"other action", "update", first, true},
		{"other extra value", "create", `{"LektionId":"L-1","Beginn":"b","Ende":"e","RessourceName":"R","Fach":"M<2>","Lehrer":{"a":[1,2]}}`, true},
		{"extra name in other case", "create", `{"LektionId":"L-1","Beginn":"b","Ende":"e","RessourceName":"R","fach":"M<1>","Lehrer":{"a":[1,2]}}`, true},
		{"one extra less", "create", `{"LektionId":"L-1","Beginn":"b","Ende":"e","RessourceName":"R","Fach":"M<1>"}`, true},
		{"a lesson more", "create", first + `,` + first, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, jobmanagertest.Config{})
			e.submitOK("create", body(jobJSON("j-1", first)))
			e.submitOK(tt.action, body(jobJSON("j-1", tt.again)))
			if tt.conflict {
				assert.Equal(t, []string{"j-1"}, e.sim.JobIDConflicts(mandator))
			} else {
				assert.Empty(t, e.sim.JobIDConflicts(mandator))
			}
		})
	}
}

package jobmanagertest

import (
	"fmt"
	"slices"
	"strconv"
	"time"
)

// receive records the JobIDs of a decoded submit body, whether or not it is accepted, and notes
// JobIDs that arrive with content differing from their first sighting. s.mu is held.
func (s *Sim) receive(mandator, action string, jobs []job) {
	ms := s.mandator(mandator)
	for _, j := range jobs {
		if !j.HasJobID {
			continue
		}
		ms.received = append(ms.received, j.JobID)
		content := action + "\n" + j.canonLesson
		first, seen := ms.content[j.JobID]
		switch {
		case !seen:
			ms.content[j.JobID] = content
		case first != content && !slices.Contains(ms.conflicts, j.JobID):
			ms.conflicts = append(ms.conflicts, j.JobID)
		}
	}
}

// accept stores a batch for the jobs and returns it. s.mu is held.
func (s *Sim) accept(mandator, action string, jobs []job, now time.Time) *batch {
	ms := s.mandator(mandator)
	b := &batch{
		id: strconv.Itoa(s.nextID), mandator: mandator, action: action, jobs: jobs,
		dup: make([]bool, len(jobs)), submittedAt: now, status: StatusAwaitingLessonCreation,
	}
	s.nextID++
	b.createdAt = now.Add(s.creationDelay)
	b.dueAt = b.createdAt.Add(s.processingDelay)
	for i, j := range jobs {
		if !j.HasJobID {
			continue
		}
		b.dup[i] = ms.accepted[j.JobID]
		ms.accepted[j.JobID] = true
	}
	ms.batches = append(ms.batches, b)
	s.byID[b.id] = b
	return b
}

// advance moves every batch to its state at now. s.mu is held.
func (s *Sim) advance(now time.Time) {
	for _, m := range s.order {
		ms := s.state[m]
		for _, b := range ms.batches[ms.next:] {
			if b.status == StatusAwaitingLessonCreation && !now.Before(b.createdAt) {
				b.status = StatusAwaitingLessonProcessing
				for _, j := range b.jobs {
					b.lessonCount += len(j.Lessons)
				}
			}
		}
		for ms.next < len(ms.batches) && !s.held {
			b := ms.batches[ms.next]
			if b.status != StatusAwaitingLessonProcessing || now.Before(b.dueAt) {
				break
			}
			at := b.dueAt
			if ms.next > 0 {
				at = latest(at, ms.batches[ms.next-1].finishedAt)
			}
			s.complete(ms, b, latest(at, s.releasedAt))
			ms.next++
		}
	}
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// complete settles b at time at: a technical failure if one is injected, else validation and, when
// valid, application of every job. s.mu is held.
func (s *Sim) complete(ms *mandatorState, b *batch, at time.Time) {
	b.finishedAt = at
	if msgs, fail := s.takeImportFault(); fail {
		b.status, b.errs = StatusLessonsImportFailed, msgs
		return
	}
	st := &stage{base: ms.lessons, over: map[string]*StoredLesson{}}
	var ops []Applied
	for i, j := range b.jobs {
		where := "JobID " + j.JobID
		if !j.HasJobID {
			where = fmt.Sprintf("Job %d", i+1)
			b.errs = append(b.errs, fmt.Sprintf("Fehler: Pflichtfeld JobID fehlt (%s)", where))
		}
		if b.dup[i] {
			b.errs = append(b.errs, "Fehler: Duplicate JobId: "+j.JobID)
		}
		if len(j.Lessons) == 0 {
			b.errs = append(b.errs, fmt.Sprintf("Fehler: LektionList fehlt oder ist leer (%s)", where))
		}
		for k, l := range j.Lessons {
			errs := s.validateLesson(st, b.action, where, k, l)
			b.errs = append(b.errs, errs...)
			if len(errs) > 0 {
				continue
			}
			if b.action == "delete" {
				st.over[l.LektionID] = nil
			} else {
				st.over[l.LektionID] = &l
			}
			ops = append(ops, Applied{Action: b.action, JobID: j.JobID, BatchID: b.id, At: at, Lesson: l})
		}
	}
	if len(b.errs) > 0 {
		b.status = StatusLessonsImportFailed
		return
	}
	for _, op := range ops {
		id := op.Lesson.LektionID
		switch op.Action {
		case "delete":
			delete(ms.lessons, id)
		case "create":
			ms.creations[id]++
			ms.lessons[id] = op.Lesson
		default:
			ms.lessons[id] = op.Lesson
		}
		ms.history[id] = append(ms.history[id], op)
	}
	b.status = StatusLessonsCreated
}

// stage is the lesson store as a batch being validated sees it: base with the batch's earlier
// operations laid over it (a nil entry is a deletion).
type stage struct {
	base map[string]StoredLesson
	over map[string]*StoredLesson
}

func (st *stage) exists(id string) bool {
	if l, ok := st.over[id]; ok {
		return l != nil
	}
	_, ok := st.base[id]
	return ok
}

// validateLesson returns the problems of lesson k (0-based) of a job, in the guide's style.
func (s *Sim) validateLesson(st *stage, action, where string, k int, l StoredLesson) []string {
	if l.LektionID == "" {
		return []string{fmt.Sprintf("Fehler: Pflichtfeld LektionId fehlt (%s, Lektion %d)", where, k+1)}
	}
	at := fmt.Sprintf("(%s, LektionId %s)", where, l.LektionID)
	var errs []string
	switch action {
	case "delete":
		if !st.exists(l.LektionID) {
			errs = append(errs, fmt.Sprintf("Fehler: Lektion %s existiert nicht (delete, %s)", l.LektionID, where))
		}
		return errs
	case "update":
		if !st.exists(l.LektionID) {
			errs = append(errs, fmt.Sprintf("Fehler: Lektion %s existiert nicht (update, %s)", l.LektionID, where))
		}
	case "create":
		if s.cfg.StrictCreate && st.exists(l.LektionID) {
			errs = append(errs, fmt.Sprintf("Fehler: Lektion %s existiert bereits (create, %s)", l.LektionID, where))
		}
	}
	var begin, end time.Time
	var beginOK, endOK bool
	for _, f := range []struct {
		name, value string
		t           *time.Time
		ok          *bool
	}{
		{"Beginn", l.Beginn, &begin, &beginOK},
		{"Ende", l.Ende, &end, &endOK},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Sprintf("Fehler: Pflichtfeld %s fehlt %s", f.name, at))
			continue
		}
		t, err := time.Parse(time.RFC3339, f.value)
		if err != nil {
			errs = append(errs, fmt.Sprintf("Fehler: %s '%s' ist kein gültiger Zeitpunkt %s", f.name, f.value, at))
			continue
		}
		*f.t, *f.ok = t, true
	}
	if beginOK && endOK && !end.After(begin) {
		errs = append(errs, "Fehler: Ende nicht nach Beginn "+at)
	}
	switch {
	case l.RessourceName == "":
		errs = append(errs, "Fehler: Pflichtfeld RessourceName fehlt "+at)
	case s.resources != nil && !s.resources[l.RessourceName]:
		errs = append(errs, fmt.Sprintf("Fehler: Ressource '%s' nicht gefunden %s", l.RessourceName, at))
	}
	return errs
}

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
		first, seen := ms.content[j.JobID]
		switch {
		case !seen:
			ms.content[j.JobID] = jobContent{action: action, lessons: j.Lessons}
		case slices.Contains(ms.conflicts, j.JobID):
		case first.action != action || !sameLessons(first.lessons, j.Lessons):
			ms.conflicts = append(ms.conflicts, j.JobID)
		}
	}
}

// accept stores a batch for the jobs and returns it. s.mu is held.
func (s *Sim) accept(mandator, action string, jobs []job, now time.Time) *batch {
	ms := s.mandator(mandator)
	b := &batch{
		id: strconv.Itoa(s.nextID), mandator: mandator, action: action, jobs: jobs, index: len(ms.batches),
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
	if n := len(ms.batches); n > 0 && b.createdAt.Before(ms.batches[n-1].createdAt) {
		ms.createdUnordered = true // SetDelays shortened CreationDelay
	}
	ms.batches = append(ms.batches, b)
	s.byID[b.id] = b
	return b
}

// advance moves every batch to its state at now. s.mu is held. It costs O(mandators + batches
// that change state), not O(batches): it starts at the first batch still AwaitingLessonCreation
// and, while creation times are in submit order, stops at the first one not yet due.
func (s *Sim) advance(now time.Time) {
	for _, m := range s.order {
		ms := s.state[m]
		for i := ms.creating; i < len(ms.batches); i++ {
			b := ms.batches[i]
			if b.status == StatusAwaitingLessonCreation {
				if now.Before(b.createdAt) {
					if !ms.createdUnordered {
						break
					}
					continue
				}
				b.status = StatusAwaitingLessonProcessing
				for _, j := range b.jobs {
					b.lessonCount += len(j.Lessons)
				}
			}
			if i == ms.creating {
				ms.creating++
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
	st := &stage{base: ms.lessons, track: b.action == "delete" || b.action == "create" && s.cfg.StrictCreate}
	var msgs styler
	for i, j := range b.jobs {
		where := "JobID " + j.JobID
		if !j.HasJobID {
			where = fmt.Sprintf("Job %d", i+1)
			msgs.job(fmt.Sprintf("Fehler: Pflichtfeld JobID fehlt (%s)", where))
		}
		if b.dup[i] {
			msgs.job("Fehler: Duplicate JobId: " + j.JobID)
		}
		if len(j.Lessons) == 0 {
			msgs.job(fmt.Sprintf("Fehler: LektionList fehlt oder ist leer (%s)", where))
		}
		for k := range j.Lessons {
			l := &j.Lessons[k]
			if errs := s.validateLesson(st, b.action, where, k, l); len(errs) > 0 {
				msgs.lesson(i, where, errs)
				continue
			}
			st.apply(l.LektionID, b.action != "delete")
		}
	}
	if b.errs = msgs.render(s.cfg.ErrorStyle); len(b.errs) > 0 {
		b.status = StatusLessonsImportFailed
		return
	}
	// Valid: every lesson of every job is applied, in order.
	for i, j := range b.jobs {
		for k := range j.Lessons {
			id := j.Lessons[k].LektionID
			e := ms.lessons[id]
			switch b.action {
			case "delete":
				e.live = false
			case "create":
				e.creations++
				e.live = true
			default:
				e.live = true
			}
			e.last = ms.applied.add(appliedOp{batch: int32(b.index), job: int32(i), lesson: int32(k), prev: e.last})
			ms.lessons[id] = e
		}
	}
	b.status = StatusLessonsCreated
}

// stage is the lesson store as a batch being validated sees it: base with the batch's earlier
// operations laid over it (true: created or updated, false: deleted). Only a delete and a strict
// create ask whether a lesson exists after an earlier operation of their own batch (an update
// leaves existence as it was), so only they track the overlay (track).
type stage struct {
	base  map[string]lessonState
	track bool
	over  map[string]bool
}

func (st *stage) exists(id string) bool {
	if live, ok := st.over[id]; ok {
		return live
	}
	return st.base[id].live
}

// apply lays a valid operation of the batch over the store: live after it or deleted.
func (st *stage) apply(id string, live bool) {
	if !st.track {
		return
	}
	if st.over == nil {
		st.over = map[string]bool{}
	}
	st.over[id] = live
}

// validateLesson returns the problems of lesson k (0-based) of a job, in the guide's style.
func (s *Sim) validateLesson(st *stage, action, where string, k int, l *StoredLesson) []string {
	if l.LektionID == "" {
		return []string{fmt.Sprintf("Fehler: Pflichtfeld LektionId fehlt (%s, Lektion %d)", where, k+1)}
	}
	var errs []string
	if s.badLessons[l.LektionID] {
		errs = append(errs, fmt.Sprintf("Fehler: Lektion %s abgelehnt (%s, LektionId %s)", l.LektionID, where, l.LektionID))
	}
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
	// at is where a problem is, formatted only when there is one.
	at := func() string { return fmt.Sprintf("(%s, LektionId %s)", where, l.LektionID) }
	begin, beginOK, errs := parseTime("Beginn", l.Beginn, at, errs)
	end, endOK, errs := parseTime("Ende", l.Ende, at, errs)
	if beginOK && endOK && !end.After(begin) {
		errs = append(errs, "Fehler: Ende nicht nach Beginn "+at())
	}
	switch {
	case l.RessourceName == "":
		errs = append(errs, "Fehler: Pflichtfeld RessourceName fehlt "+at())
	case s.resources != nil && !s.resources[l.RessourceName], s.badResources[l.RessourceName]:
		errs = append(errs, fmt.Sprintf("Fehler: Ressource '%s' nicht gefunden %s", l.RessourceName, at()))
	}
	return errs
}

// parseTime parses the lesson field name (RFC 3339) or appends why it cannot to errs.
func parseTime(name, value string, at func() string, errs []string) (time.Time, bool, []string) {
	if value == "" {
		return time.Time{}, false, append(errs, fmt.Sprintf("Fehler: Pflichtfeld %s fehlt %s", name, at()))
	}
	t, err := time.Parse(time.RFC3339, value)
	if err != nil {
		return time.Time{}, false, append(errs, fmt.Sprintf("Fehler: %s '%s' ist kein gültiger Zeitpunkt %s", name, value, at()))
	}
	return t, true, errs
}

// styler collects a batch's problems in order and words them in an ErrorStyle.
type styler struct {
	items []problem
}

// problem is one message: a job-level one (job < 0) or a lesson's problem in job job.
type problem struct {
	job   int
	where string // "JobID <id>" or "Job <n>" for lesson problems
	msg   string
}

func (st *styler) job(msg string) { st.items = append(st.items, problem{job: -1, msg: msg}) }

func (st *styler) lesson(job int, where string, msgs []string) {
	for _, m := range msgs {
		st.items = append(st.items, problem{job: job, where: where, msg: m})
	}
}

// render returns the ErrorMessages in style; nil when there was no problem.
func (st *styler) render(style ErrorStyle) []string {
	var out []string
	named := map[int]bool{}
	anonymous := false
	for _, p := range st.items {
		switch {
		case p.job < 0 || style == StyleLessons || style == StyleFirstError:
			out = append(out, p.msg)
		case style == StyleJobID:
			if !named[p.job] {
				named[p.job] = true
				out = append(out, fmt.Sprintf("%s (%s)", ValidationFailedMessage, p.where))
			}
		case style == StyleAnonymous:
			if !anonymous {
				anonymous = true
				out = append(out, ValidationFailedMessage)
			}
		}
	}
	if style == StyleFirstError && len(out) > 1 {
		out = out[:1]
	}
	return out
}

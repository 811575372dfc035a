package jobmanagertest

import (
	"maps"
	"slices"
	"sort"
)

// Every inspection method first advances the batches to Config.Now, like a request would, and
// returns copies that the caller may keep and change.

// Lessons returns the mandator's stored lessons by LektionId.
func (s *Sim) Lessons(mandator string) map[string]StoredLesson {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(s.now())
	out := map[string]StoredLesson{}
	if ms := s.state[mandator]; ms != nil {
		for id, e := range ms.lessons {
			if e.live {
				out[id] = copyLesson(ms.stored(e))
			}
		}
	}
	return out
}

// Creations returns how many times a create of the lesson was applied (in successful batches).
// More than one means the lesson was created twice (or created again after a delete).
func (s *Sim) Creations(mandator, lessonID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(s.now())
	if ms := s.state[mandator]; ms != nil {
		return int(ms.lessons[lessonID].creations)
	}
	return 0
}

// History returns every operation applied to the lesson, in the order applied.
func (s *Sim) History(mandator, lessonID string) []Applied {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(s.now())
	ms := s.state[mandator]
	if ms == nil {
		return nil
	}
	var out []Applied
	for pos := ms.lessons[lessonID].last; pos > 0; pos = ms.applied.at(pos).prev {
		a := ms.applied.at(pos).resolve(ms)
		a.Lesson = copyLesson(a.Lesson)
		out = append(out, a)
	}
	slices.Reverse(out)
	return out
}

// JobIDs returns every JobID the mandator's submit requests carried, in order of arrival and
// with repetitions: those of accepted requests and those of requests answered with an injected
// fault (SubmitStatus, random submit failures); not those of requests rejected with 4xx.
func (s *Sim) JobIDs(mandator string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ms := s.state[mandator]; ms != nil {
		return slices.Clone(ms.received)
	}
	return nil
}

// JobIDConflicts returns the mandator's JobIDs that arrived (as counted by JobIDs) with a different
// action or lesson list than the first time: a client that reuses a JobID for another job.
func (s *Sim) JobIDConflicts(mandator string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ms := s.state[mandator]; ms != nil {
		return slices.Clone(ms.conflicts)
	}
	return nil
}

// Batches returns the mandator's accepted batches in submit order.
func (s *Sim) Batches(mandator string) []BatchInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(s.now())
	var out []BatchInfo
	if ms := s.state[mandator]; ms != nil {
		for _, b := range ms.batches {
			out = append(out, b.info())
		}
	}
	return out
}

// Batch returns the batch with the given BatchId, of any mandator.
func (s *Sim) Batch(batchID string) (BatchInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(s.now())
	b, ok := s.byID[batchID]
	if !ok {
		return BatchInfo{}, false
	}
	return b.info(), true
}

// Requests returns how many requests were answered, by route kind and status code.
func (s *Sim) Requests() map[RequestKey]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.requests)
}

// Submits returns how many authenticated submit requests for a known mandator arrived, whatever
// their answer (including 4xx, injected faults and lost answers).
func (s *Sim) Submits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.submits
}

// State is the JSON summary that GET /_sim/state answers.
type State struct {
	Submits   int                      `json:"submits"`
	Held      bool                     `json:"held"`
	Requests  []RequestCount           `json:"requests"`
	Mandators map[string]MandatorState `json:"mandators"`
}

// RequestCount is one entry of State.Requests.
type RequestCount struct {
	Kind  RequestKind `json:"kind"`
	Code  int         `json:"code"`
	Count int         `json:"count"`
}

// MandatorState is what State holds about one mandator.
type MandatorState struct {
	Batches        []BatchInfo             `json:"batches"`
	Lessons        map[string]StoredLesson `json:"lessons"`
	Creations      map[string]int          `json:"creations"`
	JobIDs         []string                `json:"jobIds"`
	JobIDConflicts []string                `json:"jobIdConflicts"`
}

// State returns a summary of everything the simulator knows.
func (s *Sim) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(s.now())
	st := State{Submits: s.submits, Held: s.held, Requests: []RequestCount{}, Mandators: map[string]MandatorState{}}
	for k, n := range s.requests {
		st.Requests = append(st.Requests, RequestCount{Kind: k.Kind, Code: k.Code, Count: n})
	}
	sort.Slice(st.Requests, func(i, j int) bool {
		a, b := st.Requests[i], st.Requests[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Code < b.Code
	})
	for m, ms := range s.state {
		out := MandatorState{
			Batches: []BatchInfo{}, Lessons: map[string]StoredLesson{}, Creations: map[string]int{},
			JobIDs: append([]string{}, ms.received...), JobIDConflicts: append([]string{}, ms.conflicts...),
		}
		for _, b := range ms.batches {
			out.Batches = append(out.Batches, b.info())
		}
		for id, e := range ms.lessons {
			if e.live {
				out.Lessons[id] = copyLesson(ms.stored(e))
			}
			if e.creations > 0 {
				out.Creations[id] = int(e.creations)
			}
		}
		st.Mandators[m] = out
	}
	return st
}

func copyLesson(l StoredLesson) StoredLesson {
	l.Extra = maps.Clone(l.Extra)
	return l
}

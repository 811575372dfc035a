package publisher

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/lessonbridge/lessonbridge/schemas"
)

// sampleSource is the CloudEvents source of generated events.
const sampleSource = "/lessonbridge/sample"

var (
	sampleGroups    = []string{"course-MATH-3A", "course-GERM-2B", "course-PHYS-4C", "course-HIST-1A", "course-ENGL-3B"}
	sampleResources = []string{"Raum 1.01", "Raum 1.02", "Raum 2.14", "Labor 3.05", "Turnhalle A", "Aula"}
	sampleTeachers  = []string{"MUE", "SCH", "WEB", "FIS", "MEY", "KEL", "BRA"}
	sampleSubjects  = []string{"Mathematik", "Deutsch", "Physik", "Geschichte", "Englisch"}
)

// Corruptions SampleEvents applies to invalid events; each makes the bridge dead-letter the event.
var sampleCorruptions = []string{
	"missing-lessonId", "end-before-start", "wrong-type", "missing-resource",
	"bad-specversion", "bad-start", "mandator-mismatch", "not-json",
}

// SampleEvents returns n lesson-change events for mandator, about 400 bytes each, as a timetable
// system would publish them: lessons L-00001, L-00002, ... in a few groups, each created before it is
// updated or deleted, and never changed after its deletion. The mix of actions, groups, times and
// resources is determined by seed; the event ids (UUIDv7, also the RawChange IDs) and times are fresh
// on every call, so publishing the same sample twice imports it twice.
//
// round(n*failRate) of the events (failRate clamped to [0, 1]) are invalid on purpose: a missing
// lessonId, end before start, an unknown type, a missing resource, a wrong specversion, a start that
// is not RFC 3339, a data.mandator other than mandator, or a body that is not JSON. Each invalid event
// uses a lesson id of its own that no valid event touches, so the valid ones stay consistent.
func SampleEvents(n int, mandator string, seed int64, failRate float64) []RawChange {
	if n <= 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6c6573736f6e))
	failRate = max(0, min(1, failRate))
	if math.IsNaN(failRate) {
		failRate = 0
	}
	invalid := make(map[int]bool)
	for _, i := range rng.Perm(n)[:int(math.Round(float64(n)*failRate))] {
		invalid[i] = true
	}

	type lesson struct {
		id   string
		data schemas.LessonData
	}
	var live []*lesson // created and not deleted
	next := 0
	newLessonID := func() string { next++; return fmt.Sprintf("L-%05d", next) }
	day := time.Date(2026, 1, 12, 0, 0, 0, 0, time.UTC)
	now := time.Now().UTC().Truncate(time.Millisecond)

	newData := func(id string) schemas.LessonData {
		start := day.AddDate(0, 0, rng.IntN(60)).Add(time.Duration(7+rng.IntN(9)) * time.Hour)
		i := rng.IntN(len(sampleSubjects))
		attrs := map[string]json.RawMessage{
			"teacher": mustJSON(sampleTeachers[rng.IntN(len(sampleTeachers))]),
			"subject": mustJSON(sampleSubjects[i]),
			"note":    mustJSON(fmt.Sprintf("Woche %d, Lektion %d", 1+rng.IntN(40), 1+rng.IntN(8))),
		}
		return schemas.LessonData{
			LessonID:   id,
			Start:      start,
			End:        start.Add(time.Duration(45+45*rng.IntN(2)) * time.Minute),
			Resource:   sampleResources[rng.IntN(len(sampleResources))],
			Group:      sampleGroups[rng.IntN(len(sampleGroups))],
			Mandator:   mandator,
			Attributes: attrs,
		}
	}

	out := make([]RawChange, 0, n)
	for i := range n {
		ev := schemas.LessonChange{
			SpecVersion:     schemas.SpecVersion,
			ID:              newEventID(),
			Source:          sampleSource,
			DataContentType: "application/json",
		}
		t := now.Add(time.Duration(i) * time.Millisecond)
		ev.Time = &t

		if invalid[i] {
			ev.Type = schemas.TypeLessonCreated
			ev.Data = newData(newLessonID())
			body := corrupt(ev, sampleCorruptions[rng.IntN(len(sampleCorruptions))])
			out = append(out, RawChange{Mandator: mandator, ID: ev.ID, Body: body})
			continue
		}

		r := rng.Float64()
		switch {
		case len(live) > 0 && r < 0.25: // update
			l := live[rng.IntN(len(live))]
			d := newData(l.id)
			d.Group = l.data.Group // a lesson stays in its group
			l.data = d
			ev.Type = schemas.TypeLessonUpdated
			ev.Data = d
		case len(live) > 0 && r < 0.35: // delete
			k := rng.IntN(len(live))
			l := live[k]
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
			ev.Type = schemas.TypeLessonDeleted
			ev.Data = schemas.LessonData{LessonID: l.id, Group: l.data.Group, Mandator: mandator}
		default: // create
			l := &lesson{id: newLessonID()}
			l.data = newData(l.id)
			live = append(live, l)
			ev.Type = schemas.TypeLessonCreated
			ev.Data = l.data
		}
		ev.Subject = ev.Data.LessonID
		body, err := json.Marshal(&ev)
		if err != nil {
			panic(fmt.Sprintf("publisher: encode sample event: %v", err)) // cannot happen: plain values only
		}
		out = append(out, RawChange{Mandator: mandator, ID: ev.ID, Body: body})
	}
	return out
}

// corrupt encodes ev with the named defect.
func corrupt(ev schemas.LessonChange, kind string) []byte {
	ev.Subject = ev.Data.LessonID
	raw, err := json.Marshal(&ev)
	if err != nil {
		panic(fmt.Sprintf("publisher: encode sample event: %v", err))
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		panic(fmt.Sprintf("publisher: decode sample event: %v", err))
	}
	data := m["data"].(map[string]any)
	switch kind {
	case "missing-lessonId":
		delete(data, "lessonId")
	case "end-before-start":
		data["start"], data["end"] = data["end"], data["start"]
	case "wrong-type":
		m["type"] = "lesson.moved"
	case "missing-resource":
		delete(data, "resource")
	case "bad-specversion":
		m["specversion"] = "0.3"
	case "bad-start":
		data["start"] = ev.Data.Start.Format("02.01.2006 15:04")
	case "mandator-mismatch":
		data["mandator"] = ev.Data.Mandator + "-other"
	case "not-json":
		return raw[:len(raw)/2]
	}
	out, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("publisher: encode sample event: %v", err))
	}
	return out
}

func newEventID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("publisher: encode sample attribute: %v", err))
	}
	return b
}

// BacklogCreates returns n create events for mandator, one lesson each (L-0000000, L-0000001, ...)
// in 20 groups, about 300 bytes each, with fresh UUIDv7 ids: the backlog of the black-box throughput
// benchmark, also used by the engine's intake benchmark.
func BacklogCreates(n int, mandator string) []RawChange {
	out := make([]RawChange, n)
	start := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	for i := range out {
		id := uuid.Must(uuid.NewV7()).String()
		ev := schemas.LessonChange{SpecVersion: schemas.SpecVersion, ID: id, Source: "/bench", Type: schemas.TypeLessonCreated,
			Data: schemas.LessonData{LessonID: fmt.Sprintf("L-%07d", i), Start: start.Add(time.Duration(i) * time.Hour),
				End: start.Add(time.Duration(i)*time.Hour + 45*time.Minute), Resource: "Raum 1.01",
				Group: fmt.Sprintf("course-%02d", i%20)}}
		body, err := json.Marshal(ev)
		if err != nil {
			panic(err) // a struct of strings and times always encodes
		}
		out[i] = RawChange{Mandator: mandator, ID: id, Body: body}
	}
	return out
}

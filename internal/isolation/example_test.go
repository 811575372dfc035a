package isolation_test

import (
	"encoding/json"
	"fmt"

	"github.com/lessonbridge/lessonbridge/internal/isolation"
)

// The engine's use: a batch failed with a data-class LessonsImportFailed. Its lessons in batch
// order (Ref: the engine's handle, here a stream sequence), its State (Start for an original
// batch), its ErrorMessages; the Decision goes into the ledger record before the outcome.
func ExamplePlan() {
	lessons := []isolation.Lesson{
		{ID: "L-1", JobID: "lb-20251222-a", Ref: 101}, {ID: "L-2", JobID: "lb-20251222-a", Ref: 102},
		{ID: "L-3", JobID: "lb-20251222-b", Ref: 103}, {ID: "L-4", JobID: "lb-20251222-b", Ref: 104},
	}
	st, _ := isolation.Start(len(lessons), isolation.Limits{})
	d, _ := isolation.Plan(st, lessons, []string{"Fehler: Ressource 'Raum 0' nicht gefunden (JobID lb-20251222-a, LektionId L-2)"})

	for _, i := range d.AtFault {
		fmt.Println("at fault (eventIds, dead letter import_failed):", lessons[i].ID, lessons[i].Ref)
	}
	for _, p := range d.Parts {
		fmt.Println("new batch:", p.Kind, "jobs (positions):", p.Jobs(lessons), "its state:", p.State.Budget, p.State.Depth)
	}
	b, _ := json.Marshal(d)
	fmt.Println(string(b))
	// Output:
	// at fault (eventIds, dead letter import_failed): L-2 102
	// new batch: rest jobs (positions): [[0] [2 3]] its state: 4 1
	// {"v":1,"step":"attributed","atFault":"1","parts":[{"kind":"rest","lessons":"0,2-3","state":{"v":1,"budget":4,"depth":1}}]}
}

package isolation

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
)

// badRoom is the unknown room of the bad lessons sent to the simulator.
const badRoom = "Raum 0.00"

// simJobManager submits batches to an in-process JobManager simulator over HTTP with the real
// client and polls them to their end; the simulator fails a batch when a lesson names badRoom.
type simJobManager struct {
	tb     testing.TB
	client *jobmanager.Client
	bad    map[string]bool
	close  func() // stops the server (also done at the end of the test)
}

func newSimJobManager(tb testing.TB, style jobmanagertest.ErrorStyle, bad map[string]bool) *simJobManager {
	tb.Helper()
	sim := jobmanagertest.New(jobmanagertest.Config{BadResources: []string{badRoom}, ErrorStyle: style})
	srv := httptest.NewServer(sim)
	tb.Cleanup(srv.Close)
	c, err := jobmanager.New(srv.URL, jobmanager.WithHTTPClient(srv.Client()))
	require.NoError(tb, err)
	return &simJobManager{tb: tb, client: c, bad: bad, close: srv.Close}
}

func (s *simJobManager) submit(lessons []Lesson) (bool, []string) {
	var jobs []jobmanager.Job
	at := map[string]int{}
	for _, l := range lessons {
		k, ok := at[l.JobID]
		if !ok {
			k = len(jobs)
			at[l.JobID] = k
			jobs = append(jobs, jobmanager.Job{JobID: l.JobID})
		}
		room := "Raum 1.01"
		if s.bad[l.ID] {
			room = badRoom
		}
		jobs[k].LektionList = append(jobs[k].LektionList, jobmanager.Lesson{
			LektionID: l.ID, Beginn: "2025-12-23T08:00:00Z", Ende: "2025-12-23T10:00:00Z", RessourceName: room})
	}
	ctx := context.Background()
	st, err := s.client.Submit(ctx, "zh-kanti", jobmanager.ActionCreate, jobs)
	require.NoError(s.tb, err)
	for range 10 { // without delays the first status request finds the batch terminal
		if st, err = s.client.Batch(ctx, "zh-kanti", st.BatchID); err == nil && st.ImportStatus.Terminal() {
			break
		}
	}
	require.NoError(s.tb, err)
	require.True(s.tb, st.ImportStatus.Terminal(), "batch %s: %s", st.BatchID, st.ImportStatus)
	return st.ImportStatus == jobmanager.StatusLessonsImportFailed, st.ErrorMessages
}

// simStyles are the simulator's styles in the order of the model's.
var simStyles = [styleCount]jobmanagertest.ErrorStyle{
	styleLessons: jobmanagertest.StyleLessons, styleJobID: jobmanagertest.StyleJobID,
	styleAnonymous: jobmanagertest.StyleAnonymous, styleFirst: jobmanagertest.StyleFirstError,
}

// TestIsolationAgainstSimulator: the simulator's message styles are what the planner expects:
// against it, over HTTP with the real client, isolation finds exactly the bad lessons (an unknown
// room) within the bound, for one, two and fifty bad lessons in a batch of 500.
func TestIsolationAgainstSimulator(t *testing.T) {
	for _, k := range []int{1, 2, 50} {
		for sty := range styleCount {
			t.Run(fmt.Sprintf("k=%d/%s", k, sty), func(t *testing.T) {
				m := model{bad: randomBad(rand.New(rand.NewPCG(uint64(k), 11)), 500, k), style: sty}
				o := checkWith(t, newSimJobManager(t, simStyles[sty], m.bad), m, 500, 10, Limits{}, nil)
				assert.Equal(t, k, len(o.atFault))
			})
		}
	}
}

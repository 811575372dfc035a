package consumer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// leaderKind is what the killed node leads.
type leaderKind string

const (
	inputLeader    leaderKind = "input-stream"
	consumerLeader leaderKind = "consumer"
	ledgerLeader   leaderKind = "ledger"
)

// TestClusterLeaderLoss runs a workload through the bridge on a three-node cluster (everything at
// three replicas) and, in the middle of it, kills the node that leads the input stream, the
// consumer or the ledger bucket (one at a time; every other leader is elsewhere, and the killed
// node is the one the first bridge instance is connected to). With one instance and with two in a
// priority group on different nodes: every event is settled exactly once, no lesson is created
// twice, updates apply in order, and no bridge's Run returns. It logs the stall: the longest time
// without an outcome after the kill.
func TestClusterLeaderLoss(t *testing.T) {
	for _, kind := range []leaderKind{inputLeader, consumerLeader, ledgerLeader} {
		for _, instances := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/%d-instances", kind, instances), func(t *testing.T) {
				runLeaderLoss(t, kind, instances)
			})
		}
	}
}

const (
	lossLessons = 40
	lossRounds  = 5 // a create and four updates per lesson
)

func runLeaderLoss(t *testing.T, kind leaderKind, instances int) {
	c := natstest.StartCluster(t, 3)
	// The meta leader is not killed (its election would come on top); it leads the rest.
	meta := c.MetaLeader()
	require.GreaterOrEqual(t, meta, 0)
	victimIdx, observer := (meta+1)%3, (meta+2)%3
	victim, other := c.Nodes[victimIdx], c.Nodes[meta]
	sim, jm := newSim(t)
	cfg := quickConfig(t)
	cfg.Replicas = 3
	cfg.PriorityGroup = "lessonbridge"

	// The topology first (a bridge creates it), then every leader where the scenario wants it.
	_, adminJS := c.Connect(observer)
	setup := startBridge(t, adminJS, jm, cfg)
	setup.stop(t)
	place := func(k leaderKind) *natstest.Node {
		if k == kind {
			return victim
		}
		return other
	}
	c.MoveStreamLeader(adminJS, "LESSONS", place(inputLeader))
	c.MoveConsumerLeader(adminJS, "LESSONS", "lessonbridge", place(consumerLeader))
	c.MoveStreamLeader(adminJS, "KV_lessonbridge_ledger", place(ledgerLeader))
	c.MoveStreamLeader(adminJS, "LESSON_OUTCOMES", other)
	c.MoveStreamLeader(adminJS, "LESSON_DEADLETTER", other)

	var bridges []*instance
	for i := range instances {
		_, js := c.Connect([]int{victimIdx, meta}[i]) // the first instance on the victim, the second on another node
		icfg := cfg
		icfg.Logger = cfg.Logger.With(zap.Int("instance", i))
		bridges = append(bridges, startBridge(t, js, jm, icfg))
	}

	progress := watchOutcomes(t, adminJS)
	pub, err := publisher.New(adminJS)
	require.NoError(t, err)
	var published []*schemas.LessonChange
	var pubWG sync.WaitGroup
	pubWG.Add(1)
	go func() {
		defer pubWG.Done()
		tick := time.NewTicker(5 * time.Millisecond) // the workload's pace
		defer tick.Stop()
		for r := range lossRounds {
			for l := range lossLessons {
				typ := schemas.TypeLessonUpdated
				if r == 0 {
					typ = schemas.TypeLessonCreated
				}
				ev := change(typ, fmt.Sprintf("L-%d", l))
				ev.Data.Resource = fmt.Sprintf("Raum %d", r)
				<-tick.C
				publishRetrying(t, pub, "m1", ev)
				published = append(published, ev)
			}
		}
	}()

	total := lossLessons * lossRounds
	require.Eventually(t, func() bool { return progress.events() >= total/4 }, 30*time.Second, 5*time.Millisecond,
		"the workload did not start")
	killedAt := time.Now()
	before := progress.events()
	victim.Kill()
	t.Logf("killed %s (leader of the %s) with %d of %d events settled", victim.Name, kind, before, total)

	pubWG.Wait()
	require.Eventually(t, func() bool { return progress.events() >= total }, 90*time.Second, 10*time.Millisecond,
		"only %d of %d events settled after the kill", progress.events(), total)
	stall, first := progress.stallAfter(killedAt)
	t.Logf("STALL kind=%s instances=%d: longest gap without an outcome after the kill %v (first outcome after the kill %v after it); all settled %v after the kill",
		kind, instances, stall.Round(time.Millisecond), first.Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond))

	counts, outs := settledEvents(t, adminJS)
	for _, ev := range published {
		assert.Equal(t, 1, counts[ev.ID], "event %s (%s %s) settled once", ev.ID, ev.Type, ev.Data.LessonID)
	}
	assert.Len(t, counts, total)
	for _, o := range outs {
		assert.Equal(t, schemas.StatusSucceeded, o.Data.Status, "batch %s: %v", o.Data.BatchID, o.Data.ErrorMessages)
	}
	lessons := sim.Lessons("m1")
	for l := range lossLessons {
		id := fmt.Sprintf("L-%d", l)
		assert.Equal(t, 1, sim.Creations("m1", id), "lesson %s created once", id)
		// Updates may be coalesced, never reordered: the resources applied only grow, ending with the last.
		var applied []string
		inOrder := true
		for i, a := range sim.History("m1", id) {
			applied = append(applied, fmt.Sprintf("%s %s (batch %s, at %s)", a.Action, a.Lesson.RessourceName, a.BatchID, a.At.Format("15:04:05.000")))
			if h := sim.History("m1", id); i > 0 && a.Lesson.RessourceName <= h[i-1].Lesson.RessourceName {
				inOrder = false
			}
		}
		assert.True(t, inOrder, "lesson %s: a change applied twice or out of publish order: %v", id, applied)
		assert.Equal(t, fmt.Sprintf("Raum %d", lossRounds-1), lessons[id].RessourceName, "lesson %s: the last change applied last: %v", id, applied)
	}
	assert.Empty(t, sim.JobIDConflicts("m1"))
	drained(t, adminJS)
	assert.Equal(t, other, c.Nodes[c.MetaLeader()], "the meta leader stayed where it was")
	for _, b := range bridges {
		b.running(t)
		assert.True(t, b.b.Ready())
	}
}

// drained waits until the consumer has nothing pending or unacknowledged.
func drained(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	var last string
	ok := assert.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cons, err := js.Consumer(ctx, "LESSONS", "lessonbridge")
		if err != nil {
			last = err.Error()
			return false
		}
		info, err := cons.Info(ctx)
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("ackPending %d pending %d", info.NumAckPending, info.NumPending)
		return info.NumAckPending == 0 && info.NumPending == 0
	}, 30*time.Second, 20*time.Millisecond)
	if !ok {
		t.Errorf("consumer not drained: %s", last)
	}
}

// outcomeWatch records when each outcome arrived (an ordered consumer on the outcome stream, which
// survives reconnects and leader changes).
type outcomeWatch struct {
	mu       sync.Mutex
	at       []time.Time
	settled  map[string]bool // event ids: an outcome stored twice (a publish retried across a leader change) counts once
	consumed jetstream.ConsumeContext
}

func watchOutcomes(t *testing.T, js jetstream.JetStream) *outcomeWatch {
	t.Helper()
	w := &outcomeWatch{settled: map[string]bool{}}
	oc, err := js.OrderedConsumer(context.Background(), "LESSON_OUTCOMES", jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	w.consumed, err = oc.Consume(func(m jetstream.Msg) {
		o := &schemas.Outcome{}
		if json.Unmarshal(m.Data(), o) != nil {
			return
		}
		w.mu.Lock()
		w.at = append(w.at, time.Now())
		for _, id := range o.Data.EventIDs {
			w.settled[id] = true
		}
		w.mu.Unlock()
	})
	require.NoError(t, err)
	t.Cleanup(w.consumed.Stop)
	return w
}

func (w *outcomeWatch) events() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.settled)
}

// stallAfter returns the longest time without an outcome between since and the last outcome, and
// how long after since the first outcome came.
func (w *outcomeWatch) stallAfter(since time.Time) (longest, first time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev := since
	seen := false
	for _, at := range w.at {
		if at.Before(since) {
			continue
		}
		if !seen {
			first, seen = at.Sub(since), true
		}
		longest = max(longest, at.Sub(prev))
		prev = at
	}
	return longest, first
}

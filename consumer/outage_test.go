package consumer

import (
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// flakyServer serves a handler on a fixed loopback port that can be taken down (connections
// refused) and brought back.
type flakyServer struct {
	t    *testing.T
	addr string
	h    http.Handler
	mu   sync.Mutex
	srv  *http.Server
}

func newFlakyServer(t *testing.T, h http.Handler) *flakyServer {
	f := &flakyServer{t: t, h: h}
	f.up("127.0.0.1:0")
	t.Cleanup(f.down)
	return f
}

func (f *flakyServer) up(addr string) {
	ln, err := net.Listen("tcp", addr)
	require.NoError(f.t, err)
	f.mu.Lock()
	f.addr = ln.Addr().String()
	f.srv = &http.Server{Handler: f.h}
	srv := f.srv
	f.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (f *flakyServer) down() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// TestJobManagerOutageIsRiddenOut: JobManager refuses connections for several AckWaits, first while
// a batch waits to be submitted, then while another is being polled. Batches wait, messages stay
// alive (no redelivery), nothing is given up within its budget, and everything settles once it is back.
func TestJobManagerOutageIsRiddenOut(t *testing.T) {
	h := newHarness(t, jobmanagertest.Config{}, func(c *Config) {
		c.AckWait = 500 * time.Millisecond
		c.SubmitMaxAttempts = 1000
		c.SubmitMaxElapsed = time.Minute
	})
	fs := newFlakyServer(t, h.sim)
	jm, err := jobmanager.New("http://"+fs.addr, jobmanager.WithToken(testToken))
	require.NoError(t, err)
	h.jm = jm

	h.sim.Hold(true)
	h.start()
	h.publish("m1", event(schemas.TypeLessonCreated, "L-1", ""))
	h.waitPolled(1)

	addr := fs.addr
	fs.down() // polls of the accepted batch fail from now on
	h.publish("m1", event(schemas.TypeLessonCreated, "L-2", ""))
	require.Eventually(t, func() bool {
		for _, b := range h.bridge.Batches() {
			if b.BatchID == "" && b.Attempts == 0 && b.Lessons == 1 {
				return true // the second batch is cut and retrying its submit
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond)
	time.Sleep(4 * 500 * time.Millisecond) // the outage: four AckWaits with nothing to await
	ci := h.consumerInfo()
	assert.Equal(t, 2, ci.NumAckPending, "both messages held through the outage")
	assert.Zero(t, ci.NumRedelivered, "heartbeats kept them alive")
	assert.Empty(t, h.outcomes(), "nothing given up within the budget")

	fs.up(addr)
	h.sim.Hold(false)
	os := h.waitEvents(2, 10*time.Second)
	h.waitDrained(5 * time.Second)
	for _, o := range os {
		assert.Equal(t, schemas.StatusSucceeded, o.Data.Status, o.Data.ErrorMessages)
	}
	assert.Equal(t, 1, h.sim.Creations("m1", "L-1"))
	assert.Equal(t, 1, h.sim.Creations("m1", "L-2"))
	assert.Empty(t, h.sim.JobIDConflicts("m1"))
}

package consumer

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/schemas"
)

var jobIDRE = regexp.MustCompile(`^lb-\d{8}-[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestCutBuildsJobsAsToLesson: a cut batch has one job per data.group in order of first appearance,
// each job's lessons in arrival order as toLesson maps them (times as RFC 3339 with nanoseconds,
// zone kept, empty for deletes), the effective events' sequences beside them, and JobIDs of the form
// lb-YYYYMMDD-<UUIDv7>, all different.
func TestCutBuildsJobsAsToLesson(t *testing.T) {
	const perBatch = 7
	d := newCoreDriver(t, func(c *Config) { c.BatchMaxLessons = perBatch })
	zone := time.FixedZone("", 90*60)
	var creates, deletes []*item
	deliver := func(ev *schemas.LessonChange) *item {
		d.seq++
		body, err := json.Marshal(ev)
		require.NoError(t, err)
		it := decodeItem(&d.c.cfg, rawMsg{reply: fmt.Sprintf("$JS.ACK.%d", d.seq), subject: "lessons.changes.m1", data: body,
			seq: d.seq, numDelivered: 1, stored: d.now})
		require.NoError(t, it.err)
		d.c.deliver(d.now, it)
		d.collect()
		return it
	}
	for i := range 2 * perBatch {
		ev := event(schemas.TypeLessonCreated, fmt.Sprintf("L-%d", i), []string{"a", "", "b"}[i%3])
		switch i % 4 {
		case 1:
			ev.Data.Start = ev.Data.Start.Add(123456789 * time.Nanosecond)
		case 2:
			ev.Data.Start, ev.Data.End = ev.Data.Start.In(zone), ev.Data.End.In(zone)
		case 3:
			ev.Data.Attributes = map[string]json.RawMessage{"teacher": json.RawMessage(`"Frau Meier"`)}
		}
		creates = append(creates, deliver(ev))
	}
	for i := range perBatch {
		deletes = append(deletes, deliver(event(schemas.TypeLessonDeleted, fmt.Sprintf("D-%d", i), []string{"x", "y"}[i%2])))
	}

	ids := map[string]bool{}
	for _, want := range [][]*item{creates[:perBatch], creates[perBatch:], deletes} {
		d.answer(d.expect(effLedgerCreate), result{rev: 1})
		sub := d.expect(effSubmit)
		wantJobs, wantSeqs := referenceJobs(want)
		require.Len(t, sub.jobs, len(wantJobs))
		bt := d.c.batches[sub.key]
		require.NotNil(t, bt)
		for j, job := range sub.jobs {
			assert.Equal(t, wantJobs[j].LektionList, job.LektionList, "job %d", j)
			assert.Regexp(t, jobIDRE, job.JobID)
			assert.False(t, ids[job.JobID], "JobID %s twice", job.JobID)
			ids[job.JobID] = true
		}
		assert.Equal(t, wantSeqs, bt.jobSeqs)
		assert.Equal(t, want, bt.items)
		for _, it := range want {
			st := d.c.lessons[lessonKey{"m1", it.ev.Data.LessonID}]
			require.NotNil(t, st)
			assert.Nil(t, st.pending)
			assert.Same(t, bt, st.inflight, "lesson %s held by its batch", it.ev.Data.LessonID)
		}
		d.answer(sub, result{status: &jobmanager.BatchStatus{BatchID: sub.key}})
	}
}

// referenceJobs groups items by data.group in order of first appearance, with toLesson.
func referenceJobs(items []*item) ([]jobmanager.Job, [][]uint64) {
	var jobs []jobmanager.Job
	var seqs [][]uint64
	idx := map[string]int{}
	for _, it := range items {
		j, ok := idx[it.ev.Data.Group]
		if !ok {
			j = len(jobs)
			idx[it.ev.Data.Group] = j
			jobs = append(jobs, jobmanager.Job{})
			seqs = append(seqs, nil)
		}
		jobs[j].LektionList = append(jobs[j].LektionList, toLesson(it.ev))
		seqs[j] = append(seqs[j], it.seq)
	}
	return jobs, seqs
}

// TestJobIDFormat: jobID is <prefix>-<YYYYMMDD of the UTC day>-<the UUID in its canonical text>.
func TestJobIDFormat(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	now := time.Date(2026, 12, 1, 23, 30, 0, 0, time.FixedZone("", -2*3600)) // Dec 2 in UTC
	for range 100 {
		var u [16]byte
		for i := range u {
			u[i] = byte(rnd.Uint32())
		}
		assert.Equal(t, "lb-20261202-"+uuid.UUID(u).String(), jobID("lb", now, u))
	}
	c := newCore(Config{JobIDPrefix: "x-1"}.Defaults(), newMetrics(), rand.New(rand.NewPCG(1, 2)))
	c.now = now
	id := c.newJobID()
	assert.Regexp(t, `^x-1-20261202-[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, id)
	u, err := uuid.Parse(id[len("x-1-20261202-"):])
	require.NoError(t, err)
	assert.Equal(t, uuid.Version(7), u.Version())
	sec, nsec := u.Time().UnixTime()
	assert.Equal(t, now.UnixMilli(), sec*1000+nsec/1e6, "the UUIDv7's time is the core's clock")
}

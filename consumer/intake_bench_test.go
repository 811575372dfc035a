package consumer

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// The intake path's CPU per event without NATS (issue 13): decodeItem, then a bare core's deliver
// until batches of 500 lessons are cut, recorded and submitted (each submit answered as accepted,
// its ledger update answered). Settle is not part of it. The core is fresh every intakeBenchRound
// events (100 batches), outside the timer, so that every event is a create of a lesson the core has
// not seen, as in the black-box benchmark's backlog.
//
//	go test -run='^$' -bench=Intake -benchmem -count=5 ./consumer
//
// Sub-benchmarks: the event fixture (blackbox: publisher.BacklogCreates (the black-box backlog), 20 groups, no
// attributes; sample: the creates of publisher.SampleEvents, with time, attributes and mandator)
// and the part measured (decode: decodeItem only; core: deliver of already decoded items; all: both).
// ns/op, B/op and allocs/op are per event.
func BenchmarkIntake(b *testing.B) {
	fixtures := []struct {
		name string
		msgs func(n int) []rawMsg
	}{
		{"blackbox", benchBlackBoxCreates},
		{"sample", benchSampleCreates},
	}
	for _, fx := range fixtures {
		msgs := fx.msgs(intakeBenchRound)
		for _, part := range []string{"decode", "core", "all"} {
			b.Run(fx.name+"/"+part, func(b *testing.B) { benchIntake(b, msgs, part) })
		}
	}
}

const intakeBenchRound = 50_000

// measuring turns off for b what the tests check beside the work (the kept record encodings, which
// TestMain has checked against a full one): a benchmark measures the bridge as it runs.
func measuring(b *testing.B) {
	v := verifyRecordEncoding
	verifyRecordEncoding = false
	b.Cleanup(func() { verifyRecordEncoding = v })
}

func benchIntake(b *testing.B, msgs []rawMsg, part string) {
	measuring(b)
	cfg := Config{Logger: zap.NewNop(), BatchLinger: 50 * time.Millisecond, PollSchedule: []time.Duration{time.Millisecond, 5 * time.Millisecond}}.Defaults()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	var pre []*item
	if part == "core" {
		pre = make([]*item, len(msgs))
		for i, m := range msgs {
			pre[i] = decodeItem(&cfg, m)
		}
	}
	d := &intakeBenchDriver{cfg: cfg, now: time.Date(2026, 12, 1, 13, 0, 0, 0, time.UTC)}
	if part != "decode" {
		d.reset(b)
	}
	var sink *item
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := i % len(msgs)
		if k == 0 && i > 0 && part != "decode" {
			b.StopTimer()
			if part == "core" {
				for j, m := range msgs { // a fresh core must not see items it already routed
					pre[j] = decodeItem(&cfg, m)
				}
			}
			d.reset(b)
			b.StartTimer()
		}
		switch part {
		case "decode":
			sink = decodeItem(&d.cfg, msgs[k])
		case "core":
			d.deliver(b, pre[k])
		default:
			d.deliver(b, decodeItem(&d.cfg, msgs[k]))
		}
	}
	b.StopTimer()
	if part == "decode" {
		if sink.err != nil {
			b.Fatal(sink.err)
		}
		return
	}
	if d.submits > 0 {
		b.ReportMetric(float64(d.lessons)/float64(d.submits), "lessons/submit")
	}
}

// intakeBenchDriver answers a core's ledger and submit effects at once, as a fast runner would.
type intakeBenchDriver struct {
	cfg     Config
	c       *core
	now     time.Time
	submits int
	lessons int
	jobID   int
}

func (d *intakeBenchDriver) reset(b *testing.B) {
	d.c = newCore(d.cfg, newMetrics(), rand.New(rand.NewPCG(1, 2)))
	d.c.start(d.now, facts{AckWait: d.cfg.AckWait, MaxAckPending: d.cfg.MaxHeld + 2*d.cfg.PullBatch})
	d.drain(b, map[effKind]bool{effStartPulling: true})
	if d.c.phase != phaseRunning {
		b.Fatalf("core not running after start: phase %d", d.c.phase)
	}
}

func (d *intakeBenchDriver) deliver(b *testing.B, it *item) {
	if it.err != nil {
		b.Fatal(it.err)
	}
	d.c.deliver(d.now, it)
	d.drain(b, nil)
}

// drain answers every effect the core asks for, until it asks for none: ledger list (empty),
// consumer info (nothing outstanding), ledger creates and updates (ok), submits (accepted).
func (d *intakeBenchDriver) drain(b *testing.B, ignore map[effKind]bool) {
	for {
		effs := d.c.take()
		if len(effs) == 0 {
			return
		}
		for _, e := range effs {
			r := result{id: e.id}
			switch e.kind {
			case effLedgerList, effConsumerInfo:
			case effLedgerCreate:
				r.rev = 1
			case effLedgerUpdate:
				r.rev = e.rev + 1
			case effSubmit:
				d.submits++
				for _, j := range e.jobs {
					d.lessons += len(j.LektionList)
				}
				d.jobID++
				r.status = &jobmanager.BatchStatus{BatchID: fmt.Sprint(d.jobID), ImportStatus: jobmanager.StatusAwaitingLessonProcessing}
			default:
				if !ignore[e.kind] {
					b.Fatalf("unexpected effect %v", e.kind)
				}
				continue
			}
			d.c.complete(d.now, r)
		}
	}
}

// benchBlackBoxCreates are the black-box benchmark's backlog (publisher.BacklogCreates): one lesson
// each, 20 groups.
func benchBlackBoxCreates(n int) []rawMsg {
	out := make([]rawMsg, n)
	for i, ch := range publisher.BacklogCreates(n, "bench") {
		out[i] = benchRawMsg("bench", uint64(i+1), ch.Body)
	}
	return out
}

// benchSampleCreates are the first n creates of publisher.SampleEvents (no invalid ones).
func benchSampleCreates(n int) []rawMsg {
	out := make([]rawMsg, 0, n)
	for _, ch := range publisher.SampleEvents(2*n, "m1", 7, 0) {
		var ev struct{ Type string }
		if err := json.Unmarshal(ch.Body, &ev); err != nil {
			panic(err)
		}
		if ev.Type != schemas.TypeLessonCreated {
			continue
		}
		out = append(out, benchRawMsg(ch.Mandator, uint64(len(out)+1), ch.Body))
		if len(out) == n {
			break
		}
	}
	return out
}

func benchRawMsg(mandator string, seq uint64, body []byte) rawMsg {
	return rawMsg{reply: fmt.Sprintf("$JS.ACK.LESSONS.lessonbridge.1.%d.%d.1764594000000000000.0", seq, seq),
		subject: "lessons.changes." + mandator, data: body, seq: seq, numDelivered: 1,
		stored: time.Date(2026, 12, 1, 13, 0, 0, 0, time.UTC)}
}

// BenchmarkRecordEncode: the three record writes of a 500-lesson batch (20 jobs; recorded, accepted,
// settling) encoded in full each time (json.Marshal(bt.record()), the baseline) and with the jobs and
// messages kept from the first (encodeRecord). ns/op and B/op are per batch.
//
//	go test -run='^$' -bench=RecordEncode -benchmem -count=5 ./consumer
func BenchmarkRecordEncode(b *testing.B) {
	measuring(b)
	newBatch := func() *batch {
		bt := &batch{key: "b-019b8d2b-927e-7e85-9ec2-a7c0e205eaad", mandator: "m1", action: "upsert", state: stateRecorded,
			created: time.Date(2026, 12, 1, 13, 0, 0, 0, time.UTC), keepTail: true}
		seq := uint64(1_000_000)
		for j := range 20 {
			job := jobmanager.Job{JobID: fmt.Sprintf("LB-20261201-019b8d2b-927e-7e85-9ec2-%012d", j)}
			var seqs []uint64
			for range 25 {
				seq++
				job.LektionList = append(job.LektionList, jobmanager.Lesson{LektionID: fmt.Sprintf("L-%07d", seq)})
				seqs = append(seqs, seq)
				bt.items = append(bt.items, &item{seq: seq})
			}
			bt.jobs, bt.jobSeqs = append(bt.jobs, job), append(bt.jobSeqs, seqs)
		}
		return bt
	}
	lifetime := func(bt *batch, enc func(*batch) ([]byte, error)) int {
		n := 0
		for _, st := range []batchState{stateRecorded, stateAccepted, stateSettling} {
			bt.state = st
			if st == stateAccepted {
				bt.batchID = "8c0d2a52-7f7c-4e0e-9a53-0f5d3c1b2a10"
			}
			v, err := enc(bt)
			if err != nil {
				b.Fatal(err)
			}
			n += len(v)
		}
		return n
	}
	for _, v := range []struct {
		name string
		enc  func(*batch) ([]byte, error)
	}{
		{"full", func(bt *batch) ([]byte, error) { return json.Marshal(bt.record()) }},
		{"kept", (*batch).encodeRecord},
	} {
		b.Run(v.name, func(b *testing.B) {
			bytes := 0
			b.ReportAllocs()
			for range b.N {
				b.StopTimer()
				bt := newBatch()
				b.StartTimer()
				bytes = lifetime(bt, v.enc)
			}
			b.ReportMetric(float64(bytes)/3, "bytes/record")
		})
	}
}

package consumer

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/lessonbridge/lessonbridge/publisher"
	"github.com/lessonbridge/lessonbridge/schemas"
)

// outcomeFor builds the outcome event of a batch. An empty reason means success.
func outcomeFor(bt *batch, reason, class, importStatus string, msgs []string) *schemas.Outcome {
	status := schemas.StatusSucceeded
	if reason != "" {
		status = schemas.StatusFailed
	}
	d := schemas.OutcomeData{
		Status:               status,
		Reason:               reason,
		BatchID:              bt.batchID,
		Mandator:             bt.mandator,
		Action:               bt.action,
		ImportStatus:         importStatus,
		ErrorMessages:        append([]string{}, msgs...),
		ErrorClass:           class,
		JobIDs:               bt.jobIDs(),
		LessonCount:          bt.lessonCount,
		LessonIDs:            make([]string, 0, len(bt.lessons)),
		EventIDs:             make([]string, 0, len(bt.items)),
		ResubmittedEventIDs:  []string{},
		ResubmittedLessonIDs: []string{},
		SubmittedAt:          bt.submittedAt,
		Polls:                bt.polls,
	}
	if d.LessonCount == 0 {
		d.LessonCount = bt.lessonCountLocal()
	}
	for _, p := range bt.lessons {
		d.LessonIDs = append(d.LessonIDs, p.key.lessonID)
	}
	for _, it := range bt.items {
		if it.ev != nil {
			d.EventIDs = append(d.EventIDs, it.ev.ID)
		}
	}
	subject := bt.batchID
	if subject == "" {
		subject = bt.key
	}
	return &schemas.Outcome{
		SpecVersion:     schemas.SpecVersion,
		ID:              bt.key,
		Source:          schemas.OutcomeSource,
		Type:            "lesson.batch." + status,
		Subject:         subject,
		DataContentType: "application/json",
		Data:            d,
	}
}

// deadLetterFor describes the dead-letter copy of an item with its original body.
func deadLetterFor(it *item, body []byte, mandator, reason, errText, batchID string) publisher.DeadLetter {
	return publisher.DeadLetter{
		Mandator:  mandator,
		Body:      body,
		Reason:    reason,
		Error:     errText,
		BatchID:   batchID,
		Subject:   it.subject,
		StreamSeq: it.seq,
		StoredAt:  it.stored,
	}
}

// settle finishes a terminal batch: the ledger record becomes "settling" with the verdict in it,
// then the outcome is confirmed by JetStream, then dead letters when it failed, then Ack or Term
// of every message, each confirmed by the server, then the record goes. A crash anywhere in between
// resumes from the record: the outcome is re-published under the same Nats-Msg-Id (de-duplicated)
// and the messages that come back are acked or terminated, never resubmitted.
//
// Failure isolation (isolate.go) fits between the verdict and the outcome: the child batches'
// records are created (startChildren) before the parent's outcome is published, and the parent's
// outcome then settles only the items left to it (the lessons at fault), naming the others in
// resubmittedEventIds/resubmittedLessonIds.
func (c *core) settle(bt *batch, o *schemas.Outcome) {
	resumed := bt.state == stateSettling
	d := &o.Data
	if sp := bt.split; sp != nil && d.Status == schemas.StatusFailed {
		d.ResubmittedEventIDs = append([]string{}, sp.ResubmittedEventIDs...)
		d.ResubmittedLessonIDs = append([]string{}, sp.ResubmittedLessonIDs...)
	}
	if !resumed {
		bt.state = stateSettling
		o.Time, d.FinishedAt = c.now, c.now
		fields := []zap.Field{zap.String("status", d.Status), zap.Int("lessons", d.LessonCount), zap.Int("events", len(d.EventIDs)),
			zap.Int("polls", d.Polls), zap.Strings("jobIds", d.JobIDs)}
		if d.Status == schemas.StatusFailed {
			// The guide asks for batchId, timestamp and ErrorMessages of every failed batch.
			bt.log.Error("batch failed", append(fields, zap.String("reason", d.Reason), zap.String("errorClass", d.ErrorClass),
				zap.Time("finishedAt", c.now), zap.Strings("errorMessages", d.ErrorMessages),
				zap.Int("resubmittedEvents", len(d.ResubmittedEventIDs)))...)
		} else {
			bt.log.Info("batch succeeded", append(fields, zap.Duration("took", c.now.Sub(bt.created)))...)
		}
		c.m.batches.WithLabelValues(d.Status, d.Reason).Inc()
	} else {
		bt.log.Info("finishing a batch that was settling before a restart", zap.String("status", d.Status),
			zap.String("reason", d.Reason), zap.Int("events", len(bt.items)))
	}
	bt.verdict = verdictOf(o)
	bt.verdict.Split = bt.split
	publish := func() {
		c.retry("publish outcome", bt.log, func() effect { return effect{kind: effPublishOutcome, key: bt.key, outcome: o} }, func(r result) {
			if r.kind != errNone {
				c.fail(fmt.Errorf("consumer: publish outcome of batch %s: %w", bt.key, r.err))
				return
			}
			if d.Status == schemas.StatusFailed {
				c.deadLetters(bt, d, 0)
				return
			}
			c.finalAcks(bt, ackAck)
		})
	}
	if resumed || bt.ledgerRev == 0 {
		publish()
		return
	}
	// Failure isolation: the verdict (with the split) first, then the children's records, then
	// the outcome.
	c.ledgerWrite(bt, "ledger settling", func() { c.startChildren(bt, publish) })
}

// deadLetters copies the batch's items from i on to the dead-letter stream, one after the other,
// then terminates them all.
func (c *core) deadLetters(bt *batch, d *schemas.OutcomeData, i int) {
	if i == len(bt.items) {
		c.finalAcks(bt, termWith(d.Reason))
		return
	}
	it := bt.items[i]
	errText := strings.Join(d.ErrorMessages, "; ")
	send := func(body []byte, note string) {
		dl := deadLetterFor(it, body, bt.mandator, d.Reason, errText+note, d.BatchID)
		c.retry("dead-letter", bt.log, func() effect { return effect{kind: effPublishDeadLetter, deadLetter: dl} }, func(r result) {
			switch r.kind {
			case errNone:
			case errPermanent:
				// Finding 2: never retried forever; the message stays in the input stream.
				bt.log.Error("dead letter refused by the server; event terminated without a copy", zap.Uint64("streamSeq", it.seq), zap.Error(r.err))
				c.m.deadLetterRefused.Inc()
			default:
				c.fail(fmt.Errorf("consumer: dead letter of stream seq %d: %w", it.seq, r.err))
				return
			}
			c.deadLetters(bt, d, i+1)
		})
	}
	if it.data != nil {
		send(it.data, "")
		return
	}
	// Finding 5: only a message the stream really no longer has yields an empty body; a timeout is
	// retried.
	c.retry("read original body", bt.log, func() effect { return effect{kind: effGetBody, seq: it.seq} }, func(r result) {
		switch r.kind {
		case errNone:
			send(r.data, "")
		case errNotFound:
			send(nil, fmt.Sprintf(" (original body not in stream %s seq %d any more: %v)", c.cfg.InputStream, it.seq, r.err))
		default:
			c.fail(fmt.Errorf("consumer: read stream %s seq %d: %w", c.cfg.InputStream, it.seq, r.err))
		}
	})
}

// ackRounds is how many times unconfirmed final acks are sent again before the batch is released
// with its record kept.
const ackRounds = 8

// finalAcks sends every item's final ack-protocol message (Ack or Term); the last one asks for the
// server's confirmation, which confirms the others sent before it on the same connection (the
// runner takes none as confirmed when the connection was re-established on the way). Unconfirmed
// acks are sent again. Finding 1 (a consumer leader change can drop an ack while a later one is
// confirmed, on a cluster) is covered by the ack-floor wait after it: the record stays until the
// floor passes every message, and a message whose ack was lost is settled again from it. When the
// rounds are spent the batch is released with its record kept: messages whose ack was lost come
// back, the ledger re-read finds the settling record and they are settled from it, never
// resubmitted.
func (c *core) finalAcks(bt *batch, body []byte) {
	left := make(map[uint64]*item, len(bt.items))
	for _, it := range bt.items {
		left[it.seq] = it
	}
	round := 0
	wait := 100 * time.Millisecond
	var send func()
	send = func() {
		round++
		refs := make([]ackRef, 0, len(left))
		for _, it := range bt.items {
			if left[it.seq] != nil {
				it.acked = true
				refs = append(refs, ackRef{it.reply, it.seq})
			}
		}
		c.do(effect{kind: effAck, key: bt.key, acks: refs, body: body}, func(r result) {
			for _, s := range r.acked {
				delete(left, s)
			}
			if len(left) == 0 {
				c.awaitAckFloor(bt, body)
				return
			}
			if round >= ackRounds || c.phase == phaseDone {
				bt.log.Warn("acknowledgements not all confirmed; the batch's record stays and settles its messages if they come back",
					zap.Int("unconfirmed", len(left)), zap.Int("rounds", round))
				c.released(bt, false)
				return
			}
			bt.log.Warn("acknowledgements not confirmed; sending them again", zap.Int("unconfirmed", len(left)), zap.Int("round", round))
			c.after(wait, send)
			wait = min(wait*2, 5*time.Second)
		})
	}
	if len(left) == 0 {
		c.deleteRecord(bt)
		return
	}
	send()
}

// floorWait is a settled batch whose acks were all confirmed, waiting for the consumer's ack floor
// to pass its messages before its ledger record goes. On a NATS cluster a confirmed ack is not yet
// a replicated one: when the consumer leader is lost right after confirming, the new leader
// redelivers the message (seen in TestClusterLeaderLoss/consumer). Until the floor passes, such a
// redelivery is settled again with the same final ack here, never admitted as new.
type floorWait struct {
	key    string
	rev    uint64
	maxSeq uint64
	seqs   []uint64
	body   []byte // the final ack-protocol message (Ack or Term)
	since  time.Time
	log    *zap.Logger
	n      uint64 // the order in which records began to wait (the newest names a message first)
}

// floorCheckEvery is how often the consumer's ack floor is asked for while settled records wait for
// it.
const floorCheckEvery = time.Second

// awaitAckFloor releases a settled batch whose acks were all confirmed and keeps its record until
// the consumer's ack floor shows every message acknowledged (or terminated).
func (c *core) awaitAckFloor(bt *batch, body []byte) {
	if bt.partial || bt.ledgerRev == 0 || len(bt.items) == 0 {
		c.deleteRecord(bt)
		return
	}
	c.floorWaitN++
	w := &floorWait{key: bt.key, rev: bt.ledgerRev, body: body, since: c.now, log: bt.log, n: c.floorWaitN}
	w.seqs = make([]uint64, 0, len(bt.items))
	for _, it := range bt.items {
		w.maxSeq = max(w.maxSeq, it.seq)
		w.seqs = append(w.seqs, it.seq)
	}
	slices.Sort(w.seqs)
	c.floorWaits[bt.key] = w
	c.released(bt, false)
	c.scheduleFloorCheck()
}

func (c *core) scheduleFloorCheck() {
	if c.floorTimer || len(c.floorWaits) == 0 {
		return
	}
	c.floorTimer = true
	c.after(floorCheckEvery, c.checkAckFloor)
}

// checkAckFloor deletes the records of settled batches whose messages are all at or below the
// consumer's ack floor. A record that waited longer than floorMaxWait while the consumer answered
// goes too: by then a lost ack's redelivery would have come (the record still settles it, above).
func (c *core) checkAckFloor() {
	c.floorTimer = false
	if len(c.floorWaits) == 0 || c.phase == phaseDone {
		return
	}
	c.do(effect{kind: effConsumerInfo}, func(r result) {
		if r.kind == errNone {
			keys := make([]string, 0, len(c.floorWaits))
			for k := range c.floorWaits {
				keys = append(keys, k)
			}
			sortStrings(keys)
			for _, k := range keys {
				w := c.floorWaits[k]
				if w.maxSeq <= r.info.ackFloor || c.now.Sub(w.since) > c.floorMaxWait() {
					c.forgetFloorWait(w)
					c.deleteRecordOf(w.key, w.rev, w.log, func() {})
				}
			}
		}
		c.scheduleFloorCheck()
	})
}

// floorMaxWait bounds how long a settled record waits for the ack floor (one message held for a
// long batch keeps the floor down): long enough for a consumer leader election and the AckWait
// after it, in which a lost ack's message comes back.
func (c *core) floorMaxWait() time.Duration { return 4*c.ackWait + 30*time.Second }

func (c *core) forgetFloorWait(w *floorWait) {
	if c.floorWaits[w.key] == w {
		delete(c.floorWaits, w.key)
	}
}

// floorWaitOf is the newest settled record waiting for the ack floor that names seq, or nil. Only
// redeliveries ask, so a look through the waiting records (few: each goes once the floor passes,
// within a second or two) costs less than an index entry per settled message.
func (c *core) floorWaitOf(seq uint64) *floorWait {
	var found *floorWait
	for _, w := range c.floorWaits {
		if _, ok := slices.BinarySearch(w.seqs, seq); ok && (found == nil || w.n > found.n) {
			found = w
		}
	}
	return found
}

// settledAgain takes a redelivered message of a batch that settled here and whose record waits for
// the ack floor: its ack was confirmed but lost (a consumer leader change). It is acknowledged again
// with the same final message, confirmed, and never admitted as a new event.
func (c *core) settledAgain(it *item) bool {
	if !it.redelivered {
		return false
	}
	w := c.floorWaitOf(it.seq)
	if w == nil {
		return false
	}
	w.log.Warn("a message of a settled batch came back (its confirmed ack was lost); acknowledging it again",
		zap.Uint64("streamSeq", it.seq))
	c.m.redelivered.Inc()
	c.do(effect{kind: effAck, key: w.key, acks: []ackRef{{it.reply, it.seq}}, body: w.body}, func(result) {})
	return true
}

func (c *core) deleteRecord(bt *batch) {
	if bt.partial {
		c.released(bt, false) // the record still names messages that may come back
		return
	}
	if bt.ledgerRev == 0 {
		c.released(bt, true)
		return
	}
	c.deleteRecordOf(bt.key, bt.ledgerRev, bt.log, func() { c.released(bt, true) })
}

// deleteRecordOf deletes a ledger record at revision rev, retrying timeouts within the NATS budget;
// a record that is gone or changed is not ours to delete any more. Then then runs.
func (c *core) deleteRecordOf(key string, rev uint64, log *zap.Logger, then func()) {
	c.retry("ledger delete", log, func() effect { return effect{kind: effLedgerDelete, key: key, rev: rev} }, func(r result) {
		if r.kind == errTransient || r.kind == errPermanent {
			log.Warn("ledger record not deleted; the next ledger read removes it", zap.Error(r.err))
		}
		then()
	})
}

// released forgets a settled (or taken-over) batch: its messages, and its lessons in the gate.
// gone says the ledger record is gone (or not ours): a ledger snapshot being read must not bring it
// back.
func (c *core) released(bt *batch, gone bool) {
	if bt.dead {
		return
	}
	bt.dead = true
	for _, kid := range bt.kids {
		// A split whose children never started (the parent was taken over before): their lessons
		// and messages are let go with the parent's.
		for _, it := range kid.items {
			if c.bySeq[it.seq] == it {
				delete(c.bySeq, it.seq)
			}
		}
		for _, p := range kid.lessons {
			c.unhold(p.key, bt)
		}
	}
	bt.kids = nil
	if c.reloading && gone {
		c.settledKeys[bt.key] = true // the ledger snapshot being read may still hold its record
	}
	for _, it := range bt.items {
		if c.bySeq[it.seq] == it {
			delete(c.bySeq, it.seq)
		}
	}
	if c.batches[bt.key] == bt {
		delete(c.batches, bt.key)
	}
	c.m.inFlight.Set(float64(len(c.batches)))
	if bt.keepLessons {
		return
	}
	for _, p := range bt.lessons {
		c.unhold(p.key, bt)
	}
}

// unhold frees lesson k when bt holds it.
func (c *core) unhold(k lessonKey, bt *batch) {
	st := c.lessons[k]
	if st == nil || st.inflight != bt {
		return
	}
	for len(c.missed[k]) > 0 {
		next := c.missed[k][0]
		c.missed[k] = c.missed[k][1:]
		if len(c.missed[k]) == 0 {
			delete(c.missed, k)
		}
		if !next.dead && c.batches[next.key] == next {
			st.inflight = next // a recovered record of this lesson waited for it
			return
		}
	}
	if c.phase >= phaseGrace {
		st.inflight = nil
		if st.pending == nil && len(st.waiting) == 0 {
			delete(c.lessons, k)
		}
		return
	}
	c.release(k)
}

// BatchInfo describes a batch the bridge is working on (for `lessonbridge batches` and /batches).
type BatchInfo struct {
	Key        string    `json:"key"`
	Mandator   string    `json:"mandator"`
	Action     string    `json:"action"`
	BatchID    string    `json:"batchId"`
	State      string    `json:"state"`
	Created    time.Time `json:"created"`
	Polls      int       `json:"polls"`
	Lessons    int       `json:"lessons"`
	Events     int       `json:"events"`
	LastStatus string    `json:"lastStatus"`
	Attempts   int       `json:"attempts"`
	JobIDs     []string  `json:"jobIds"`
	// Failure isolation: the failed batch this one resubmits part of, the original batch of its
	// isolation, and the follow-up batches of a failed batch that was split.
	Parent    string   `json:"parent,omitempty"`
	Root      string   `json:"root,omitempty"`
	FollowUps []string `json:"followUps,omitempty"`
}

func (c *core) snapshot() ([]BatchInfo, time.Time) {
	out := make([]BatchInfo, 0, len(c.batches))
	var oldest time.Time
	for _, bt := range c.batches {
		out = append(out, BatchInfo{Key: bt.key, Mandator: bt.mandator, Action: string(bt.action), BatchID: bt.batchID,
			State: string(bt.state), Created: bt.created, Polls: bt.polls, Lessons: bt.lessonCountLocal(),
			Events: len(bt.items), LastStatus: string(bt.lastStatus), Attempts: bt.attempts, JobIDs: bt.jobIDs(),
			Parent: bt.parent, Root: bt.root, FollowUps: bt.followUps})
		if oldest.IsZero() || bt.created.Before(oldest) {
			oldest = bt.created
		}
	}
	sortBatchInfo(out)
	return out, oldest
}

func sortBatchInfo(s []BatchInfo) {
	slices.SortFunc(s, func(a, b BatchInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
}

// The JetStream ack protocol, sent as plain publishes to a message's reply subject (what
// jetstream.Msg does, without keeping the message).
var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
)

func termWith(reason string) []byte { return []byte("+TERM " + reason) }

package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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

// settle finishes a terminal batch off the loop: the ledger record becomes "settling" with the
// outcome in it, then the outcome is confirmed by JetStream, then dead letters when it failed, then
// Ack or Term of every message (confirmed), then the record goes. A crash anywhere in between resumes
// from the record: the outcome is re-published under the same Nats-Msg-Id (de-duplicated) and the
// messages that come back are acked or terminated, never resubmitted.
func (b *Bridge) settle(workCtx context.Context, bt *batch, o *schemas.Outcome) {
	resumed := bt.state == stateSettling
	d := &o.Data
	if !resumed {
		bt.state = stateSettling
		now := b.now()
		o.Time, d.FinishedAt = now, now
		fields := []zap.Field{zap.String("status", d.Status), zap.Int("lessons", d.LessonCount), zap.Int("events", len(d.EventIDs)),
			zap.Int("polls", d.Polls), zap.Strings("jobIds", d.JobIDs)}
		if d.Status == schemas.StatusFailed {
			// The guide asks for batchId, timestamp and ErrorMessages of every failed batch.
			bt.log.Error("batch failed", append(fields, zap.String("reason", d.Reason), zap.String("errorClass", d.ErrorClass),
				zap.Time("finishedAt", now), zap.Strings("errorMessages", d.ErrorMessages))...)
		} else {
			bt.log.Info("batch succeeded", append(fields, zap.Duration("took", now.Sub(bt.created)))...)
		}
		b.metrics.batches.WithLabelValues(d.Status, d.Reason).Inc()
	} else {
		bt.log.Info("finishing a batch that was settling before a restart", zap.String("status", d.Status),
			zap.String("reason", d.Reason), zap.Int("events", len(bt.items)))
	}
	items := bt.items
	rec := bt.record()
	rec.Verdict = verdictOf(o)
	key, rev := bt.key, bt.ledgerRev
	b.workers.Add(1)
	go func() {
		defer b.workers.Done()
		if !resumed && rev != 0 {
			newRev, err := retry(workCtx, b, "ledger settling", func(ctx context.Context) (uint64, error) {
				return b.ledgerUpdate(ctx, rec, rev)
			})
			if err != nil {
				var perm permanent
				if errors.As(err, &perm) {
					bt.log.Error("batch taken over by another instance; leaving its messages to it", zap.Error(err))
					b.post(func() { b.onSettled(workCtx, bt) })
				}
				return
			}
			rev = newRev
		}
		if _, err := retry(workCtx, b, "publish outcome", func(ctx context.Context) (*jetstream.PubAck, error) {
			return b.pub.PublishOutcome(ctx, o)
		}); err != nil {
			return // shutting down before NATS confirmed: the ledger resumes the batch
		}
		if h := b.cfg.Hooks.AfterOutcome; h != nil {
			if err := h(key); err != nil {
				bt.log.Warn("batch abandoned by hook after its outcome", zap.Error(err))
				return
			}
		}
		final := ackAck
		if d.Status == schemas.StatusFailed {
			final = termWith(d.Reason)
			errText := strings.Join(d.ErrorMessages, "; ")
			for _, it := range items {
				if _, err := retry(workCtx, b, "dead-letter", func(ctx context.Context) (*jetstream.PubAck, error) {
					body, note := b.originalBody(ctx, it)
					return b.pub.PublishDeadLetter(ctx, deadLetterFor(it, body, bt.mandator, d.Reason, errText+note, d.BatchID))
				}); err != nil {
					return
				}
			}
		}
		if err := b.sendFinal(workCtx, bt.log, items, final); err != nil {
			return // shutting down: the record resumes the batch at the next start
		}
		if rev != 0 {
			ctx, cancel := context.WithTimeout(workCtx, 5*time.Second)
			if err := b.topo.ledger.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
				bt.log.Warn("ledger record not deleted; the next start removes it", zap.Error(err))
			}
			cancel()
		}
		b.post(func() { b.onSettled(workCtx, bt) })
	}()
}

// sendFinal sends every item's final ack-protocol message (Ack or Term) and asks the server to
// confirm the last. Messages on one connection arrive in order, so a confirmed last one means all
// arrived — unless the connection was replaced in between, in which case the round is repeated (acks
// are idempotent). It keeps trying until confirmed or workCtx ends.
func (b *Bridge) sendFinal(workCtx context.Context, log *zap.Logger, items []*item, body []byte) error {
	if len(items) == 0 {
		return nil
	}
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		reconnects := b.nc.Stats().Reconnects
		for _, it := range items[:len(items)-1] {
			_ = b.signal(it, body)
		}
		ctx, cancel := context.WithTimeout(workCtx, 5*time.Second)
		_, err := b.nc.RequestWithContext(ctx, items[len(items)-1].reply, body)
		cancel()
		if err == nil && b.nc.Stats().Reconnects == reconnects {
			return nil
		}
		if err == nil {
			err = errors.New("connection replaced while acknowledging")
		}
		log.Warn("acknowledgements not confirmed; sending them again", zap.Int("attempt", attempt), zap.Error(err))
		select {
		case <-workCtx.Done():
			return workCtx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// onSettled releases a settled batch's messages and lessons.
func (b *Bridge) onSettled(workCtx context.Context, bt *batch) {
	if b.reloading {
		b.settledKeys[bt.key] = true // the ledger snapshot being read may still hold its record
	}
	for _, it := range bt.items {
		delete(b.bySeq, it.seq)
	}
	delete(b.batches, bt.key)
	b.metrics.inFlight.Set(float64(len(b.batches)))
	for _, p := range bt.lessons {
		if b.stopping {
			delete(b.lessons, p.key)
			continue
		}
		b.release(workCtx, p.key)
	}
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
}

func (b *Bridge) publishSnapshot(now time.Time) {
	out := make([]BatchInfo, 0, len(b.batches))
	var oldest time.Time
	for _, bt := range b.batches {
		out = append(out, BatchInfo{Key: bt.key, Mandator: bt.mandator, Action: string(bt.action), BatchID: bt.batchID,
			State: string(bt.state), Created: bt.created, Polls: bt.polls, Lessons: bt.lessonCountLocal(),
			Events: len(bt.items), LastStatus: string(bt.lastStatus), Attempts: bt.attempts, JobIDs: bt.jobIDs()})
		if oldest.IsZero() || bt.created.Before(oldest) {
			oldest = bt.created
		}
	}
	sortBatchInfo(out)
	b.snapshot.Store(&out)
	age := 0.0
	if !oldest.IsZero() {
		age = now.Sub(oldest).Seconds()
	}
	b.metrics.oldestAge.Set(age)
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

// signal sends one ack-protocol message for an item, fire and forget.
func (b *Bridge) signal(it *item, body []byte) error { return b.nc.Publish(it.reply, body) }

// originalBody returns an item's original bytes: kept for invalid events, re-read from the input
// stream for a failed batch. A message the stream no longer has (retention) yields an empty body and
// a note for the dead letter's error header.
func (b *Bridge) originalBody(ctx context.Context, it *item) ([]byte, string) {
	if it.data != nil {
		return it.data, ""
	}
	m, err := b.topo.input.GetMsg(ctx, it.seq)
	if err != nil {
		return nil, fmt.Sprintf(" (original body not readable from stream %s seq %d: %v)", b.cfg.InputStream, it.seq, err)
	}
	return m.Data, ""
}

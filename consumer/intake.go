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

// item is one held input message.
//
// It keeps the reply subject (to ack, nak, term and heartbeat by plain publishes), not the
// jetstream.Msg with its parsed headers: with 100,000 messages held that is a kilobyte each. The
// body is kept only for invalid events; a failed batch re-reads its bodies from the stream.
type item struct {
	reply       string
	data        []byte // the original body, invalid events only
	seq         uint64
	stored      time.Time // when the stream stored the message: with seq it identifies the message
	subject     string
	mandator    string                // "" when the subject names no valid mandator
	ev          *schemas.LessonChange // nil when invalid
	err         error                 // why the event will not be imported
	redelivered bool                  // delivered before (to us or to an instance that died)
}

// invalidMandator is the dead-letter subject token for events whose subject names no valid mandator.
const invalidMandator = publisher.InvalidMandator

// onMsg is the Consume callback: decode and hand over, never block.
func (b *Bridge) onMsg(msg jetstream.Msg) {
	it := b.decode(msg)
	b.inMu.Lock()
	b.inQ = append(b.inQ, it)
	b.inMu.Unlock()
	select {
	case b.inSig <- struct{}{}:
	default:
	}
}

func (b *Bridge) decode(msg jetstream.Msg) *item {
	it := &item{reply: msg.Reply(), subject: msg.Subject()}
	if md, err := msg.Metadata(); err == nil {
		it.seq = md.Sequence.Stream
		it.stored = md.Timestamp
		it.redelivered = md.NumDelivered > 1
	}
	m, ok := strings.CutPrefix(it.subject, b.cfg.ChangesPrefix+".")
	if err := schemas.ValidMandator(m); !ok || err != nil {
		it.err = fmt.Errorf("subject %q names no valid mandator (want %s.<mandator>, mandator [A-Za-z0-9_-]{1,64})", it.subject, b.cfg.ChangesPrefix)
		it.data = msg.Data()
		return it
	}
	it.mandator = m
	if len(b.cfg.Mandators) > 0 && !slices.Contains(b.cfg.Mandators, m) {
		it.err = fmt.Errorf("mandator %q is not in the allow-list", m)
		it.data = msg.Data()
		return it
	}
	it.ev, it.err = schemas.Decode(msg.Data(), m)
	if it.err != nil {
		it.data = msg.Data()
	}
	return it
}

// drainIntake takes over what the callback queued. During shutdown everything is nakked.
func (b *Bridge) drainIntake(workCtx context.Context) {
	b.inMu.Lock()
	q := b.inQ
	b.inQ = nil
	b.inMu.Unlock()
	var invalid []*item
	if len(q) > 0 && !b.stopping {
		b.rearmBarrier(b.now())
	}
	for _, it := range q {
		if _, ok := b.bySeq[it.seq]; ok && it.seq != 0 {
			// A redelivery of a message we hold (a heartbeat came late). The server takes acks by
			// stream sequence, so the handle we have still settles it; this copy is dropped.
			b.metrics.redelivered.Inc()
			continue
		}
		if b.stopping {
			_ = b.signal(it, ackNak)
			continue
		}
		b.bySeq[it.seq] = it
		b.metrics.received.Inc()
		b.countOutstanding(it)
		if it.err != nil {
			invalid = append(invalid, it)
			b.openIfBack(workCtx)
			continue
		}
		if !b.parkAtBarrier(workCtx, it) {
			b.admitValid(workCtx, it)
		}
		b.openIfBack(workCtx)
	}
	if len(invalid) > 0 {
		b.deadLetterInvalid(workCtx, invalid)
	}
}

// admitValid routes a valid event: into its recovered batch, through a ledger re-read when it is an
// unknown redelivery, or into the gate.
func (b *Bridge) admitValid(workCtx context.Context, it *item) {
	switch {
	case b.attachRecovered(workCtx, it):
	case it.redelivered:
		b.parkRedelivered(workCtx, it)
	case len(b.limbo) > 0:
		// Stay behind the redeliveries that wait for the ledger: they may be older events of this lesson.
		b.limbo = append(b.limbo, it)
	default:
		b.admit(workCtx, it)
	}
}

// deadLetterInvalid copies invalid events to the dead-letter stream and terminates them, off the loop.
func (b *Bridge) deadLetterInvalid(workCtx context.Context, items []*item) {
	b.workers.Add(1)
	go func() {
		defer b.workers.Done()
		var done []*item
		for _, it := range items {
			mandator := it.mandator
			if mandator == "" {
				mandator = invalidMandator
			}
			_, err := retry(workCtx, b, "dead-letter invalid event", func(ctx context.Context) (*jetstream.PubAck, error) {
				return b.pub.PublishDeadLetter(ctx, deadLetterFor(it, it.data, mandator, schemas.ReasonInvalidEvent, it.err.Error(), ""))
			})
			if err != nil {
				continue // shutting down: the message stays unacked and returns
			}
			b.log.Warn("invalid event dead-lettered", zap.Uint64("streamSeq", it.seq), zap.String("subject", it.subject),
				zap.String("mandator", it.mandator), zap.Error(it.err))
			_ = b.signal(it, termWith(schemas.ReasonInvalidEvent))
			b.metrics.invalid.WithLabelValues(invalidKind(it)).Inc()
			done = append(done, it)
		}
		b.post(func() {
			for _, it := range done {
				delete(b.bySeq, it.seq)
			}
		})
	}()
}

func invalidKind(it *item) string {
	switch {
	case it.mandator == "":
		return "subject"
	case it.ev == nil && strings.Contains(it.err.Error(), "allow-list"):
		return "mandator_not_allowed"
	default:
		return "schema"
	}
}

// retry runs op until it succeeds or ctx ends, backing off from 100ms to 5s. It is for NATS
// operations that must eventually happen (publishes de-duplicated by Nats-Msg-Id, ledger writes).
func retry[T any](ctx context.Context, b *Bridge, what string, op func(ctx context.Context) (T, error)) (T, error) {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := op(octx)
		cancel()
		if err == nil {
			return v, nil
		}
		var perm permanent
		if errors.As(err, &perm) {
			return v, err
		}
		if attempt == 1 || attempt%10 == 0 {
			b.log.Warn(what+": will retry", zap.Int("attempt", attempt), zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

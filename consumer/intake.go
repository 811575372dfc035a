package consumer

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

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
	cseq        uint64    // the consumer's delivery sequence of this delivery (0: unknown)
	stored      time.Time // when the stream stored the message: with seq it identifies the message
	subject     string
	mandator    string                // "" when the subject names no valid mandator
	ev          *schemas.LessonChange // nil when invalid
	err         error                 // why the event will not be imported
	redelivered bool                  // delivered before (to us or to an instance that died)
	acked       bool                  // its final Ack/Term was sent: the server may count it settled already
	watched     bool                  // in a recovered batch waiting for its owner (liveness.go): another instance may settle it
	arrived     int64                 // when it reached the core (UnixNano): its lease starts there
	size        int32                 // lessonSize(ev), taken once (beside redelivered: no extra word)
}

// invalidMandator is the dead-letter subject token for events whose subject names no valid mandator.
const invalidMandator = publisher.InvalidMandator

// rawMsg is what the runner knows of an arrived message.
type rawMsg struct {
	reply, subject string
	data           []byte
	seq            uint64
	cseq           uint64 // the consumer's delivery sequence (one per delivery, redeliveries too)
	numDelivered   uint64
	stored         time.Time
}

// decodeItem decodes and validates a message. It is pure; the runner calls it on the Consume
// callback's goroutine so that the core does not spend its time decoding.
func decodeItem(cfg *Config, m rawMsg) *item {
	it := &item{reply: m.reply, subject: m.subject, seq: m.seq, cseq: m.cseq, stored: m.stored, redelivered: m.numDelivered > 1}
	mand, ok := strings.CutPrefix(it.subject, cfg.ChangesPrefix+".")
	if err := schemas.ValidMandator(mand); !ok || err != nil {
		it.err = fmt.Errorf("subject %q names no valid mandator (want %s.<mandator>, mandator [A-Za-z0-9_-]{1,64})", it.subject, cfg.ChangesPrefix)
		it.data = m.data
		return it
	}
	it.mandator = mand
	if len(cfg.Mandators) > 0 && !slices.Contains(cfg.Mandators, mand) {
		it.err = fmt.Errorf("mandator %q is not in the allow-list", mand)
		it.data = m.data
		return it
	}
	it.ev, it.err = schemas.Decode(m.data, mand)
	if it.err != nil {
		it.data = m.data
		return it
	}
	it.size = int32(min(lessonSize(it.ev), math.MaxInt32))
	return it
}

// intake routes an arrived message.
func (c *core) intake(it *item) {
	if c.phase == phaseRunning {
		c.rearmBarrier()
		c.noteGap(it)
	}
	if _, ok := c.bySeq[it.seq]; ok && it.seq != 0 {
		// A redelivery of a message we hold (a heartbeat came late). The server takes acks by
		// stream sequence, so the handle we have still settles it; this copy is dropped.
		c.m.redelivered.Inc()
		return
	}
	if c.settledAgain(it) {
		return
	}
	if c.phase == phaseDraining {
		// Nakked only once pulling has stopped: a Nak now would come straight back to the
		// pull that is still being drained.
		c.drainHeld = append(c.drainHeld, it)
		return
	}
	if c.phase != phaseRunning {
		c.signal(ackNak, it)
		return
	}
	c.bySeq[it.seq] = it
	it.arrived = c.now.UnixNano()
	c.m.received.Inc()
	c.countOutstanding(it)
	if it.err != nil {
		c.deadLetterInvalid(it)
		c.openIfBack()
		return
	}
	if !c.parkAtBarrier(it) {
		c.admitValid(it)
	}
	c.openIfBack()
}

// admitValid routes a valid event: into its recovered batch, through a ledger re-read when it is an
// unknown redelivery, or into the gate.
func (c *core) admitValid(it *item) {
	switch {
	case c.attachRecovered(it):
	case it.redelivered:
		c.parkRedelivered(it)
	case len(c.limbo) > 0:
		// Stay behind the redeliveries that wait for the ledger: they may be older events of this lesson.
		c.limbo = append(c.limbo, it)
	default:
		c.admit(it)
	}
}

// deadLetterInvalid copies an invalid event to the dead-letter stream, then terminates it.
func (c *core) deadLetterInvalid(it *item) {
	mandator := it.mandator
	if mandator == "" {
		mandator = invalidMandator
	}
	log := c.log.With(zap.Uint64("streamSeq", it.seq), zap.String("subject", it.subject))
	dl := deadLetterFor(it, it.data, mandator, schemas.ReasonInvalidEvent, it.err.Error(), "")
	c.retry("dead-letter invalid event", log, func() effect { return effect{kind: effPublishDeadLetter, deadLetter: dl} }, func(r result) {
		switch r.kind {
		case errNone:
			log.Warn("invalid event dead-lettered", zap.String("mandator", it.mandator), zap.Error(it.err))
		case errPermanent:
			// Finding 2: never retried forever. The message stays in the input stream (Term does not
			// delete it); the error names it.
			log.Error("dead letter refused by the server; event terminated without a copy", zap.Error(r.err))
			c.m.deadLetterRefused.Inc()
		default:
			c.fail(fmt.Errorf("consumer: dead letter of stream seq %d: %w", it.seq, r.err))
			return
		}
		c.signal(termWith(schemas.ReasonInvalidEvent), it)
		c.m.invalid.WithLabelValues(invalidKind(it)).Inc()
		delete(c.bySeq, it.seq)
	})
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

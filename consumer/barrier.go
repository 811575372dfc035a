package consumer

import (
	"cmp"
	"context"
	"slices"
	"time"

	"go.uber.org/zap"
)

// barrier keeps per-lesson order across crashes and takeovers. Messages that an instance held when
// it died (pending in a group, or waiting behind a batch, with no ledger record) come back only after
// AckWait, in no particular order, while new messages arrive at once: a new update must not overtake
// the create that died with the old instance, and two redeliveries must not swap. So when messages
// start reaching this instance (at start, and again after it held nothing for a while, which is how a
// standby notices a takeover), it asks the consumer how many are outstanding elsewhere (NumAckPending
// minus what it holds) and parks every arriving valid event until that many came back, or twice
// AckWait plus a heartbeat passed (the server looks for expired messages about once per AckWait);
// then it admits the parked events in stream order. Without outstanding
// messages (the normal start) the barrier costs one consumer-info request and holds the first pull
// for its round trip.
type barrier struct {
	state       barrierState
	parked      []*item
	outstanding int
	floor       uint64 // arrivals at or below this stream sequence count as outstanding ones
	deadline    time.Time
	lastArrival time.Time
}

type barrierState int

const (
	barrierUnprobed barrierState = iota // no message seen yet
	barrierProbing                      // consumer info requested
	barrierWaiting                      // waiting for outstanding redeliveries
	barrierOpen                         // steady state
)

// rearmBarrier closes an open barrier when messages arrive after the bridge held nothing for longer
// than a heartbeat: a standby that just became the pinned client, or a bridge whose peer died.
func (b *Bridge) rearmBarrier(now time.Time) {
	br := &b.barrier
	if br.state == barrierOpen && len(b.bySeq) == 0 && now.Sub(br.lastArrival) > b.cfg.Heartbeat {
		br.state = barrierUnprobed
	}
	br.lastArrival = now
}

// parkAtBarrier parks a valid event while the barrier is not open. It returns false when the item may
// go on.
func (b *Bridge) parkAtBarrier(workCtx context.Context, it *item) bool {
	br := &b.barrier
	if br.state == barrierOpen {
		return false
	}
	br.parked = append(br.parked, it)
	if br.state == barrierUnprobed {
		br.state = barrierProbing
		b.probeOutstanding(workCtx)
	}
	return true
}

func (b *Bridge) probeOutstanding(workCtx context.Context) {
	b.workers.Add(1)
	go func() {
		defer b.workers.Done()
		ctx, cancel := context.WithTimeout(workCtx, 10*time.Second)
		info, err := b.topo.consumer.Info(ctx)
		cancel()
		b.post(func() {
			br := &b.barrier
			if br.state != barrierProbing {
				return
			}
			if err != nil {
				// Unknown: assume the worst and wait the full window.
				b.log.Warn("consumer info for the start-up barrier", zap.Error(err))
				br.state, br.outstanding, br.floor = barrierWaiting, 1<<30, ^uint64(0)
				br.deadline = b.now().Add(2*b.ackWait + b.cfg.Heartbeat)
				return
			}
			// Held here already and counted by the server: what we hold from below the floor.
			br.floor = info.Delivered.Stream
			mine := 0
			for seq := range b.bySeq {
				if seq <= br.floor {
					mine++
				}
			}
			br.outstanding = info.NumAckPending - mine
			if br.outstanding <= 0 {
				b.openBarrier(workCtx, "")
				return
			}
			br.state = barrierWaiting
			br.deadline = b.now().Add(2*b.ackWait + b.cfg.Heartbeat)
			b.log.Info("messages of another (dead) instance are outstanding; new events wait for them to come back",
				zap.Int("outstanding", br.outstanding), zap.Int("held", mine), zap.Uint64("upToStreamSeq", br.floor),
				zap.Time("until", br.deadline))
		})
	}()
}

// openBarrier admits the parked events in stream order (publish order).
func (b *Bridge) openBarrier(workCtx context.Context, why string) {
	br := &b.barrier
	if br.state == barrierOpen {
		return
	}
	if why != "" {
		b.log.Info("start-up barrier open", zap.String("why", why), zap.Int("released", len(br.parked)))
	}
	br.state = barrierOpen
	parked := br.parked
	br.parked = nil
	slices.SortFunc(parked, func(x, y *item) int { return cmp.Compare(x.seq, y.seq) })
	for _, it := range parked {
		if b.stopping {
			return
		}
		b.admitValid(workCtx, it)
	}
}

// countOutstanding counts an arriving message against the outstanding ones: redeliveries from below
// the floor, and first deliveries from below it that were on their way to us when the consumer was
// asked. openIfBack opens the barrier once the item is routed.
func (b *Bridge) countOutstanding(it *item) {
	if b.barrier.state == barrierWaiting && it.seq <= b.barrier.floor {
		b.barrier.outstanding--
	}
}

// openIfBack opens a waiting barrier whose outstanding messages are all back. Called after the item
// that completed them was routed, so that it goes first.
func (b *Bridge) openIfBack(workCtx context.Context) {
	if b.barrier.state == barrierWaiting && b.barrier.outstanding <= 0 {
		b.openBarrier(workCtx, "outstanding messages are back")
	}
}

// expireBarrier opens a waiting barrier at its deadline.
func (b *Bridge) expireBarrier(workCtx context.Context, now time.Time) {
	if b.barrier.state == barrierWaiting && !now.Before(b.barrier.deadline) {
		b.openBarrier(workCtx, "waited AckWait for outstanding messages")
	}
}

package consumer

import (
	"cmp"
	"slices"
	"time"

	"go.uber.org/zap"
)

// barrier keeps per-lesson order across crashes, takeovers, pin moves and lost deliveries. Messages
// that an instance held when it died (pending in a group, or waiting behind a batch, with no ledger
// record), or that were lost on their way to a client (a node died with them in transit), come back
// only after AckWait, in no particular order, while new messages arrive at once: a new update must
// not overtake the create that is still out, and two redeliveries must not swap.
//
// The barrier is armed:
//   - at start, when the consumer counts messages outstanding (NumAckPending) before this instance
//     pulls: they are all elsewhere. None (the normal start): open, at no cost (finding 10);
//   - when messages reach an instance again after it held nothing for longer than a heartbeat (a
//     standby that just became the pinned client);
//   - when a delivery skips consumer sequences (noteGap): the deliveries in between went to another
//     instance or were lost on the way;
//   - when this instance loses the pin (lostPin, in core.go), for the time it may get it back.
//
// Armed, the first valid arrival asks the consumer; every valid arrival is then parked until the
// messages outstanding elsewhere (NumAckPending less what this instance holds that the server still
// counts, at or below the delivered sequence: heldUpTo) came back, or a re-check (every heartbeat)
// finds none outstanding any more (their holder settled them), or twice AckWait plus a heartbeat
// passed since the first arrival. Then the parked events are admitted in stream order; when the window ran out with
// messages still outstanding (held by a live instance, or late), through a ledger read, so that the
// other instance's open batches keep their lessons; but when deliveries were skipped while it
// waited, it asks the consumer again with a window of its own (they come back AckWait after they
// were sent). A consumer-info call that fails is repeated
// every barrierRetry within the window instead of holding everything for the whole window.
type barrier struct {
	state       barrierState
	parked      []*item
	outstanding int
	floor       uint64 // arrivals at or below this stream sequence count as outstanding ones
	deadline    time.Time
	lastArrival time.Time
	lastCSeq    uint64 // the highest consumer (delivery) sequence seen: a jump arms the barrier
	cseqKnown   bool   // lastCSeq is set (from the consumer at start)
	regap       bool   // a jump while armed: ask the consumer again before opening
	gen         int    // invalidates the timers of an earlier arming
}

type barrierState int

const (
	barrierUnprobed barrierState = iota // armed, no message seen yet
	barrierProbing                      // consumer info requested
	barrierWaiting                      // waiting for outstanding redeliveries
	barrierOpen                         // steady state
)

const barrierRetry = 250 * time.Millisecond

// probeAtStart asks for the outstanding messages before pulling starts.
func (c *core) probeAtStart() {
	c.retry("consumer info at start", c.log, func() effect { return effect{kind: effConsumerInfo} }, func(r result) {
		if r.kind != errNone {
			c.fail(r.err)
			return
		}
		br := &c.barrier
		br.lastArrival = c.now
		br.lastCSeq, br.cseqKnown = r.info.deliveredC, true
		c.leaseAt = c.now
		if r.info.numAckPending <= 0 {
			br.state = barrierOpen
		} else {
			// Armed: the first message that reaches us asks again and starts the window then
			// (a standby may get its first message long after its start, when the pin moves).
			br.state = barrierUnprobed
			c.log.Info("messages are outstanding at start; the first events that arrive wait for them",
				zap.Int("outstanding", r.info.numAckPending))
		}
		c.phase = phaseRunning
		c.readyAt = c.now
		c.do(effect{kind: effStartPulling}, nil)
		c.log.Info("bridge started", zap.String("stream", c.cfg.InputStream), zap.String("consumer", c.cfg.ConsumerName),
			zap.Duration("ackWait", c.ackWait), zap.Duration("heartbeat", c.heartbeat), zap.Int("maxHeld", c.cfg.MaxHeld),
			zap.Bool("pullWhileFull", c.bounded))
	})
}

func (c *core) waitFor(outstanding int, floor uint64, mine int) {
	br := &c.barrier
	br.gen++
	gen := br.gen
	br.state, br.outstanding, br.floor = barrierWaiting, outstanding, floor
	br.deadline = c.now.Add(c.window())
	c.after(c.heartbeat, func() { c.recheckBarrier(gen) })
	c.log.Info("messages are outstanding elsewhere (another instance, or deliveries lost on the way); new events wait for them",
		zap.Int("outstanding", outstanding), zap.Int("held", mine), zap.Uint64("upToStreamSeq", floor),
		zap.Time("until", br.deadline))
}

// recheckBarrier asks the consumer again, every heartbeat while the barrier waits: the barrier
// opens as soon as nothing is outstanding elsewhere (the messages came back, or the instance that
// holds them settled them), and at the latest when the window is over. Messages still outstanding
// then are held by a live instance (the pin moved while it held them) or are late; the parked
// events go on. (Handing them back with a Nak instead was tried: two live instances, each parked
// behind the other's messages, handed theirs back and got them again, window after window, and
// nothing settled; TestClusterLeaderLoss/ledger/2-instances under load.)
func (c *core) recheckBarrier(gen int) {
	br := &c.barrier
	if br.gen != gen || br.state != barrierWaiting {
		return
	}
	c.do(effect{kind: effConsumerInfo}, func(r result) {
		if br.gen != gen || br.state != barrierWaiting {
			return
		}
		decide := func() {
			if br.gen != gen || br.state != barrierWaiting {
				return
			}
			switch {
			case r.kind == errNone && r.info.numAckPending-c.heldUpTo(r.info.delivered, r.info.ackFloor) <= 0:
				c.openOrReprobe("nothing outstanding elsewhere")
				return
			case !c.now.Before(br.deadline) && br.regap:
				// Deliveries were skipped while it waited (lost on the way, or gone to another
				// instance): they come back AckWait after they were sent, which may be after this
				// window, and may hold earlier events of the lessons parked here (simulation seeds
				// 8400 and 6440: a create lost on the way came back just after the window ran
				// out, and its update had been imported). Asked again, with a window of its own.
				c.log.Info("barrier window over, but deliveries were skipped while it waited; asking the consumer again",
					zap.Int("parked", len(br.parked)))
				br.regap = false
				br.state = barrierProbing
				br.gen++
				c.probeOutstanding(br.gen, c.now.Add(c.window()))
				return
			case !c.now.Before(br.deadline):
				c.openThroughLedger()
				return
			}
			c.after(c.heartbeat, func() { c.recheckBarrier(gen) })
		}
		if r.kind != errNone || !c.now.Before(br.deadline) {
			decide()
			return
		}
		c.decideKnowing(r.info, decide)
	})
}

// heldUpTo counts the messages held here, at or below stream sequence seq, that the server still
// counts among NumAckPending: the barrier takes NumAckPending less these for the messages
// outstanding elsewhere, so a held message that the server no longer counts would let the barrier
// open while one that is really outstanding (its Nak dropped, its delivery lost on the way) is not
// back (simulation seeds 147, 2455, 5554, 8786). Not counted:
//
//   - messages at or below the ack floor (settled);
//   - messages whose final ack was sent (the server counts them settled already, or soon will);
//   - a redelivered message that the instance it was delivered to before may have settled: the
//     server takes an ack by stream sequence from any delivery of the message (nats-server's
//     processAckMsg looks the sequence up in the consumer's pending map), so that instance's
//     acks take it off the count while it is held here. That instance acks only messages of its
//     batches, whose records are in the ledger before the message could come back here (a record
//     landing after its messages' lease ran out is abandoned): so the messages of a recovered
//     record (or of a batch resumed from one while it settles) that a liveness entry names, of one
//     whose record was gone at its re-read, of one waiting for its owner (watched), and held
//     messages that the last ledger listing saw named by such a record. A redelivered message
//     that arrived after the last listing was issued is not known yet (heldUnknown: the barrier
//     reads the ledger before it decides) and is not counted either.
//
// What is not counted is taken for outstanding: the barrier waits longer (until its owner's acks
// or ours take it off the server's count, or the window is over), never less.
func (c *core) heldUpTo(seq, floor uint64) int {
	live := c.liveNamed()
	known, maybe := c.heldElsewhere(live)
	n := 0
	for s, it := range c.bySeq {
		if s > seq || s <= floor || it.acked || it.watched {
			continue
		}
		if it.redelivered && (maybe[s] || (!known[s] && c.mayBeSettledElsewhere(it, live))) {
			continue
		}
		n++
	}
	return n
}

// decideKnowing runs decide (which counts heldUpTo) at once, or after a ledger read when redeliveries
// held here arrived since the last one (heldUnknown): whether another instance's record names them,
// and its owner may settle them, only a listing tells.
func (c *core) decideKnowing(info consumerInfo, decide func()) {
	if c.heldUnknown(info.delivered, info.ackFloor) {
		c.readLedger("barrier ledger read", func([]*record, []uint64) { decide() })
		return
	}
	decide()
}

// heldUnknown reports whether a redelivered message held here at or below seq and above floor is
// in no batch here, named by no recovered record, and arrived after the last ledger listing was
// issued: that listing cannot tell whether another instance's record names it.
func (c *core) heldUnknown(seq, floor uint64) bool {
	known, _ := c.heldElsewhere(c.liveNamed())
	for s, it := range c.bySeq {
		if s <= seq && s > floor && !it.acked && !it.watched && it.redelivered && !known[s] && c.recoverBySeq[s] == nil && !c.listedSince(it) {
			return true
		}
	}
	return false
}

// liveNamed is the set of batch keys that some other instance's liveness entry names (as the last
// ledger listing had them).
func (c *core) liveNamed() map[string]bool {
	named := map[string]bool{}
	for _, e := range c.live {
		for _, k := range e.batches {
			named[k] = true
		}
	}
	return named
}

// heldElsewhere returns the held messages that are in a batch or a recovered record here (known),
// and those of them that another instance may be settling (maybe): see heldUpTo. live is
// liveNamed().
func (c *core) heldElsewhere(live map[string]bool) (known, maybe map[uint64]bool) {
	known, maybe = map[uint64]bool{}, map[uint64]bool{}
	add := func(its []*item, m bool) {
		for _, it := range its {
			known[it.seq] = true
			if m {
				maybe[it.seq] = true
			}
		}
	}
	for k, rc := range c.recovering {
		add(rc.back(), live[k])
	}
	for _, rc := range c.goneRC {
		add(rc.back(), true) // gone at its re-read: most likely settled by its owner
	}
	for k, bt := range c.batches {
		if c.recovering[k] != nil {
			continue
		}
		add(bt.items, bt.fromRecord && bt.state == stateSettling && live[k])
	}
	return known, maybe
}

// mayBeSettledElsewhere is, for a redelivered message in no batch or recovered record here
// (parked at the barrier, waiting for a ledger read, or in the gate), whether a record that a
// liveness entry names has it: a recovered record that names it, or, for one that none does, the
// record the last ledger listing had it in; one that arrived after that listing was issued is not
// known yet. live is liveNamed().
func (c *core) mayBeSettledElsewhere(it *item, live map[string]bool) bool {
	if rc := c.recoverBySeq[it.seq]; rc != nil {
		return live[rc.rec.Key] // a record read already names it
	}
	if !c.listedSince(it) {
		return true
	}
	k := c.namedBy[it.seq]
	return k != "" && live[k]
}

// listedSince reports whether the last ledger listing was issued after it arrived.
func (c *core) listedSince(it *item) bool { return c.liveAt.After(time.Unix(0, it.arrived)) }

// noteGap arms the barrier when a delivery skipped consumer sequences: the deliveries in between
// went to another instance (the pin moved away and back) or were lost on the way (a node died with
// them in transit; they come back after AckWait). Either way they may hold earlier events of the
// lessons that arrive now.
func (c *core) noteGap(it *item) {
	br := &c.barrier
	last := br.lastCSeq
	if it.cseq == 0 || !br.cseqKnown {
		return
	}
	br.lastCSeq = max(last, it.cseq)
	if it.cseq <= last+1 {
		return
	}
	c.m.deliveryGaps.Inc()
	if br.state != barrierOpen {
		br.regap = true // the count being waited for may not include the missing ones
		return
	}
	br.state = barrierUnprobed
	c.log.Info("deliveries skipped (consumer sequence gap); new events wait until the missing ones are back or settled elsewhere",
		zap.Uint64("lastConsumerSeq", last), zap.Uint64("consumerSeq", it.cseq), zap.Uint64("streamSeq", it.seq))
}

// rearmBarrier closes an open barrier when messages arrive after the bridge held nothing for longer
// than a heartbeat: a standby that just became the pinned client, or a bridge whose peer died.
func (c *core) rearmBarrier() {
	br := &c.barrier
	if br.state == barrierOpen && len(c.bySeq) == 0 && c.now.Sub(br.lastArrival) > c.heartbeat {
		br.state = barrierUnprobed
	}
	br.lastArrival = c.now
}

// parkAtBarrier parks a valid event while the barrier is not open. It returns false when the item may
// go on.
func (c *core) parkAtBarrier(it *item) bool {
	br := &c.barrier
	if br.state == barrierOpen {
		return false
	}
	br.parked = append(br.parked, it)
	c.m.barrierParked.Set(float64(len(br.parked)))
	if br.state == barrierUnprobed {
		br.state = barrierProbing
		br.gen++
		c.probeOutstanding(br.gen, c.now.Add(c.window()))
	}
	return true
}

func (c *core) probeOutstanding(gen int, until time.Time) {
	c.do(effect{kind: effConsumerInfo}, func(r result) {
		br := &c.barrier
		if br.state != barrierProbing || br.gen != gen {
			return
		}
		if r.kind != errNone {
			if !c.now.Before(until) {
				c.openBarrier("consumer info failed for the whole window")
				return
			}
			c.log.Warn("consumer info for the barrier; asking again", zap.Duration("in", barrierRetry), zap.Error(r.err))
			c.after(barrierRetry, func() { c.probeOutstanding(gen, until) })
			return
		}
		decide := func() {
			if br.state != barrierProbing || br.gen != gen {
				return
			}
			// Held here already and counted by the server: what we hold from below the floor.
			mine := c.heldUpTo(r.info.delivered, r.info.ackFloor)
			if r.info.numAckPending-mine <= 0 {
				c.openOrReprobe("")
				return
			}
			c.waitFor(r.info.numAckPending-mine, r.info.delivered, mine)
		}
		c.decideKnowing(r.info, decide)
	})
}

// openThroughLedger opens the barrier when its window is over with messages still outstanding
// elsewhere: held by a live instance (the pin moved while it held them) or late. The parked events
// go through a ledger read first, as unknown redeliveries do: the other instance's open batches
// are indexed and keep their lessons, so that newer events of them wait behind those batches.
func (c *core) openThroughLedger() {
	br := &c.barrier
	c.log.Info("barrier open", zap.String("why", "waited the window; messages still outstanding elsewhere, the ledger is read first"),
		zap.Int("released", len(br.parked)))
	br.state, br.regap = barrierOpen, false
	if parked := c.takeParked(); len(parked) > 0 {
		c.limbo = append(c.limbo, parked...)
		c.reload()
	}
}

// takeParked empties the barrier's parked events and returns them in stream order.
func (c *core) takeParked() []*item {
	parked := c.barrier.parked
	c.barrier.parked = nil
	c.m.barrierParked.Set(0)
	slices.SortFunc(parked, func(x, y *item) int { return cmp.Compare(x.seq, y.seq) })
	return parked
}

// openBarrier admits the parked events in stream order (publish order).
func (c *core) openBarrier(why string) {
	br := &c.barrier
	if br.state == barrierOpen {
		return
	}
	if why != "" {
		c.log.Info("barrier open", zap.String("why", why), zap.Int("released", len(br.parked)))
	}
	br.state, br.regap = barrierOpen, false
	parked := c.takeParked()
	for i, it := range parked {
		if c.phase != phaseRunning {
			br.parked = parked[i:] // drained() naks them
			return
		}
		c.admitValid(it)
	}
}

// countOutstanding counts an arriving message against the outstanding ones: redeliveries from below
// the floor, and first deliveries from below it that were on their way to us when the consumer was
// asked. openIfBack opens the barrier once the item is routed.
func (c *core) countOutstanding(it *item) {
	if c.barrier.state == barrierWaiting && it.seq <= c.barrier.floor {
		c.barrier.outstanding--
	}
}

// openIfBack opens a waiting barrier whose outstanding messages are all back. Called after the item
// that completed them was routed, so that it goes first.
func (c *core) openIfBack() {
	if c.barrier.state == barrierWaiting && c.barrier.outstanding <= 0 {
		c.openOrReprobe("outstanding messages are back")
	}
}

// openOrReprobe opens the barrier, unless deliveries were skipped since the consumer was last asked:
// then it asks again (the count it waited for may not include them).
func (c *core) openOrReprobe(why string) {
	br := &c.barrier
	if !br.regap {
		c.openBarrier(why)
		return
	}
	br.regap = false
	br.state = barrierProbing
	br.gen++
	c.probeOutstanding(br.gen, c.now.Add(c.window()))
}

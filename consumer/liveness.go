package consumer

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Owner liveness: telling a live instance's batch from a dead one's.
//
// An instance that gets a recorded batch's messages back (a consumer outage longer than AckWait
// redelivers them to the other instance) cannot tell from the record whether its owner died or is
// alive and working on it. Resubmitting it with its JobIDs imports nothing twice (JobManager
// refuses them as duplicates), but the taker then settles it in_doubt and frees its lessons while
// the owner's batch is in flight; polling an accepted one and settling it beside its owner can
// publish a second, different outcome.
//
// So every instance that works on batches keeps one liveness entry in the ledger bucket, under
// the key livePrefix+<its incarnation id>: the keys of the batches it works on (and of the settled
// ones whose records wait for the ack floor), and the highest ledger revision its own writes have
// landed at (Rev). It is written with a plain put once per heartbeat (not per batch; a put that
// hangs does not hold up the next) and deleted when the instance has nothing left.
//
// A taker whose recovered record came back (recorded and complete, or accepted) does not act on it
// at once: it waits ownerWait and lists the ledger again. An entry whose revision moved meanwhile
// belongs to a live instance. If such an entry names the batch, the taker waits again (it holds
// the messages, heartbeating them, and acts on the record when it changes or goes). When no live
// entry names it (its owner died, stopped, or let it go), the taker claims the record (a
// compare-and-swap write: a live owner that was misjudged finds it taken over at its next write and
// lets go) and only then resubmits or polls it. Decisions use revisions, never the instances'
// clocks.
//
// An entry that does not name the batch is conclusive only when its Rev is at least the record's
// revision. The instance that works on a batch is the last writer of its record (a takeover claims
// it first; a write on a revision that moved is a takeover, finding 4), so it had the batch before
// it learnt that revision, and every entry it composes afterwards names the batch while it works on
// it. An entry with a lower Rev may have been composed before (even land late) and the taker looks
// again; the next put of a live instance lands above the record's revision.

// livePrefix starts the ledger keys of liveness entries (batch records start with "b-").
const livePrefix = "live-"

// liveVersion is the liveness entry format.
const liveVersion = 1

// liveValue is a liveness entry. It carries "key" and "v" like a record, so that a bridge from
// before liveness entries reads it as an empty record of version 1 (which it removes after its
// recovery window) instead of stopping with ErrLedgerFormat.
type liveValue struct {
	Version int       `json:"v"`
	Key     string    `json:"key"`
	Rev     uint64    `json:"rev"`     // the highest ledger revision this instance's own writes landed at
	Written time.Time `json:"written"` // for people reading the bucket; decisions use revisions
	Batches []string  `json:"batches"`
}

// liveEntry is another instance's liveness entry as the last ledger listing had it.
type liveEntry struct {
	rev     uint64 // the entry's revision
	kvRev   uint64 // its Rev
	batches []string
}

// liveSeen is when this instance first saw a liveness entry at its revision (the sweep removes
// those that did not move for ownerWait).
type liveSeen struct {
	rev   uint64
	since time.Time
}

// ownerWait is how long a taker watches a recovered batch's owner before it looks again: a live
// instance's entry moves every heartbeat; the recovery window leaves room for KV writes that are
// slow or lost for a while (a KV leader's election). It is what the takeover of a dead instance's
// batch costs, after its messages came back.
func (c *core) ownerWait() time.Duration { return c.window() }

func isLiveKey(k string) bool { return strings.HasPrefix(k, livePrefix) }

// splitListing separates the liveness entries from the records of a ledger listing and keeps
// them (the latest listing's, issued at at) for the owner checks.
func (c *core) splitListing(raw []rawRecord, at time.Time) ([]rawRecord, error) {
	recs := raw[:0:0]
	live := map[string]liveEntry{}
	for _, e := range raw {
		if !isLiveKey(e.key) {
			recs = append(recs, e)
			continue
		}
		v := liveValue{}
		if err := json.Unmarshal(e.value, &v); err != nil {
			return nil, fmt.Errorf("%w: liveness entry %s is not readable (%v); remove it by hand", ErrLedgerFormat, e.key, err)
		}
		if v.Version != liveVersion || v.Key != e.key {
			return nil, fmt.Errorf("%w: liveness entry %s has version %d and key %q, this bridge reads version %d under its own key; remove it by hand",
				ErrLedgerFormat, e.key, v.Version, v.Key, liveVersion)
		}
		if e.key == c.liveKey {
			continue
		}
		live[e.key] = liveEntry{rev: e.rev, kvRev: v.Rev, batches: v.Batches}
		if s, ok := c.liveSeen[e.key]; !ok || s.rev != e.rev {
			c.liveSeen[e.key] = liveSeen{rev: e.rev, since: at}
		}
	}
	for k := range c.liveSeen {
		if _, ok := live[k]; !ok {
			delete(c.liveSeen, k)
		}
	}
	c.live, c.liveAt = live, at
	return recs, nil
}

// ownKeys are the batches this instance works on: its own, those it took over, and the settled
// ones whose records wait for the ack floor; not recovered records it only watches, nor recorded
// batches it will not submit any more (shutting down).
func (c *core) ownKeys() []string {
	var keys []string
	for k, bt := range c.batches {
		if bt.foreign || bt.dead || (c.phase >= phaseGrace && bt.state == stateRecorded && !bt.submitting) {
			continue
		}
		keys = append(keys, k)
	}
	for k := range c.floorWaits {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}

// maxLivePuts bounds the liveness puts in flight: one that hangs (a node lost with our
// connection) does not hold up the next heartbeat's.
const maxLivePuts = 3

// writeLiveness puts this instance's liveness entry (every heartbeat), or deletes it when the
// instance has nothing left.
func (c *core) writeLiveness() {
	if c.livePuts >= maxLivePuts || c.liveDeleting || c.phase < phaseRunning || c.phase == phaseDone {
		return
	}
	keys := c.ownKeys()
	if len(keys) == 0 {
		if c.liveRev == 0 || c.livePuts > 0 {
			return
		}
		c.liveDeleting = true
		c.do(effect{kind: effLedgerDelete, key: c.liveKey, rev: c.liveRev}, func(r result) {
			c.liveDeleting = false
			if r.kind != errTransient {
				c.liveRev = 0 // gone, or changed (swept and written again: put over next time)
			}
		})
		return
	}
	v, err := json.Marshal(liveValue{Version: liveVersion, Key: c.liveKey, Rev: c.kvRev, Written: c.now, Batches: keys})
	if err != nil {
		c.fail(fmt.Errorf("consumer: encode liveness entry %s: %w", c.liveKey, err))
		return
	}
	c.livePuts++
	c.do(effect{kind: effLedgerPut, key: c.liveKey, value: v}, func(r result) {
		c.livePuts--
		switch r.kind {
		case errNone:
			c.liveRev = max(c.liveRev, r.rev)
			c.noteRev(r.rev)
		case errPermanent:
			c.fail(fmt.Errorf("consumer: write liveness entry %s: %w", c.liveKey, r.err))
		default:
			// Not written (or written without our knowing the revision): the next heartbeat puts it
			// again. Until then a taker may see it still.
			c.m.livenessFailed.Inc()
		}
	})
}

// noteRev takes the revision one of this instance's own ledger writes landed at.
func (c *core) noteRev(rev uint64) { c.kvRev = max(c.kvRev, rev) }

// awaitOwner decides, for a recovered record whose messages came back (resumeFrom: recorded and
// complete, to be resubmitted, or accepted, to be polled and settled), whether it may be taken
// over now. It returns false when it may: no live instance names it. Otherwise it keeps the batch (its lessons held, its messages heartbeated) and looks
// again after ownerWait, through a ledger read: a record that changed is acted on as it is now, a
// record that is gone was settled by its owner.
func (c *core) awaitOwner(rc *recovering) bool {
	bt, key := rc.bt, rc.rec.Key
	if rc.ownerBase != nil {
		if wait := c.ownerWait() - c.liveAt.Sub(rc.ownerAt); wait > 0 {
			c.recheckOwner(rc, wait) // the listing began before the wait was over
			return true
		}
		var owner, unsure string
		var dead []string
		for _, k := range sortedKeys(c.live) {
			e := c.live[k]
			base, ok := rc.ownerBase[k]
			switch {
			case ok && base.rev == e.rev:
				if slices.Contains(e.batches, key) {
					dead = append(dead, k) // did not move: not alive
				}
			case slices.Contains(e.batches, key):
				if owner == "" {
					owner = k
				}
			case e.kvRev < rc.rev:
				if unsure == "" {
					unsure = k // alive, but may have been composed before it had the batch
				}
			}
		}
		if owner == "" && unsure == "" {
			c.m.ownerDead.Inc()
			bt.log.Warn("no live instance works on the recovered batch; taking it over",
				zap.Strings("deadOwners", dead), zap.Duration("watched", c.now.Sub(rc.since)))
			for _, k := range dead {
				c.deleteLive(k, rc.ownerBase[k].rev)
			}
			return false
		}
		switch {
		case owner == "":
			bt.log.Info("a live instance's liveness entry moved too little to tell whether it works on the recorded batch; looking again",
				zap.String("instance", unsure), zap.Int("looks", rc.waits))
		case rc.waits == 1 || rc.waits%10 == 0:
			bt.log.Info("the recorded batch's owner is alive and works on it; waiting", zap.String("owner", owner),
				zap.Int("looks", rc.waits), zap.Duration("watched", c.now.Sub(rc.since)))
		}
	} else {
		rc.since = c.now
		c.m.ownerWaits.Inc()
		var owners []string
		for _, k := range sortedKeys(c.live) {
			if slices.Contains(c.live[k].batches, key) {
				owners = append(owners, k)
			}
		}
		bt.log.Info("a recovered batch's messages came back; checking whether its owner is alive before taking it over",
			zap.String("state", string(bt.state)), zap.Strings("namedBy", owners), zap.Duration("wait", c.ownerWait()),
			zap.Int("events", len(rc.items)))
	}
	rc.waits++
	rc.ownerBase = map[string]liveEntry{}
	for k, e := range c.live {
		rc.ownerBase[k] = e
	}
	rc.ownerAt = c.now
	c.recheckOwner(rc, c.ownerWait())
	return true
}

// claim writes the record of a recovered batch that no live instance works on (compare-and-swap on
// the revision it was watched at) before this instance resubmits or polls it: from then on it is
// the record's last writer, and a misjudged owner finds it taken over at its next write. A record
// that moved or went meanwhile is read again and acted on as it is now (never released here: its
// lessons stay held).
func (c *core) claim(rc *recovering, then func()) {
	bt := rc.bt
	v, err := bt.encodeRecord()
	if err != nil {
		c.fail(fmt.Errorf("consumer: encode ledger record %s: %w", bt.key, err))
		return
	}
	rev := bt.ledgerRev
	c.retry("ledger takeover", bt.log, func() effect { return effect{kind: effLedgerUpdate, key: bt.key, value: v, rev: rev} }, func(r result) {
		if bt.dead || c.batches[bt.key] != bt {
			return
		}
		switch r.kind {
		case errNone:
			bt.ledgerRev = r.rev
			c.noteRev(r.rev)
			then()
		case errConflict, errNotFound:
			bt.log.Info("recovered record changed before this instance could claim it; reading the ledger again",
				zap.Uint64("watchedRevision", rev), zap.Error(r.err))
			bt.foreign = true
			c.goneRC = append(c.goneRC, rc)
			c.reload()
		default:
			c.fail(fmt.Errorf("consumer: ledger takeover %s: %w", bt.key, r.err))
		}
	})
}

// namedLive returns the first other instance whose liveness entry (as the last listing had it)
// names batch key, or "".
func (c *core) namedLive(key string) string {
	for _, k := range sortedKeys(c.live) {
		if slices.Contains(c.live[k].batches, key) {
			return k
		}
	}
	return ""
}

// recheckOwner reads the ledger again after wait and resumes rc from it.
func (c *core) recheckOwner(rc *recovering, wait time.Duration) {
	c.after(wait, func() {
		if rc.bt.dead || c.batches[rc.rec.Key] != rc.bt {
			return
		}
		c.goneRC = append(c.goneRC, rc)
		c.reload()
	})
}

// deleteLive removes another instance's liveness entry that did not move for ownerWait (a dead
// instance's), if it is still at that revision.
func (c *core) deleteLive(key string, rev uint64) {
	if e, ok := c.live[key]; !ok || e.rev != rev {
		return // gone or moved since (removed already, or written again)
	}
	c.log.Info("removing the liveness entry of an instance that is gone", zap.String("entry", key))
	c.deleteRecordOf(key, rev, c.log, func() {})
	delete(c.live, key)
	delete(c.liveSeen, key)
}

// sweepLive removes the liveness entries that did not move for ownerWait.
func (c *core) sweepLive() {
	for _, k := range sortedKeys(c.liveSeen) {
		if s := c.liveSeen[k]; c.liveAt.Sub(s.since) >= c.ownerWait() {
			c.deleteLive(k, s.rev)
		}
	}
}

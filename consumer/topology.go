package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// ErrTopology is wrapped by errors about missing or unsuitable streams, consumer or bucket.
var ErrTopology = errors.New("consumer: topology")

// subjectCovers reports whether the stream subject filter f captures every subject matching want
// (both NATS subject patterns; only the forms used here are decided: literal tokens, '*' and '>').
func subjectCovers(f, want string) bool {
	ft, wt := splitSubject(f), splitSubject(want)
	for i, t := range ft {
		if t == ">" {
			return i < len(wt)
		}
		if i >= len(wt) {
			return false
		}
		if t == "*" {
			if wt[i] == ">" {
				return false
			}
			continue
		}
		if t != wt[i] {
			return false
		}
	}
	return len(ft) == len(wt)
}

func splitSubject(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// ensureStream returns the stream name, creating it when missing (if allowed) and checking that an
// existing one captures want. It never updates an existing stream.
func ensureStream(ctx context.Context, js jetstream.JetStream, name, want string, dupWindow time.Duration, create bool) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if !create {
			return nil, fmt.Errorf("%w: stream %s does not exist and creating it is disabled", ErrTopology, name)
		}
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       name,
			Subjects:   []string{want},
			Storage:    jetstream.FileStorage,
			Duplicates: dupWindow,
		})
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("%w: create stream %s: %v", ErrTopology, name, err)
		}
		if err != nil {
			s, err = js.Stream(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: stream %s: %v", ErrTopology, name, err)
	}
	for _, f := range s.CachedInfo().Config.Subjects {
		if subjectCovers(f, want) {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: stream %s captures %v, not %s", ErrTopology, name, s.CachedInfo().Config.Subjects, want)
}

// outcomeDupWindow is the de-duplication window of the outcome and dead-letter streams the bridge
// creates: a batch resumed after a long outage re-publishes its outcome with the same Nats-Msg-Id,
// and the stream must still remember the first one. Outcomes are few, so a day is cheap.
const outcomeDupWindow = 24 * time.Hour

// topology is what the engine works with once Ensure has run.
type topology struct {
	input    jetstream.Stream
	consumer jetstream.Consumer
	ledger   jetstream.KeyValue
}

func (b *Bridge) ensureTopology(ctx context.Context) (*topology, error) {
	c := b.cfg
	create := *c.EnsureTopology
	in, err := ensureStream(ctx, b.js, c.InputStream, c.ChangesPrefix+".>", 2*time.Minute, create)
	if err != nil {
		return nil, err
	}
	if _, err := ensureStream(ctx, b.js, c.OutcomeStream, c.OutcomesPrefix+".>", outcomeDupWindow, create); err != nil {
		return nil, err
	}
	if _, err := ensureStream(ctx, b.js, c.DeadLetterStream, c.DeadLetterPrefix+".>", outcomeDupWindow, create); err != nil {
		return nil, err
	}
	var cons jetstream.Consumer
	if create {
		cc := jetstream.ConsumerConfig{
			Durable:       c.ConsumerName,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       c.AckWait,
			MaxAckPending: c.MaxHeld + 2*c.PullBatch,
			MaxDeliver:    -1,
			FilterSubject: c.ChangesPrefix + ".>",
			DeliverPolicy: jetstream.DeliverAllPolicy,
		}
		if c.PriorityGroup != "" {
			cc.PriorityPolicy = jetstream.PriorityPolicyPinned
			cc.PriorityGroups = []string{c.PriorityGroup}
			cc.PinnedTTL = c.PinnedTTL
		}
		cons, err = in.CreateOrUpdateConsumer(ctx, cc)
	} else {
		cons, err = in.Consumer(ctx, c.ConsumerName)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: consumer %s on %s: %v", ErrTopology, c.ConsumerName, c.InputStream, err)
	}
	ci := cons.CachedInfo().Config
	if ci.AckPolicy != jetstream.AckExplicitPolicy {
		return nil, fmt.Errorf("%w: consumer %s has ack policy %v, need explicit", ErrTopology, c.ConsumerName, ci.AckPolicy)
	}
	if ci.MaxAckPending > 0 && ci.MaxAckPending <= c.MaxHeld {
		b.log.Warn("consumer MaxAckPending is not above the hold limit; the bridge stalls when it holds that many",
			zap.Int("maxAckPending", ci.MaxAckPending), zap.Int("maxHeld", c.MaxHeld))
	}
	b.ackWait = ci.AckWait
	kv, err := b.js.KeyValue(ctx, c.LedgerBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && create {
		kv, err = b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      c.LedgerBucket,
			Description: "lessonbridge crash-recovery records, one per open batch",
			History:     1,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = b.js.KeyValue(ctx, c.LedgerBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: ledger bucket %s: %v", ErrTopology, c.LedgerBucket, err)
	}
	return &topology{input: in, consumer: cons, ledger: kv}, nil
}

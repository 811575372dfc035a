package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
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

// streamSpec is how the bridge creates a stream it does not find.
type streamSpec struct {
	dupWindow time.Duration
	maxAge    time.Duration // 0: none
	replicas  int
}

// ensureStream returns the stream name, creating it when missing (if allowed) and checking that an
// existing one captures want. It never updates an existing stream; one with fewer replicas than
// spec.replicas is used as it is, with a warning.
func ensureStream(ctx context.Context, js jetstream.JetStream, log *zap.Logger, name, want string, spec streamSpec, create bool) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if !create {
			return nil, fmt.Errorf("%w: stream %s does not exist and creating it is disabled", ErrTopology, name)
		}
		dup := spec.dupWindow
		if spec.maxAge > 0 && dup > spec.maxAge {
			dup = spec.maxAge // the server refuses a duplicate window longer than the max age
		}
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       name,
			Subjects:   []string{want},
			Storage:    jetstream.FileStorage,
			Duplicates: dup,
			MaxAge:     spec.maxAge,
			Replicas:   spec.replicas,
		})
		if err == nil {
			log.Info("stream created", zap.String("stream", name), zap.Int("replicas", spec.replicas),
				zap.Duration("maxAge", spec.maxAge))
		}
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("%w: create stream %s (replicas %d): %v", ErrTopology, name, spec.replicas, err)
		}
		if err != nil {
			s, err = js.Stream(ctx, name)
		}
	} else if err == nil {
		if r := max(s.CachedInfo().Config.Replicas, 1); r < spec.replicas {
			log.Warn("existing stream has fewer replicas than configured; it is used as it is, and losing the node that holds it stops the bridge until it is back",
				zap.String("stream", name), zap.Int("streamReplicas", r), zap.Int("replicas", spec.replicas))
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

// inputDupWindow is the de-duplication window of an input stream the bridge creates.
const inputDupWindow = 2 * time.Minute

// Defaults of the cluster fields of Config, applied by the topology code (see limits).
const (
	// DefaultReplicas is 1: a single server. On a three-node cluster use 3, so that losing a node
	// loses neither an event nor the ledger.
	DefaultReplicas = 1
	// DefaultInputMaxAge bounds an input stream the bridge creates. An event older than this is
	// removed by the server even if the bridge has not settled it yet, so it must cover the longest
	// outage of the bridge or of JobManager that should cost nothing (a long weekend), far above a
	// batch's own life (PollTimeout, default 30m). Settled events stay until then too, for audits
	// and for the bodies of dead letters.
	DefaultInputMaxAge = 7 * 24 * time.Hour
	// DefaultOutcomeMaxAge bounds an outcome stream the bridge creates: downstream consumers read
	// outcomes within minutes; a month leaves room for a consumer that was down over a holiday and
	// for looking back at recent batches.
	DefaultOutcomeMaxAge = 30 * 24 * time.Hour
	// DefaultDeadLetterMaxAge bounds a dead-letter stream the bridge creates: dead letters wait for
	// a person to clarify and replay them, which can take weeks; a quarter is the usual horizon.
	DefaultDeadLetterMaxAge = 90 * 24 * time.Hour
	// DefaultLedgerMarkerTTL is how long the removal marker of a settled batch's ledger record stays
	// in the bucket's stream before the server removes it: long enough for a watcher or a second
	// instance to see the removal as such, short enough that the bucket holds little more than the
	// open batches.
	DefaultLedgerMarkerTTL = time.Minute
)

// minMarkerTTL is the server's smallest per-message TTL.
const minMarkerTTL = time.Second

// limits are the cluster fields of a Config with their defaults applied.
type limits struct {
	replicas                           int
	inputMaxAge, outcomeMaxAge, dlqAge time.Duration // 0: none
	markerTTL                          time.Duration
}

// MinInputMaxAge is the smallest InputMaxAge c accepts: twice the longest life of a batch
// (PollTimeout + SubmitMaxElapsed + AckWait, defaults applied), since the server removes an event
// older than the max age even while its batch is still open.
func (c Config) MinInputMaxAge() time.Duration {
	d := c.Defaults()
	return 2 * (d.PollTimeout + d.SubmitMaxElapsed + d.AckWait)
}

// limits applies the defaults of the cluster fields and checks them, naming field and value.
func (c Config) limits() (limits, error) {
	var errs []error
	bad := func(field string, v any, why string) { errs = append(errs, fmt.Errorf("%s %v: %s", field, v, why)) }
	l := limits{replicas: c.Replicas, markerTTL: c.LedgerMarkerTTL}
	if l.replicas == 0 {
		l.replicas = DefaultReplicas
	}
	if l.replicas < 1 || l.replicas > 5 {
		bad("Replicas", c.Replicas, "must be 1-5 (JetStream's limit)")
	}
	age := func(field string, v, def, min time.Duration, why string) time.Duration {
		switch {
		case v == 0:
			return def
		case v < 0:
			return 0
		case v < min:
			bad(field, v, why)
		}
		return v
	}
	minIn := c.MinInputMaxAge()
	l.inputMaxAge = age("InputMaxAge", c.InputMaxAge, DefaultInputMaxAge, minIn,
		fmt.Sprintf("must be at least %v, twice a batch's life (PollTimeout + SubmitMaxElapsed + AckWait): the server drops older events even before they are settled", minIn))
	l.outcomeMaxAge = age("OutcomeMaxAge", c.OutcomeMaxAge, DefaultOutcomeMaxAge, outcomeDupWindow,
		fmt.Sprintf("must be at least %v, the outcome de-duplication window", outcomeDupWindow))
	l.dlqAge = age("DeadLetterMaxAge", c.DeadLetterMaxAge, DefaultDeadLetterMaxAge, outcomeDupWindow,
		fmt.Sprintf("must be at least %v, the dead-letter de-duplication window", outcomeDupWindow))
	switch {
	case l.markerTTL == 0:
		l.markerTTL = DefaultLedgerMarkerTTL
	case l.markerTTL < minMarkerTTL:
		bad("LedgerMarkerTTL", c.LedgerMarkerTTL, fmt.Sprintf("must be at least %v (the server's smallest message TTL)", minMarkerTTL))
	}
	if len(errs) > 0 {
		return l, fmt.Errorf("consumer: invalid config: %w", errors.Join(errs...))
	}
	return l, nil
}

// topology is what the engine works with once Ensure has run.
type topology struct {
	input    jetstream.Stream
	consumer jetstream.Consumer
	ledger   jetstream.KeyValue // a *ledgerKV: Delete leaves nothing behind for long
}

func (b *Bridge) ensureTopology(ctx context.Context) (*topology, error) {
	c := b.cfg
	lim, err := c.limits()
	if err != nil {
		return nil, err
	}
	create := *c.EnsureTopology
	in, err := ensureStream(ctx, b.js, b.log, c.InputStream, c.ChangesPrefix+".>",
		streamSpec{dupWindow: inputDupWindow, maxAge: lim.inputMaxAge, replicas: lim.replicas}, create)
	if err != nil {
		return nil, err
	}
	if _, err := ensureStream(ctx, b.js, b.log, c.OutcomeStream, c.OutcomesPrefix+".>",
		streamSpec{dupWindow: outcomeDupWindow, maxAge: lim.outcomeMaxAge, replicas: lim.replicas}, create); err != nil {
		return nil, err
	}
	if _, err := ensureStream(ctx, b.js, b.log, c.DeadLetterStream, c.DeadLetterPrefix+".>",
		streamSpec{dupWindow: outcomeDupWindow, maxAge: lim.dlqAge, replicas: lim.replicas}, create); err != nil {
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
			// Replicas 0: as many as the input stream has (a consumer cannot have more).
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
	kv, err := ensureLedger(ctx, b.js, b.log, c.LedgerBucket, lim, create)
	if err != nil {
		return nil, err
	}
	return &topology{input: in, consumer: cons, ledger: kv}, nil
}

// ensureLedger opens the ledger bucket, creating it when missing (if allowed) with lim.replicas and
// the server's marker TTL, and wraps it so that Delete removes a record for good.
func ensureLedger(ctx context.Context, js jetstream.JetStream, log *zap.Logger, bucket string, lim limits, create bool) (*ledgerKV, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && create {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         bucket,
			Description:    "lessonbridge crash-recovery records, one per open batch",
			History:        1,
			Replicas:       lim.replicas,
			LimitMarkerTTL: lim.markerTTL,
		})
		if err == nil {
			log.Info("ledger bucket created", zap.String("ledgerBucket", bucket), zap.Int("replicas", lim.replicas),
				zap.Duration("markerTtl", lim.markerTTL))
		}
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: ledger bucket %s: %v", ErrTopology, bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: ledger bucket %s status: %v", ErrTopology, bucket, err)
	}
	l := &ledgerKV{KeyValue: kv, log: log, bucket: bucket}
	var si *jetstream.StreamInfo
	if ks, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		si = ks.StreamInfo()
	}
	if si != nil {
		if r := max(si.Config.Replicas, 1); r < lim.replicas {
			log.Warn("existing ledger bucket has fewer replicas than configured; it is used as it is, and losing the node that holds it stops the bridge until it is back",
				zap.String("ledgerBucket", bucket), zap.Int("bucketReplicas", r), zap.Int("replicas", lim.replicas))
		}
		if si.Config.AllowMsgTTL && si.Config.SubjectDeleteMarkerTTL > 0 {
			l.markerTTL = lim.markerTTL
		} else {
			// A bucket made without a marker TTL (by an older bridge or by hand): purge each removed
			// record's subject instead, so that the bucket still holds only open batches.
			s, err := js.Stream(ctx, si.Config.Name)
			if err != nil {
				return nil, fmt.Errorf("%w: ledger bucket %s stream %s: %v", ErrTopology, bucket, si.Config.Name, err)
			}
			l.stream = s
			if len(si.Config.Subjects) > 0 {
				l.subjectPrefix = strings.TrimSuffix(si.Config.Subjects[0], ">")
			}
			log.Info("existing ledger bucket has no marker TTL; settled records are purged from its stream instead",
				zap.String("ledgerBucket", bucket), zap.String("stream", si.Config.Name))
		}
	}
	return l, nil
}

// ledgerKV is the ledger bucket. Delete removes a record so that the bucket's stream does not keep
// a message per settled batch: with the server's marker TTL (buckets the bridge creates) the record
// is purged with a marker the server drops after markerTTL; otherwise the record's delete marker is
// purged from the stream right away. Every other method is the bucket's own.
type ledgerKV struct {
	jetstream.KeyValue
	log           *zap.Logger
	bucket        string
	markerTTL     time.Duration    // > 0: purge with this marker TTL
	stream        jetstream.Stream // markerTTL == 0: the bucket's stream, purged by subject
	subjectPrefix string           // "$KV.<bucket>." of that stream
	purgeWarned   atomic.Bool
}

// Delete removes key; with jetstream.LastRevision only if the record is still at that revision
// (the same contract as jetstream.KeyValue.Delete, which it replaces).
func (l *ledgerKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	if l.markerTTL > 0 {
		return l.KeyValue.Purge(ctx, key, append(opts, jetstream.PurgeTTL(l.markerTTL))...)
	}
	if err := l.KeyValue.Delete(ctx, key, opts...); err != nil {
		return err
	}
	if l.stream == nil || l.subjectPrefix == "" {
		return nil
	}
	// The record is gone already; the purge only saves space, so its failure is no failure of Delete.
	if err := l.stream.Purge(ctx, jetstream.WithPurgeSubject(l.subjectPrefix+key)); err != nil && l.purgeWarned.CompareAndSwap(false, true) {
		l.log.Warn("cannot purge settled ledger records; the bucket keeps a delete marker per settled batch (warned once)",
			zap.String("ledgerBucket", l.bucket), zap.String("batchKey", key), zap.Error(err))
	}
	return nil
}

// ErrNoLeader is wrapped by CheckLeaders' errors when JetStream has no leader for a stream or
// consumer the bridge needs (a NATS cluster electing one, or too many nodes down).
var ErrNoLeader = errors.New("consumer: no JetStream leader")

// CheckLeaders reports whether JetStream has a leader for the input stream, the bridge's consumer
// and the ledger bucket's stream of cfg (defaults applied; names only are used). It returns nil when
// all three have one (a single server always leads its own), else an error that names the first one
// without a leader: wrapping ErrNoLeader when the server said so, and the request's error when no
// answer came (while a cluster elects a leader, requests about that stream go unanswered). It asks
// the server three times; bound it with ctx.
func CheckLeaders(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	c := cfg.Defaults()
	check := func(what string, ci *jetstream.ClusterInfo, err error) error {
		switch {
		case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)):
			return fmt.Errorf("consumer: %s: no answer from JetStream (no leader, or no server reachable): %w", what, err)
		case err != nil:
			return fmt.Errorf("consumer: %s: %w", what, err)
		case ci != nil && ci.Leader == "":
			return fmt.Errorf("%w for %s (cluster %s)", ErrNoLeader, what, ci.Name)
		}
		return nil
	}
	what := "input stream " + c.InputStream
	s, err := js.Stream(ctx, c.InputStream)
	var ci *jetstream.ClusterInfo
	if err == nil {
		ci = s.CachedInfo().Cluster
	}
	if err := check(what, ci, err); err != nil {
		return err
	}
	what = "consumer " + c.ConsumerName + " on " + c.InputStream
	cons, err := s.Consumer(ctx, c.ConsumerName)
	ci = nil
	if err == nil {
		ci = cons.CachedInfo().Cluster
	}
	if err := check(what, ci, err); err != nil {
		return err
	}
	ls := "KV_" + c.LedgerBucket
	what = "ledger bucket " + c.LedgerBucket + " (stream " + ls + ")"
	l, err := js.Stream(ctx, ls)
	ci = nil
	if err == nil {
		ci = l.CachedInfo().Cluster
	}
	return check(what, ci, err)
}

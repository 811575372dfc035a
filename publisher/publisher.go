package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lessonbridge/lessonbridge/schemas"
)

// DefaultTimeout bounds a publish whose ctx has no deadline. For PublishChanges it bounds the wait
// for the next confirmation, not the whole run.
const DefaultTimeout = 10 * time.Second

// DefaultWindow is the number of unconfirmed publishes PublishChanges allows when given window <= 0.
const DefaultWindow = 256

// maxErrorHeader is the largest Lessonbridge-Error header value in bytes.
const maxErrorHeader = 4 << 10

// ErrInvalid is wrapped by every error about an argument (mandator, status, id, subjects). Nothing
// was published when it is returned, and repeating the call cannot help.
var ErrInvalid = errors.New("invalid argument")

// Subjects are the subject prefixes the publisher appends mandator (and status) tokens to.
type Subjects struct {
	// Changes is the prefix of lesson-change subjects, <Changes>.<mandator>.
	Changes string
	// Outcomes is the prefix of outcome subjects, <Outcomes>.<mandator>.<status>.
	Outcomes string
	// DeadLetter is the prefix of dead-letter subjects, <DeadLetter>.<mandator>.
	DeadLetter string
}

// DefaultSubjects returns the contract's prefixes: lessons.changes, lessons.outcomes and lessons.deadletter.
func DefaultSubjects() Subjects {
	return Subjects{Changes: "lessons.changes", Outcomes: "lessons.outcomes", DeadLetter: "lessons.deadletter"}
}

// Validate reports whether every prefix is a literal subject: non-empty tokens separated by single
// dots, without wildcards or whitespace.
func (s Subjects) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"changes", s.Changes}, {"outcomes", s.Outcomes}, {"deadletter", s.DeadLetter},
	} {
		if err := validPrefix(f.v); err != nil {
			return fmt.Errorf("publisher: %w: %s subject prefix %q: %v", ErrInvalid, f.name, f.v, err)
		}
	}
	return nil
}

func validPrefix(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" {
			return errors.New("empty token")
		}
		if tok == "*" || tok == ">" || strings.ContainsAny(tok, "*>") {
			return errors.New("wildcard")
		}
		if strings.IndexFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return errors.New("whitespace or control character")
		}
	}
	return nil
}

// Option configures a Publisher.
type Option func(*Publisher) error

// WithSubjects replaces DefaultSubjects. The prefixes are validated (see Subjects.Validate).
func WithSubjects(s Subjects) Option {
	return func(p *Publisher) error {
		if err := s.Validate(); err != nil {
			return err
		}
		p.subjects = s
		return nil
	}
}

// Publisher publishes lesson changes, outcomes and dead letters to JetStream. Create it with New; it
// is safe for concurrent use, and holds no resources of its own.
type Publisher struct {
	js       jetstream.JetStream
	subjects Subjects
}

// New returns a Publisher on js with DefaultSubjects unless WithSubjects says otherwise.
func New(js jetstream.JetStream, opts ...Option) (*Publisher, error) {
	if js == nil {
		return nil, fmt.Errorf("publisher: %w: nil JetStream", ErrInvalid)
	}
	p := &Publisher{js: js, subjects: DefaultSubjects()}
	for _, o := range opts {
		if err := o(p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Subjects returns the subject prefixes in use.
func (p *Publisher) Subjects() Subjects { return p.subjects }

// ChangeSubject returns <Changes>.<mandator>, or an error wrapping ErrInvalid for a bad mandator.
func (p *Publisher) ChangeSubject(mandator string) (string, error) {
	if err := checkMandator(mandator); err != nil {
		return "", err
	}
	return p.subjects.Changes + "." + mandator, nil
}

// checkMandator enforces the contract's mandator token [A-Za-z0-9_-]{1,64}.
func checkMandator(m string) error {
	ok := len(m) >= 1 && len(m) <= 64
	for i := 0; ok && i < len(m); i++ {
		c := m[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	if !ok {
		return fmt.Errorf("publisher: %w: mandator %q must match [A-Za-z0-9_-]{1,64}", ErrInvalid, m)
	}
	return nil
}

// checkMsgID rejects ids that cannot be a Nats-Msg-Id header value.
func checkMsgID(id string) error {
	if id == "" {
		return fmt.Errorf("publisher: %w: empty message id", ErrInvalid)
	}
	if strings.IndexFunc(id, unicode.IsControl) >= 0 || !utf8.ValidString(id) {
		return fmt.Errorf("publisher: %w: message id %q has control characters or invalid UTF-8", ErrInvalid, id)
	}
	return nil
}

// withDefaultTimeout gives a ctx without deadline the DefaultTimeout.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// publish sends msg with Nats-Msg-Id id and waits for the PubAck.
func (p *Publisher) publish(ctx context.Context, msg *nats.Msg, id string) (*jetstream.PubAck, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	ack, err := p.js.PublishMsg(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("publisher: publish %s (id %s): %w", msg.Subject, id, err)
	}
	return ack, nil
}

// PublishChange marshals ev and publishes it to <Changes>.<mandator> with Nats-Msg-Id = ev.ID, waiting
// for the PubAck. ev.ID must be set, and ev.Data.Mandator, when set, must equal mandator. The event is
// not validated further: the bridge dead-letters what it cannot import.
func (p *Publisher) PublishChange(ctx context.Context, mandator string, ev *schemas.LessonChange) (*jetstream.PubAck, error) {
	if ev == nil {
		return nil, fmt.Errorf("publisher: %w: nil event", ErrInvalid)
	}
	if ev.Data.Mandator != "" && ev.Data.Mandator != mandator {
		return nil, fmt.Errorf("publisher: %w: event %s has data.mandator %q, publishing for mandator %q",
			ErrInvalid, ev.ID, ev.Data.Mandator, mandator)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("publisher: encode event %s: %w", ev.ID, err)
	}
	return p.PublishRawChange(ctx, mandator, ev.ID, body)
}

// PublishRawChange publishes body as it is to <Changes>.<mandator> with Nats-Msg-Id = id and waits for
// the PubAck. id must be non-empty and free of control characters.
func (p *Publisher) PublishRawChange(ctx context.Context, mandator, id string, body []byte) (*jetstream.PubAck, error) {
	subj, err := p.ChangeSubject(mandator)
	if err != nil {
		return nil, err
	}
	if err := checkMsgID(id); err != nil {
		return nil, err
	}
	return p.publish(ctx, &nats.Msg{Subject: subj, Data: body}, id)
}

// RawChange is a pre-encoded lesson-change event for PublishChanges.
type RawChange struct {
	// Mandator picks the subject <Changes>.<Mandator>.
	Mandator string
	// ID is the Nats-Msg-Id, normally the event's CloudEvents id.
	ID string
	// Body is published as it is.
	Body []byte
}

// Counts tells what PublishChangesCounted had confirmed by JetStream.
type Counts struct {
	// Stored is the number of publishes stored as new messages.
	Stored int
	// Duplicates is the number of publishes JetStream recognised by Nats-Msg-Id as repeats.
	Duplicates int
}

// PublishChanges publishes changes in order with PublishMsgAsync, with at most window (DefaultWindow
// when <= 0) unconfirmed at a time, and calls progress (when non-nil) with the number confirmed so
// far as confirmations arrive. It returns nil once all are confirmed. Every change is checked before
// the first is published; a bad one fails the call with ErrInvalid and nothing published.
//
// On the first publish error it stops publishing, waits for the outstanding confirmations, and
// returns that error. When ctx has no deadline, a wait of DefaultTimeout for the next confirmation
// fails the call. On ctx's end it returns ctx's error at once; outstanding publishes may still be
// stored.
func (p *Publisher) PublishChanges(ctx context.Context, changes []RawChange, window int, progress func(done int)) error {
	_, err := p.PublishChangesCounted(ctx, changes, window, progress)
	return err
}

// PublishChangesCounted is PublishChanges that also reports how many publishes were stored and how
// many were duplicates, as far as they were confirmed (also when it returns an error).
func (p *Publisher) PublishChangesCounted(ctx context.Context, changes []RawChange, window int, progress func(done int)) (Counts, error) {
	var counts Counts
	subjects := make([]string, len(changes))
	for i, c := range changes {
		subj, err := p.ChangeSubject(c.Mandator)
		if err == nil {
			err = checkMsgID(c.ID)
		}
		if err != nil {
			return counts, fmt.Errorf("change %d: %w", i, err)
		}
		subjects[i] = subj
	}
	if window <= 0 {
		window = DefaultWindow
	}
	_, hasDeadline := ctx.Deadline()

	type inflight struct {
		idx int
		f   jetstream.PubAckFuture
	}
	queue := make([]inflight, 0, min(window, len(changes)))
	var firstErr error
	done := 0

	// await waits for the oldest outstanding publish and records its result.
	await := func() error {
		in := queue[0]
		queue = queue[1:]
		var idle <-chan time.Time
		if !hasDeadline {
			t := time.NewTimer(DefaultTimeout)
			defer t.Stop()
			idle = t.C
		}
		select {
		case ack := <-in.f.Ok():
			if ack.Duplicate {
				counts.Duplicates++
			} else {
				counts.Stored++
			}
			done++
			if progress != nil {
				progress(done)
			}
		case err := <-in.f.Err():
			if firstErr == nil {
				firstErr = fmt.Errorf("publisher: publish %s (id %s): %w", subjects[in.idx], changes[in.idx].ID, err)
			}
		case <-idle:
			return fmt.Errorf("publisher: publish %s (id %s): no confirmation within %s",
				subjects[in.idx], changes[in.idx].ID, DefaultTimeout)
		case <-ctx.Done():
			return fmt.Errorf("publisher: publish changes: %w", ctx.Err())
		}
		return nil
	}

	for i, c := range changes {
		if err := ctx.Err(); err != nil {
			return counts, fmt.Errorf("publisher: publish changes: %w", err)
		}
		for len(queue) >= window && firstErr == nil {
			if err := await(); err != nil {
				return counts, err
			}
		}
		if firstErr != nil {
			break
		}
		msg := &nats.Msg{Subject: subjects[i], Data: c.Body, Header: nats.Header{jetstream.MsgIDHeader: []string{c.ID}}}
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithStallWait(DefaultTimeout))
		if err != nil {
			firstErr = fmt.Errorf("publisher: publish %s (id %s): %w", subjects[i], c.ID, err)
			break
		}
		queue = append(queue, inflight{idx: i, f: f})
	}
	for len(queue) > 0 {
		if err := await(); err != nil {
			return counts, err
		}
	}
	return counts, firstErr
}

// PublishOutcome publishes o to <Outcomes>.<mandator>.<status> (from o.Data) with Nats-Msg-Id = o.ID
// and returns after JetStream confirmed it. A repeat of the same o.ID within the stream's duplicate
// window is not stored again: the PubAck then has Duplicate set, which is not an error.
func (p *Publisher) PublishOutcome(ctx context.Context, o *schemas.Outcome) (*jetstream.PubAck, error) {
	if o == nil {
		return nil, fmt.Errorf("publisher: %w: nil outcome", ErrInvalid)
	}
	if err := checkMandator(o.Data.Mandator); err != nil {
		return nil, err
	}
	if o.Data.Status != schemas.StatusSucceeded && o.Data.Status != schemas.StatusFailed {
		return nil, fmt.Errorf("publisher: %w: outcome status %q must be %s or %s",
			ErrInvalid, o.Data.Status, schemas.StatusSucceeded, schemas.StatusFailed)
	}
	if err := checkMsgID(o.ID); err != nil {
		return nil, err
	}
	body, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("publisher: encode outcome %s: %w", o.ID, err)
	}
	subj := p.subjects.Outcomes + "." + o.Data.Mandator + "." + o.Data.Status
	return p.publish(ctx, &nats.Msg{Subject: subj, Data: body}, o.ID)
}

// InvalidMandator is the DeadLetter.Mandator for events whose subject names no valid mandator: they
// go to <DeadLetter>._invalid.mandator (contract section 5), two tokens after the prefix, so the subject
// can never be a mandator's own dead-letter subject.
const InvalidMandator = "_invalid.mandator"

// DeadLetter is an event the bridge will not import (contract section 5).
type DeadLetter struct {
	// Mandator picks the subject <DeadLetter>.<Mandator>; InvalidMandator for an event whose subject
	// names no valid mandator.
	Mandator string
	// Body is the original message's bytes, published as they are (cut when too large, see
	// PublishDeadLetter).
	Body []byte
	// Reason is invalid_event or an outcome reason; required.
	Reason string
	// Error says what was wrong: a schema violation or JobManager's ErrorMessages.
	Error string
	// BatchID is the JobManager batch; empty when there was none (the header is then omitted).
	BatchID string
	// Subject and StreamSeq say where the original came from; both required.
	Subject   string
	StreamSeq uint64
	// StoredAt is when the input stream stored the original (jetstream.MsgMetadata.Timestamp);
	// required. With Subject and StreamSeq it identifies the message even when the input stream was
	// deleted and re-created and its sequences started again at 1.
	StoredAt time.Time
}

// MsgID is the dead letter's Nats-Msg-Id: "lessonbridge-dl-<Subject>-<StreamSeq>-<StoredAt in Unix
// nanoseconds>". A repeat after a crash has the same id and is de-duplicated; another message never has it.
func (dl DeadLetter) MsgID() string {
	return "lessonbridge-dl-" + sanitize(dl.Subject, 0) + "-" + strconv.FormatUint(dl.StreamSeq, 10) + "-" +
		strconv.FormatInt(dl.StoredAt.UnixNano(), 10)
}

// PublishDeadLetter publishes dl.Body to <DeadLetter>.<mandator> with the headers Lessonbridge-Reason,
// -Error, -Batch-Id (omitted when empty), -Subject and -Stream-Seq and Nats-Msg-Id dl.MsgID(), so
// that a repeat after a crash is de-duplicated, and returns after JetStream confirmed it. Header values
// have control characters (newlines included) replaced by spaces; Error is cut to 4 KiB. A message too
// large for the server's max_payload keeps its headers and a cut body, with Lessonbridge-Truncated
// naming the original size: a dead letter never fails for its size.
func (p *Publisher) PublishDeadLetter(ctx context.Context, dl DeadLetter) (*jetstream.PubAck, error) {
	if dl.Mandator != InvalidMandator {
		if err := checkMandator(dl.Mandator); err != nil {
			return nil, err
		}
	}
	if dl.Reason == "" {
		return nil, fmt.Errorf("publisher: %w: dead letter without reason", ErrInvalid)
	}
	if dl.Subject == "" || dl.StreamSeq == 0 {
		return nil, fmt.Errorf("publisher: %w: dead letter needs the original subject and stream sequence (got %q, %d)",
			ErrInvalid, dl.Subject, dl.StreamSeq)
	}
	if dl.StoredAt.IsZero() {
		return nil, fmt.Errorf("publisher: %w: dead letter of %s seq %d needs the original's stream timestamp (StoredAt)",
			ErrInvalid, dl.Subject, dl.StreamSeq)
	}
	h := nats.Header{}
	h.Set(schemas.HeaderReason, sanitize(dl.Reason, 0))
	h.Set(schemas.HeaderError, sanitize(dl.Error, maxErrorHeader))
	if dl.BatchID != "" {
		h.Set(schemas.HeaderBatchID, sanitize(dl.BatchID, 0))
	}
	h.Set(schemas.HeaderSubject, sanitize(dl.Subject, 0))
	h.Set(schemas.HeaderStreamSeq, strconv.FormatUint(dl.StreamSeq, 10))
	id := dl.MsgID()
	body := dl.Body
	if limit := p.js.Conn().MaxPayload(); limit > 0 {
		h.Set(jetstream.MsgIDHeader, id)
		h.Set(schemas.HeaderTruncated, strconv.Itoa(len(body)))
		room := int(limit) - headerSize(h) - truncateSlack
		if len(body) > room {
			body = body[:max(room, 0)]
		} else {
			h.Del(schemas.HeaderTruncated)
		}
	}
	msg := &nats.Msg{Subject: p.subjects.DeadLetter + "." + dl.Mandator, Data: body, Header: h}
	return p.publish(ctx, msg, id)
}

// truncateSlack is room left below max_payload for what the client adds to a message's size beyond
// the headers headerSize counts.
const truncateSlack = 64

// headerSize is the size of h as the NATS protocol encodes it ("NATS/1.0\r\n", "Key: value\r\n" per
// value, "\r\n").
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n
}

// sanitize makes s a single-line header value: invalid UTF-8 and control characters become spaces,
// and when limit > 0 the result is cut to at most limit bytes on a rune boundary, ending in "…".
func sanitize(s string, limit int) string {
	s = strings.ToValidUTF8(s, " ")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if limit > 0 && len(s) > limit {
		const ellipsis = "…"
		cut := limit - len(ellipsis)
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + ellipsis
	}
	return s
}

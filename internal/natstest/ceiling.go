package natstest

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Ceiling measures raw JetStream consume+ack, the throughput benchmarks' ceiling: cons (an
// explicit-ack pull consumer over want messages already stored) is consumed with Consume and
// PullMaxMessages(pull), every message acked, until all are acked and the consumer has nothing
// pending or unacknowledged. It returns the time from the Consume call to drained.
func Ceiling(cons jetstream.Consumer, want int, pull int, timeout time.Duration) (time.Duration, error) {
	var acked atomic.Int64
	done := make(chan struct{})
	start := time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if acked.Add(1) == int64(want) {
			close(done)
		}
	}, jetstream.PullMaxMessages(pull))
	if err != nil {
		return 0, err
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-time.After(timeout):
		return 0, fmt.Errorf("ceiling: %d of %d acked within %v", acked.Load(), want, timeout)
	}
	if err := WaitDrained(cons, timeout); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// WaitDrained asks the consumer every 2 ms until nothing is pending or unacknowledged.
func WaitDrained(cons jetstream.Consumer, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ci, err := cons.Info(context.Background())
		if err == nil && ci.NumAckPending == 0 && ci.NumPending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("consumer not drained within %v: %w", timeout, err)
			}
			return fmt.Errorf("consumer not drained within %v: %d pending, %d unacknowledged", timeout, ci.NumPending, ci.NumAckPending)
		}
		time.Sleep(2 * time.Millisecond) // polling the server, as require.Eventually would
	}
}

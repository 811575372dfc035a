package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lessonbridge/lessonbridge/consumer"
)

// Environment variables of the test fault hooks. They exist for the chaos test (chaos_test.go) and
// are not part of the contract. Only a binary built with -tags lessonbridge_faults reads them
// (fault_on.go); the production binary has no fault hook at all (fault_off.go), and the linker drops
// this file's code from it because nothing there calls it.
const (
	// envFaultKillAfterSubmit is a probability in [0, 1]: after each submit that JobManager accepted,
	// and before the ledger records the acceptance, the process kills itself with SIGKILL with this
	// probability. That is the one window a crash leaves a batch "in doubt".
	envFaultKillAfterSubmit = "LESSONBRIDGE_FAULT_KILL_AFTER_SUBMIT"
	// envFaultSeed seeds the draws of the fault hooks (an integer); unset means a random seed.
	envFaultSeed = "LESSONBRIDGE_FAULT_SEED"
)

// faultHooksFrom builds the fault hooks from getenv. A firing hook says so on w (the log of the
// process), then calls kill, which ends the process; if kill returns, the hook returns an error so
// that the engine abandons the batch as a crash would.
func faultHooksFrom(getenv func(string) string, w io.Writer, kill func()) (consumer.Hooks, error) {
	v := strings.TrimSpace(getenv(envFaultKillAfterSubmit))
	if v == "" {
		return consumer.Hooks{}, nil
	}
	p, err := strconv.ParseFloat(v, 64)
	if err != nil || p < 0 || p > 1 || p != p {
		return consumer.Hooks{}, fmt.Errorf("%s=%q: want a probability in [0, 1]", envFaultKillAfterSubmit, v)
	}
	seed := uint64(time.Now().UnixNano())
	if s := strings.TrimSpace(getenv(envFaultSeed)); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return consumer.Hooks{}, fmt.Errorf("%s=%q: want an integer", envFaultSeed, s)
		}
		seed = uint64(n)
	}
	var mu sync.Mutex // AfterSubmit runs in concurrent submit workers
	rnd := rand.New(rand.NewPCG(seed, 0xfa17))
	return consumer.Hooks{
		AfterSubmit: func(batchID string) error {
			mu.Lock()
			hit := p > 0 && rnd.Float64() < p
			mu.Unlock()
			if !hit {
				return nil
			}
			fmt.Fprintf(w, "lessonbridge: fault hook: SIGKILL after the submit of batch %s, before the ledger update\n", batchID)
			kill()
			return fmt.Errorf("fault hook: killed after the submit of batch %s", batchID)
		},
	}, nil
}

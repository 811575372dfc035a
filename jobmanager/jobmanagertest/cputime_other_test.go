//go:build !unix

package jobmanagertest

import "time"

// processCPU is not available here: ok is false.
func processCPU() (time.Duration, bool) { return 0, false }

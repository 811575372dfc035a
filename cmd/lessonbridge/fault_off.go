//go:build !lessonbridge_faults

package main

import "github.com/lessonbridge/lessonbridge/consumer"

// faultHooks is the production build's: no fault injection, whatever the environment says. The
// chaos test builds the binary with -tags lessonbridge_faults to get the real one (fault_on.go).
func faultHooks() consumer.Hooks { return consumer.Hooks{} }

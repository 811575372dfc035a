//go:build lessonbridge_faults

package main

import (
	"fmt"
	"os"
	"syscall"

	"github.com/lessonbridge/lessonbridge/consumer"
)

// faultHooks returns the engine hooks of the test fault injection configured by the environment
// (envFaultKillAfterSubmit, envFaultSeed). With the variables unset it returns the zero Hooks, which
// cost nothing. A value that cannot be parsed is reported on stderr and injects no fault.
//
// NOTE: this is a TEST FAULT HOOK. When drawn it ends the process with SIGKILL on purpose, without
// any cleanup, so that the chaos test can prove crash recovery.
func faultHooks() consumer.Hooks {
	h, err := faultHooksFrom(os.Getenv, os.Stderr, func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "lessonbridge: fault hooks disabled:", err)
		return consumer.Hooks{}
	}
	return h
}

// Command lessonbridge connects lesson-change events on NATS JetStream to the JobManager import API.
// See README.md for the subcommands; contract section 7 fixes their surface.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "run the bridge daemon", runBridge},
		{"dev", "embedded NATS + JobManager simulator + bridge, with a sample workload", runDev},
		{"publish", "publish lesson-change events from NDJSON (file or stdin) or --sample N", runPublish},
		{"watch", "print outcome events (and dead letters with --deadletter) as they arrive", runWatch},
		{"jobmanager-sim", "serve the JobManager simulator over HTTP", runSim},
		{"batches", "list the batches the bridge is tracking", runBatches},
		{"explain", "tell what happened to an event, lesson, batch, JobID or batch key", runExplain},
		{"replay", "republish dead-lettered events to the input after a fix", runReplay},
		{"version", "print the version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "lessonbridge:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: lessonbridge <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-15s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'lessonbridge <command> --help' for a command's flags.")
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	_, err := fmt.Fprintln(stdout, "lessonbridge", version)
	return err
}

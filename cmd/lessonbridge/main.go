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
	"runtime/debug"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=..."; it wins over the build info.
// Read it through buildVersion.
var version = "dev"

// buildVersion is the version this binary reports (logs, metrics, User-Agent): -X main.version
// when set, else the module version from the build info (`go install ...@v1.2.3`, or the VCS-derived
// pseudo-version of a build in a checkout), else "dev".
func buildVersion() string {
	info, _ := debug.ReadBuildInfo()
	return resolveVersion(version, info)
}

// resolveVersion picks the version from the -X value ldflag ("dev" when unset) and info (nil: none).
func resolveVersion(ldflag string, info *debug.BuildInfo) string {
	if ldflag != "" && ldflag != "dev" {
		return ldflag
	}
	if info != nil && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// versionLine is what `lessonbridge version` prints, e.g.
//
//	lessonbridge v1.4.0 (revision 5d28c97e1a2b, 2026-12-01T09:58:00Z, modified; go1.26.8)
func versionLine(ldflag string, info *debug.BuildInfo) string {
	v := resolveVersion(ldflag, info)
	if info == nil {
		return "lessonbridge " + v
	}
	var rev, at string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var parts []string
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		parts = append(parts, "revision "+rev)
	}
	if at != "" {
		parts = append(parts, at)
	}
	if modified {
		parts = append(parts, "modified")
	}
	detail := strings.Join(parts, ", ")
	if info.GoVersion != "" {
		if detail != "" {
			detail += "; "
		}
		detail += info.GoVersion
	}
	if detail == "" {
		return "lessonbridge " + v
	}
	return fmt.Sprintf("lessonbridge %s (%s)", v, detail)
}

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
		{"healthcheck", "exit 0 when a URL (default the bridge's /readyz) answers 2xx; for container health checks", runHealthcheck},
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
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		return runVersion(ctx, args[1:], stdout, stderr)
	}
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
	fmt.Fprintln(w, "\nRun 'lessonbridge <command> --help' for a command's flags; 'lessonbridge --version' prints the version.")
}

// runVersion is `lessonbridge version` and `lessonbridge --version`.
func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("version: unexpected argument %q", args[0])
	}
	info, _ := debug.ReadBuildInfo()
	_, err := fmt.Fprintln(stdout, versionLine(version, info))
	return err
}

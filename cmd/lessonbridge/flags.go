package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// Environment variables. `run`'s flags are read from LESSONBRIDGE_<FLAG> (contract section 7). The
// tools that run beside it, often in the same container or shell, read their own flags from
// LESSONBRIDGE_<COMMAND>_<FLAG> (commandEnvPrefix), so that run's variables never reach them: the
// bridge's LESSONBRIDGE_JOBMANAGER_URL is not `batches`' --jobmanager-url, and replay's --since is
// not watch's. Flags that mean the same in every command, the NATS connection options
// (natsFlagNames) and the names of streams and subjects (topologyFlagNames), are read from run's
// variables in every command (LESSONBRIDGE_NATS_URL, NATS_URL, LESSONBRIDGE_DEADLETTER_STREAM, ...).

// commandEnvPrefix is the environment prefix of each command's own flags; commands not listed read
// LESSONBRIDGE_<FLAG> like run.
var commandEnvPrefix = map[string]string{
	"batches": "LESSONBRIDGE_BATCHES_",
	"publish": "LESSONBRIDGE_PUBLISH_",
	"watch":   "LESSONBRIDGE_WATCH_",
	"replay":  "LESSONBRIDGE_REPLAY_",
	"explain": "LESSONBRIDGE_EXPLAIN_",
}

func envSuffix(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// envName is the environment variable of one of run's flags (and of every NATS connection flag):
// LESSONBRIDGE_<FLAG> in upper snake case.
func envName(flagName string) string {
	return "LESSONBRIDGE_" + envSuffix(flagName)
}

// envNameFor is the environment variable that backs flag flagName of command cmd.
func envNameFor(cmd, flagName string) string {
	if p, ok := commandEnvPrefix[cmd]; ok && !isSharedFlag(flagName) {
		return p + envSuffix(flagName)
	}
	return envName(flagName)
}

// envNamesFor lists every variable read for a flag of cmd, in precedence order.
func envNamesFor(cmd, flagName string) []string {
	return append([]string{envNameFor(cmd, flagName)}, natsFlagExtraEnv[flagName]...)
}

// flagProblem names a flag of cmd, its environment variable(s) and the bad value, e.g.
//
//	--since (LESSONBRIDGE_WATCH_SINCE) "soon": must be new, all, an RFC 3339 time or a duration
func flagProblem(cmd, name, value, why string) error {
	return fmt.Errorf("--%s (%s) %q: %s", name, strings.Join(envNamesFor(cmd, name), ", "), value, why)
}

// newFlagSet returns a flag set whose usage lists each flag with its environment variable and default.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: lessonbridge %s [flags]\n\nflags (each also read from the environment):\n", name)
		fs.VisitAll(func(f *flag.Flag) {
			def := f.DefValue
			if def == "" {
				def = `""`
			}
			fmt.Fprintf(stderr, "  --%s\n        %s (env %s, default %s)\n", f.Name, f.Usage,
				strings.Join(envNamesFor(name, f.Name), ", "), def)
		})
		if isNATSFlagSet(fs) {
			fmt.Fprint(stderr, natsFlagsHelp)
		}
	}
	return fs
}

// parseFlags parses args, then fills every flag not given on the command line from its environment
// variable (see envNameFor; extra maps a flag to further variables). A bad value names the flag,
// the variable and the value. For a command with its own prefix, a run-style LESSONBRIDGE_<FLAG>
// that names one of its flags but none of run's is refused naming both variables: it was meant for
// this command, which no longer reads it.
func parseFlags(fs *flag.FlagSet, args []string, extra map[string][]string) error {
	_, err := parseFlagsSet(fs, args, extra)
	return err
}

// parseFlagsSet is parseFlags that also returns the flags set on the command line or from the
// environment.
func parseFlagsSet(fs *flag.FlagSet, args []string, extra map[string][]string) (map[string]bool, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cmd := fs.Name()
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		names := append(envNamesFor(cmd, f.Name), extra[f.Name]...)
		for _, env := range names {
			v, ok := os.LookupEnv(env)
			if !ok {
				continue
			}
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment %s=%q (flag --%s): %w", env, v, f.Name, e)
			}
			set[f.Name] = true
			return
		}
		if _, own := commandEnvPrefix[cmd]; own && !isSharedFlag(f.Name) && !isRunFlag(f.Name) {
			if v, ok := os.LookupEnv(envName(f.Name)); ok {
				err = fmt.Errorf("environment %s=%q: %s reads --%s from %s (LESSONBRIDGE_<FLAG> is run's); rename or unset it",
					envName(f.Name), v, cmd, f.Name, envNameFor(cmd, f.Name))
			}
		}
	})
	return set, err
}

// topologyFlagNames are the flags naming streams and subjects; they mean the same in every command.
var topologyFlagNames = []string{"input-stream", "outcome-stream", "deadletter-stream", "changes-subject",
	"outcome-subject", "deadletter-subject"}

// isSharedFlag reports whether a flag reads run's variable in every command.
func isSharedFlag(name string) bool {
	return isNATSFlag(name) || slices.Contains(topologyFlagNames, name)
}

// isRunFlag reports whether run has a flag of that name.
func isRunFlag(name string) bool {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	registerRunFlags(fs)
	return fs.Lookup(name) != nil
}

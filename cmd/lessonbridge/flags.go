package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// envName is the environment variable that backs a flag: LESSONBRIDGE_<FLAG> in upper snake case.
func envName(flagName string) string {
	return "LESSONBRIDGE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
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
			fmt.Fprintf(stderr, "  --%s\n        %s (env %s, default %s)\n", f.Name, f.Usage, envName(f.Name), def)
		})
	}
	return fs
}

// parseFlags parses args, then fills every flag not given on the command line from its environment
// variable (see envName; extra maps a flag to further variables, such as NATS_URL). A bad value names
// the flag, the variable and the value.
func parseFlags(fs *flag.FlagSet, args []string, extra map[string][]string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		names := append([]string{envName(f.Name)}, extra[f.Name]...)
		for _, env := range names {
			v, ok := os.LookupEnv(env)
			if !ok {
				continue
			}
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment %s=%q (flag --%s): %w", env, v, f.Name, e)
			}
			return
		}
	})
	return err
}

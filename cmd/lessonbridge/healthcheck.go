package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// defaultHealthcheckURL is the readiness endpoint of a bridge started with the image's default
// --http-addr (0.0.0.0:8081), asked from inside its container.
const defaultHealthcheckURL = "http://127.0.0.1:8081/readyz"

// runHealthcheck is `lessonbridge healthcheck`: one GET of --url (a bridge's /readyz or /healthz,
// the simulator's state page), exit 0 on a 2xx answer, else an error with the status and the start
// of the body. It is the health check of images without curl or wget (distroless). It reads no
// environment on purpose: inside a container the LESSONBRIDGE_* variables configure `run`, and
// must not change what the check asks.
func runHealthcheck(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", defaultHealthcheckURL, "URL to GET; healthy when it answers 2xx")
	timeout := fs.Duration("timeout", 3*time.Second, "bound on the request")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: lessonbridge healthcheck [flags]\n\nflags (not read from the environment):\n")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(stderr, "  --%s\n        %s (default %s)\n", f.Name, f.Usage, f.DefValue)
		})
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("healthcheck: unexpected argument %q", fs.Arg(0))
	}
	if u, err := url.Parse(*target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("healthcheck: --url %q: want an absolute http or https URL", *target)
	}
	if *timeout <= 0 {
		return fmt.Errorf("healthcheck: --timeout %v must be positive", *timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("healthcheck: %s answered %s: %s", *target, resp.Status, cut(oneLine(strings.TrimSpace(string(body))), 300))
	}
	return nil
}

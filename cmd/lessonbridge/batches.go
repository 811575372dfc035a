package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/jobmanager"
)

// maxAPIBody bounds what batches reads from the bridge's HTTP endpoints.
const maxAPIBody = 64 << 20

// runBatches is `lessonbridge batches`: it lists the batches a running bridge is working on (from its
// /batches endpoint) and, with --jobmanager-url and --mandator, JobManager's own list of running and
// queued batches of that mandator. With --check-ready it fails unless the bridge's /readyz answers
// 200, which makes it usable as a container health check in images without curl.
func runBatches(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("batches", stderr)
	httpAddr := fs.String("http-addr", "127.0.0.1:8081", "the bridge's --http-addr (host:port or http(s) URL)")
	jsonOut := fs.Bool("json", false, "print JSON instead of a table")
	checkReady := fs.Bool("check-ready", false, "exit non-zero unless the bridge's /readyz answers 200 (for health checks)")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on the whole command")
	jmURL := fs.String("jobmanager-url", "", "also list JobManager's batches of --mandator from this base URL")
	mandator := fs.String("mandator", "", "mandator whose JobManager batch list to show (with --jobmanager-url)")
	jmToken := fs.String("jobmanager-token", "", "JobManager bearer token")
	jmTokenFile := fs.String("jobmanager-token-file", "", "file holding the JobManager bearer token")
	jmTokenDir := fs.String("jobmanager-token-dir", "", "directory of per-mandator token files")
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	var errs []error
	bad := func(name, value, why string) { errs = append(errs, flagProblem("batches", name, value, why)) }
	if *jmURL != "" {
		if !mandatorToken.MatchString(*mandator) {
			bad("mandator", *mandator, "must match [A-Za-z0-9_-]{1,64} (needed with --jobmanager-url)")
		} else if why := jobManagerURLProblem(*jmURL, []string{*mandator}); why != "" {
			bad("jobmanager-url", *jmURL, why)
		}
	}
	if *timeout <= 0 {
		bad("timeout", timeout.String(), "must be positive")
	}
	if len(errs) > 0 {
		return fmt.Errorf("batches: %w", errors.Join(errs...))
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	base := *httpAddr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	base = strings.TrimRight(base, "/")

	if *checkReady {
		code, body, err := httpGet(ctx, base+"/readyz")
		if err != nil {
			return fmt.Errorf("batches: %w", err)
		}
		if code != http.StatusOK {
			return fmt.Errorf("batches: bridge not ready (%d): %s", code, strings.TrimSpace(string(body)))
		}
	}

	code, body, err := httpGet(ctx, base+"/batches")
	if err != nil {
		return fmt.Errorf("batches: %w", err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("batches: %s/batches answered %d: %s", base, code, cut(oneLine(string(body)), 300))
	}
	var list []consumer.BatchInfo
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("batches: %s/batches: %w", base, err)
	}

	var jmList []jobmanager.BatchStatus
	if *jmURL != "" {
		var opts []jobmanager.Option
		switch {
		case *jmToken != "":
			opts = append(opts, jobmanager.WithToken(*jmToken))
		case *jmTokenFile != "":
			opts = append(opts, jobmanager.WithTokenFile(*jmTokenFile))
		case *jmTokenDir != "":
			opts = append(opts, jobmanager.WithTokenSource(jobmanager.TokenDir(*jmTokenDir)))
		}
		jm, err := jobmanager.New(*jmURL, opts...)
		if err != nil {
			return fmt.Errorf("batches: %w", err)
		}
		if jmList, err = jm.Batches(ctx, *mandator); err != nil {
			return fmt.Errorf("batches: %w", err)
		}
	}

	if *jsonOut {
		if *jmURL == "" {
			_, err := stdout.Write(append(bytes.TrimSpace(body), '\n'))
			return err
		}
		if jmList == nil {
			jmList = []jobmanager.BatchStatus{}
		}
		b, err := json.Marshal(struct {
			Bridge     json.RawMessage          `json:"bridge"`
			Mandator   string                   `json:"mandator"`
			JobManager []jobmanager.BatchStatus `json:"jobmanager"`
		}{body, *mandator, jmList})
		if err != nil {
			return fmt.Errorf("batches: %w", err)
		}
		_, err = stdout.Write(append(b, '\n'))
		return err
	}
	if err := writeBatchTable(stdout, list, time.Now()); err != nil {
		return err
	}
	if *jmURL != "" {
		return writeJMTable(stdout, *mandator, jmList)
	}
	return nil
}

// httpGet fetches url and returns the status code and the body.
func httpGet(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody+1))
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if len(body) > maxAPIBody {
		return 0, nil, fmt.Errorf("GET %s: answer larger than %d bytes", url, maxAPIBody)
	}
	return resp.StatusCode, body, nil
}

// writeBatchTable prints the bridge's batches, one per line, ages relative to now.
func writeBatchTable(w io.Writer, list []consumer.BatchInfo, now time.Time) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "the bridge has no batches in flight")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MANDATOR\tACTION\tBATCH\tSTATE\tAGE\tPOLLS\tLESSONS\tEVENTS\tLAST STATUS\tISOLATION")
	for _, b := range list {
		age := "-"
		if !b.Created.IsZero() {
			age = now.Sub(b.Created).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", orDash(oneLine(b.Mandator)), orDash(oneLine(b.Action)),
			orDash(oneLine(b.BatchID)), orDash(oneLine(b.State)), age, b.Polls, b.Lessons, b.Events, orDash(oneLine(b.LastStatus)),
			isolationOf(b))
	}
	return tw.Flush()
}

// isolationOf says how a batch takes part in failure isolation: the follow-ups of a failed batch
// that was split, or the failed batch (outcome id) a follow-up resubmits part of; "-" for neither.
func isolationOf(b consumer.BatchInfo) string {
	var parts []string
	if b.Parent != "" {
		parts = append(parts, "follow-up of "+oneLine(b.Parent))
	}
	if len(b.FollowUps) > 0 {
		parts = append(parts, "split into "+oneLine(strings.Join(b.FollowUps, ",")))
	}
	return orDash(strings.Join(parts, "; "))
}

// writeJMTable prints JobManager's batch list of mandator.
func writeJMTable(w io.Writer, mandator string, list []jobmanager.BatchStatus) error {
	if len(list) == 0 {
		_, err := fmt.Fprintf(w, "\nJobManager has no running or queued batches for %s\n", mandator)
		return err
	}
	fmt.Fprintf(w, "\nJobManager batches of %s:\n", mandator)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BATCH\tIMPORT STATUS\tLESSONS\tERRORS")
	for _, b := range list {
		lessons := "-"
		if b.LessonCount != nil {
			lessons = fmt.Sprint(*b.LessonCount)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", orDash(oneLine(b.BatchID)), orDash(oneLine(string(b.ImportStatus))), lessons,
			orDash(cut(oneLine(strings.Join(b.ErrorMessages, "; ")), 120)))
	}
	return tw.Flush()
}

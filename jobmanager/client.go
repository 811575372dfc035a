package jobmanager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults of New.
const (
	DefaultTimeout      = 30 * time.Second // of the HTTP client New creates
	DefaultMaxBodyBytes = 4 << 20          // response bodies larger than this are an error
	defaultUserAgent    = "lessonbridge-jobmanager"
)

// Client calls JobManager's REST API v2. Create it with New; it is safe for concurrent use.
// Every method returns either a result or an error; errors of a call that reached the point
// of choosing a URL are *Error (see Classify and Ambiguous), argument errors are plain
// errors and never cause a request.
type Client struct {
	base      string // scheme://host[/path], no trailing slash
	hc        *http.Client
	tokens    TokenSource // nil: no Authorization header
	maxBody   int64
	userAgent string
}

// Option configures a Client. Options validate their argument; New returns the error.
type Option func(*Client) error

// WithHTTPClient sets the HTTP client. The default has a 30 s timeout and does not follow
// redirects (a 3xx is returned as an *Error).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("jobmanager: WithHTTPClient: nil *http.Client")
		}
		c.hc = hc
		return nil
	}
}

// WithToken sends token as the bearer token of every request (StaticToken). A 401 is not
// retried.
func WithToken(token string) Option {
	return func(c *Client) error {
		if err := checkToken(token); err != nil {
			return fmt.Errorf("jobmanager: WithToken: %w", err)
		}
		return c.setTokens(StaticToken(token), "WithToken")
	}
}

// WithTokenFile reads the bearer token from the file at path at first use and again when
// JobManager answers 401; if the token changed, the request is retried once (TokenFile).
func WithTokenFile(path string) Option {
	return func(c *Client) error {
		if strings.TrimSpace(path) == "" {
			return errors.New("jobmanager: WithTokenFile: empty path")
		}
		return c.setTokens(TokenFile(path), "WithTokenFile")
	}
}

// WithTokenSource takes bearer tokens from ts (per mandator). Without any token option no
// Authorization header is sent. Only one token option may be given.
func WithTokenSource(ts TokenSource) Option {
	return func(c *Client) error {
		if ts == nil {
			return errors.New("jobmanager: WithTokenSource: nil TokenSource")
		}
		return c.setTokens(ts, "WithTokenSource")
	}
}

// WithMaxBodyBytes bounds the size of a response body that is read (default 4 MiB). A
// success answer over the limit is an error; of an error answer only an excerpt is kept.
func WithMaxBodyBytes(n int64) Option {
	return func(c *Client) error {
		if n <= 0 {
			return fmt.Errorf("jobmanager: WithMaxBodyBytes: %d is not positive", n)
		}
		c.maxBody = n
		return nil
	}
}

// WithUserAgent sets the User-Agent header (default "lessonbridge-jobmanager").
func WithUserAgent(s string) Option {
	return func(c *Client) error {
		if s == "" || strings.ContainsAny(s, "\r\n\x00") {
			return fmt.Errorf("jobmanager: WithUserAgent: invalid user agent %q", s)
		}
		c.userAgent = s
		return nil
	}
}

func (c *Client) setTokens(ts TokenSource, name string) error {
	if c.tokens != nil {
		return fmt.Errorf("jobmanager: %s: a token option was already given; use only one of WithToken, WithTokenFile, WithTokenSource", name)
	}
	c.tokens = ts
	return nil
}

// New returns a Client for the JobManager at baseURL, the part before
// /{mandator}/api/v2.0/...; it must be an absolute http or https URL without user info,
// query or fragment; a trailing slash is tolerated. New does no I/O.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("jobmanager: base URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("jobmanager: base URL %q: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return nil, fmt.Errorf("jobmanager: base URL %q: no host", u.Redacted())
	case u.User != nil:
		return nil, fmt.Errorf("jobmanager: base URL %q: user info not allowed, use a token option", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("jobmanager: base URL %q: query and fragment not allowed", u.Redacted())
	}
	c := &Client{
		base:      strings.TrimRight(u.String(), "/"),
		maxBody:   DefaultMaxBodyBytes,
		userAgent: defaultUserAgent,
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	if c.hc == nil {
		c.hc = &http.Client{
			Timeout: DefaultTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	return c, nil
}

// Submit sends jobs to POST {base}/{mandator}/api/v2.0/jobs/{action} and returns JobManager's
// answer, whose BatchID is never empty. JobManager answers 202 (200 and 201 are accepted too);
// a 2xx without BatchId is an *Error wrapping ErrNoBatchID. An invalid mandator or action,
// no jobs, a job without JobID or lessons, or a lesson without LektionId is an error and
// sends nothing.
//
// NOTE: a failed Submit may still have been stored by JobManager; see Ambiguous. Resend
// the same JobIDs only with that in mind.
func (c *Client) Submit(ctx context.Context, mandator string, action Action, jobs []Job) (*BatchStatus, error) {
	if err := validateMandator(mandator); err != nil {
		return nil, err
	}
	switch action {
	case ActionCreate, ActionUpdate, ActionDelete:
	default:
		return nil, fmt.Errorf("jobmanager: invalid action %q: want create, update or delete", action)
	}
	if len(jobs) == 0 {
		return nil, errors.New("jobmanager: submit: no jobs")
	}
	size := 2
	for i := range jobs {
		if jobs[i].JobID == "" {
			return nil, fmt.Errorf("jobmanager: submit: job %d has no JobID", i)
		}
		if len(jobs[i].LektionList) == 0 {
			return nil, fmt.Errorf("jobmanager: submit: job %q has no lessons", jobs[i].JobID)
		}
		for _, l := range jobs[i].LektionList {
			if l.LektionID == "" {
				return nil, fmt.Errorf("jobmanager: submit: job %q has a lesson without LektionId", jobs[i].JobID)
			}
		}
		size += 32 + len(jobs[i].LektionList)*144
	}
	body, err := appendJobs(make([]byte, 0, size), jobs)
	if err != nil {
		return nil, err
	}
	u := c.base + "/" + mandator + "/api/v2.0/jobs/" + string(action)
	resp, err := c.do(ctx, opSubmit, http.MethodPost, mandator, u, body)
	if err != nil {
		return nil, err
	}
	st, err := decodeBatchStatus(resp.body)
	if err != nil {
		return nil, resp.fail(fmt.Errorf("decode answer: %w", err))
	}
	if st.BatchID == "" {
		return nil, resp.fail(ErrNoBatchID)
	}
	return st, nil
}

// Batch returns the status of batchID: GET {base}/{mandator}/api/v2.0/jobs/batches/{batchId}.
// A 404 is an *Error matching ErrNotFound; right after a submit it can mean "not known yet".
// An ImportStatus the guide does not name is returned as it is (not Terminal, not Known).
// When the answer has no BatchId, the returned BatchID is batchID.
func (c *Client) Batch(ctx context.Context, mandator, batchID string) (*BatchStatus, error) {
	if err := validateMandator(mandator); err != nil {
		return nil, err
	}
	if batchID == "" {
		return nil, errors.New("jobmanager: batch: empty batchId")
	}
	u := c.base + "/" + mandator + "/api/v2.0/jobs/batches/" + url.PathEscape(batchID)
	resp, err := c.do(ctx, opBatch, http.MethodGet, mandator, u, nil)
	if err != nil {
		return nil, err
	}
	st, err := decodeBatchStatus(resp.body)
	if err != nil {
		return nil, resp.fail(fmt.Errorf("decode answer: %w", err))
	}
	if st.BatchID == "" {
		st.BatchID = batchID
	}
	return st, nil
}

// Batches lists the running and queued batches of mandator: GET
// {base}/{mandator}/api/v2.0/jobs/batches. The answer may be a JSON array of status objects
// or an object wrapping one array (under "Batches", "items" or any single array member).
func (c *Client) Batches(ctx context.Context, mandator string) ([]BatchStatus, error) {
	if err := validateMandator(mandator); err != nil {
		return nil, err
	}
	u := c.base + "/" + mandator + "/api/v2.0/jobs/batches"
	resp, err := c.do(ctx, opBatches, http.MethodGet, mandator, u, nil)
	if err != nil {
		return nil, err
	}
	list, err := decodeBatchList(resp.body)
	if err != nil {
		return nil, resp.fail(err)
	}
	return list, nil
}

// response is a 2xx answer whose body was read completely.
type response struct {
	op, url string
	status  int
	body    []byte
	token   string
}

// fail builds the *Error for a 2xx answer that could not be used.
func (r *response) fail(err error) *Error {
	return &Error{Op: r.op, URL: r.url, StatusCode: r.status, Body: bodyExcerpt(r.body, r.token), Err: err}
}

// do sends one request (twice when a 401 made the token source produce a new token) and
// returns a 2xx answer, or an *Error.
func (c *Client) do(ctx context.Context, op, method, mandator, u string, body []byte) (*response, error) {
	var tok string
	if c.tokens != nil {
		var err error
		if tok, err = c.tokens.Token(ctx, mandator); err != nil {
			return nil, &Error{Op: op, URL: u, Err: err, stage: stageToken}
		}
	}
	resp, err := c.send(ctx, op, method, u, body, tok)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized && c.tokens != nil {
		first := c.errorFor(op, u, resp, tok)
		if rerr := c.tokens.Reload(ctx, mandator); rerr != nil {
			first.Err = fmt.Errorf("reload token: %w", rerr)
			return nil, first
		}
		newTok, terr := c.tokens.Token(ctx, mandator)
		if terr != nil {
			first.Err = fmt.Errorf("reload token: %w", terr)
			return nil, first
		}
		if newTok == tok {
			return nil, first
		}
		tok = newTok
		if resp, err = c.send(ctx, op, method, u, body, tok); err != nil {
			return nil, err
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, c.errorFor(op, u, resp, tok)
	}
	defer resp.Body.Close()
	r := &response{op: op, url: u, status: resp.StatusCode, token: tok}
	r.body, err = io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, r.fail(fmt.Errorf("read answer: %w", err))
	}
	if int64(len(r.body)) > c.maxBody {
		return nil, r.fail(fmt.Errorf("%w: more than %d bytes", errBodyTooLarge, c.maxBody))
	}
	return r, nil
}

// send performs one HTTP exchange. A transport error is returned as an *Error that records
// whether the request had been written completely.
func (c *Client) send(ctx context.Context, op, method, u string, body []byte, tok string) (*http.Response, error) {
	var traced, wrote atomic.Bool
	trace := &httptrace.ClientTrace{
		GetConn: func(string) { traced.Store(true) },
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
			}
		},
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, u, rd)
	if err != nil {
		return nil, &Error{Op: op, URL: u, Err: err, stage: stageNotSent}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // our Error names the URL already
		}
		st := stageUnknown
		switch {
		case wrote.Load():
			st = stageSent
		case traced.Load():
			st = stageNotSent
		}
		return nil, &Error{Op: op, URL: u, Err: err, stage: st}
	}
	return resp, nil
}

// errorFor reads an excerpt of a non-success answer and closes its body.
func (c *Client) errorFor(op, u string, resp *http.Response, tok string) *Error {
	defer resp.Body.Close()
	// Read a little more than the excerpt so that a token straddling the cut is redacted.
	b, _ := io.ReadAll(io.LimitReader(resp.Body, int64(maxBodyExcerpt+len(tok))))
	return &Error{
		Op:         op,
		URL:        u,
		StatusCode: resp.StatusCode,
		Body:       bodyExcerpt(b, tok),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
}

// validateMandator checks [A-Za-z0-9_-]{1,64}.
func validateMandator(m string) error {
	ok := len(m) >= 1 && len(m) <= 64
	for i := 0; ok && i < len(m); i++ {
		c := m[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	if ok {
		return nil
	}
	shown := m
	if len(shown) > 80 {
		shown = shown[:80] + "..."
	}
	return fmt.Errorf("jobmanager: invalid mandator %q: want [A-Za-z0-9_-]{1,64}", shown)
}

package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// DefaultOAuth2RefreshBefore is how long before its expiry an OAuth2 token is replaced when
// OAuth2Config.RefreshBefore is zero (at most half the token's lifetime, see OAuth2Config).
const DefaultOAuth2RefreshBefore = time.Minute

// oauth2ReloadInterval is the least time between two token requests that a 401 forces for the same
// client: many requests failing with the same stale token at once cause one token request, and a
// JobManager that refuses fresh tokens is not answered by a storm of token requests.
const oauth2ReloadInterval = time.Second

// oauth2RetryAfterFailure is how long a token that is still valid keeps being used, without a new
// token request, after a refresh before expiry failed.
const oauth2RetryAfterFailure = time.Second

// OAuth2Client is one client of the OAuth2 client-credentials grant (RFC 6749, section 4.4).
type OAuth2Client struct {
	// TokenURL is the token endpoint, an absolute http or https URL.
	TokenURL string
	// ClientID identifies the client to the token endpoint.
	ClientID string
	// ClientSecret is the client's secret. Give it or ClientSecretFile, not both.
	ClientSecret string
	// ClientSecretFile names a file holding the secret (surrounding whitespace trimmed). It is read
	// at every token request, so a rotated secret (a Kubernetes Secret volume) is picked up.
	ClientSecretFile string
	// Scopes are requested with every token (the "scope" parameter); empty: none.
	Scopes []string
}

// OAuth2Config configures the TokenSource OAuth2 returns.
type OAuth2Config struct {
	// Client serves every mandator that Mandators does not list. A zero Client serves none: then
	// only the mandators listed have tokens.
	Client OAuth2Client
	// Mandators are per-mandator clients. An empty field of an entry is taken from Client (so an
	// entry may change only the client id and secret, or only the scopes); the token of a listed
	// mandator is requested and cached for that mandator alone.
	Mandators map[string]OAuth2Client
	// HTTPClient sends the token requests. Nil: a client with DefaultTimeout that follows no
	// redirects.
	HTTPClient *http.Client
	// RefreshBefore is how long before its expiry a token is replaced; at most half the token's
	// lifetime is used, so that a short-lived token is not fetched anew for every request. Zero:
	// DefaultOAuth2RefreshBefore. A token without expires_in is kept until a 401.
	RefreshBefore time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// OAuth2 returns a TokenSource that gets bearer tokens from an OAuth2 token endpoint with the
// client-credentials grant (golang.org/x/oauth2/clientcredentials). Tokens are cached per client
// and replaced before they expire (OAuth2Config.RefreshBefore); requests wait for a token request
// in flight instead of sending their own. Reload (after a 401) requests a new token at once, at
// most once a second per client. When a refresh before expiry fails, the old token is used while
// it is valid. Errors name the token endpoint and the client id, never the secret or a token.
//
// It checks cfg at once: every client (Client merged into each Mandators entry) needs an absolute
// http(s) TokenURL, a ClientID and exactly one of ClientSecret and ClientSecretFile (the file is
// not read here), and every mandator name must be valid.
func OAuth2(cfg OAuth2Config) (TokenSource, error) {
	if cfg.RefreshBefore < 0 {
		return nil, fmt.Errorf("jobmanager: oauth2: RefreshBefore %v is negative", cfg.RefreshBefore)
	}
	if cfg.RefreshBefore == 0 {
		cfg.RefreshBefore = DefaultOAuth2RefreshBefore
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{
			Timeout:       DefaultTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	s := &oauth2Source{cfg: cfg, clients: map[string]*oauth2Entry{}}
	if !cfg.Client.zero() || len(cfg.Mandators) == 0 {
		e, err := s.newEntry(cfg.Client)
		if err != nil {
			return nil, fmt.Errorf("jobmanager: oauth2: %w", err)
		}
		s.def = e
	}
	names := make([]string, 0, len(cfg.Mandators))
	for m := range cfg.Mandators {
		names = append(names, m)
	}
	slices.Sort(names) // report the first bad entry in a stable order
	for _, m := range names {
		if err := validateMandator(m); err != nil {
			return nil, fmt.Errorf("jobmanager: oauth2: %w", err)
		}
		e, err := s.newEntry(merge(cfg.Client, cfg.Mandators[m]))
		if err != nil {
			return nil, fmt.Errorf("jobmanager: oauth2: mandator %s: %w", m, err)
		}
		s.clients[m] = e
	}
	return s, nil
}

func (c OAuth2Client) zero() bool {
	return c.TokenURL == "" && c.ClientID == "" && c.ClientSecret == "" && c.ClientSecretFile == "" && len(c.Scopes) == 0
}

// merge fills the empty fields of o from def. A secret is inherited only when o names no secret of
// either kind.
func merge(def, o OAuth2Client) OAuth2Client {
	if o.TokenURL == "" {
		o.TokenURL = def.TokenURL
	}
	if o.ClientID == "" {
		o.ClientID = def.ClientID
	}
	if o.ClientSecret == "" && o.ClientSecretFile == "" {
		o.ClientSecret, o.ClientSecretFile = def.ClientSecret, def.ClientSecretFile
	}
	if len(o.Scopes) == 0 {
		o.Scopes = def.Scopes
	}
	return o
}

func checkOAuth2Client(c OAuth2Client) error {
	u, err := url.Parse(c.TokenURL)
	switch {
	case c.TokenURL == "":
		return errors.New("TokenURL is empty")
	case err != nil:
		return fmt.Errorf("TokenURL %q: %w", c.TokenURL, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("TokenURL %q: want an absolute http or https URL", c.TokenURL)
	case c.ClientID == "":
		return errors.New("ClientID is empty")
	case c.ClientSecret == "" && c.ClientSecretFile == "":
		return fmt.Errorf("client %s: no ClientSecret or ClientSecretFile", c.ClientID)
	case c.ClientSecret != "" && c.ClientSecretFile != "":
		return fmt.Errorf("client %s: give ClientSecret or ClientSecretFile, not both", c.ClientID)
	}
	for _, sc := range c.Scopes {
		if sc == "" || strings.ContainsFunc(sc, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '"' || r == '\\' }) {
			return fmt.Errorf("client %s: scope %q is not a scope token", c.ClientID, sc)
		}
	}
	return nil
}

type oauth2Source struct {
	cfg     OAuth2Config
	def     *oauth2Entry            // nil: mandators without an entry have no token
	clients map[string]*oauth2Entry // per mandator
}

func (s *oauth2Source) newEntry(c OAuth2Client) (*oauth2Entry, error) {
	if err := checkOAuth2Client(c); err != nil {
		return nil, err
	}
	return &oauth2Entry{src: s, client: c, conf: &clientcredentials.Config{
		ClientID: c.ClientID, TokenURL: c.TokenURL, Scopes: c.Scopes,
	}}, nil
}

func (s *oauth2Source) entry(mandator string) (*oauth2Entry, error) {
	if err := validateMandator(mandator); err != nil {
		return nil, err
	}
	if e, ok := s.clients[mandator]; ok {
		return e, nil
	}
	if s.def == nil {
		return nil, fmt.Errorf("jobmanager: oauth2: no client for mandator %s (and no default client)", mandator)
	}
	return s.def, nil
}

func (s *oauth2Source) Token(ctx context.Context, mandator string) (string, error) {
	e, err := s.entry(mandator)
	if err != nil {
		return "", err
	}
	return e.get(ctx, false)
}

func (s *oauth2Source) Reload(ctx context.Context, mandator string) error {
	e, err := s.entry(mandator)
	if err != nil {
		return err
	}
	_, err = e.get(ctx, true)
	return err
}

// oauth2Entry is the cached token of one client.
type oauth2Entry struct {
	src    *oauth2Source
	client OAuth2Client
	conf   *clientcredentials.Config // kept: it caches the auth style the endpoint accepted

	mu        sync.Mutex
	token     string
	fetchedAt time.Time
	refreshAt time.Time     // replace the token from then on; zero: never (no expiry)
	expiresAt time.Time     // zero: no expiry known
	retryAt   time.Time     // after a failed refresh, keep the valid token until then
	fetching  chan struct{} // closed when the token request in flight ends; nil: none
}

// get returns the cached token, or requests one when there is none, it is due for refresh, or
// force (a 401) asks for a new one. Concurrent callers share one token request.
func (e *oauth2Entry) get(ctx context.Context, force bool) (string, error) {
	for {
		e.mu.Lock()
		now := e.src.cfg.Now()
		valid := e.token != "" && (e.expiresAt.IsZero() || now.Before(e.expiresAt))
		fresh := valid && (e.refreshAt.IsZero() || now.Before(e.refreshAt) || now.Before(e.retryAt))
		if force && valid && now.Sub(e.fetchedAt) < oauth2ReloadInterval {
			force = false // fetched just now, perhaps for the very 401 that asks again
		}
		if fresh && !force {
			tok := e.token
			e.mu.Unlock()
			return tok, nil
		}
		if ch := e.fetching; ch != nil {
			e.mu.Unlock()
			select {
			case <-ch:
				force = false // the request in flight is the new token asked for
				continue
			case <-ctx.Done():
				return "", fmt.Errorf("jobmanager: oauth2 token: %w", ctx.Err())
			}
		}
		ch := make(chan struct{})
		e.fetching = ch
		e.mu.Unlock()

		tok, lifetime, err := e.fetch(ctx)

		e.mu.Lock()
		e.fetching = nil
		close(ch)
		now = e.src.cfg.Now()
		if err != nil {
			if valid && !force && (e.expiresAt.IsZero() || now.Before(e.expiresAt)) {
				// A refresh ahead of expiry failed: the token still works for a while.
				e.retryAt = now.Add(oauth2RetryAfterFailure)
				old := e.token
				e.mu.Unlock()
				return old, nil
			}
			e.mu.Unlock()
			return "", err
		}
		e.token, e.fetchedAt, e.retryAt = tok, now, time.Time{}
		e.refreshAt, e.expiresAt = time.Time{}, time.Time{}
		if lifetime > 0 {
			early := min(e.src.cfg.RefreshBefore, lifetime/2)
			e.expiresAt = now.Add(lifetime)
			e.refreshAt = e.expiresAt.Add(-early)
		}
		e.mu.Unlock()
		return tok, nil
	}
}

// fetch requests a new token. lifetime is zero when the endpoint gave no expires_in.
func (e *oauth2Entry) fetch(ctx context.Context) (tok string, lifetime time.Duration, err error) {
	where := fmt.Sprintf("jobmanager: oauth2 token from %s for client %s", redactedURL(e.client.TokenURL), e.client.ClientID)
	secret := e.client.ClientSecret
	if e.client.ClientSecretFile != "" {
		b, err := os.ReadFile(e.client.ClientSecretFile)
		if err != nil {
			return "", 0, fmt.Errorf("%s: client secret file: %w", where, err) // *PathError: the path, not the content
		}
		if secret = strings.TrimSpace(string(b)); secret == "" {
			return "", 0, fmt.Errorf("%s: client secret file %s is empty", where, e.client.ClientSecretFile)
		}
	}
	// The Config is shared (it remembers the auth style); the secret is set per request so a
	// rotated file is used. Requests of one entry never overlap (see get), so this is not racy.
	e.conf.ClientSecret = secret
	t, err := e.conf.Token(context.WithValue(ctx, oauth2.HTTPClient, e.src.cfg.HTTPClient))
	e.conf.ClientSecret = ""
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", where, describeOAuth2Error(err, secret))
	}
	if tt := t.Type(); !strings.EqualFold(tt, "Bearer") {
		return "", 0, fmt.Errorf("%s: token_type %q, want Bearer", where, tt)
	}
	if err := checkToken(t.AccessToken); err != nil {
		return "", 0, fmt.Errorf("%s: access_token: %w", where, err)
	}
	if !t.Expiry.IsZero() {
		// The library computed Expiry from expires_in with the wall clock just now.
		if lifetime = time.Until(t.Expiry); lifetime <= 0 {
			return "", 0, fmt.Errorf("%s: the token expires at once (expires_in %v)", where, t.Extra("expires_in"))
		}
	}
	return t.AccessToken, lifetime, nil
}

// describeOAuth2Error makes the library's error one line: the status and the RFC 6749 error code
// and description, or an excerpt of the body; the secret is cut out should the endpoint echo it.
func describeOAuth2Error(err error, secret string) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err
	}
	status := "no answer"
	if re.Response != nil {
		status = re.Response.Status
	}
	msg := re.ErrorCode
	if re.ErrorDescription != "" {
		msg += ": " + re.ErrorDescription
	}
	if msg == "" {
		msg = strings.Join(strings.Fields(string(re.Body)), " ")
		if r := []rune(msg); len(r) > 200 {
			msg = string(r[:200]) + "…"
		}
	}
	if secret != "" {
		msg = strings.ReplaceAll(msg, secret, "[redacted]")
	}
	if msg == "" {
		return errors.New(status)
	}
	return fmt.Errorf("%s: %s", status, msg)
}

// redactedURL drops user info from a URL for messages.
func redactedURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}

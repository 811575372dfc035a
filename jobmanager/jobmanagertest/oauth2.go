package jobmanagertest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// OAuth2TokenPath is where an OAuth2 simulator answers token requests.
const OAuth2TokenPath = "/oauth2/token"

// DefaultOAuth2TokenTTL is the lifetime of issued tokens when OAuth2Config.TokenTTL is zero.
const DefaultOAuth2TokenTTL = time.Minute

// OAuth2Client is a client the OAuth2 simulator knows.
type OAuth2Client struct {
	ID, Secret string
	// Scopes are the scopes the client may ask for; a token request for any other answers
	// invalid_scope. Empty: any.
	Scopes []string
	// Mandators are the mandators its tokens are good for; an API request for another answers 403.
	// Empty: all.
	Mandators []string
}

// OAuth2Config configures an OAuth2 simulator.
type OAuth2Config struct {
	// Clients are the known clients; at least one.
	Clients []OAuth2Client
	// TokenTTL is how long an issued token is accepted. The token answer says expires_in in whole
	// seconds (rounded up), so a TTL under a second is announced as 1. Zero: DefaultOAuth2TokenTTL.
	TokenTTL time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// OAuth2 puts an OAuth2 authorisation server in front of a JobManager simulator (or any API
// handler): POST OAuth2TokenPath issues bearer tokens with the client-credentials grant (RFC 6749
// section 4.4; client authentication by HTTP Basic or by client_id/client_secret in the form), and
// every other request except StatePath must carry one of them, unexpired, or it answers 401
// (403 for a mandator the token's client is not allowed). Accepted requests go to the API handler,
// which should then not require a token of its own (Config.Token empty).
//
// It is safe for concurrent use and starts no goroutines.
type OAuth2 struct {
	cfg OAuth2Config
	api http.Handler

	mu       sync.Mutex
	tokens   map[string]issued // access token -> what it is
	issued   map[string]int    // client id -> tokens issued
	rejected int
}

type issued struct {
	client  string
	expires time.Time
	scope   string
}

// NewOAuth2 returns the OAuth2 simulator in front of api.
func NewOAuth2(cfg OAuth2Config, api http.Handler) (*OAuth2, error) {
	if len(cfg.Clients) == 0 {
		return nil, errors.New("jobmanagertest: oauth2: no clients")
	}
	seen := map[string]bool{}
	for _, c := range cfg.Clients {
		switch {
		case c.ID == "" || c.Secret == "":
			return nil, fmt.Errorf("jobmanagertest: oauth2: client %q needs an id and a secret", c.ID)
		case seen[c.ID]:
			return nil, fmt.Errorf("jobmanagertest: oauth2: client %q given twice", c.ID)
		}
		seen[c.ID] = true
		for _, m := range c.Mandators {
			if !mandatorRE.MatchString(m) {
				return nil, fmt.Errorf("jobmanagertest: oauth2: client %q: mandator %q does not match %s", c.ID, m, mandatorRE)
			}
		}
	}
	if cfg.TokenTTL < 0 {
		return nil, fmt.Errorf("jobmanagertest: oauth2: TokenTTL is negative: %v", cfg.TokenTTL)
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultOAuth2TokenTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if api == nil {
		return nil, errors.New("jobmanagertest: oauth2: nil API handler")
	}
	return &OAuth2{cfg: cfg, api: api, tokens: map[string]issued{}, issued: map[string]int{}}, nil
}

// Issued returns how many tokens were issued to the client with that id.
func (o *OAuth2) Issued(clientID string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.issued[clientID]
}

// Rejected returns how many API requests were refused for a missing, unknown or expired token or
// a mandator the token is not good for.
func (o *OAuth2) Rejected() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rejected
}

// Revoke makes every token issued so far invalid, as a restarted authorisation server or a
// rotated signing key would: the next API request with one of them answers 401.
func (o *OAuth2) Revoke() {
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.tokens)
}

// ServeHTTP answers token requests and guards the API; see OAuth2.
func (o *OAuth2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case OAuth2TokenPath:
		o.serveToken(w, r)
		return
	case StatePath:
		o.api.ServeHTTP(w, r)
		return
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	now := o.cfg.Now()
	o.mu.Lock()
	it, known := o.tokens[tok]
	valid := ok && strings.EqualFold(scheme, "Bearer") && known && now.Before(it.expires)
	if known && !now.Before(it.expires) {
		delete(o.tokens, tok)
	}
	var allowed bool
	if valid {
		mandator, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		allowed = o.allowed(it.client, mandator)
	}
	if !valid || !allowed {
		o.rejected++
	}
	o.mu.Unlock()
	switch {
	case !valid:
		w.Header().Set("WWW-Authenticate", `Bearer realm="JobManager", error="invalid_token"`)
		oauth2JSON(w, http.StatusUnauthorized, map[string]string{"error": "missing, unknown or expired bearer token"})
	case !allowed:
		oauth2JSON(w, http.StatusForbidden, map[string]string{"error": fmt.Sprintf("client %s may not use this mandator", it.client)})
	default:
		o.api.ServeHTTP(w, r)
	}
}

// allowed reports whether client may act for mandator; o.mu is held.
func (o *OAuth2) allowed(clientID, mandator string) bool {
	for _, c := range o.cfg.Clients {
		if c.ID == clientID {
			return len(c.Mandators) == 0 || slices.Contains(c.Mandators, mandator)
		}
	}
	return false
}

// serveToken is the token endpoint: RFC 6749 section 4.4 with the error answers of section 5.2.
func (o *OAuth2) serveToken(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, errCode, desc string) {
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		}
		oauth2JSON(w, code, map[string]string{"error": errCode, "error_description": desc})
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		fail(http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	form := r.PostForm
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 section 2.3.1: the Basic credentials are form-encoded first.
		if u, err := url.QueryUnescape(id); err == nil {
			id = u
		}
		if u, err := url.QueryUnescape(secret); err == nil {
			secret = u
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	var client *OAuth2Client
	for i := range o.cfg.Clients {
		if o.cfg.Clients[i].ID == id {
			client = &o.cfg.Clients[i]
		}
	}
	if client == nil || subtle.ConstantTimeCompare([]byte(secret), []byte(client.Secret)) != 1 {
		fail(http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		fail(http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q", gt))
		return
	}
	scope := form.Get("scope")
	for _, s := range strings.Fields(scope) {
		if len(client.Scopes) > 0 && !slices.Contains(client.Scopes, s) {
			fail(http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q not allowed for client %s", s, client.ID))
			return
		}
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails
	tok := "sim-" + hex.EncodeToString(raw[:])
	o.mu.Lock()
	o.tokens[tok] = issued{client: client.ID, expires: o.cfg.Now().Add(o.cfg.TokenTTL), scope: scope}
	o.issued[client.ID]++
	o.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	answer := map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int64(math.Ceil(o.cfg.TokenTTL.Seconds())),
	}
	if scope != "" {
		answer["scope"] = scope
	}
	oauth2JSON(w, http.StatusOK, answer)
}

func oauth2JSON(w http.ResponseWriter, code int, v any) {
	body, _ := json.Marshal(v) // maps of strings and numbers always marshal
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

package jobmanager

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tokenEndpoint is a hand-written OAuth2 token endpoint: it checks the client credentials (Basic
// or form), issues tok-<client>-<n> with expiresIn seconds, and records what it was asked.
type tokenEndpoint struct {
	*httptest.Server
	secrets   map[string]string // client id -> secret
	expiresIn atomic.Int64
	fail      atomic.Bool // answer 503

	mu       sync.Mutex
	requests int
	scopes   []string
	clients  []string
}

func newTokenEndpoint(t *testing.T, secrets map[string]string) *tokenEndpoint {
	te := &tokenEndpoint{secrets: secrets}
	te.expiresIn.Store(60)
	te.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
		}
		te.mu.Lock()
		te.requests++
		n := te.requests
		te.scopes = append(te.scopes, r.PostFormValue("scope"))
		te.clients = append(te.clients, id)
		te.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case te.fail.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"temporarily_unavailable"}`))
		case r.PostFormValue("grant_type") != "client_credentials":
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"unsupported_grant_type"}`))
		case te.secrets[id] == "" || te.secrets[id] != secret:
			w.WriteHeader(http.StatusUnauthorized)
			// A careless server echoing the secret back must not make it into an error.
			_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"bad secret ` + secret + `"}`))
		default:
			_ = json.NewEncoder(w).Encode(map[string]any{
				"access_token": "tok-" + id + "-" + strconv.Itoa(n), "token_type": "bearer", "expires_in": te.expiresIn.Load(),
			})
		}
	}))
	t.Cleanup(te.Close)
	return te
}

func (te *tokenEndpoint) count() int {
	te.mu.Lock()
	defer te.mu.Unlock()
	return te.requests
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestOAuth2CachesAndRefreshesBeforeExpiry(t *testing.T) {
	ctx := context.Background()
	te := newTokenEndpoint(t, map[string]string{"bridge": "s3cret"})
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte("s3cret\n"), 0o600))
	clock := &fakeClock{now: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	ts, err := OAuth2(OAuth2Config{
		Client:        OAuth2Client{TokenURL: te.URL, ClientID: "bridge", ClientSecretFile: secretFile, Scopes: []string{"jobs.write", "jobs.read"}},
		RefreshBefore: 10 * time.Second,
		Now:           clock.Now,
	})
	require.NoError(t, err)

	tok, err := ts.Token(ctx, "zh-kanti")
	require.NoError(t, err)
	assert.Equal(t, "tok-bridge-1", tok)
	tok, err = ts.Token(ctx, "be-gym")
	require.NoError(t, err)
	assert.Equal(t, "tok-bridge-1", tok, "one default client: one token for every mandator")
	assert.Equal(t, 1, te.count(), "cached")

	clock.Add(49 * time.Second) // 11s of 60s left: still fresh
	tok, _ = ts.Token(ctx, "zh-kanti")
	assert.Equal(t, "tok-bridge-1", tok)
	assert.Equal(t, 1, te.count())

	clock.Add(2 * time.Second) // 9s left: inside RefreshBefore, replaced before it expires
	tok, err = ts.Token(ctx, "zh-kanti")
	require.NoError(t, err)
	assert.Equal(t, "tok-bridge-2", tok)
	assert.Equal(t, []string{"jobs.write jobs.read", "jobs.write jobs.read"}, te.scopes)

	// A short-lived token is refreshed at half its lifetime, not RefreshBefore ahead (which would
	// mean a token request for every call).
	te.expiresIn.Store(4)
	clock.Add(time.Minute)
	tok, _ = ts.Token(ctx, "zh-kanti")
	assert.Equal(t, "tok-bridge-3", tok)
	clock.Add(1900 * time.Millisecond)
	tok, _ = ts.Token(ctx, "zh-kanti")
	assert.Equal(t, "tok-bridge-3", tok)
	clock.Add(200 * time.Millisecond)
	tok, _ = ts.Token(ctx, "zh-kanti")
	assert.Equal(t, "tok-bridge-4", tok)

	// The secret file is read at every token request: a rotated secret is used without a restart.
	te.secrets["bridge"] = "rotated"
	require.NoError(t, os.WriteFile(secretFile, []byte("rotated"), 0o600))
	clock.Add(5 * time.Second)
	tok, err = ts.Token(ctx, "zh-kanti")
	require.NoError(t, err)
	assert.Equal(t, "tok-bridge-5", tok)
}

func TestOAuth2RefreshFailureKeepsValidToken(t *testing.T) {
	ctx := context.Background()
	te := newTokenEndpoint(t, map[string]string{"bridge": "pw"})
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	ts, err := OAuth2(OAuth2Config{Client: OAuth2Client{TokenURL: te.URL, ClientID: "bridge", ClientSecret: "pw"}, Now: clock.Now})
	require.NoError(t, err)
	_, err = ts.Token(ctx, "m")
	require.NoError(t, err)

	te.fail.Store(true)
	clock.Add(45 * time.Second) // inside the default refresh margin (half of 60s), still valid
	tok, err := ts.Token(ctx, "m")
	require.NoError(t, err, "the old token is still valid")
	assert.Equal(t, "tok-bridge-1", tok)
	n := te.count()
	tok, _ = ts.Token(ctx, "m")
	assert.Equal(t, "tok-bridge-1", tok)
	assert.Equal(t, n, te.count(), "no token request for every call while the endpoint fails")

	clock.Add(20 * time.Second) // expired now
	_, err = ts.Token(ctx, "m")
	require.Error(t, err)
	assert.Contains(t, err.Error(), te.URL)
	assert.Contains(t, err.Error(), "client bridge")
	assert.Contains(t, err.Error(), "503")
	assert.Contains(t, err.Error(), "temporarily_unavailable")
}

func TestOAuth2ErrorsNameEndpointAndClientNeverSecret(t *testing.T) {
	te := newTokenEndpoint(t, map[string]string{"bridge": "right"})
	ts, err := OAuth2(OAuth2Config{Client: OAuth2Client{TokenURL: te.URL, ClientID: "bridge", ClientSecret: "wrong-secret-value"}})
	require.NoError(t, err)
	_, err = ts.Token(context.Background(), "m")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid_client")
	assert.Contains(t, err.Error(), "client bridge")
	assert.NotContains(t, err.Error(), "wrong-secret-value")
	assert.NotContains(t, err.Error(), "\n")

	missing := filepath.Join(t.TempDir(), "nope")
	ts, err = OAuth2(OAuth2Config{Client: OAuth2Client{TokenURL: te.URL, ClientID: "bridge", ClientSecretFile: missing}})
	require.NoError(t, err)
	_, err = ts.Token(context.Background(), "m")
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), missing)
}

func TestOAuth2Config(t *testing.T) {
	ok := OAuth2Client{TokenURL: "https://auth.example/token", ClientID: "c", ClientSecret: "s"}
	tests := []struct {
		name string
		cfg  OAuth2Config
		want string
	}{
		{"nothing", OAuth2Config{}, "TokenURL is empty"},
		{"relative", OAuth2Config{Client: OAuth2Client{TokenURL: "/token", ClientID: "c", ClientSecret: "s"}}, `TokenURL "/token": want an absolute http or https URL`},
		{"no id", OAuth2Config{Client: OAuth2Client{TokenURL: ok.TokenURL, ClientSecret: "s"}}, "ClientID is empty"},
		{"no secret", OAuth2Config{Client: OAuth2Client{TokenURL: ok.TokenURL, ClientID: "c"}}, "client c: no ClientSecret or ClientSecretFile"},
		{"two secrets", OAuth2Config{Client: OAuth2Client{TokenURL: ok.TokenURL, ClientID: "c", ClientSecret: "s", ClientSecretFile: "/f"}}, "not both"},
		{"bad scope", OAuth2Config{Client: OAuth2Client{TokenURL: ok.TokenURL, ClientID: "c", ClientSecret: "s", Scopes: []string{"a b"}}}, `scope "a b"`},
		{"bad mandator", OAuth2Config{Client: ok, Mandators: map[string]OAuth2Client{"a/b": {}}}, "invalid mandator"},
		{"override without id", OAuth2Config{Mandators: map[string]OAuth2Client{"zh": {TokenURL: ok.TokenURL, ClientSecret: "s"}}}, "mandator zh: ClientID is empty"},
		{"negative refresh", OAuth2Config{Client: ok, RefreshBefore: -time.Second}, "RefreshBefore -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OAuth2(tt.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), `"s"`)
		})
	}
	_, err := OAuth2(OAuth2Config{Mandators: map[string]OAuth2Client{"zh": ok}})
	assert.NoError(t, err, "only per-mandator clients, no default")
}

func TestOAuth2PerMandatorClients(t *testing.T) {
	ctx := context.Background()
	te := newTokenEndpoint(t, map[string]string{"bridge": "pw", "kanti": "kpw"})
	ts, err := OAuth2(OAuth2Config{
		Client: OAuth2Client{TokenURL: te.URL, ClientID: "bridge", ClientSecret: "pw", Scopes: []string{"jobs"}},
		Mandators: map[string]OAuth2Client{
			"zh-kanti": {ClientID: "kanti", ClientSecret: "kpw"}, // token URL and scopes inherited
			"be-gym":   {Scopes: []string{"jobs", "be"}},         // own token (own scopes), same client
		},
	})
	require.NoError(t, err)
	tok, err := ts.Token(ctx, "zh-kanti")
	require.NoError(t, err)
	assert.Equal(t, "tok-kanti-1", tok)
	tok, err = ts.Token(ctx, "be-gym")
	require.NoError(t, err)
	assert.Equal(t, "tok-bridge-2", tok)
	tok, err = ts.Token(ctx, "other")
	require.NoError(t, err)
	assert.Equal(t, "tok-bridge-3", tok)
	tok, _ = ts.Token(ctx, "another")
	assert.Equal(t, "tok-bridge-3", tok, "mandators without an entry share the default client's token")
	assert.Equal(t, []string{"kanti", "bridge", "bridge"}, te.clients)
	assert.Equal(t, []string{"jobs", "jobs be", "jobs"}, te.scopes)

	only, err := OAuth2(OAuth2Config{Mandators: map[string]OAuth2Client{"zh-kanti": {TokenURL: te.URL, ClientID: "kanti", ClientSecret: "kpw"}}})
	require.NoError(t, err)
	_, err = only.Token(ctx, "be-gym")
	assert.ErrorContains(t, err, "no client for mandator be-gym")
}

// TestOAuth2UnauthorizedForcesOneRefresh runs the client against an API that accepts only the
// newest token: after the tokens are invalidated, a request gets 401, the source requests one new
// token, and the request is sent again with it. Concurrent 401s share one token request, and an API
// that refuses every token causes one refresh per request, not a loop.
func TestOAuth2UnauthorizedForcesOneRefresh(t *testing.T) {
	ctx := context.Background()
	te := newTokenEndpoint(t, map[string]string{"bridge": "pw"})
	var accept atomic.Value // the one token the API takes; "" refuses all
	var calls atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if want := accept.Load().(string); want == "" || r.Header.Get("Authorization") != "Bearer "+want {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[]`))
	}))
	defer api.Close()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	ts, err := OAuth2(OAuth2Config{Client: OAuth2Client{TokenURL: te.URL, ClientID: "bridge", ClientSecret: "pw"}, Now: clock.Now})
	require.NoError(t, err)
	c, err := New(api.URL, WithTokenSource(ts))
	require.NoError(t, err)

	accept.Store("tok-bridge-1")
	_, err = c.Batches(ctx, "zh-kanti")
	require.NoError(t, err)
	require.Equal(t, 1, te.count())

	// The server forgot the token (e.g. restarted): 401, one new token, the request succeeds.
	accept.Store("tok-bridge-2")
	clock.Add(2 * time.Second)
	_, err = c.Batches(ctx, "zh-kanti")
	require.NoError(t, err)
	assert.Equal(t, 2, te.count())
	assert.EqualValues(t, 3, calls.Load(), "one request, one 401, one retry")

	// Eight requests at once hit 401 with the same stale token: one token request between them.
	accept.Store("tok-bridge-3")
	clock.Add(2 * time.Second)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = c.Batches(ctx, "zh-kanti") }()
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
	assert.Equal(t, 3, te.count(), "concurrent reloads share one token request")

	// An API that takes no token: one refresh, then the 401 is reported.
	accept.Store("")
	clock.Add(2 * time.Second)
	_, err = c.Batches(ctx, "zh-kanti")
	assert.True(t, errors.Is(err, ErrUnauthorized), "%v", err)
	assert.Equal(t, 4, te.count())
	_, err = c.Batches(ctx, "zh-kanti")
	assert.True(t, errors.Is(err, ErrUnauthorized), "%v", err)
	assert.Equal(t, 4, te.count(), "a token fetched under a second ago is not fetched again for a 401")
}

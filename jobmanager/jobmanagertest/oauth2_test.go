package jobmanagertest_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
)

func TestOAuth2IssuesShortLivedTokensTheAPIRequires(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	o, err := jobmanagertest.NewOAuth2(jobmanagertest.OAuth2Config{
		Clients: []jobmanagertest.OAuth2Client{
			{ID: "bridge", Secret: "pw", Scopes: []string{"jobs"}},
			{ID: "kanti", Secret: "kpw", Mandators: []string{"zh-kanti"}},
		},
		TokenTTL: 1500 * time.Millisecond,
		Now:      clock,
	}, jobmanagertest.New(jobmanagertest.Config{}))
	require.NoError(t, err)
	srv := httptest.NewServer(o)
	defer srv.Close()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, srv.Client())

	cc := &clientcredentials.Config{ClientID: "bridge", ClientSecret: "pw", TokenURL: srv.URL + jobmanagertest.OAuth2TokenPath, Scopes: []string{"jobs"}}
	tok, err := cc.Token(ctx)
	require.NoError(t, err)
	assert.Equal(t, "Bearer", tok.Type())
	assert.EqualValues(t, 2, tok.Extra("expires_in"), "1.5s announced as 2 whole seconds")
	assert.Equal(t, 1, o.Issued("bridge"))

	list := func(mandator, token string) int {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/"+mandator+"/api/v2.0/jobs/batches", nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, list("demo", tok.AccessToken))
	assert.Equal(t, http.StatusUnauthorized, list("demo", ""))
	assert.Equal(t, http.StatusUnauthorized, list("demo", "made-up"))
	advance(1500 * time.Millisecond)
	assert.Equal(t, http.StatusUnauthorized, list("demo", tok.AccessToken), "expired")

	kanti := &clientcredentials.Config{ClientID: "kanti", ClientSecret: "kpw", TokenURL: cc.TokenURL, AuthStyle: oauth2.AuthStyleInParams}
	kt, err := kanti.Token(ctx)
	require.NoError(t, err, "client credentials in the form work too")
	assert.Equal(t, http.StatusOK, list("zh-kanti", kt.AccessToken))
	assert.Equal(t, http.StatusForbidden, list("demo", kt.AccessToken), "kanti's tokens are for zh-kanti only")
	o.Revoke()
	assert.Equal(t, http.StatusUnauthorized, list("zh-kanti", kt.AccessToken), "revoked")
	assert.Equal(t, 5, o.Rejected())

	resp, err := srv.Client().Get(srv.URL + jobmanagertest.StatePath)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the state needs no token")

	// Refusals follow RFC 6749 section 5.2.
	for _, tt := range []struct {
		form url.Values
		code int
		err  string
	}{
		{url.Values{"grant_type": {"client_credentials"}, "client_id": {"bridge"}, "client_secret": {"nope"}}, 401, "invalid_client"},
		{url.Values{"grant_type": {"password"}, "client_id": {"bridge"}, "client_secret": {"pw"}}, 400, "unsupported_grant_type"},
		{url.Values{"grant_type": {"client_credentials"}, "client_id": {"bridge"}, "client_secret": {"pw"}, "scope": {"jobs admin"}}, 400, "invalid_scope"},
	} {
		resp, err := srv.Client().Post(cc.TokenURL, "application/x-www-form-urlencoded", strings.NewReader(tt.form.Encode()))
		require.NoError(t, err)
		var body strings.Builder
		_, _ = io.Copy(&body, resp.Body)
		resp.Body.Close()
		assert.Equal(t, tt.code, resp.StatusCode, tt.form)
		assert.Contains(t, body.String(), `"error":"`+tt.err+`"`)
	}
	assert.Equal(t, 2, o.Issued("bridge")+o.Issued("kanti"), "refused requests issue nothing")
}

func TestNewOAuth2Checks(t *testing.T) {
	api := jobmanagertest.New(jobmanagertest.Config{})
	for _, tt := range []struct {
		cfg  jobmanagertest.OAuth2Config
		want string
	}{
		{jobmanagertest.OAuth2Config{}, "no clients"},
		{jobmanagertest.OAuth2Config{Clients: []jobmanagertest.OAuth2Client{{ID: "a"}}}, `client "a" needs an id and a secret`},
		{jobmanagertest.OAuth2Config{Clients: []jobmanagertest.OAuth2Client{{ID: "a", Secret: "s"}, {ID: "a", Secret: "t"}}}, "given twice"},
		{jobmanagertest.OAuth2Config{Clients: []jobmanagertest.OAuth2Client{{ID: "a", Secret: "s", Mandators: []string{"a b"}}}}, `mandator "a b"`},
		{jobmanagertest.OAuth2Config{Clients: []jobmanagertest.OAuth2Client{{ID: "a", Secret: "s"}}, TokenTTL: -1}, "TokenTTL is negative"},
	} {
		_, err := jobmanagertest.NewOAuth2(tt.cfg, api)
		assert.ErrorContains(t, err, tt.want)
	}
}

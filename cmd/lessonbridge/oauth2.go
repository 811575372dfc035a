package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
)

// oauth2Flags are run's OAuth2 client-credentials flags (JobManager tokens from a token endpoint).
type oauth2Flags struct {
	TokenURL         string
	ClientID         string
	ClientSecretFile string
	Scopes           string
	ClientsFile      string
}

func registerOAuth2Flags(fs *flag.FlagSet, f *oauth2Flags) {
	fs.StringVar(&f.TokenURL, "jobmanager-oauth2-token-url", "", "OAuth2 token endpoint: JobManager tokens by the client-credentials grant instead of a static token")
	fs.StringVar(&f.ClientID, "jobmanager-oauth2-client-id", "", "OAuth2 client id (with --jobmanager-oauth2-token-url)")
	fs.StringVar(&f.ClientSecretFile, "jobmanager-oauth2-client-secret-file", "", "file holding the OAuth2 client secret; read at every token request")
	fs.StringVar(&f.Scopes, "jobmanager-oauth2-scopes", "", "OAuth2 scopes to request, comma- or space-separated")
	fs.StringVar(&f.ClientsFile, "jobmanager-oauth2-clients-file", "", `JSON file of per-mandator OAuth2 clients {"<mandator>": {"clientId", "clientSecretFile", "scopes", "tokenUrl"}}; unset fields come from the flags`)
}

func (f oauth2Flags) set() bool {
	return f.TokenURL != "" || f.ClientID != "" || f.ClientSecretFile != "" || f.Scopes != "" || f.ClientsFile != ""
}

// oauth2ClientEntry is one mandator's entry of --jobmanager-oauth2-clients-file. A relative
// clientSecretFile is relative to the clients file (so one mounted Secret can hold both).
type oauth2ClientEntry struct {
	TokenURL         string   `json:"tokenUrl"`
	ClientID         string   `json:"clientId"`
	ClientSecretFile string   `json:"clientSecretFile"`
	Scopes           []string `json:"scopes"`
}

// splitScopes splits a scope list at commas and white space.
func splitScopes(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// settings checks the OAuth2 flags (reading the clients file and checking that every secret file
// can be read, through fsys) and returns the token source's configuration; nil when no OAuth2 flag
// is set. Problems are reported through bad, each naming its flag.
func (f oauth2Flags) settings(fsys fileSystem, bad func(name, value, why string)) *jobmanager.OAuth2Config {
	if !f.set() {
		return nil
	}
	cfg := &jobmanager.OAuth2Config{Client: jobmanager.OAuth2Client{
		TokenURL: f.TokenURL, ClientID: f.ClientID, ClientSecretFile: f.ClientSecretFile, Scopes: splitScopes(f.Scopes),
	}}
	ok := true
	check := func(flagName, value string, err error) {
		if err != nil {
			ok = false
			bad(flagName, value, strings.TrimPrefix(err.Error(), "jobmanager: oauth2: "))
		}
	}
	readable := func(flagName, value, path string) {
		if _, err := fsys.ReadFile(path); err != nil {
			check(flagName, value, fmt.Errorf("secret file %s cannot be read: %v", path, unwrapPathError(err)))
		}
	}
	// A default client (for mandators the clients file does not list) needs all three; with a
	// clients file and no client id, the flags only give what its entries leave out.
	defaultClient := f.ClientsFile == "" || f.ClientID != ""
	if defaultClient {
		switch {
		case f.TokenURL == "":
			check("jobmanager-oauth2-token-url", "", errors.New("is required with --jobmanager-oauth2-client-id (or give --jobmanager-oauth2-clients-file)"))
		case f.ClientID == "":
			check("jobmanager-oauth2-client-id", "", errors.New("is required with --jobmanager-oauth2-token-url (or give --jobmanager-oauth2-clients-file)"))
		case f.ClientSecretFile == "":
			check("jobmanager-oauth2-client-secret-file", "", errors.New("is required with --jobmanager-oauth2-client-id"))
		default:
			_, err := jobmanager.OAuth2(jobmanager.OAuth2Config{Client: cfg.Client})
			if err != nil && strings.Contains(err.Error(), "scope") {
				check("jobmanager-oauth2-scopes", f.Scopes, err)
			} else {
				check("jobmanager-oauth2-token-url", f.TokenURL, err)
			}
			readable("jobmanager-oauth2-client-secret-file", f.ClientSecretFile, f.ClientSecretFile)
		}
	}
	base := cfg.Client
	if !defaultClient {
		cfg.Client = jobmanager.OAuth2Client{}
	}
	if f.ClientsFile != "" {
		b, err := fsys.ReadFile(f.ClientsFile)
		if err != nil {
			check("jobmanager-oauth2-clients-file", f.ClientsFile, fmt.Errorf("cannot be read: %v", unwrapPathError(err)))
			return nil
		}
		var entries map[string]oauth2ClientEntry
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&entries); err != nil {
			check("jobmanager-oauth2-clients-file", f.ClientsFile, fmt.Errorf("not a JSON object of mandator -> {tokenUrl, clientId, clientSecretFile, scopes}: %v", err))
			return nil
		}
		if len(entries) == 0 {
			check("jobmanager-oauth2-clients-file", f.ClientsFile, errors.New("lists no mandator"))
		}
		cfg.Mandators = map[string]jobmanager.OAuth2Client{}
		names := make([]string, 0, len(entries))
		for m := range entries {
			names = append(names, m)
		}
		slices.Sort(names)
		for _, m := range names {
			e := entries[m]
			if e.ClientSecretFile != "" && !filepath.IsAbs(e.ClientSecretFile) {
				e.ClientSecretFile = filepath.Join(filepath.Dir(f.ClientsFile), e.ClientSecretFile)
			}
			c := jobmanager.OAuth2Client{TokenURL: e.TokenURL, ClientID: e.ClientID, ClientSecretFile: e.ClientSecretFile, Scopes: e.Scopes}
			if c.TokenURL == "" {
				c.TokenURL = base.TokenURL
			}
			if c.ClientSecretFile == "" {
				c.ClientSecretFile = base.ClientSecretFile
			}
			if len(c.Scopes) == 0 {
				c.Scopes = base.Scopes
			}
			cfg.Mandators[m] = c
			if e.ClientSecretFile != "" {
				readable("jobmanager-oauth2-clients-file", f.ClientsFile, e.ClientSecretFile)
			}
		}
	}
	if !ok {
		return nil
	}
	if _, err := jobmanager.OAuth2(*cfg); err != nil {
		check("jobmanager-oauth2-clients-file", f.ClientsFile, err)
		return nil
	}
	return cfg
}

// describe is the OAuth2 setting for the start-up log line: endpoint, client id, scopes and the
// mandators with their own client; paths of secret files, never their contents.
func describeOAuth2(c *jobmanager.OAuth2Config) string {
	var parts []string
	if c.Client.TokenURL != "" {
		parts = append(parts, fmt.Sprintf("oauth2 client %s at %s (secret file %s, scopes %q)", c.Client.ClientID,
			redactURLs(c.Client.TokenURL), c.Client.ClientSecretFile, strings.Join(c.Client.Scopes, " ")))
	}
	if len(c.Mandators) > 0 {
		names := make([]string, 0, len(c.Mandators))
		for m := range c.Mandators {
			names = append(names, m)
		}
		slices.Sort(names)
		parts = append(parts, "oauth2 clients of their own for "+strings.Join(names, ","))
	}
	return strings.Join(parts, "; ")
}

// newOAuth2Source builds the OAuth2 token source of s; the token endpoint is reached with the same
// trust (--jobmanager-ca) as JobManager.
func newOAuth2Source(s jmSettings) (jobmanager.TokenSource, error) {
	cfg := *s.OAuth2
	if s.RootCAs != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: s.RootCAs, MinVersion: tls.VersionTLS12}
		cfg.HTTPClient = &http.Client{
			Transport:     tr,
			Timeout:       jobmanager.DefaultTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return jobmanager.OAuth2(cfg)
}

// simOAuth2Flags are jobmanager-sim's OAuth2 flags.
type simOAuth2Flags struct {
	On       bool
	ClientID string
	Secret   string
	TTL      time.Duration
	Scopes   string
}

func registerSimOAuth2Flags(fs *flag.FlagSet) *simOAuth2Flags {
	f := &simOAuth2Flags{}
	fs.BoolVar(&f.On, "oauth2", false, "serve an OAuth2 token endpoint at "+jobmanagertest.OAuth2TokenPath+" (client-credentials grant) and require its tokens on the API (instead of --token)")
	fs.StringVar(&f.ClientID, "oauth2-client-id", "lessonbridge", "client id the token endpoint knows (with --oauth2)")
	fs.StringVar(&f.Secret, "oauth2-client-secret", "", "its client secret (required with --oauth2)")
	fs.DurationVar(&f.TTL, "oauth2-token-ttl", jobmanagertest.DefaultOAuth2TokenTTL, "lifetime of issued tokens (announced in whole seconds)")
	fs.StringVar(&f.Scopes, "oauth2-scopes", "", "scopes the client may request, comma-separated (empty: any)")
	return f
}

// wrap returns api behind the OAuth2 simulator when --oauth2 is given, else api unchanged; token is
// the --token flag, which --oauth2 replaces.
func (f *simOAuth2Flags) wrap(api http.Handler, token string) (http.Handler, error) {
	if !f.On {
		return api, nil
	}
	switch {
	case token != "":
		return nil, errors.New("--oauth2 replaces --token: give one of them")
	case f.Secret == "":
		return nil, errors.New("--oauth2 needs --oauth2-client-secret")
	case f.TTL <= 0:
		return nil, fmt.Errorf("--oauth2-token-ttl %v must be positive", f.TTL)
	}
	return jobmanagertest.NewOAuth2(jobmanagertest.OAuth2Config{
		Clients:  []jobmanagertest.OAuth2Client{{ID: f.ClientID, Secret: f.Secret, Scopes: simSplitList(f.Scopes)}},
		TokenTTL: f.TTL,
	}, api)
}

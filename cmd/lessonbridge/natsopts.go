package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The NATS connection options: one set of flags, registered by every command that talks to NATS
// (run, replay, publish, watch) and read from the same environment variables in each of them.

// natsFlagNames are the connection flags; their variables are run's LESSONBRIDGE_<FLAG> in every
// command (see envNameFor).
var natsFlagNames = []string{"context", "nats-url", "nats-creds", "nats-nkey", "nats-user", "nats-password",
	"nats-token", "nats-ca", "nats-cert", "nats-key"}

// natsFlagExtraEnv are the NATS tools' own variables, read after LESSONBRIDGE_<FLAG>.
var natsFlagExtraEnv = map[string][]string{"nats-url": {"NATS_URL"}, "context": {"NATS_CONTEXT"}}

func isNATSFlag(name string) bool { return slices.Contains(natsFlagNames, name) }

func isNATSFlagSet(fs *flag.FlagSet) bool { return fs.Lookup("nats-url") != nil }

// natsDialTimeout bounds one connection attempt of the command-line tools.
const natsDialTimeout = 5 * time.Second

const natsFlagsHelp = `
NATS connection (the same flags and variables in run, replay, publish and watch): --nats-url, or
--context NAME for a NATS CLI context ($XDG_CONFIG_HOME/nats/context/NAME.json, by default
~/.config/nats/context/NAME.json; a path to a context file works too). Flags given explicitly
override the context's values; an authentication of another kind than the context's is refused.
Only one of --nats-creds, --nats-nkey, --nats-user/--nats-password and --nats-token may be given.
`

// optString is a string flag that remembers whether it was set (on the command line or from the
// environment), so that a context's value can fill in what was not given.
type optString struct {
	v   string
	set bool
}

func (o *optString) String() string     { return o.v }
func (o *optString) Set(s string) error { o.v, o.set = s, true; return nil }

// natsFlags are the raw values of the connection flags.
type natsFlags struct {
	Context, URL, Creds, NKey, User, Password, Token, CA, Cert, Key optString
}

// registerNATSFlags defines the connection flags on fs.
func registerNATSFlags(fs *flag.FlagSet) *natsFlags {
	f := &natsFlags{URL: optString{v: defaultNATSURL}}
	fs.Var(&f.Context, "context", "NATS CLI context name (or context file) to take server, credentials and TLS from")
	fs.Var(&f.URL, "nats-url", "NATS server URL(s), comma-separated (with --context: the context's unless given)")
	fs.Var(&f.Creds, "nats-creds", "NATS credentials file (JWT and NKey seed)")
	fs.Var(&f.NKey, "nats-nkey", "NATS NKey seed file")
	fs.Var(&f.User, "nats-user", "NATS user name (with --nats-password)")
	fs.Var(&f.Password, "nats-password", "NATS password")
	fs.Var(&f.Token, "nats-token", "NATS authentication token")
	fs.Var(&f.CA, "nats-ca", "PEM file of the CA(s) that signed the NATS server's certificate")
	fs.Var(&f.Cert, "nats-cert", "PEM client certificate for NATS TLS (with --nats-key)")
	fs.Var(&f.Key, "nats-key", "PEM private key of --nats-cert")
	return f
}

// natsSettings says how to reach and authenticate to NATS; empty fields are unused. With a context
// (Context set), auth and TLS come from natsCtx, into which the explicit flags were merged.
type natsSettings struct {
	URL                       string
	Creds, NKeySeedFile       string
	User, Password, Token     string
	CAFile, CertFile, KeyFile string
	Context                   string // the context's name or file; "": none

	natsCtx *natsContext // the loaded context with the explicit flags laid over it; nil: none
}

// settings checks the connection flags of command cmd (files are read through fsys) and merges a
// named context. Every problem is reported, each naming flag, variable and value.
func (f *natsFlags) settings(cmd string, fsys fileSystem) (natsSettings, []error) {
	var errs []error
	bad := func(name, value, why string) { errs = append(errs, flagProblem(cmd, name, value, why)) }
	readable := func(flagName, path string) []byte {
		if path == "" {
			return nil
		}
		b, err := fsys.ReadFile(path)
		if err != nil {
			bad(flagName, path, fmt.Sprintf("cannot be read: %v", unwrapPathError(err)))
		}
		return b
	}
	s := natsSettings{URL: f.URL.v, Creds: f.Creds.v, NKeySeedFile: f.NKey.v, User: f.User.v, Password: f.Password.v,
		Token: f.Token.v, CAFile: f.CA.v, CertFile: f.Cert.v, KeyFile: f.Key.v, Context: strings.TrimSpace(f.Context.v)}

	var ctxAuth string // the context's authentication, as the flag that replaces it
	if s.Context != "" {
		c, err := loadNATSContext(s.Context, f, fsys)
		if err != nil {
			bad("context", s.Context, err.Error())
		} else {
			s.natsCtx = c
			ctxAuth = natsContextAuth(c)
		}
	}
	var methods []string
	for _, m := range []struct{ flag, v string }{{"nats-creds", s.Creds}, {"nats-nkey", s.NKeySeedFile},
		{"nats-user", s.User + s.Password}, {"nats-token", s.Token}} {
		if m.v != "" {
			methods = append(methods, m.flag)
		}
	}
	if len(methods) > 1 {
		bad(methods[1], "(set)", "only one NATS authentication may be given, also --"+methods[0])
	}
	if c := s.natsCtx; c != nil {
		if ctxAuth != "" && len(methods) > 0 && methods[0] != ctxAuth {
			bad(methods[0], "(set)", fmt.Sprintf("context %q authenticates with %s; give --%s to replace it, or no --context",
				s.Context, strings.TrimPrefix(ctxAuth, "nats-"), ctxAuth))
		}
		// The context's values where no flag was given (loadNATSContext laid the given ones over it).
		s.URL, s.CAFile, s.CertFile, s.KeyFile = c.URL, c.CA, c.Cert, c.Key
		if len(methods) == 0 {
			s.Creds, s.NKeySeedFile, s.User, s.Password, s.Token = c.Creds, c.NKey, c.User, c.Password, c.Token
		}
		for _, p := range []struct{ field, given, path string }{{"creds", f.Creds.v, s.Creds}, {"nkey", f.NKey.v, s.NKeySeedFile},
			{"cert", f.Cert.v, s.CertFile}, {"key", f.Key.v, s.KeyFile}, {"ca", f.CA.v, s.CAFile}} {
			if p.given != "" || p.path == "" {
				continue
			}
			if _, err := fsys.ReadFile(p.path); err != nil {
				bad("context", s.Context, fmt.Sprintf("its %s %s cannot be read: %v", p.field, p.path, unwrapPathError(err)))
			}
		}
	}
	if (s.User == "") != (s.Password == "") {
		if s.User == "" {
			bad("nats-user", "", "must be given with --nats-password")
		} else {
			bad("nats-password", "(unset)", "must be given with --nats-user")
		}
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		if s.CertFile == "" {
			bad("nats-cert", "", "must be given with --nats-key")
		} else {
			bad("nats-key", "", "must be given with --nats-cert")
		}
	}
	readable("nats-creds", f.Creds.v)
	readable("nats-nkey", f.NKey.v)
	readable("nats-cert", f.Cert.v)
	readable("nats-key", f.Key.v)
	if pem := readable("nats-ca", f.CA.v); pem != nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
		bad("nats-ca", f.CA.v, "holds no PEM certificate")
	}

	if strings.TrimSpace(s.URL) == "" {
		bad("nats-url", s.URL, "must name at least one server")
	}
	return s, errs
}

// natsContext is a NATS CLI context file (~/.config/nats/context/NAME.json), the part of it that
// this program uses. It is read by a small reader rather than github.com/nats-io/jsm.go/natscontext:
// that package imports the whole jsm.go manager (and through it an expression-language VM and the
// JetStream API schema registry), five new modules and +7.8 MB (+25 %) on the binary for reading
// one JSON file. Fields this reader does not support are refused by name, never ignored.
type natsContext struct {
	URL         string `json:"url"`
	Token       string `json:"token"`
	User        string `json:"user"`
	Password    string `json:"password"`
	Creds       string `json:"creds"`
	NKey        string `json:"nkey"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
	UserJWT     string `json:"user_jwt"`
	UserSeed    string `json:"user_seed"`
	JSDomain    string `json:"jetstream_domain"`
	JSAPIPrefix string `json:"jetstream_api_prefix"`
	InboxPrefix string `json:"inbox_prefix"`
	TLSFirst    bool   `json:"tls_first"`

	// Not supported: refused when set.
	NSC          string `json:"nsc"`
	SocksProxy   string `json:"socks_proxy"`
	WinCertStore string `json:"windows_cert_store"`
}

// natsContextNameRE is what the NATS CLI allows as a context name.
var natsContextNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,255}$`)

// loadNATSContext reads a NATS CLI context by name (from the NATS CLI's context directory) or from
// a file (a name with a path separator or ending in .json), with the explicitly given flags of f
// laid over it field by field. Paths in it may use ~ and $VARIABLES, as with the NATS CLI.
func loadNATSContext(name string, f *natsFlags, fsys fileSystem) (*natsContext, error) {
	path := name
	if !strings.ContainsRune(name, '/') && !strings.HasSuffix(name, ".json") {
		if !natsContextNameRE.MatchString(name) || strings.Contains(name, "..") {
			return nil, errors.New("is not a context name (letters, digits, '.', '-', '_') or a path to a context file")
		}
		dir, err := natsContextDir()
		if err != nil {
			return nil, fmt.Errorf("cannot find the NATS context directory: %w", err)
		}
		path = filepath.Join(dir, name+".json")
	}
	b, err := fsys.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no such NATS context (looked for %s)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", path, unwrapPathError(err))
	}
	var c natsContext
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s is not a NATS context file: %v", path, err)
	}
	for _, u := range []struct{ field, v string }{{"nsc", c.NSC}, {"socks_proxy", c.SocksProxy},
		{"windows_cert_store", c.WinCertStore}} {
		if u.v != "" {
			return nil, fmt.Errorf("%s sets %q, which lessonbridge does not support; give the connection with the --nats-* flags", path, u.field)
		}
	}
	for _, v := range []struct{ field, v string }{{"creds", c.Creds}, {"nkey", c.NKey}, {"password", c.Password},
		{"token", c.Token}, {"user_jwt", c.UserJWT}, {"user_seed", c.UserSeed}} {
		if scheme, _, ok := strings.Cut(v.v, "://"); ok && scheme != "file" {
			return nil, fmt.Errorf("%s: %q uses a %s:// reference, which lessonbridge does not resolve; give the value with --nats-%s instead",
				path, v.field, scheme, strings.ReplaceAll(strings.TrimPrefix(v.field, "user_"), "_", "-"))
		}
	}
	for _, p := range []*string{&c.Creds, &c.NKey, &c.Cert, &c.Key, &c.CA} {
		*p = expandPath(strings.TrimPrefix(*p, "file://"))
	}
	over := func(dst *string, o *optString) {
		if o.set && o.v != "" {
			*dst = o.v
		}
	}
	over(&c.URL, &f.URL)
	over(&c.Creds, &f.Creds)
	over(&c.NKey, &f.NKey)
	over(&c.User, &f.User)
	over(&c.Password, &f.Password)
	over(&c.Token, &f.Token)
	over(&c.CA, &f.CA)
	over(&c.Cert, &f.Cert)
	over(&c.Key, &f.Key)
	if c.URL == "" {
		c.URL = defaultNATSURL
	}
	if (c.Cert == "") != (c.Key == "") {
		return nil, fmt.Errorf("%s: cert and key go together", path)
	}
	return &c, nil
}

// expandPath expands a leading ~ and $VARIABLES in a path, as the NATS CLI does.
func expandPath(p string) string {
	if p == "" {
		return ""
	}
	p = os.ExpandEnv(p)
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[1:])
		}
	}
	return p
}

// natsContextDir is where the NATS CLI keeps its contexts.
func natsContextDir() (string, error) {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "nats", "context"), nil
}

// natsContextAuth names the connection flag of the authentication c uses ("" for none).
func natsContextAuth(c *natsContext) string {
	switch {
	case c.User != "":
		return "nats-user"
	case c.Creds != "", c.UserJWT != "":
		return "nats-creds"
	case c.NKey != "":
		return "nats-nkey"
	case c.Token != "":
		return "nats-token"
	}
	return ""
}

// authOptions are the authentication and TLS options of s.
func (s natsSettings) authOptions() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case s.Creds != "":
		opts = append(opts, nats.UserCredentials(s.Creds))
	case s.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(s.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey %s: %w", s.NKeySeedFile, err)
		}
		opts = append(opts, o)
	case s.User != "":
		opts = append(opts, nats.UserInfo(s.User, s.Password))
	case s.Token != "":
		opts = append(opts, nats.Token(s.Token))
	}
	if s.CAFile != "" {
		opts = append(opts, nats.RootCAs(s.CAFile))
	}
	if s.CertFile != "" {
		opts = append(opts, nats.ClientCert(s.CertFile, s.KeyFile))
	}
	if c := s.natsCtx; c != nil {
		switch {
		case c.UserJWT != "" && c.UserSeed != "" && s.Creds == "":
			opts = append(opts, nats.UserJWTAndSeed(c.UserJWT, c.UserSeed))
		case c.UserJWT != "" && s.Creds == "":
			return nil, fmt.Errorf("--context %s: user_jwt needs user_seed", s.Context)
		}
		if c.InboxPrefix != "" {
			opts = append(opts, nats.CustomInboxPrefix(c.InboxPrefix))
		}
		if c.TLSFirst {
			opts = append(opts, nats.TLSHandshakeFirst())
		}
	}
	return opts, nil
}

// authLabel describes the authentication for logs, without secrets.
func (s natsSettings) authLabel() string {
	prefix := ""
	if s.Context != "" {
		prefix = "context " + s.Context + ": "
	}
	switch {
	case s.Creds != "":
		return prefix + "creds file " + s.Creds
	case s.NKeySeedFile != "":
		return prefix + "nkey seed file " + s.NKeySeedFile
	case s.User != "":
		return prefix + "user " + s.User
	case s.Token != "":
		return prefix + "token"
	case s.natsCtx != nil && s.natsCtx.UserJWT != "":
		return prefix + "user JWT"
	}
	return prefix + "none"
}

// dialNATS connects once for a command-line tool: it fails at once when no server accepts the
// connection (refused, unreachable, authorization violation) instead of retrying. extra options
// come last.
func dialNATS(s natsSettings, name string, extra ...nats.Option) (*nats.Conn, error) {
	auth, err := s.authOptions()
	if err != nil {
		return nil, err
	}
	opts := append([]nats.Option{nats.Name(name), nats.Timeout(natsDialTimeout)}, auth...)
	nc, err := nats.Connect(s.URL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", redactURLs(s.URL), err)
	}
	return nc, nil
}

// newJetStream is the JetStream API of nc, with the context's JetStream domain or API prefix.
func (s natsSettings) newJetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	if s.natsCtx != nil {
		switch {
		case s.natsCtx.JSDomain != "":
			return jetstream.NewWithDomain(nc, s.natsCtx.JSDomain)
		case s.natsCtx.JSAPIPrefix != "":
			return jetstream.NewWithAPIPrefix(nc, s.natsCtx.JSAPIPrefix)
		}
	}
	return jetstream.New(nc)
}

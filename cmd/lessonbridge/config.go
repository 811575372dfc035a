package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/internal/tracing"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/publisher"
)

// runFlags are the raw values of `run`'s flags, as given on the command line or in the environment.
// Everything is kept as text so that settings can report every bad value at once, each naming its
// flag, its environment variable and the value, instead of stopping at the first one.
type runFlags struct {
	NATS *natsFlags // the connection flags every NATS command shares (natsopts.go)

	JobManagerURL       string
	JobManagerToken     string
	JobManagerTokenFile string
	JobManagerTokenDir  string
	JobManagerCA        string
	OAuth2              oauth2Flags

	PollSchedule     string
	PollTimeout      string
	NotFoundGrace    string
	BatchLinger      string
	BatchMaxLessons  string
	AckWait          string
	MaxHeld          string
	ShutdownGrace    string
	TechRetries      string
	TechRetryDelay   string
	Isolate          string
	Mandators        string
	EnsureTopology   boolText
	PriorityGroup    string
	MessageRulesFile string

	InputStream       string
	OutcomeStream     string
	DeadLetterStream  string
	ChangesSubject    string
	OutcomeSubject    string
	DeadLetterSubject string
	Consumer          string
	LedgerBucket      string
	JobIDPrefix       string

	HTTPAddr  string
	Pprof     string
	LogLevel  string
	LogFormat string

	Cluster clusterFlags // cluster.go

	// Concurrency and sizes (issue 13): defaults that fit one bridge on two cores.
	MaxSubmits    string
	MaxPolls      string
	PullBatch     string
	BatchMaxBytes string
	PinnedTTL     string
}

// boolText is a boolean flag kept as text (so `--ensure-topology` alone means true and a bad value
// from the environment is reported with the others instead of aborting the parse).
type boolText string

func (b *boolText) String() string     { return string(*b) }
func (b *boolText) Set(s string) error { *b = boolText(s); return nil }
func (b *boolText) IsBoolFlag() bool   { return true }

// runFlagExtraEnv are the environment variables read for a flag besides LESSONBRIDGE_<FLAG>.
var runFlagExtraEnv = natsFlagExtraEnv

// registerRunFlags defines `run`'s flags on fs, with the contract's defaults.
func registerRunFlags(fs *flag.FlagSet) *runFlags {
	f := &runFlags{EnsureTopology: "true"}
	s := func(p *string, name, def, usage string) { fs.StringVar(p, name, def, usage) }
	subjects := publisher.DefaultSubjects()

	f.NATS = registerNATSFlags(fs)

	s(&f.JobManagerURL, "jobmanager-url", "", "JobManager base URL, before /{mandator}/api/v2.0/... (required)")
	s(&f.JobManagerToken, "jobmanager-token", "", "JobManager bearer token (prefer --jobmanager-token-file)")
	s(&f.JobManagerTokenFile, "jobmanager-token-file", "", "file holding the bearer token; re-read when JobManager answers 401")
	s(&f.JobManagerTokenDir, "jobmanager-token-dir", "", "directory of per-mandator token files <dir>/<mandator>, fallback <dir>/default")
	s(&f.JobManagerCA, "jobmanager-ca", "", "PEM file of the CA(s) that signed JobManager's certificate (default: system roots)")
	registerOAuth2Flags(fs, &f.OAuth2)

	s(&f.PollSchedule, "poll-schedule", "3s,5s,10s,20s,30s", "waits between status polls, comma-separated; the last repeats; jittered")
	s(&f.PollTimeout, "poll-timeout", "30m", "give up polling a batch after this")
	s(&f.NotFoundGrace, "not-found-grace", "2m", "how long a 404 on status counts as \"not known yet\"")
	s(&f.BatchLinger, "batch-linger", "2s", "how long a group waits for more events before it is submitted")
	s(&f.BatchMaxLessons, "batch-max-lessons", "500", "lessons per submit request at most")
	s(&f.AckWait, "ack-wait", "30s", "the input consumer's AckWait; held messages are kept alive every third of it")
	s(&f.MaxHeld, "max-held", "100000", "input messages held at most; the bridge stops pulling above")
	s(&f.ShutdownGrace, "shutdown-grace", "10s", "at shutdown, how long in-flight batches get to settle")
	s(&f.TechRetries, "technical-retries", "0", "resubmit a batch JobManager failed with a technical error as a new batch (new JobIDs) at most this often; 0: never (the guide warns against blind retries)")
	s(&f.TechRetryDelay, "technical-retry-delay", "1m", "wait before each such resubmission")
	s(&f.Isolate, "isolate", "on", "failure isolation (contract 4a): on: a batch JobManager fails with a data error is split, only the lessons at fault fail and the others are resubmitted with new JobIDs; off: the whole batch fails")
	s(&f.Mandators, "mandators", "", "allow-list of mandators, comma-separated (empty: all); others are dead-lettered")
	fs.Var(&f.EnsureTopology, "ensure-topology", "create missing streams, consumer and ledger bucket at start (existing ones are never changed)")
	s(&f.PriorityGroup, "priority-group", "", "pinned-client priority group for several instances (high availability), e.g. lessonbridge; empty: off")
	s(&f.MessageRulesFile, "message-rules-file", "", `extra rules classifying JobManager ErrorMessages, one "data|technical <regexp>" per line`)

	s(&f.InputStream, "input-stream", "LESSONS", "stream of the lesson changes")
	s(&f.OutcomeStream, "outcome-stream", "LESSON_OUTCOMES", "stream of the outcome events")
	s(&f.DeadLetterStream, "deadletter-stream", "LESSON_DEADLETTER", "stream of the dead letters")
	s(&f.ChangesSubject, "changes-subject", subjects.Changes, "subject prefix of lesson changes (<prefix>.<mandator>)")
	s(&f.OutcomeSubject, "outcome-subject", subjects.Outcomes, "subject prefix of outcome events")
	s(&f.DeadLetterSubject, "deadletter-subject", subjects.DeadLetter, "subject prefix of dead letters")
	s(&f.Consumer, "consumer", "lessonbridge", "durable pull consumer on the input stream")
	s(&f.LedgerBucket, "ledger-bucket", "lessonbridge_ledger", "KV bucket of the crash-recovery ledger")
	s(&f.JobIDPrefix, "job-id-prefix", "lb", "prefix of generated JobIDs")

	s(&f.HTTPAddr, "http-addr", "127.0.0.1:8081", "address of /metrics, /healthz, /readyz and /batches (empty disables)")
	s(&f.Pprof, "pprof", "off", "on: also serve Go's profiles at /debug/pprof/ on --http-addr (CPU, heap, block, mutex, goroutines, execution trace); keep the address private")
	s(&f.LogLevel, "log-level", "info", "debug, info, warn or error")
	s(&f.LogFormat, "log-format", "json", "json or console")
	f.Cluster.register(fs)
	s(&f.MaxSubmits, "max-concurrent-submits", "8", "submit requests to JobManager in flight at once")
	s(&f.MaxPolls, "max-concurrent-polls", "32", "status requests to JobManager in flight at once")
	s(&f.PullBatch, "pull-batch", "1000", "messages asked from the server per pull request")
	s(&f.BatchMaxBytes, "batch-max-bytes", "4194304", "estimated submit request body size at most, in bytes (with --batch-max-lessons)")
	s(&f.PinnedTTL, "pinned-ttl", "", "with --priority-group: how long the server keeps an instance pinned without its pulls (default: --ack-wait)")
	return f
}

// runSettings is the checked configuration of `run`.
type runSettings struct {
	Bridge     consumer.Config // without Logger
	NATS       natsSettings
	JobManager jmSettings
	HTTPAddr   string
	Pprof      bool // serve /debug/pprof/ on HTTPAddr
	LogLevel   string
	LogFormat  string
	RulesFile  string
}

// jmSettings says how to reach JobManager. At most one of Token, TokenFile and TokenDir is set.
type jmSettings struct {
	// Tracing wraps the HTTP calls so that they carry their span's traceparent (nil: off); set by run, not by a flag.
	Tracing   *tracing.Provider
	URL       string
	Token     string
	TokenFile string
	TokenDir  string
	CAFile    string
	RootCAs   *x509.CertPool // from CAFile; nil: system roots

	// OAuth2, when set, takes tokens from an OAuth2 token endpoint instead of the options above.
	OAuth2 *jobmanager.OAuth2Config
}

// fileSystem is what settings reads: the OS in production, an fstest.MapFS in tests.
type fileSystem interface {
	ReadFile(name string) ([]byte, error)
	Stat(name string) (fs.FileInfo, error)
}

type osFS struct{}

func (osFS) ReadFile(name string) ([]byte, error)  { return os.ReadFile(name) }
func (osFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

var (
	flagNameRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	flagSubjectRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	jobIDPrefixRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
)

// flagError names a flag of run, its environment variable(s) and the bad value.
func flagError(name, value, why string) error { return flagProblem("run", name, value, why) }

// settings checks every value of f and maps it onto the bridge's configuration. It returns every
// problem it finds, each naming flag, environment variable and value; files named by flags are read
// (or, for token files, checked) through fsys.
func (f runFlags) settings(fsys fileSystem) (runSettings, []error) {
	var errs []error
	bad := func(name, value, why string) { errs = append(errs, flagError(name, value, why)) }

	positive := func(name, v string) time.Duration {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		switch {
		case err != nil:
			bad(name, v, "not a duration (use Go syntax such as 250ms, 2s, 30m)")
		case d <= 0:
			bad(name, v, "must be positive")
		}
		return d
	}
	atLeast := func(min int, name, v, why string) int {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		switch {
		case err != nil:
			bad(name, v, "not an integer")
		case n < min:
			bad(name, v, why)
		}
		return n
	}
	atLeastOne := func(name, v string) int { return atLeast(1, name, v, "must be at least 1") }
	name := func(flagName, v string) string {
		if !flagNameRE.MatchString(v) {
			bad(flagName, v, "must be 1-255 letters, digits, '-' or '_'")
		}
		return v
	}
	subject := func(flagName, v string) string {
		if !flagSubjectRE.MatchString(v) {
			bad(flagName, v, "must be dot-separated tokens of letters, digits, '-' or '_' (no wildcards)")
		}
		return v
	}
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

	var s runSettings
	c := &s.Bridge

	// Bridge engine.
	for _, part := range strings.Split(f.PollSchedule, ",") {
		part = strings.TrimSpace(part)
		d, err := time.ParseDuration(part)
		switch {
		case part == "":
			bad("poll-schedule", f.PollSchedule, "has an empty entry")
		case err != nil:
			bad("poll-schedule", f.PollSchedule, fmt.Sprintf("%q is not a duration", part))
		case d <= 0:
			bad("poll-schedule", f.PollSchedule, fmt.Sprintf("%q is not positive", part))
		default:
			c.PollSchedule = append(c.PollSchedule, d)
		}
	}
	c.PollTimeout = positive("poll-timeout", f.PollTimeout)
	c.NotFoundGrace = positive("not-found-grace", f.NotFoundGrace)
	c.BatchLinger = positive("batch-linger", f.BatchLinger)
	c.BatchMaxLessons = atLeastOne("batch-max-lessons", f.BatchMaxLessons)
	c.AckWait = positive("ack-wait", f.AckWait)
	c.MaxHeld = atLeastOne("max-held", f.MaxHeld)
	c.ShutdownGrace = positive("shutdown-grace", f.ShutdownGrace)
	c.TechnicalRetries = atLeast(0, "technical-retries", f.TechRetries, "must be a whole number, 0 or more")
	c.TechnicalRetryDelay = positive("technical-retry-delay", f.TechRetryDelay)
	switch strings.ToLower(strings.TrimSpace(f.Isolate)) {
	case "on":
	case "off":
		c.IsolateOff = true
	default:
		bad("isolate", f.Isolate, "must be on or off")
	}
	for _, m := range strings.Split(f.Mandators, ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		if !mandatorToken.MatchString(m) {
			bad("mandators", f.Mandators, fmt.Sprintf("%q must match [A-Za-z0-9_-]{1,64}", m))
			continue
		}
		c.Mandators = append(c.Mandators, m)
	}
	ensure, err := strconv.ParseBool(strings.TrimSpace(string(f.EnsureTopology)))
	if err != nil {
		bad("ensure-topology", string(f.EnsureTopology), "must be true or false")
	}
	c.EnsureTopology = &ensure
	if f.PriorityGroup != "" {
		c.PriorityGroup = name("priority-group", f.PriorityGroup)
	}
	if rules := readable("message-rules-file", f.MessageRulesFile); rules != nil {
		r, err := jobmanager.ParseMessageRules(bytes.NewReader(rules))
		if err != nil {
			bad("message-rules-file", f.MessageRulesFile, err.Error())
		} else {
			c.MessageRules = &r
		}
	}
	s.RulesFile = f.MessageRulesFile

	c.InputStream = name("input-stream", f.InputStream)
	c.OutcomeStream = name("outcome-stream", f.OutcomeStream)
	c.DeadLetterStream = name("deadletter-stream", f.DeadLetterStream)
	c.ConsumerName = name("consumer", f.Consumer)
	c.LedgerBucket = name("ledger-bucket", f.LedgerBucket)
	c.ChangesPrefix = subject("changes-subject", f.ChangesSubject)
	c.OutcomesPrefix = subject("outcome-subject", f.OutcomeSubject)
	c.DeadLetterPrefix = subject("deadletter-subject", f.DeadLetterSubject)
	if f.ChangesSubject == f.OutcomeSubject || f.ChangesSubject == f.DeadLetterSubject {
		bad("changes-subject", f.ChangesSubject, "must differ from --outcome-subject and --deadletter-subject")
	} else if f.OutcomeSubject == f.DeadLetterSubject {
		bad("outcome-subject", f.OutcomeSubject, "must differ from --deadletter-subject")
	}
	if !jobIDPrefixRE.MatchString(f.JobIDPrefix) {
		bad("job-id-prefix", f.JobIDPrefix, "must be 1-64 letters, digits or '-'")
	}
	c.JobIDPrefix = f.JobIDPrefix
	f.Cluster.apply(c, bad)
	c.MaxConcurrentSubmits = atLeastOne("max-concurrent-submits", f.MaxSubmits)
	c.MaxConcurrentPolls = atLeastOne("max-concurrent-polls", f.MaxPolls)
	c.PullBatch = atLeastOne("pull-batch", f.PullBatch)
	c.BatchMaxBytes = atLeast(1024, "batch-max-bytes", f.BatchMaxBytes, "must be at least 1024")
	if strings.TrimSpace(f.PinnedTTL) != "" {
		c.PinnedTTL = positive("pinned-ttl", f.PinnedTTL)
	}

	// NATS.
	if f.NATS == nil { // a runFlags not made by registerRunFlags
		f.NATS = &natsFlags{URL: optString{v: defaultNATSURL}}
	}
	natsS, natsErrs := f.NATS.settings("run", fsys)
	s.NATS = natsS
	errs = append(errs, natsErrs...)

	// JobManager.
	s.JobManager = jmSettings{URL: f.JobManagerURL, Token: f.JobManagerToken, TokenFile: f.JobManagerTokenFile,
		TokenDir: f.JobManagerTokenDir, CAFile: f.JobManagerCA}
	if f.JobManagerURL == "" {
		bad("jobmanager-url", "", "is required")
	} else if why := jobManagerURLProblem(f.JobManagerURL, c.Mandators); why != "" {
		bad("jobmanager-url", f.JobManagerURL, why)
	}
	var tokens []string
	for _, t := range []struct{ flag, v string }{{"jobmanager-token", f.JobManagerToken},
		{"jobmanager-token-file", f.JobManagerTokenFile}, {"jobmanager-token-dir", f.JobManagerTokenDir}} {
		if t.v != "" {
			tokens = append(tokens, t.flag)
		}
	}
	if len(tokens) > 1 {
		value := "(set)"
		if tokens[1] != "jobmanager-token" {
			value = map[string]string{"jobmanager-token-file": f.JobManagerTokenFile, "jobmanager-token-dir": f.JobManagerTokenDir}[tokens[1]]
		}
		bad(tokens[1], value, "only one of --jobmanager-token, --jobmanager-token-file and --jobmanager-token-dir may be given, also --"+tokens[0])
	}
	if f.JobManagerToken != "" && strings.ContainsFunc(f.JobManagerToken, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		bad("jobmanager-token", "(set)", "contains whitespace or control characters")
	}
	readable("jobmanager-token-file", f.JobManagerTokenFile)
	if f.OAuth2.set() && len(tokens) > 0 {
		bad(tokens[0], "(set)", "cannot be combined with the --jobmanager-oauth2-* flags (tokens come from the token endpoint)")
	}
	s.JobManager.OAuth2 = f.OAuth2.settings(fsys, bad)
	if f.JobManagerTokenDir != "" {
		if fi, err := fsys.Stat(f.JobManagerTokenDir); err != nil {
			bad("jobmanager-token-dir", f.JobManagerTokenDir, fmt.Sprintf("cannot be read: %v", unwrapPathError(err)))
		} else if !fi.IsDir() {
			bad("jobmanager-token-dir", f.JobManagerTokenDir, "is not a directory")
		}
	}
	if pem := readable("jobmanager-ca", f.JobManagerCA); pem != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			bad("jobmanager-ca", f.JobManagerCA, "holds no PEM certificate")
		}
		s.JobManager.RootCAs = pool
	}

	// Process.
	s.HTTPAddr = strings.TrimSpace(f.HTTPAddr)
	if s.HTTPAddr != "" {
		if _, port, err := net.SplitHostPort(s.HTTPAddr); err != nil {
			bad("http-addr", f.HTTPAddr, "must be host:port (or empty to disable)")
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad("http-addr", f.HTTPAddr, "port must be a number 0-65535")
		}
	}
	switch strings.ToLower(strings.TrimSpace(f.Pprof)) {
	case "on":
		s.Pprof = true
		if s.HTTPAddr == "" {
			bad("pprof", f.Pprof, "needs --http-addr (it is served there)")
		}
	case "off":
	default:
		bad("pprof", f.Pprof, "must be on or off")
	}
	s.LogLevel, s.LogFormat = f.LogLevel, f.LogFormat
	if _, err := zapcore.ParseLevel(f.LogLevel); err != nil {
		bad("log-level", f.LogLevel, "must be debug, info, warn or error")
	}
	if f.LogFormat != "json" && f.LogFormat != "console" {
		bad("log-format", f.LogFormat, "must be json or console")
	}

	// The engine's own checks as a backstop, for what the flags above cannot express.
	if len(errs) == 0 {
		if err := c.Defaults().Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return s, errs
}

// jobManagerURLProblem says what is wrong with raw as JobManager's base URL ("" when nothing is):
// it must be an http(s) URL with a host that stops before /{mandator}/api/v2.0, which the client
// adds per call. A path holding an "api/v2.0" segment pair, or a segment that is one of mandators
// (the allow-list of run, the --mandator of batches), is refused with the URL to give instead.
func jobManagerURLProblem(raw string, mandators []string) string {
	raw = strings.TrimSpace(raw)
	if !strings.Contains(raw, "://") {
		return fmt.Sprintf("needs a scheme: give http://%s or https://%s", raw, raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Sprintf("is not a URL: %v", err)
	}
	segments := strings.Split(strings.Trim(u.Path, "/"), "/")
	for i, seg := range segments {
		if strings.EqualFold(seg, "api") && i+1 < len(segments) && strings.EqualFold(segments[i+1], "v2.0") {
			return fmt.Sprintf("must stop before /{mandator}/api/v2.0 (the bridge adds both per event): give %s",
				baseBefore(u, segments[:max(i-1, 0)]))
		}
	}
	for i, seg := range segments {
		if seg != "" && slices.Contains(mandators, seg) {
			return fmt.Sprintf("ends in or contains the mandator %q, which the bridge adds per event: give %s", seg,
				baseBefore(u, segments[:i]))
		}
	}
	if _, err := jobmanager.New(raw); err != nil {
		return strings.TrimPrefix(err.Error(), "jobmanager: ")
	}
	return ""
}

// baseBefore renders u with only the path segments keep.
func baseBefore(u *url.URL, keep []string) string {
	v := *u
	v.Path = ""
	if len(keep) > 0 {
		v.Path = "/" + strings.Join(keep, "/")
	}
	v.RawPath, v.RawQuery, v.Fragment = "", "", ""
	return v.Redacted()
}

// unwrapPathError drops the path from an *fs.PathError, which the message names already.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// setOrUnset shows whether a secret is configured without showing it.
func setOrUnset(secret string) string {
	if secret == "" {
		return "(unset)"
	}
	return "(set)"
}

// redactURLs replaces the user info of each comma-separated URL (a password, or a token given as
// user name) by "redacted".
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			if strings.Contains(p, "@") {
				parts[i] = "(unparsable URL with user info)"
			}
			continue
		}
		if u.User != nil {
			u.User = url.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// logFields describes the effective configuration for the start-up log line. Secrets appear only
// as "(set)" or "(unset)"; file paths are shown, their contents never.
func (s runSettings) logFields() []zap.Field {
	c := s.Bridge.Defaults()
	natsAuth := s.NATS.authLabel()
	jmAuth := "none"
	switch {
	case s.JobManager.Token != "":
		jmAuth = "token"
	case s.JobManager.TokenFile != "":
		jmAuth = "token file " + s.JobManager.TokenFile
	case s.JobManager.TokenDir != "":
		jmAuth = "token dir " + s.JobManager.TokenDir
	case s.JobManager.OAuth2 != nil:
		jmAuth = describeOAuth2(s.JobManager.OAuth2)
	}
	rules := "defaults"
	if s.RulesFile != "" {
		rules = "defaults after " + s.RulesFile
	}
	return append([]zap.Field{
		zap.String("version", buildVersion()),
		zap.String("natsUrl", redactURLs(s.NATS.URL)),
		zap.String("natsAuth", natsAuth),
		zap.String("natsPassword", setOrUnset(s.NATS.Password)),
		zap.String("natsToken", setOrUnset(s.NATS.Token)),
		zap.String("natsCa", s.NATS.CAFile),
		zap.String("natsCert", s.NATS.CertFile),
		zap.String("jobmanagerUrl", s.JobManager.URL),
		zap.String("jobmanagerAuth", jmAuth),
		zap.String("jobmanagerToken", setOrUnset(s.JobManager.Token)),
		zap.String("jobmanagerCa", s.JobManager.CAFile),
		zap.Durations("pollSchedule", c.PollSchedule),
		zap.Duration("pollTimeout", c.PollTimeout),
		zap.Duration("notFoundGrace", c.NotFoundGrace),
		zap.Duration("batchLinger", c.BatchLinger),
		zap.Int("batchMaxLessons", c.BatchMaxLessons),
		zap.Int("batchMaxBytes", c.BatchMaxBytes),
		zap.Int("maxConcurrentSubmits", c.MaxConcurrentSubmits),
		zap.Int("maxConcurrentPolls", c.MaxConcurrentPolls),
		zap.Int("pullBatch", c.PullBatch),
		zap.Duration("pinnedTtl", c.PinnedTTL),
		zap.Duration("ackWait", c.AckWait),
		zap.Duration("heartbeat", c.Heartbeat),
		zap.Int("maxHeld", c.MaxHeld),
		zap.Duration("shutdownGrace", c.ShutdownGrace),
		zap.Int("technicalRetries", c.TechnicalRetries),
		zap.Duration("technicalRetryDelay", c.TechnicalRetryDelay),
		zap.Bool("isolate", !c.IsolateOff),
		zap.Strings("mandators", c.Mandators),
		zap.Bool("ensureTopology", *c.EnsureTopology),
		zap.String("priorityGroup", c.PriorityGroup),
		zap.String("messageRules", rules),
		zap.String("inputStream", c.InputStream),
		zap.String("outcomeStream", c.OutcomeStream),
		zap.String("deadLetterStream", c.DeadLetterStream),
		zap.String("changesSubject", c.ChangesPrefix),
		zap.String("outcomeSubject", c.OutcomesPrefix),
		zap.String("deadLetterSubject", c.DeadLetterPrefix),
		zap.String("consumer", c.ConsumerName),
		zap.String("ledgerBucket", c.LedgerBucket),
		zap.String("jobIdPrefix", c.JobIDPrefix),
		zap.String("httpAddr", s.HTTPAddr),
	}, clusterLogFields(c)...)
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/lessonbridge/lessonbridge/internal/natstest"
)

// No Docker engine runs here, so these tests check docker-compose.yml and the Dockerfile against the
// binary they start: every subcommand exists, every flag and LESSONBRIDGE_* variable is one the
// subcommand really has, and the ports that commands listen on, publish and connect to agree.

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	require.NoError(t, err)
	var c composeFile
	require.NoError(t, yaml.Unmarshal(b, &c))
	require.NotEmpty(t, c.Services)
	return c
}

// subcommandFlags returns the flag names of a subcommand, read from its real flag set's --help.
func subcommandFlags(t *testing.T, sub string) map[string]bool {
	t.Helper()
	clearRunEnv(t)
	var stderr bytes.Buffer
	err := run(context.Background(), []string{sub, "--help"}, &bytes.Buffer{}, &stderr)
	require.True(t, errors.Is(err, flag.ErrHelp), "%s --help: %v", sub, err)
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  --([A-Za-z0-9-]+)$`).FindAllStringSubmatch(stderr.String(), -1) {
		flags[m[1]] = true
	}
	require.NotEmpty(t, flags, "%s --help lists no flags:\n%s", sub, stderr.String())
	return flags
}

func isSubcommand(name string) bool {
	return slices.ContainsFunc(commands(), func(c command) bool { return c.name == name })
}

// ourImage reports whether the service runs the image built from this repository.
func ourImage(s composeService) bool {
	return s.Build != nil || strings.HasPrefix(s.Image, "lessonbridge")
}

// flagArgs returns the --flag values of args ("--a b" and "--a=b"); a flag without a value maps to "".
func flagArgs(args []string) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			value = args[i+1]
			i++
		}
		out[name] = value
	}
	return out
}

// containerPort returns the container side of a compose port mapping ("8081:8081", "127.0.0.1:80:8080/tcp").
func containerPort(mapping string) string {
	mapping, _, _ = strings.Cut(mapping, "/")
	parts := strings.Split(mapping, ":")
	return parts[len(parts)-1]
}

// checkInvocation checks a lessonbridge command line (subcommand first) against the real flag sets.
func checkInvocation(t *testing.T, where string, args []string) (sub string, flags map[string]string) {
	t.Helper()
	require.NotEmpty(t, args, where)
	sub = args[0]
	require.True(t, isSubcommand(sub), "%s: %q is not a lessonbridge subcommand", where, sub)
	known := subcommandFlags(t, sub)
	flags = flagArgs(args[1:])
	for name := range flags {
		assert.True(t, known[name], "%s: %s has no flag --%s", where, sub, name)
	}
	return sub, flags
}

func TestComposeCommandsFlagsAndEnvironment(t *testing.T) {
	c := loadCompose(t)
	listens := map[string]map[string]bool{} // service -> container ports it listens on
	for name, s := range c.Services {
		if !ourImage(s) {
			continue
		}
		cmd := s.Command
		if len(cmd) == 0 {
			cmd = []string{"run"} // the Dockerfile's CMD
		}
		sub, flags := checkInvocation(t, name+" command", cmd)
		known := subcommandFlags(t, sub)
		addEnvFlags(t, name, sub, known, flags, s.Environment)
		listens[name] = map[string]bool{}
		for _, f := range []string{"addr", "http-addr"} {
			addr, ok := flags[f]
			if !ok || addr == "" {
				continue
			}
			host, port, err := net.SplitHostPort(addr)
			require.NoError(t, err, "%s --%s %q", name, f, addr)
			assert.Contains(t, []string{"0.0.0.0", "", "::"}, host, "%s --%s %s: a published port must listen on all interfaces", name, f, addr)
			listens[name][port] = true
		}
		published := map[string]bool{}
		for _, p := range s.Ports {
			published[containerPort(p)] = true
			assert.True(t, strings.HasPrefix(p, "127.0.0.1:"), "%s publishes %s on every host interface; a demo service binds 127.0.0.1", name, p)
		}
		assert.Equal(t, listens[name], published, "%s: the ports its command listens on are the ports it publishes", name)

		if len(s.Healthcheck.Test) > 0 {
			test := s.Healthcheck.Test
			require.GreaterOrEqual(t, len(test), 3, name)
			assert.Equal(t, []string{"CMD", "/lessonbridge"}, test[:2], "%s: distroless has no shell; the check runs the binary", name)
			_, hf := checkInvocation(t, name+" healthcheck", test[2:])
			if a, ok := hf["http-addr"]; ok {
				_, port, err := net.SplitHostPort(a)
				require.NoError(t, err)
				assert.True(t, listens[name][port], "%s: the health check asks port %s, the service listens on %v", name, port, listens[name])
			}
		}
	}
	require.Contains(t, listens, "lessonbridge")
	require.Contains(t, listens, "jobmanager-sim")

	// NATS: JetStream with its store on the volume, monitoring port published and used by the check.
	nats, ok := c.Services["nats"]
	require.True(t, ok)
	assert.Contains(t, nats.Command, "-js")
	nf := map[string]string{}
	for i := 0; i+1 < len(nats.Command); i++ {
		nf[nats.Command[i]] = nats.Command[i+1]
	}
	assert.Equal(t, "/data", nf["-sd"])
	assert.True(t, slices.ContainsFunc(nats.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/data") }), "the store is on a volume")
	monitor := nf["-m"]
	require.NotEmpty(t, monitor)
	client := "4222"
	if p, ok := nf["-p"]; ok {
		client = p
	}
	listens["nats"] = map[string]bool{client: true, monitor: true}
	published := map[string]bool{}
	for _, p := range nats.Ports {
		published[containerPort(p)] = true
		assert.True(t, strings.HasPrefix(p, "127.0.0.1:"), "nats (no authentication) publishes %s on every host interface", p)
	}
	assert.Equal(t, listens["nats"], published)
	assert.Contains(t, strings.Join(nats.Healthcheck.Test, " "), "127.0.0.1:"+monitor+"/healthz")

	// Every URL in an environment points at a service and a port that service listens on, and every
	// dependency exists.
	for name, s := range c.Services {
		for k, v := range s.Environment {
			u, err := url.Parse(v)
			if err != nil || u.Host == "" {
				continue
			}
			target, ok := listens[u.Hostname()]
			if assert.True(t, ok, "%s %s=%s: no service %q", name, k, v, u.Hostname()) {
				assert.True(t, target[u.Port()], "%s %s=%s: %s does not listen on %s", name, k, v, u.Hostname(), u.Port())
				assert.Contains(t, s.DependsOn, u.Hostname(), "%s should wait for %s", name, u.Hostname())
			}
		}
		for dep := range s.DependsOn {
			assert.Contains(t, c.Services, dep)
		}
	}
	assert.Equal(t, "service_healthy", c.Services["lessonbridge"].DependsOn["nats"].Condition)

	// The simulator and the bridge use the same token expression.
	sim := flagArgs(c.Services["jobmanager-sim"].Command[1:])
	assert.Equal(t, sim["token"], c.Services["lessonbridge"].Environment["LESSONBRIDGE_JOBMANAGER_TOKEN"])
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	df := string(b)
	mod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(mod))
	require.NotNil(t, goVersion)
	assert.Contains(t, df, "FROM golang:"+goVersion[1]+" AS build", "the build image matches go.mod")
	assert.Contains(t, df, "CGO_ENABLED=0 go build -trimpath")
	assert.Contains(t, df, `-X main.version=${VERSION}`)
	assert.Contains(t, df, "./cmd/lessonbridge")
	assert.Contains(t, df, "USER 65532:65532")
	assert.Contains(t, df, `ENTRYPOINT ["/lessonbridge"]`)
	cmdLine := regexp.MustCompile(`(?m)^CMD (\[.*\])$`).FindStringSubmatch(df)
	require.NotNil(t, cmdLine)
	var cmd []string
	require.NoError(t, json.Unmarshal([]byte(cmdLine[1]), &cmd), cmdLine[1])
	_, flags := checkInvocation(t, "Dockerfile CMD", cmd)
	assert.Regexp(t, `(?m)^FROM (gcr\.io/distroless/static|scratch)`, df)

	// The default command's endpoints are reachable through EXPOSE: on all interfaces, that port.
	expose := regexp.MustCompile(`(?m)^EXPOSE (\d+)$`).FindStringSubmatch(df)
	require.NotNil(t, expose)
	addr, ok := flags["http-addr"]
	require.True(t, ok, "CMD must set --http-addr: the binary's default 127.0.0.1:8081 is unreachable from outside the container")
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	assert.Contains(t, []string{"0.0.0.0", "", "::"}, host)
	assert.Equal(t, expose[1], port)
}

// TestComposeNATSImageMatchesServer checks that compose runs the nats-server release the project
// pins (and tests against) in go.mod.
func TestComposeNATSImageMatchesServer(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	v := regexp.MustCompile(`github\.com/nats-io/nats-server/v2 v(\d+\.\d+\.\d+)`).FindStringSubmatch(string(mod))
	require.NotNil(t, v)
	image := loadCompose(t).Services["nats"].Image
	tag := regexp.MustCompile(`^nats:(\d+\.\d+(?:\.\d+)?)(-alpine)?$`).FindStringSubmatch(image)
	require.NotNil(t, tag, "nats image %q: want nats:<version>[-alpine]", image)
	assert.Equal(t, v[1], tag[1], "compose runs nats %s, go.mod pins nats-server %s", tag[1], v[1])
}

// TestComposeStopGracePeriod: Docker's SIGKILL must come after the bridge's own shutdown (open
// batches get --shutdown-grace to settle, then the HTTP endpoints get httpShutdownTimeout).
func TestComposeStopGracePeriod(t *testing.T) {
	s := loadCompose(t).Services["lessonbridge"]
	require.NotEmpty(t, s.StopGracePeriod, "without stop_grace_period Docker kills after 10s, the default --shutdown-grace")
	stop, err := time.ParseDuration(s.StopGracePeriod)
	require.NoError(t, err)
	fs := newFlagSet("run", io.Discard)
	registerRunFlags(fs)
	grace := fs.Lookup("shutdown-grace").DefValue
	if v, ok := flagArgs(s.Command[1:])["shutdown-grace"]; ok {
		grace = v
	}
	if v, ok := s.Environment[envName("shutdown-grace")]; ok {
		grace = v
	}
	g, err := time.ParseDuration(grace)
	require.NoError(t, err)
	assert.Greater(t, stop, g+httpShutdownTimeout, "stop_grace_period %v vs --shutdown-grace %v + %v", stop, g, httpShutdownTimeout)
}

// composeExpand interpolates ${VAR} and ${VAR:-default} as compose does, from the environment.
func composeExpand(s string) string {
	return os.Expand(s, func(name string) string {
		n, def, _ := strings.Cut(name, ":-")
		if v := os.Getenv(n); v != "" {
			return v
		}
		return def
	})
}

// TestComposeHealthchecksPassInContainerEnvironment runs the simulator and the bridge with the
// commands and the environment compose gives their containers (service host names and ports
// replaced by local ones: an embedded NATS, free ports), and then their health checks as compose
// runs them. The bridge's check fails while nothing listens and passes once the bridge is ready,
// with LESSONBRIDGE_JOBMANAGER_URL and the rest of run's environment set.
func TestComposeHealthchecksPassInContainerEnvironment(t *testing.T) {
	c := loadCompose(t)
	clearRunEnv(t)
	ns := natstest.Start(t)
	ports := map[string]int{} // service:containerPort -> local port
	local := func(service, port string) string {
		k := service + ":" + port
		if ports[k] == 0 {
			ports[k] = freePort(t)
		}
		return fmt.Sprintf("127.0.0.1:%d", ports[k])
	}
	// args replaces listen addresses and 127.0.0.1:<port> in URLs by the service's local ports.
	args := func(service string, in []string) []string {
		out := make([]string, len(in))
		for i, a := range in {
			a = composeExpand(a)
			if i > 0 && (in[i-1] == "--addr" || in[i-1] == "--http-addr") {
				_, port, err := net.SplitHostPort(a)
				require.NoError(t, err)
				a = local(service, port)
			}
			if u, err := url.Parse(a); err == nil && u.Hostname() == "127.0.0.1" {
				u.Host = local(service, u.Port())
				a = u.String()
			}
			out[i] = a
		}
		return out
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	start := func(name string) {
		s := c.Services[name]
		cmd := args(name, s.Command)
		for k, v := range s.Environment {
			v = composeExpand(v)
			if u, err := url.Parse(v); err == nil && u.Host != "" {
				if u.Hostname() == "nats" {
					v = ns.URL()
				} else if _, isService := c.Services[u.Hostname()]; isService {
					u.Host = local(u.Hostname(), u.Port())
					v = u.String()
				}
			}
			t.Setenv(k, v)
		}
		stderr := &lockedBuffer{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := run(ctx, cmd, &lockedBuffer{}, stderr)
			assert.NoError(t, err, "%s %v:\n%s", name, cmd, stderr)
		}()
	}
	check := func(name string) error {
		test := c.Services[name].Healthcheck.Test
		require.Equal(t, "/lessonbridge", test[1])
		return run(context.Background(), args(name, test[2:]), &lockedBuffer{}, &lockedBuffer{})
	}

	require.Error(t, check("jobmanager-sim"), "nothing listens yet")
	start("jobmanager-sim")
	require.Eventually(t, func() bool { return check("jobmanager-sim") == nil }, 10*time.Second, 20*time.Millisecond)

	require.Error(t, check("lessonbridge"), "nothing listens yet")
	start("lessonbridge")
	require.NotEmpty(t, os.Getenv("LESSONBRIDGE_JOBMANAGER_URL"), "the container's environment is set")
	var last error
	if !assert.Eventually(t, func() bool { last = check("lessonbridge"); return last == nil }, 15*time.Second, 20*time.Millisecond) {
		t.Fatalf("the bridge's health check never passed in the container's environment: %v", last)
	}
}

// dockerignored reports whether path (slash-separated, relative to the build context) is left out
// by patterns as Docker reads them: each pattern is matched against the whole path from the root,
// and a directory's match excludes everything under it. "!" exceptions are not used here.
func dockerignored(patterns []string, path string) bool {
	for _, p := range patterns {
		p = strings.TrimPrefix(p, "/")
		for dir := path; ; {
			if ok, _ := filepath.Match(p, dir); ok {
				return true
			}
			i := strings.LastIndexByte(dir, '/')
			if i < 0 {
				break
			}
			dir = dir[:i]
		}
	}
	return false
}

// TestDockerignore: `COPY . .` ships neither the git history nor deployment files and local
// secrets, and still everything the build needs (go.mod, go.sum, every non-test Go file and the
// embedded schema files).
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("../../.dockerignore")
	require.NoError(t, err)
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			require.False(t, strings.HasPrefix(l, "!"), "exceptions are not checked by this test: %s", l)
			patterns = append(patterns, l)
		}
	}
	for _, p := range []string{".git/HEAD", ".git/objects/ab/cdef", ".env", "deploy/kubernetes/deployment.yaml", "jobmanager-token.secret"} {
		assert.True(t, dockerignored(patterns, p), "%s is sent to the Docker daemon", p)
	}
	needed := 0
	root := "../.."
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		build := rel == "go.mod" || rel == "go.sum" || strings.HasSuffix(rel, ".schema.json") ||
			strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go")
		if build {
			needed++
			assert.False(t, dockerignored(patterns, rel), "%s is needed by the build but ignored", rel)
		}
		return nil
	}))
	assert.Greater(t, needed, 20)
}

// addEnvFlags adds to flags (those of the command line) the values a service's environment gives
// the flags of subcommand sub, by the variable names the binary really reads (envNameFor); a
// LESSONBRIDGE_ variable that names no flag of sub is an error.
func addEnvFlags(t *testing.T, service, sub string, known map[string]bool, flags map[string]string, env map[string]string) {
	t.Helper()
	byEnv := map[string]string{}
	for f := range known {
		for _, e := range envNamesFor(sub, f) {
			byEnv[e] = f
		}
	}
	for k, v := range env {
		if !strings.HasPrefix(k, "LESSONBRIDGE_") {
			continue
		}
		f, ok := byEnv[k]
		if assert.True(t, ok, "%s: %s names no flag of %s", service, k, sub) {
			if _, onCommandLine := flags[f]; !onCommandLine {
				flags[f] = v
			}
		}
	}
}

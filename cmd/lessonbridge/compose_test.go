package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
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
		byEnv := map[string]string{}
		for f := range known {
			byEnv[envName(f)] = f
		}
		for k, v := range s.Environment {
			if !strings.HasPrefix(k, "LESSONBRIDGE_") {
				continue
			}
			f, ok := byEnv[k]
			if assert.True(t, ok, "%s: %s names no flag of %s", name, k, sub) {
				if _, onCommandLine := flags[f]; !onCommandLine {
					flags[f] = v
				}
			}
		}
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
	cmd := regexp.MustCompile(`(?m)^CMD \["([a-z-]+)"\]`).FindStringSubmatch(df)
	require.NotNil(t, cmd)
	assert.True(t, isSubcommand(cmd[1]), "CMD %s", cmd[1])
	assert.Regexp(t, `(?m)^FROM (gcr\.io/distroless/static|scratch)`, df)
}

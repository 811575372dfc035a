package main

import (
	"flag"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// deploy/compose/cluster.yml is checked like docker-compose.yml (compose_test.go): the bridge's
// flags and LESSONBRIDGE_* variables are the binary's real ones, and the NATS nodes' command lines
// are parsed by nats-server's own flag parser (the version go.mod pins, which the image matches).

func loadClusterCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("../../deploy/compose/cluster.yml")
	require.NoError(t, err)
	var c composeFile
	require.NoError(t, yaml.Unmarshal(b, &c))
	require.NotEmpty(t, c.Services)
	return c
}

func TestClusterComposeNATSNodes(t *testing.T) {
	c := loadClusterCompose(t)
	mod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	serverVersion := regexp.MustCompile(`github.com/nats-io/nats-server/v2 v(\d+\.\d+\.\d+)`).FindSubmatch(mod)
	require.NotNil(t, serverVersion)

	var nodes []string
	clientPorts := map[string]string{}
	routePort := map[string]string{}
	nodeRoutes := map[string][]string{}
	for name, s := range c.Services {
		if !strings.HasPrefix(s.Image, "nats:") {
			continue
		}
		nodes = append(nodes, name)
		assert.True(t, strings.HasPrefix(s.Image, "nats:"+string(serverVersion[1])), "%s: image %s, the tests run nats-server %s", name, s.Image, serverVersion[1])
		opts, err := server.ConfigureOptions(flag.NewFlagSet(name, flag.ContinueOnError), s.Command,
			func() {}, func() {}, func() {})
		require.NoError(t, err, "%s: nats-server refuses its command line %v", name, s.Command)
		assert.True(t, opts.JetStream, "%s: JetStream", name)
		assert.Equal(t, "/data", opts.StoreDir, name)
		assert.True(t, slices.ContainsFunc(s.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/data") }), "%s: the store is on a volume", name)
		assert.Equal(t, name, opts.ServerName, "%s: server name", name)
		assert.Equal(t, "lessonbridge", opts.Cluster.Name, "%s: cluster name", name)
		require.NotZero(t, opts.Cluster.Port, "%s: listens for routes", name)
		port := "4222"
		if opts.Port != 0 {
			port = itoa(opts.Port)
		}
		clientPorts[name] = port
		routePort[name] = itoa(opts.Cluster.Port)
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Host)
		}
		sort.Strings(routes)
		nodeRoutes[name] = routes

		published := map[string]bool{}
		for _, p := range s.Ports {
			published[containerPort(p)] = true
		}
		assert.Equal(t, map[string]bool{port: true, itoa(opts.HTTPPort): true}, published, "%s publishes its client and monitoring ports", name)
		assert.Contains(t, strings.Join(s.Healthcheck.Test, " "), "127.0.0.1:"+itoa(opts.HTTPPort)+"/healthz", name)
	}
	sort.Strings(nodes)
	require.Len(t, nodes, 3, "three NATS nodes")
	var want []string
	for _, n := range nodes {
		want = append(want, net.JoinHostPort(n, routePort[n]))
	}
	for _, n := range nodes {
		assert.Equal(t, want, nodeRoutes[n], "%s routes to every node", n)
	}

	// The bridges: every node's URL, three replicas, one priority group, waiting for healthy nodes.
	var bridges []string
	groups := map[string]bool{}
	for name, s := range c.Services {
		if !ourImage(s) || len(s.Command) == 0 || s.Command[0] != "run" {
			continue
		}
		bridges = append(bridges, name)
		env := s.Environment
		assert.Equal(t, "3", env["LESSONBRIDGE_REPLICAS"], "%s: replicas", name)
		groups[env["LESSONBRIDGE_PRIORITY_GROUP"]] = true
		var hosts []string
		for _, u := range strings.Split(env["LESSONBRIDGE_NATS_URL"], ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			require.NoError(t, err, "%s: %s", name, u)
			assert.Equal(t, clientPorts[pu.Hostname()], pu.Port(), "%s: %s is a NATS node's client port", name, u)
			hosts = append(hosts, pu.Hostname())
		}
		sort.Strings(hosts)
		assert.Equal(t, nodes, hosts, "%s: --nats-url names every node", name)
		for _, n := range nodes {
			assert.Equal(t, "service_healthy", s.DependsOn[n].Condition, "%s waits for %s", name, n)
		}
	}
	assert.Len(t, bridges, 2, "two bridge instances")
	assert.Len(t, groups, 1, "one priority group for both")
	assert.NotContains(t, groups, "", "a priority group is set")
}

// TestClusterComposeCommandsFlagsAndEnvironment checks every lessonbridge service's command,
// environment, ports and health check against the real flag sets.
func TestClusterComposeCommandsFlagsAndEnvironment(t *testing.T) {
	c := loadClusterCompose(t)
	listens := map[string]map[string]bool{}
	for name, s := range c.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			listens[name] = map[string]bool{"4222": true}
		}
	}
	for name, s := range c.Services {
		if !ourImage(s) {
			continue
		}
		require.NotEmpty(t, s.Command, name)
		sub, flags := checkInvocation(t, name+" command", s.Command)
		known := subcommandFlags(t, sub)
		addEnvFlags(t, name, sub, known, flags, s.Environment)
		listens[name] = map[string]bool{}
		for _, f := range []string{"addr", "http-addr"} {
			if addr := flags[f]; addr != "" {
				host, port, err := net.SplitHostPort(addr)
				require.NoError(t, err, "%s --%s %q", name, f, addr)
				assert.Equal(t, "0.0.0.0", host, "%s --%s: a published port listens on all interfaces", name, f)
				listens[name][port] = true
			}
		}
		published := map[string]bool{}
		for _, p := range s.Ports {
			published[containerPort(p)] = true
		}
		assert.Equal(t, listens[name], published, "%s: the ports its command listens on are the ports it publishes", name)
		if len(s.Healthcheck.Test) > 0 {
			assert.Equal(t, []string{"CMD", "/lessonbridge"}, s.Healthcheck.Test[:2], name)
			_, hf := checkInvocation(t, name+" healthcheck", s.Healthcheck.Test[2:])
			_, port, err := net.SplitHostPort(hf["http-addr"])
			require.NoError(t, err)
			assert.True(t, listens[name][port], "%s: the health check asks port %s", name, port)
		}
		// The whole configuration is valid for `run` (flags and environment as the container sees them).
		if sub == "run" {
			clearRunEnv(t)
			for k, v := range s.Environment {
				t.Setenv(k, strings.ReplaceAll(v, "${JOBMANAGER_TOKEN:-dev-token}", "dev-token"))
			}
			fs := newFlagSet("run", io.Discard)
			rf := registerRunFlags(fs)
			require.NoError(t, parseFlags(fs, s.Command[1:], runFlagExtraEnv))
			st, errs := rf.settings(osFS{})
			require.Empty(t, errorTexts(errs), name)
			assert.Equal(t, 3, st.Bridge.Replicas, name)
		}
	}
	// Every URL in an environment points at a service's listening port, and the service waits for it.
	for name, s := range c.Services {
		for k, v := range s.Environment {
			for _, part := range strings.Split(v, ",") {
				u, err := url.Parse(part)
				if err != nil || u.Host == "" {
					continue
				}
				target, ok := listens[u.Hostname()]
				if assert.True(t, ok, "%s %s=%s: no service %q", name, k, v, u.Hostname()) {
					assert.True(t, target[u.Port()], "%s %s: %s does not listen on %s", name, k, u.Hostname(), u.Port())
					assert.Contains(t, s.DependsOn, u.Hostname(), "%s should wait for %s", name, u.Hostname())
				}
			}
		}
	}
	sim := flagArgs(c.Services["jobmanager-sim"].Command[1:])
	for _, b := range []string{"lessonbridge-1", "lessonbridge-2"} {
		assert.Equal(t, sim["token"], c.Services[b].Environment["LESSONBRIDGE_JOBMANAGER_TOKEN"], b)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

package natstest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is an in-process NATS cluster with JetStream for tests: every node has its own store
// directory and random client and route ports, and every route between two nodes runs through a
// proxy of the cluster's so that Kill can cut a node off before it shuts down.
//
// Kill models a crashed node (kill -9, power loss): its peers lose it without the leadership
// hand-over a graceful shutdown does, so they hold an election (nats-server's election timeout is 4-9 s).
// Stop is a graceful shutdown: the node first hands its leaderships over. Restart brings a node back
// on the same ports and store.
type Cluster struct {
	t     testing.TB
	Name  string
	Nodes []*Node

	mu    sync.Mutex
	dead  map[string]bool         // node name -> cut off
	ids   map[string]string       // server ID (new at every start) -> node name
	conns map[*proxyConn]struct{} // every proxied route connection
}

// Node is one server of a Cluster.
type Node struct {
	*server.Server // nil while stopped
	Name           string
	c              *Cluster
	storeDir       string
	port           int          // client port, stable across restarts
	routePort      int          // the server's own route port, stable across restarts
	proxy          net.Listener // where the other nodes dial this node's routes
}

// StartCluster starts an n-node cluster for t (n >= 1; 3 for a JetStream cluster that survives the
// loss of one node), waits until JetStream has a meta leader and every node is current, and shuts it
// down at cleanup.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: StartCluster: n %d must be at least 1", n)
	}
	c := &Cluster{t: t, Name: "lbtest", dead: map[string]bool{}, ids: map[string]string{}, conns: map[*proxyConn]struct{}{}}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: route proxy: %v", err)
		}
		nd := &Node{Name: fmt.Sprintf("n%d", i+1), c: c, storeDir: t.TempDir(), proxy: ln}
		c.Nodes = append(c.Nodes, nd)
	}
	t.Cleanup(c.shutdown)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, nd := range c.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = nd.start() }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, nd := range c.Nodes {
		go c.acceptLoop(nd)
	}
	c.WaitReady(30 * time.Second)
	return c
}

func (n *Node) options() *server.Options {
	var routes []*url.URL
	for _, o := range n.c.Nodes {
		if o != n {
			routes = append(routes, &url.URL{Scheme: "nats", Host: o.proxy.Addr().String()})
		}
	}
	port, routePort := n.port, n.routePort
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if routePort == 0 {
		routePort = server.RANDOM_PORT
	}
	return &server.Options{
		ServerName: n.Name,
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   n.storeDir,
		NoLog:      true,
		NoSigs:     true,
		Cluster: server.ClusterOpts{
			Name:      n.c.Name,
			Host:      "127.0.0.1",
			Port:      routePort,
			Advertise: n.proxy.Addr().String(), // so no node dials another one around the proxies
			PoolSize:  -1,                      // one route per pair of nodes, so WaitReady can count them
		},
		Routes: routes,
	}
}

func (n *Node) start() error {
	s, err := server.NewServer(n.options())
	if err != nil {
		return fmt.Errorf("natstest: node %s: %w", n.Name, err)
	}
	n.c.mu.Lock()
	n.c.ids[s.ID()] = n.Name
	n.c.mu.Unlock()
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("natstest: node %s not ready within 10s", n.Name)
	}
	n.Server = s
	n.c.mu.Lock()
	n.port = s.Addr().(*net.TCPAddr).Port
	n.routePort = s.ClusterAddr().Port
	n.c.mu.Unlock()
	return nil
}

// URL is the node's client URL, stable across restarts.
func (n *Node) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// Running reports whether the node is up.
func (n *Node) Running() bool { return n.Server != nil && n.Server.Running() }

// Kill cuts the node off from its peers and then shuts it down, so that none of its leaderships is
// handed over: the others notice the loss only by missing heartbeats, as after a crash.
func (n *Node) Kill() {
	n.c.t.Helper()
	n.c.cut(n.Name)
	n.shutdown()
}

// Partition cuts the node off from its peers while it keeps running and serving its clients (a
// network partition of that node); Heal ends it, and the routes come back by themselves.
func (n *Node) Partition() { n.c.cut(n.Name) }

// Heal ends a Partition.
func (n *Node) Heal() {
	n.c.mu.Lock()
	delete(n.c.dead, n.Name)
	n.c.mu.Unlock()
}

// Stop shuts the node down gracefully (it hands its leaderships over first).
func (n *Node) Stop() { n.shutdown() }

func (n *Node) shutdown() {
	if n.Server != nil {
		n.Server.Shutdown()
		n.Server.WaitForShutdown()
		n.Server = nil
	}
}

// Restart starts a stopped or killed node again on the same ports and store (after Stop/Kill).
func (n *Node) Restart() {
	n.c.t.Helper()
	n.shutdown()
	n.c.mu.Lock()
	delete(n.c.dead, n.Name)
	n.c.mu.Unlock()
	if err := n.start(); err != nil {
		n.c.t.Fatal(err)
	}
}

// URLs is every node's client URL, comma-separated (what --nats-url takes).
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// Connect opens a client connection to node i first (the other nodes' URLs follow, so the client
// reconnects to one of them when i goes), reconnecting forever; closed at cleanup.
func (c *Cluster) Connect(i int) (*nats.Conn, jetstream.JetStream) {
	c.t.Helper()
	urls := []string{c.Nodes[i].URL()}
	for j, n := range c.Nodes {
		if j != i {
			urls = append(urls, n.URL())
		}
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.DontRandomize(), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		c.t.Fatalf("natstest: connect node %d: %v", i, err)
	}
	c.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return nc, js
}

// WaitReady waits until every running node has a route to every other one and is current, and one
// of them is JetStream meta leader and sees every running node as an online peer.
func (c *Cluster) WaitReady(timeout time.Duration) {
	c.t.Helper()
	c.waitFor(timeout, "JetStream meta leader with every running node current", func() bool {
		running, peers := 0, 0
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			running++
			if !n.JetStreamIsCurrent() {
				return false
			}
			if n.JetStreamIsLeader() {
				peers = len(n.JetStreamClusterPeers())
			}
		}
		if running == 0 || peers != running {
			return false
		}
		for _, n := range c.Nodes {
			if n.Running() && n.NumRoutes() != running-1 {
				return false
			}
		}
		return true
	})
}

// StreamLeader returns the running node that leads the stream (global account), or nil if none does.
func (c *Cluster) StreamLeader(stream string) *Node {
	for _, n := range c.Nodes {
		if n.Running() && n.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return n
		}
	}
	return nil
}

// ConsumerLeader returns the running node that leads the consumer, or nil if none does.
func (c *Cluster) ConsumerLeader(stream, consumer string) *Node {
	for _, n := range c.Nodes {
		if n.Running() && n.JetStreamIsConsumerLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream, consumer) {
			return n
		}
	}
	return nil
}

// KVLeader returns the running node that leads the stream behind the KV bucket, or nil.
func (c *Cluster) KVLeader(bucket string) *Node { return c.StreamLeader("KV_" + bucket) }

// WaitStreamLeader waits until some running node leads the stream and returns it.
func (c *Cluster) WaitStreamLeader(stream string, timeout time.Duration) *Node {
	c.t.Helper()
	var n *Node
	c.waitFor(timeout, "a leader of stream "+stream, func() bool { n = c.StreamLeader(stream); return n != nil })
	return n
}

// WaitConsumerLeader waits until some running node leads the consumer and returns it.
func (c *Cluster) WaitConsumerLeader(stream, consumer string, timeout time.Duration) *Node {
	c.t.Helper()
	var n *Node
	c.waitFor(timeout, "a leader of consumer "+stream+"/"+consumer, func() bool {
		n = c.ConsumerLeader(stream, consumer)
		return n != nil
	})
	return n
}

// WaitKVLeader waits until some running node leads the KV bucket's stream and returns it.
func (c *Cluster) WaitKVLeader(bucket string, timeout time.Duration) *Node {
	c.t.Helper()
	return c.WaitStreamLeader("KV_"+bucket, timeout)
}

func (c *Cluster) waitFor(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("natstest: no %s within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *Cluster) shutdown() {
	for _, n := range c.Nodes {
		n.shutdown()
		_ = n.proxy.Close()
	}
	c.mu.Lock()
	for pc := range c.conns {
		pc.close()
	}
	c.mu.Unlock()
}

// cut marks a node dead and closes every proxied route connection from or to it; until Restart the
// proxies refuse its routes.
func (c *Cluster) cut(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead[name] = true
	for pc := range c.conns {
		if pc.from == name || pc.to == name {
			pc.close()
			delete(c.conns, pc)
		}
	}
}

// proxyConn is one route connection through a node's proxy: from dials to.
type proxyConn struct {
	from, to string
	a, b     net.Conn
	once     sync.Once
}

func (p *proxyConn) close() { p.once.Do(func() { _ = p.a.Close(); _ = p.b.Close() }) }

func (c *Cluster) acceptLoop(to *Node) {
	for {
		in, err := to.proxy.Accept()
		if err != nil {
			return // the proxy was closed at cleanup
		}
		go c.relay(to, in)
	}
}

// relay forwards one route connection to the node's real route port. The dialer's first line is
// its CONNECT, which names it; a connection from or to a dead node is closed.
func (c *Cluster) relay(to *Node, in net.Conn) {
	c.mu.Lock()
	dead, port := c.dead[to.Name], to.routePort
	c.mu.Unlock()
	if dead {
		_ = in.Close()
		return
	}
	out, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	if err != nil {
		_ = in.Close()
		return
	}
	go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
	_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(in)
	line, err := r.ReadString('\n')
	_ = in.SetReadDeadline(time.Time{})
	if err != nil {
		_ = in.Close()
		_ = out.Close()
		return
	}
	pc := &proxyConn{to: to.Name, a: in, b: out}
	c.mu.Lock()
	pc.from = c.ids[connectID(line)]
	if c.dead[pc.from] || c.dead[pc.to] {
		c.mu.Unlock()
		pc.close()
		return
	}
	c.conns[pc] = struct{}{}
	c.mu.Unlock()
	if _, err := out.Write([]byte(line)); err == nil {
		_, _ = io.Copy(out, r)
	}
	pc.close()
	c.mu.Lock()
	delete(c.conns, pc)
	c.mu.Unlock()
}

// connectID returns the server ID a route CONNECT line names ("" if it has none).
func connectID(line string) string {
	_, js, ok := strings.Cut(line, " ")
	if !ok {
		return ""
	}
	var v struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal([]byte(strings.TrimSpace(js)), &v)
	return v.Name
}

// StreamReplicas returns the replicas count and the leader the server reports for a stream.
func StreamReplicas(ctx context.Context, js jetstream.JetStream, stream string) (int, string, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, "", err
	}
	info := s.CachedInfo()
	leader := ""
	if info.Cluster != nil {
		leader = info.Cluster.Leader
	}
	return info.Config.Replicas, leader, nil
}

// MoveStreamLeader makes node to the leader of the stream (asking the current leader to step down
// in its favour) and waits until it is.
func (c *Cluster) MoveStreamLeader(js jetstream.JetStream, stream string, to *Node) {
	c.t.Helper()
	c.moveLeader(js, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, "stream "+stream, to,
		func() *Node { return c.StreamLeader(stream) })
}

// MoveConsumerLeader makes node to the leader of the consumer and waits until it is.
func (c *Cluster) MoveConsumerLeader(js jetstream.JetStream, stream, consumer string, to *Node) {
	c.t.Helper()
	c.moveLeader(js, "$JS.API.CONSUMER.LEADER.STEPDOWN."+stream+"."+consumer, "consumer "+stream+"/"+consumer, to,
		func() *Node { return c.ConsumerLeader(stream, consumer) })
}

// MetaLeader returns the index of the running node that is JetStream meta leader, or -1.
func (c *Cluster) MetaLeader() int {
	for i, n := range c.Nodes {
		if n.Running() && n.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

func (c *Cluster) moveLeader(js jetstream.JetStream, subject, what string, to *Node, leader func() *Node) {
	c.t.Helper()
	req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, to.Name)
	deadline := time.Now().Add(30 * time.Second)
	for leader() != to {
		if time.Now().After(deadline) {
			c.t.Fatalf("natstest: %s: leadership did not move to %s", what, to.Name)
		}
		if l := leader(); l != nil {
			if _, err := js.Conn().Request(subject, []byte(req), 2*time.Second); err != nil {
				c.t.Logf("natstest: %s: step-down request: %v", what, err)
			}
		}
		for end := time.Now().Add(2 * time.Second); leader() != to && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

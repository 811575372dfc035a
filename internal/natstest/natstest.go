// Package natstest starts embedded NATS servers with JetStream for tests and for `lessonbridge dev`:
// single servers (Start, StartServer) and in-process clusters (StartCluster, cluster.go) whose nodes
// can be killed as in a crash, stopped gracefully and restarted, with lookups and moves of the
// leaders of streams, consumers and KV buckets. Every server listens on a random loopback port and
// keeps its store in a directory of the caller's.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StartServer starts a JetStream-enabled server on 127.0.0.1:port (0: a random free port) storing
// into storeDir, and waits until it accepts clients.
func StartServer(storeDir string, port int) (*server.Server, error) {
	return startServer(storeDir, port, nil)
}

func startServer(storeDir string, port int, configure func(*server.Options)) (*server.Server, error) {
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  storeDir,
		NoLog:     true,
		NoSigs:    true,
	}
	if configure != nil {
		configure(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natstest: new server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natstest: server not ready within 10s")
	}
	return s, nil
}

// Server is a test server. Restart brings it back on the same port and store.
type Server struct {
	*server.Server
	t         testing.TB
	storeDir  string
	port      int
	configure func(*server.Options)
}

// Start starts a server for t in t.TempDir() and shuts it down at cleanup.
func Start(t testing.TB) *Server { return StartWith(t, nil) }

// StartWith is Start with configure applied to the server's options (e.g. a small MaxPayload); a
// Restart applies it again.
func StartWith(t testing.TB, configure func(*server.Options)) *Server {
	t.Helper()
	dir := t.TempDir()
	s, err := startServer(dir, 0, configure)
	if err != nil {
		t.Fatal(err)
	}
	ts := &Server{Server: s, t: t, storeDir: dir, port: s.Addr().(*net.TCPAddr).Port, configure: configure}
	t.Cleanup(func() { ts.Shutdown(); ts.WaitForShutdown() })
	return ts
}

// URL is the client URL, stable across Restart.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// Stop shuts the server down and waits for it.
func (s *Server) Stop() { s.Shutdown(); s.WaitForShutdown() }

// Restart stops the server (if running) and starts a new one on the same port and store.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	ns, err := startServer(s.storeDir, s.port, s.configure)
	if err != nil {
		s.t.Fatal(err)
	}
	s.Server = ns
}

// Connect opens a client connection that reconnects forever, closed at cleanup.
func (s *Server) Connect() (*nats.Conn, jetstream.JetStream) {
	s.t.Helper()
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatal(err)
	}
	return nc, js
}

// StreamMsgs returns every message a stream holds, in sequence order (deleted ones skipped), and nil
// when the stream does not exist.
func StreamMsgs(t testing.TB, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("natstest: stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("natstest: stream %s info: %v", stream, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("natstest: stream %s seq %d: %v", stream, seq, err)
		}
		out = append(out, m)
	}
	return out
}

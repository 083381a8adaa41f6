// Package etcdtest runs a real etcd server process for tests: the
// testetcd command (cmd/testetcd, etcd's embed package), built once per
// test binary. Tests use only loopback addresses.
package etcdtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testbin"
)

// Main is a TestMain body for a package whose tests start etcd servers:
// it builds testetcd once, runs the tests and removes the binary.
func Main(m *testing.M) int {
	return testbin.MainAll(m, Target())
}

// Target is testetcd for testbin.MainAll, for a package whose TestMain
// builds other binaries too.
func Target() testbin.Target {
	return testbin.Target{Pkg: "./internal/etcdtest/cmd/testetcd", Bin: &binary}
}

// binary is the testetcd built by Main.
var binary string

// Server is one etcd member, started as a process.
type Server struct {
	t       testing.TB
	dataDir string
	url     string   // the client URL; kept across restarts
	tls     *TLS     // nil: plain http
	args    []string // testetcd's TLS flags

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs strings.Builder
}

// Start starts an etcd server with a new data directory; it is killed when
// the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	if binary == "" {
		t.Fatal("etcdtest: the package's TestMain must call etcdtest.Main")
	}
	s := &Server{t: t, dataDir: filepath.Join(t.TempDir(), "etcd"), url: "http://127.0.0.1:0"}
	s.start()
	t.Cleanup(s.Kill9)
	return s
}

// Endpoint is the server's client URL.
func (s *Server) Endpoint() string { return s.url }

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client() *clientv3.Client {
	s.t.Helper()
	if s.tls != nil {
		return newClient(s.t, clientv3.Config{Endpoints: []string{s.url}, TLS: s.tls.clientConfig(s.t)})
	}
	return NewClient(s.t, s.url)
}

// NewClient returns a client of the etcd at endpoint (a URL), such as a
// Proxy's "http://"+Addr(), closed when the test ends.
func NewClient(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	return newClient(t, clientv3.Config{Endpoints: []string{endpoint}})
}

func newClient(t testing.TB, cfg clientv3.Config) *clientv3.Client {
	t.Helper()
	cfg.DialTimeout, cfg.Logger = 5*time.Second, nopZap()
	c, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill9 kills the server at once (SIGKILL) and waits for it to exit. The
// data directory is kept for Restart.
func (s *Server) Kill9() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	s.mu.Lock()
	s.cmd = nil
	s.mu.Unlock()
}

// Restart starts the server again on its data directory and client URL,
// after Kill9.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill9()
	s.start()
}

func (s *Server) start() {
	s.t.Helper()
	cmd := exec.Command(binary, append([]string{"--data-dir", s.dataDir, "--client-url", s.url}, s.args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.logs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start testetcd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	announced := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "client-url="); ok {
				announced <- u
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case u := <-announced:
		s.mu.Lock()
		s.cmd, s.done, s.url = cmd, done, u
		s.mu.Unlock()
	case <-done:
		s.t.Fatalf("testetcd exited before serving:\n%s", s.stderr())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		s.t.Fatalf("testetcd did not serve within 60s:\n%s", s.stderr())
	}
	// The member answers once it has a leader.
	c := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Get(ctx, "health"); err != nil {
		s.t.Fatalf("etcd at %s does not answer: %v\n%s", s.url, err, s.stderr())
	}
}

func (s *Server) stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// String describes the server for failure messages.
func (s *Server) String() string { return fmt.Sprintf("etcd at %s (data %s)", s.url, s.dataDir) }

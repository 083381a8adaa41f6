// Package testkit holds the small helpers every test package of this
// module needs: waiting for a condition with a deadline, a free loopback
// address, a GitHub App key, a clean child environment, the tail of a log,
// and a buffer safe for concurrent writers. It is imported only by tests.
package testkit

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// PollInterval is how often WaitFor and Poll check their condition.
const PollInterval = 20 * time.Millisecond

// Poll checks cond until it holds (true) or timeout passes (false).
func Poll(timeout time.Duration, cond func() (bool, string)) bool {
	deadline := time.Now().Add(timeout)
	for {
		if ok, _ := cond(); ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(PollInterval)
	}
}

// WaitFor checks cond until it holds, or fails the test after timeout with
// what cond last saw.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	if !Poll(timeout, cond) {
		_, seen := cond()
		t.Fatalf("timed out after %v waiting for %s; last seen:\n%s", timeout, what, seen)
	}
}

// Eventually is WaitFor for a condition with nothing to show.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	WaitFor(t, what, timeout, func() (bool, string) { return cond(), "" })
}

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Key returns a new 2048-bit RSA key (a GitHub App's key) and its PKCS#1
// PEM encoding.
func Key(t testing.TB) (*rsa.PrivateKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// KeyFile writes a new key (see Key) to dir/app.pem, mode 0600, and
// returns its path.
func KeyFile(t testing.TB, dir string) string {
	t.Helper()
	_, p := Key(t)
	path := filepath.Join(dir, "app.pem")
	if err := os.WriteFile(path, p, 0o600); err != nil {
		t.Fatalf("write key: %v", err)
	}
	return path
}

// ChildEnv is this process's environment without any variable that
// shoes-scaleset or the fake plugin reads, plus extra: what a child
// process under test starts with.
func ChildEnv(extra ...string) []string {
	drop := []string{"GITHUB_URL", "GITHUB_APP_ID", "GITHUB_PRIVATE_KEY_BASE64", "PLUGIN",
		"RUNNER_USER", "RUNNER_VERSION", "RUNNER_BASE_DIRECTORY"}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SHOES_SCALESET_") || strings.HasPrefix(name, "SIM_PLUGIN_") || slices.Contains(drop, name) {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ReadTail returns the last n lines of a file, or why it cannot be read.
func ReadTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return Tail(string(b), n)
}

// SyncBuffer is a bytes.Buffer that many goroutines may write, for
// capturing logs.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

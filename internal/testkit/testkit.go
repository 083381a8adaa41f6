// Package testkit holds the small helpers every test package of this
// module needs: waiting for a condition with a deadline, a free loopback
// address, a GitHub App key, a clean child environment, the tail of a log,
// a buffer safe for concurrent writers and a settable clock. It is
// imported only by tests.
package testkit

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PollInterval is how often WaitFor and Poll check their condition.
const PollInterval = 20 * time.Millisecond

// Poll checks cond until it holds (true) or timeout passes (false).
func Poll(timeout time.Duration, cond func() (bool, string)) bool {
	return PollEvery(timeout, PollInterval, cond)
}

// WaitFor checks cond until it holds, or fails the test after timeout with
// what cond last saw.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	WaitForEvery(t, what, timeout, PollInterval, cond)
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

var (
	sharedKeyOnce sync.Once
	sharedKey     *rsa.PrivateKey
	sharedKeyPEM  []byte
)

// SharedKey is Key made once per test binary, for tests that need an app
// key but not a fresh one: RSA generation is slow under -race.
func SharedKey(t testing.TB) (*rsa.PrivateKey, []byte) {
	t.Helper()
	sharedKeyOnce.Do(func() { sharedKey, sharedKeyPEM = Key(t) })
	if sharedKey == nil {
		t.Fatal("the shared key could not be generated")
	}
	return sharedKey, sharedKeyPEM
}

// Fetch sends one request with http.DefaultClient and returns the answer
// and its whole body (already closed). header may be nil; a "Host" entry
// in it becomes the request's Host. A request that cannot be made, sent
// or read fails the test.
func Fetch(t testing.TB, method, url string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	for k, v := range header {
		req.Header[k] = slices.Clone(v)
	}
	if h := header.Get("Host"); h != "" {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return resp, b
}

// Headers builds a header from name, value pairs, leaving out the pairs
// whose value is empty: Headers("Origin", origin) sends no Origin when
// origin is "".
func Headers(pairs ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			h.Set(pairs[i], pairs[i+1])
		}
	}
	return h
}

// GrepSource returns the distinct first submatches of re in the non-test
// Go files of dir, sorted: the names a package defines (metrics, routes,
// variables), for tests that check the docs or the output against them.
func GrepSource(t testing.TB, dir string, re *regexp.Regexp) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			seen[m[1]] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// ECKeyPEM is a fresh P-256 key in SEC 1 PEM: a valid key that is not
// the RSA key a GitHub App has.
func ECKeyPEM(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// Alive reports whether process pid runs; a zombie counts as dead.
func Alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no procfs: trust kill(0)
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// PollEvery is Poll checking cond every interval instead of PollInterval:
// for a condition that costs the system under test, such as a large
// state fetched over HTTP, or a process started per check.
func PollEvery(timeout, interval time.Duration, cond func() (bool, string)) bool {
	deadline := time.Now().Add(timeout)
	for {
		if ok, _ := cond(); ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// WaitForEvery is WaitFor checking cond every interval (see PollEvery).
func WaitForEvery(t testing.TB, what string, timeout, interval time.Duration, cond func() (bool, string)) {
	t.Helper()
	if !PollEvery(timeout, interval, cond) {
		_, seen := cond()
		t.Fatalf("timed out after %v waiting for %s; last seen:\n%s", timeout, what, seen)
	}
}

// SameSettings fails the test unless every field that want sets (not
// zero) has the same value in got: that a config's defaults() filled a
// zero config with what its Default…() states.
func SameSettings(t testing.TB, got, want any) {
	t.Helper()
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	if g.Type() != w.Type() || g.Kind() != reflect.Struct {
		t.Fatalf("SameSettings: %T and %T are not the same struct type", got, want)
	}
	for i := range w.NumField() {
		name := w.Type().Field(i).Name
		wf := w.Field(i)
		if !wf.CanInterface() || wf.IsZero() {
			continue
		}
		if !reflect.DeepEqual(g.Field(i).Interface(), wf.Interface()) {
			t.Errorf("%s = %v, want the default %v", name, g.Field(i).Interface(), wf.Interface())
		}
	}
}

// WantErr checks err as a table test wants it: no error when want is "",
// else an error whose text contains want; it fails the test otherwise. It
// reports whether err is nil, for checks that only apply then.
func WantErr(t testing.TB, err error, want string) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Fatalf("error %v, want one containing %q", err, want)
	}
	return err == nil
}

// FileSize returns the size of the file at path, or fails the test.
func FileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Clock is a settable clock, safe for concurrent use: a component's Now
// in a test.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock that reads t until it is set or advanced.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

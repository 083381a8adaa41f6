package testkit

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	n := 0
	if !Poll(time.Second, func() (bool, string) { n++; return n == 3, "" }) {
		t.Fatal("Poll gave up on a condition that came true on the third check")
	}
	start := time.Now()
	if Poll(50*time.Millisecond, func() (bool, string) { return false, "" }) {
		t.Fatal("Poll reported a condition that never held")
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("Poll gave up before its timeout")
	}
}

func TestKeyParses(t *testing.T) {
	_, p := Key(t)
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM block")
	}
	if _, err := x509.ParsePKCS1PrivateKey(b.Bytes); err != nil {
		t.Fatal(err)
	}
	path := KeyFile(t, t.TempDir())
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v %v", path, fi, err)
	}
}

func TestChildEnvDropsOurVariables(t *testing.T) {
	t.Setenv("SHOES_SCALESET_PLUGIN", "x")
	t.Setenv("SIM_PLUGIN_LATENCY", "1s")
	t.Setenv("GITHUB_APP_ID", "1")
	env := ChildEnv("EXTRA=1")
	for _, kv := range env {
		if strings.HasPrefix(kv, "SHOES_SCALESET_") || strings.HasPrefix(kv, "SIM_PLUGIN_") || strings.HasPrefix(kv, "GITHUB_APP_ID=") {
			t.Errorf("ChildEnv kept %s", kv)
		}
	}
	if env[len(env)-1] != "EXTRA=1" {
		t.Errorf("ChildEnv did not append the extra variable: %v", env[len(env)-1])
	}
}

func TestTail(t *testing.T) {
	if got := Tail("a\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("Tail = %q", got)
	}
	if got := Tail("a", 5); got != "a" {
		t.Errorf("Tail = %q", got)
	}
}

func TestSyncBufferConcurrent(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { fmt.Fprintf(&b, "line %d\n", i) })
	}
	wg.Wait()
	if got := strings.Count(b.String(), "\n"); got != 8 {
		t.Errorf("%d lines, want 8", got)
	}
}

func TestFreeAddrIsLoopback(t *testing.T) {
	if a := FreeAddr(t); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("FreeAddr = %s", a)
	}
}

func TestSharedKeyIsShared(t *testing.T) {
	k1, p1 := SharedKey(t)
	k2, p2 := SharedKey(t)
	if !k1.Equal(k2) || string(p1) != string(p2) {
		t.Fatal("SharedKey gave two keys")
	}
	b, _ := pem.Decode(p1)
	if b == nil {
		t.Fatal("no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err != nil || !k.Equal(k1) {
		t.Fatalf("PEM is not the key: %v", err)
	}
}

func TestFetch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", r.Method+" "+r.Header.Get("Authorization")+" "+string(b))
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("body"))
	}))
	t.Cleanup(srv.Close)
	resp, body := Fetch(t, "POST", srv.URL, strings.NewReader("in"), http.Header{"Authorization": {"Bearer x"}})
	if resp.StatusCode != http.StatusTeapot || string(body) != "body" || resp.Header.Get("X-Seen") != "POST Bearer x in" {
		t.Fatalf("Fetch = %d %q, seen %q", resp.StatusCode, body, resp.Header.Get("X-Seen"))
	}
}

func TestAlive(t *testing.T) {
	if !Alive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	if Alive(cmd.Process.Pid) {
		t.Errorf("reaped process %d is alive", cmd.Process.Pid)
	}
}

func TestPollEvery(t *testing.T) {
	n := 0
	start := time.Now()
	if !PollEvery(5*time.Second, 30*time.Millisecond, func() (bool, string) { n++; return n == 3, "" }) {
		t.Fatal("PollEvery gave up on a condition that holds on the third check")
	}
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Errorf("3 checks 30ms apart took %v", took)
	}
	if PollEvery(50*time.Millisecond, 10*time.Millisecond, func() (bool, string) { return false, "" }) {
		t.Error("PollEvery held a condition that never holds")
	}
	WaitForEvery(t, "a true condition", time.Second, 10*time.Millisecond, func() (bool, string) { return true, "" })
}

func TestSameSettings(t *testing.T) {
	type cfg struct {
		A int
		B string
		C time.Duration
	}
	SameSettings(t, cfg{1, "x", time.Second}, cfg{1, "x", 0}) // C: no default stated
	rec := &recordingTB{TB: t}
	SameSettings(rec, cfg{1, "y", 0}, cfg{1, "x", time.Second})
	if rec.errors != 2 { // B differs, C is not filled
		t.Errorf("%d errors, want 2", rec.errors)
	}
}

// recordingTB counts the errors a helper reports.
type recordingTB struct {
	testing.TB
	errors int
}

func (r *recordingTB) Helper()               {}
func (r *recordingTB) Errorf(string, ...any) { r.errors++ }

func TestWantErr(t *testing.T) {
	if !WantErr(t, nil, "") {
		t.Error("WantErr(nil, \"\") = false")
	}
	if WantErr(t, errors.New("bad pool size"), "pool size") {
		t.Error("WantErr of an error = true")
	}
	for _, tc := range []struct {
		err  error
		want string
	}{{errors.New("x"), ""}, {nil, "x"}, {errors.New("other"), "x"}} {
		ft := &fatalRecorder{TB: t}
		done := make(chan struct{})
		go func() { defer close(done); WantErr(ft, tc.err, tc.want) }()
		<-done
		if !ft.failed {
			t.Errorf("WantErr(%v, %q) did not fail", tc.err, tc.want)
		}
	}
}

// fatalRecorder is a testing.TB whose Fatalf only records the failure and
// ends its goroutine.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(string, ...any) {
	f.failed = true
	runtime.Goexit()
}

func TestFileSize(t *testing.T) {
	p := t.TempDir() + "/f"
	if err := os.WriteFile(p, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := FileSize(t, p); n != 5 {
		t.Errorf("FileSize = %d, want 5", n)
	}
}

func TestFetchHostAndHeaders(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen", r.Host+" origin="+r.Header.Get("Origin"))
	}))
	t.Cleanup(srv.Close)
	h := Headers("Host", "evil.example", "Origin", "", "Authorization", "Bearer x")
	if _, ok := h["Origin"]; ok || h.Get("Authorization") != "Bearer x" {
		t.Fatalf("Headers = %v, want no Origin and the Authorization", h)
	}
	resp, _ := Fetch(t, "GET", srv.URL, nil, h)
	if got := resp.Header.Get("X-Seen"); got != "evil.example origin=" {
		t.Fatalf("the server saw %q, want Host evil.example and no Origin", got)
	}
}

func TestGrepSource(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"a.go":      `x := "name_b"; y := "name_a"; z := "name_b"`,
		"a_test.go": `"name_test"`,
		"b.txt":     `"name_txt"`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := GrepSource(t, dir, regexp.MustCompile(`"(name_[a-z]+)"`))
	if !slices.Equal(got, []string{"name_a", "name_b"}) {
		t.Fatalf("GrepSource = %v, want [name_a name_b]: distinct, sorted, no tests, Go only", got)
	}
}

func TestECKeyPEM(t *testing.T) {
	b, _ := pem.Decode(ECKeyPEM(t))
	if b == nil || b.Type != "EC PRIVATE KEY" {
		t.Fatalf("ECKeyPEM: no EC PEM block: %v", b)
	}
	if _, err := x509.ParseECPrivateKey(b.Bytes); err != nil {
		t.Fatal(err)
	}
}

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := NewClock(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("Now = %v, want %v", got, t0)
	}
	c.Advance(time.Minute)
	if got := c.Now(); !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after Advance(1m): %v, want %v", got, t0.Add(time.Minute))
	}
	c.Set(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("after Set: %v, want %v", got, t0)
	}
}

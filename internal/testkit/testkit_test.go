package testkit

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
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

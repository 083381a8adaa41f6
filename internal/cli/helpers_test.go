package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testbin"
)

// cliBinary is the shoes-scaleset binary built once for the package's
// tests, by TestMain. Its `sim plugin` is the fake shoes plugin and its
// `sim runner` the sim runner. Other test files of this package use it
// too: the package has a single TestMain, here.
var cliBinary string

func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m, "./cmd/shoes-scaleset", &cliBinary))
}

// cliSyncBuffer collects output written from many goroutines.
type cliSyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *cliSyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *cliSyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cliResult is the outcome of one command line.
type cliResult struct {
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// runCLIMain runs the command line in-process through Main, bounded by
// timeout; it reads the environment of the test process.
func runCLIMain(t *testing.T, timeout time.Duration, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr cliSyncBuffer
	code := Main(ctx, cancel, args, &stdout, &stderr)
	if ctx.Err() != nil {
		t.Fatalf("shoes-scaleset %s: still running after %v\n%s", strings.Join(args, " "), timeout,
			cliResult{code, stdout.String(), stderr.String()})
	}
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// cliConfigEnv lists the variables the run command reads besides its
// SHOES_SCALESET_ ones: myshoes's.
var cliConfigEnv = []string{
	"GITHUB_URL", "GITHUB_APP_ID", "GITHUB_PRIVATE_KEY_BASE64", "PLUGIN",
	"RUNNER_USER", "RUNNER_VERSION", "RUNNER_BASE_DIRECTORY",
}

// cliChildEnv is the environment of a child shoes-scaleset: the test's own
// without any variable shoes-scaleset or the fake plugin reads, plus extra.
func cliChildEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, envPrefix), strings.HasPrefix(name, "SIM_PLUGIN_"):
			continue
		case slices.Contains(cliConfigEnv, name):
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// runCLIBinary runs the built binary to completion, bounded by timeout.
func runCLIBinary(t *testing.T, timeout time.Duration, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBinary, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("shoes-scaleset %s: still running after %v\n%s", strings.Join(args, " "), timeout, res)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("shoes-scaleset %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// cliWaitFor polls cond until it holds or timeout passes; cond returns
// whether it holds and what it saw, for the failure message.
func cliWaitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last seen:\n%s", timeout, what, seen)
		}
		<-tick.C
	}
}

// cliFreeAddr returns a loopback address with a port that was free a
// moment ago.
func cliFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// writeCLIFile writes a file into a new temporary directory and returns
// its path.
func writeCLIFile(t *testing.T, name string, data []byte, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, perm); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	return p
}

// cliRSAKeyPEM returns a new RSA private key as PKCS#1 PEM.
func cliRSAKeyPEM(t *testing.T) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate RSA key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// writeCLIPluginWrapper writes an executable script that runs the built
// binary's fake plugin: --plugin takes a path, not arguments.
func writeCLIPluginWrapper(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "fake-plugin")
	script := fmt.Sprintf("#!/bin/sh\nexec '%s' sim plugin \"$@\"\n", cliBinary)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatalf("write plugin wrapper: %v", err)
	}
	return p
}

// killCLIInstances kills the process groups of the instances the fake
// plugin left running under stateDir.
func killCLIInstances(stateDir string) { shoesfake.KillAll(stateDir) }

// cliTail returns the last n lines of s.
func cliTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

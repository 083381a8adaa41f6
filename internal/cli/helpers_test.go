package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testbin"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// startSim starts the simulated GitHub, Actions service and myshoes in
// this process with one target, org-a, and a short poll hold; it stops
// when the test ends.
func startSim(t *testing.T) *sim.World {
	t.Helper()
	w, err := sim.Start(sim.Config{Targets: []string{"org-a"}, PollHold: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("start sim: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// cliBinary is the shoes-scaleset binary built once for the package's
// tests, by TestMain. Its `sim plugin` is the fake shoes plugin and its
// `sim runner` the sim runner. Other test files of this package use it
// too: the package has a single TestMain, here. It builds the test etcd
// server too (etcdtest.Start), for the commands that read or write etcd.
var cliBinary string

func TestMain(m *testing.M) {
	os.Exit(testbin.MainAll(m, testbin.Target{Pkg: "./cmd/shoes-scaleset", Bin: &cliBinary}, etcdtest.Target()))
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
	var stdout, stderr testkit.SyncBuffer
	code := Main(ctx, cancel, args, &stdout, &stderr)
	if ctx.Err() != nil {
		t.Fatalf("shoes-scaleset %s: still running after %v\n%s", strings.Join(args, " "), timeout,
			cliResult{code, stdout.String(), stderr.String()})
	}
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// cliConfigEnv lists the variables the run command reads besides its
// SHOES_SCALESET_ ones: myshoes's. testkit.ChildEnv drops them too.
var cliConfigEnv = []string{
	"GITHUB_URL", "GITHUB_APP_ID", "GITHUB_PRIVATE_KEY_BASE64", "PLUGIN",
	"RUNNER_USER", "RUNNER_VERSION", "RUNNER_BASE_DIRECTORY",
}

// cliChildEnv is the environment of a child shoes-scaleset: the test's own
// without any variable shoes-scaleset or the fake plugin reads, plus extra.
func cliChildEnv(extra ...string) []string { return testkit.ChildEnv(extra...) }

// runCLIBinary runs the built binary to completion, bounded by timeout.
func runCLIBinary(t *testing.T, timeout time.Duration, env []string, args ...string) cliResult {
	t.Helper()
	r := scenariotest.Exec(t, cliBinary, timeout, env, args...)
	return cliResult{code: r.Code, stdout: r.Stdout, stderr: r.Stderr}
}

// cliRSAKeyPEM returns a new RSA private key as PKCS#1 PEM.
func cliRSAKeyPEM(t *testing.T) []byte {
	t.Helper()
	_, p := testkit.Key(t)
	return p
}

// writeCLIPluginWrapper writes an executable script that runs the built
// binary's fake plugin: --plugin takes a path, not arguments.
func writeCLIPluginWrapper(t *testing.T, dir string) string {
	t.Helper()
	return scenariotest.PluginWrapper(t, cliBinary, dir)
}

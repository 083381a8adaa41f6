package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
)

// TestDemoRemovesItsTempDir runs the binary's demo with TMPDIR set to a
// test directory: the work directory it makes there is gone when the demo
// ends, whether it passed, failed, or was stopped by SIGTERM.
func TestDemoRemovesItsTempDir(t *testing.T) {
	t.Run("passed", func(t *testing.T) {
		tmp := t.TempDir()
		res := runCLIBinary(t, 90*time.Second, cliChildEnv("TMPDIR="+tmp), "demo", "--json", "--jobs", "2", "--targets", "1",
			"--plugin-mode", "inprocess", "--plugin-latency", "10ms", "--job-duration", "100ms", "--timeout", "60s")
		if res.code != exitOK {
			t.Fatalf("demo: %s", res)
		}
		noDemoTempDir(t, tmp)
	})
	t.Run("failed", func(t *testing.T) {
		// A plugin that never completes its handshake: the controller
		// stops at once with run's configuration error about it, so the
		// demo fails before it is ready, with that exit code (2).
		tmp := t.TempDir()
		res := runCLIBinary(t, 60*time.Second, cliChildEnv("TMPDIR="+tmp), "demo", "--plugin-binary", "/bin/true", "--timeout", "30s")
		if res.code != exitUsage || !strings.Contains(res.stderr, "start plugin /bin/true") {
			t.Fatalf("demo with a plugin that does not start: want exit 2 naming it\n%s", res)
		}
		if !strings.Contains(res.stderr, "--work-dir") {
			t.Errorf("the error does not say how to keep the controller log:\n%s", res.stderr)
		}
		noDemoTempDir(t, tmp)
	})
	t.Run("SIGTERM", func(t *testing.T) {
		tmp := t.TempDir()
		p := scenariotest.Start(t, cliBinary, filepath.Join(t.TempDir(), "demo.log"), cliChildEnv("TMPDIR="+tmp),
			"demo", "--jobs", "2", "--targets", "1", "--plugin-mode", "inprocess", "--plugin-latency", "10ms",
			"--job-duration", "10m", "--timeout", "5m")
		var dirs []string
		scenariotest.WaitFor(t, "the demo to queue its jobs in its work directory", time.Minute, func() (bool, string) {
			if p.Exited() {
				t.Fatalf("demo exited early:\n%s", p.Tail(20))
			}
			dirs, _ = filepath.Glob(filepath.Join(tmp, "shoes-scaleset-demo-*"))
			return len(dirs) == 1 && strings.Contains(p.Log(), "controller ready"), p.Tail(3)
		})
		if _, err := os.Stat(filepath.Join(dirs[0], "controller.log")); err != nil {
			t.Fatalf("no controller log in the work directory while the demo runs: %v", err)
		}
		// In inprocess mode the fake plugin's instances may be in memory,
		// outside TMPDIR (/dev/shm): that directory goes too.
		instances := demoLine(p.Log(), "fake instances:")
		if _, err := os.Stat(instances); err != nil {
			t.Fatalf("the fake instances directory %q the demo printed: %v\n%s", instances, err, p.Tail(20))
		}
		if code, _ := p.Terminate(time.Minute); code != exitFailure {
			t.Errorf("demo exit code after SIGTERM = %d, want 1 (interrupted)\n%s", code, p.Tail(20))
		}
		noDemoTempDir(t, tmp)
		if _, err := os.Stat(instances); !os.IsNotExist(err) {
			t.Errorf("the fake instances directory %s is still there after the demo stopped (err %v)", instances, err)
		}
	})
}

// TestSimServeRemovesItsKeyDir: sim serve without --app-key-file writes
// the key it generated to a temporary directory, and removes it on
// SIGTERM.
func TestSimServeRemovesItsKeyDir(t *testing.T) {
	tmp := t.TempDir()
	p := scenariotest.Start(t, cliBinary, filepath.Join(t.TempDir(), "sim.log"), cliChildEnv("TMPDIR="+tmp),
		"sim", "serve", "--listen", "127.0.0.1:0")
	var key string
	scenariotest.WaitFor(t, "sim serve to print its key file", 30*time.Second, func() (bool, string) {
		for line := range strings.Lines(p.Log()) {
			if k, ok := strings.CutPrefix(strings.TrimSpace(line), "--github-private-key-path="); ok {
				key = k
			}
		}
		return key != "", p.Tail(5)
	})
	if !strings.HasPrefix(key, tmp+string(filepath.Separator)) {
		t.Fatalf("key file %s is not under TMPDIR %s", key, tmp)
	}
	if _, err := os.Stat(key); err != nil {
		t.Fatalf("key file while sim serve runs: %v", err)
	}
	if code, _ := p.Terminate(30 * time.Second); code != exitOK {
		t.Errorf("sim serve exit code after SIGTERM = %d, want 0\n%s", code, p.Tail(20))
	}
	if _, err := os.Stat(filepath.Dir(key)); !os.IsNotExist(err) {
		t.Errorf("the key directory %s is still there after sim serve stopped (err %v)", filepath.Dir(key), err)
	}
}

// demoLine is the value the demo's header printed after label, up to the
// first space: "" when it printed none.
func demoLine(log, label string) string {
	for line := range strings.Lines(log) {
		if _, v, ok := strings.Cut(line, label); ok && len(strings.Fields(v)) > 0 {
			return strings.Fields(v)[0]
		}
	}
	return ""
}

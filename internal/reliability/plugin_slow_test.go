//go:build reliability

package reliability

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// startFailureRE finds the warning of a plugin process that did not start.
var startFailureRE = regexp.MustCompile(`msg="plugin process did not start".*`)

// startFailures reads shoes_scaleset_plugin_start_failures_total{reason}
// from the daemon's /metrics.
func (d *daemon) startFailures(reason string) (float64, error) {
	code, body, err := d.Get("/metrics")
	if err != nil {
		return 0, err
	}
	if code != 200 {
		return 0, fmt.Errorf("/metrics answered %d", code)
	}
	prefix := `shoes_scaleset_plugin_start_failures_total{reason="` + reason + `"} `
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, nil
}

// TestPluginStartAndDownloadGiveUp: the slow halves of the plugin
// scenarios. A plugin that never completes its handshake is given up on
// after the 1-minute start timeout, with a warning naming the plugin, the
// timeout and the pid, a count in /metrics, and its process group killed;
// a --plugin URL that stays unreachable is retried for about 30s, then run
// exits 1 (a runtime failure, which systemd restarts), not 2.
func TestPluginStartAndDownloadGiveUp(t *testing.T) {
	res := newResult(t, 30, "plugin start timeout; plugin URL down for good (issue 11)",
		"stuck handshake: after the 1m start timeout a warning names plugin, timeout and pid, shoes_scaleset_plugin_start_failures_total{reason=\"timeout\"} counts it, the pid is dead, SIGTERM ends within --shutdown-timeout + 5s; URL unreachable: exit 1 after the retries, not 2")

	t.Run("start timeout", func(t *testing.T) {
		s := newScenario(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}})
		d, stuck := s.startStuck(1)
		var line string
		scenariotest.WaitFor(t, "the warning of a start that timed out", 2*time.Minute, func() (bool, string) {
			d.Alive()
			line = startFailureRE.FindString(d.Log())
			return line != "", testkit.Tail(d.Log(), 3)
		})
		for _, want := range []string{"plugin=" + stuck, "start_timeout=1m0s", "reason=timeout", "no handshake within 1m0s"} {
			if !strings.Contains(line, want) {
				t.Errorf("warning %q does not say %q", line, want)
			}
		}
		m := regexp.MustCompile(`\bpid=(\d+)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("warning %q names no pid", line)
		}
		pid, _ := strconv.Atoi(m[1])
		if !testkit.Poll(2*time.Second, func() (bool, string) { return !testkit.Alive(pid), "" }) {
			t.Errorf("pid %d of the start that timed out is alive", pid)
		}
		var n float64
		scenariotest.WaitFor(t, "the start failure in /metrics", 10*time.Second, func() (bool, string) {
			var err error
			n, err = d.startFailures("timeout")
			return err == nil && n >= 1, fmt.Sprint(n, err)
		})
		code, took := d.Terminate(60 * time.Second)
		if code != 0 || took > 8*time.Second {
			t.Errorf("SIGTERM: exit %d after %v, want 0 within --shutdown-timeout 3s + 5s", code, took)
		}
		if left := s.scenarioProcs(isStuckProc); len(left) != 0 {
			t.Errorf("processes of the stuck plugin left after run exited: %v", pids(left))
		}
		figure(t, res, "stuck handshake: warning \"plugin process did not start\" (reason=timeout start_timeout=1m0s pid=%d, dead); start failures counted: %v; SIGTERM: exit %d after %.2fs",
			pid, n, code, took.Seconds())
	})

	t.Run("URL down for good", func(t *testing.T) {
		s := newScenario(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}})
		url := "http://" + testkit.FreeAddr(t) + "/fake-plugin" // nothing listens there
		env := append(s.pluginEnvironment(), "XDG_CACHE_HOME="+t.TempDir())
		r := runBinary(t, 2*time.Minute, env, append(s.runArgs(testkit.FreeAddr(t)), "--plugin", url)...)
		if r.Code != 1 || !strings.Contains(r.Stderr, "gave up after 5 attempts") {
			t.Errorf("want exit 1 after 5 attempts\n%s", r)
		}
		figure(t, res, "URL unreachable: exit %d after %.1fs: %s", r.Code, r.Took.Seconds(), testkit.Tail(strings.TrimSpace(r.Stderr), 1))
	})
}

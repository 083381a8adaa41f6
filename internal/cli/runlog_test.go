package cli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// TestRunLogsAndPluginReadiness runs `run` as a process against the
// simulated peers, logging JSON at debug level, with the fake plugin:
//
//   - a plugin that starts at start but not later (its
//     SIM_PLUGIN_FAIL_START_IF file created) makes /readyz 503 with the
//     reason, and ready again once a start succeeds;
//   - the start line has the effective settings and no secret;
//   - durations are strings ("1.2ms"), not nanoseconds;
//   - the plugin's own JSON log lines are records with its keys as
//     fields, not a JSON string in msg;
//   - after SIGTERM, "shoes-scaleset stopped" is the last line: nothing
//     (plugin processes, the state file) logs after it.
func TestRunLogsAndPluginReadiness(t *testing.T) {
	w := startSim(t)
	dir := t.TempDir()
	files := scenariotest.NewFiles(t, dir)
	noStart := filepath.Join(dir, "no-start")
	// The app key is a secret setting: given base64-encoded in the
	// environment, as myshoes's env file does, in place of the file.
	key := base64.StdEncoding.EncodeToString(w.AppKeyPEM())
	env := append(files.PluginEnv(shoesfake.EnvFailStartIf+"="+noStart), "SHOES_SCALESET_GITHUB_PRIVATE_KEY_BASE64="+key)
	d := scenariotest.StartRun(t, cliBinary, filepath.Join(dir, "run.log"), env, scenariotest.RunArgs{
		Peers: scenariotest.WorldPeers(t, w, dir), Plugin: writeCLIPluginWrapper(t, dir), StateFile: files.StateFile,
		Flags: []string{"--github-private-key-path=", "--sync-interval", "1s", "--runner-base-directory", filepath.Join(dir, "runners"),
			"--log-level", "debug", "--log-format", "json", "--retry-backoff", "200ms", "--max-runners", "3"}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- daemon log (last 40 lines):\n%s", d.Tail(40))
		}
	})
	d.WaitUp()
	scenariotest.WaitFor(t, "/readyz 200", time.Minute, func() (bool, string) {
		d.Alive()
		code, r := d.Ready()
		return code == 200, fmt.Sprintf("%d %+v", code, r)
	})

	// Later starts fail: the start check's process was not kept, so the
	// job's AddInstance starts one.
	if err := os.WriteFile(noStart, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Actions.QueueJobs(actionsfake.JobsRequest{Scope: "org-a", Count: 1, DurationMS: 200}); err != nil {
		t.Fatal(err)
	}
	var reason string
	scenariotest.WaitFor(t, "/readyz 503 naming the plugin", time.Minute, func() (bool, string) {
		d.Alive()
		code, r := d.Ready()
		for _, n := range r.NotReady {
			if strings.HasPrefix(n.Reason, "plugin: ") {
				reason = n.Reason
			}
		}
		return code == 503 && reason != "", fmt.Sprintf("%d %+v", code, r)
	})
	for _, want := range []string{"plugin process starts failed", "start plugin", "stderr is in the log"} {
		if !strings.Contains(reason, want) {
			t.Errorf("readiness reason %q lacks %q", reason, want)
		}
	}
	// The plugin's own words are in the log, not in /readyz.
	if strings.Contains(reason, "refusing to start") || !strings.Contains(d.Log(), "refusing to start") {
		t.Errorf("readiness reason %q repeats the plugin's stderr, or the log lacks it", reason)
	}
	if err := os.Remove(noStart); err != nil {
		t.Fatal(err)
	}
	scenariotest.WaitFor(t, "the job completed and /readyz 200", 2*time.Minute, func() (bool, string) {
		d.Alive()
		code, r := d.Ready()
		st := w.Actions.State()
		return scenario.JobsFinal(st) && code == 200, fmt.Sprintf("%v %d %+v", scenario.JobCounts(st), code, r)
	})

	if code, _ := d.Terminate(time.Minute); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	logs := d.Log()
	if strings.Contains(logs, key[:40]) || strings.Contains(logs, "PRIVATE KEY") {
		t.Errorf("the log has the app key")
	}
	recs := jsonRecords(t, logs)
	if len(recs) == 0 {
		t.Fatal("no log line")
	}
	if last := recs[len(recs)-1]; last["msg"] != "shoes-scaleset stopped" {
		t.Errorf("last line = %v, want the stopped line", last)
	}

	t.Run("start line", func(t *testing.T) {
		start := findRecord(recs, func(r logRecord) bool { return r["msg"] == "shoes-scaleset starting" })
		if start == nil {
			t.Fatal("no start line")
		}
		settings, _ := start["settings"].(map[string]any)
		from, _ := start["settings_from"].(map[string]any)
		for flag, want := range map[string]string{
			"sync-interval": "1s", "max-runners": "3", "log-format": "json",
			"poll-hold": "50s", "min-runners": "0", // defaults
			"github-private-key-base64": "<redacted>", "github-private-key-path": "",
			// Redacted by its name, set or not (redactAttr).
			"github-token": "<redacted>",
		} {
			if got := settings[flag]; got != want {
				t.Errorf("settings[%s] = %v, want %q", flag, got, want)
			}
		}
		if from["max-runners"] != "flag" || from["github-private-key-base64"] != "SHOES_SCALESET_GITHUB_PRIVATE_KEY_BASE64" || from["poll-hold"] != nil {
			t.Errorf("settings_from = %v, want max-runners from a flag, the key from its variable, poll-hold (the default) absent", from)
		}
	})
	t.Run("durations are strings", func(t *testing.T) {
		n := 0
		for _, r := range recs {
			if r["msg"] != "plugin call" {
				continue
			}
			n++
			s, ok := r["duration"].(string)
			if _, err := time.ParseDuration(s); !ok || err != nil {
				t.Fatalf("duration of %v is not a Go duration string", r)
			}
		}
		if n == 0 {
			t.Error("no plugin call logged")
		}
	})
	t.Run("plugin JSON lines are fields", func(t *testing.T) {
		created := findRecord(recs, func(r logRecord) bool { return r["msg"] == "instance created" })
		if created == nil {
			t.Fatal("the fake plugin's \"instance created\" line is not a record of its own")
		}
		for key, want := range map[string]any{"level": "INFO", "scope": "go-plugin", "logger": "fake-plugin", "plugin_scope": "shoesfake"} {
			if created[key] != want {
				t.Errorf("%s = %v, want %v in %v", key, created[key], want, created)
			}
		}
		for _, key := range []string{"cloud_id", "runner", "pid", "plugin_time"} {
			if _, ok := created[key]; !ok {
				t.Errorf("no %s in %v", key, created)
			}
		}
		if r := findRecord(recs, func(r logRecord) bool { m, _ := r["msg"].(string); return strings.HasPrefix(m, "{") }); r != nil {
			t.Errorf("a JSON line of the plugin was logged as a message: %v", r)
		}
	})
}

// logRecord is one JSON log line.
type logRecord map[string]any

// jsonRecords parses a JSON log; a line that is not JSON fails the test.
func jsonRecords(t *testing.T, log string) []logRecord {
	t.Helper()
	var out []logRecord
	for line := range strings.Lines(log) {
		var r logRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Errorf("a log line is not JSON: %q", testkit.Tail(line, 1))
			continue
		}
		out = append(out, r)
	}
	return out
}

func findRecord(recs []logRecord, match func(logRecord) bool) logRecord {
	for _, r := range recs {
		if match(r) {
			return r
		}
	}
	return nil
}

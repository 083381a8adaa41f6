package scenariotest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// Files are where a daemon and its fake plugin keep their state, under
// one directory: what Gather reads once the daemon stopped.
type Files struct {
	// StateFile is run's --state-file.
	StateFile string
	// CallLog and InstanceDir are the fake plugin's SIM_PLUGIN_CALL_LOG
	// and SIM_PLUGIN_STATE_DIR.
	CallLog, InstanceDir string
	// EtcdEndpoint and EtcdPrefix, when set, say that the state is in
	// etcd (--store etcd), shared by replicas: Gather reads it there.
	EtcdEndpoint, EtcdPrefix string
}

// StoreFlags are the flags that point a command at the state: the state
// file, and the etcd flags when the state is in etcd.
func (f Files) StoreFlags() []string {
	flags := []string{"--state-file", f.StateFile}
	if f.EtcdEndpoint != "" {
		flags = append(flags, "--store", "etcd", "--etcd-endpoints", f.EtcdEndpoint, "--etcd-prefix", f.EtcdPrefix)
	}
	return flags
}

// NewFiles lays the files out under dir: state/state.db, calls.jsonl and
// instances/. The test's cleanup kills the instances the fake plugin
// leaves running.
func NewFiles(t testing.TB, dir string) Files {
	f := Files{
		StateFile:   filepath.Join(dir, "state", "state.db"),
		CallLog:     filepath.Join(dir, "calls.jsonl"),
		InstanceDir: filepath.Join(dir, "instances"),
	}
	t.Cleanup(func() { shoesfake.KillAll(f.InstanceDir) })
	return f
}

// PluginEnv is the environment of run (and so of its plugin processes):
// the test's own without shoes-scaleset's and the fake's variables
// (testkit.ChildEnv), the call log and the instance directory, and
// knobs (SIM_PLUGIN_*=...).
func (f Files) PluginEnv(knobs ...string) []string {
	return testkit.ChildEnv(append([]string{shoesfake.EnvCallLog + "=" + f.CallLog, shoesfake.EnvStateDir + "=" + f.InstanceDir}, knobs...)...)
}

// PluginWrapper writes dir/fake-plugin, the two-line script that runs
// bin's fake plugin (`sim plugin`): --plugin takes a path, not arguments.
func PluginWrapper(t testing.TB, bin, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "fake-plugin")
	if err := os.WriteFile(p, []byte(fmt.Sprintf("#!/bin/sh\nexec '%s' sim plugin \"$@\"\n", bin)), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// RunArgs are the command line of a `run` against simulated peers.
type RunArgs struct {
	Peers
	Plugin, StateFile, Listen string
	// Flags come after the others: a flag given again here wins.
	Flags []string
}

// Args is the command line, from "run" on.
func (a RunArgs) Args() []string {
	return append([]string{"run",
		"--myshoes-url", a.MyshoesURL,
		"--github-url", a.GitHubURL,
		"--github-app-id", a.AppID,
		"--github-private-key-path", a.KeyPath,
		"--plugin", a.Plugin,
		"--state-file", a.StateFile,
		"--listen", a.Listen,
	}, a.Flags...)
}

// Run is a `shoes-scaleset run` process.
type Run struct {
	*Proc
	// Addr is its API's address (--listen).
	Addr string
	http *http.Client
}

// StartRun starts `run` with a's command line (a free loopback address
// when a.Listen is empty) and env, logging to logPath.
func StartRun(t testing.TB, bin, logPath string, env []string, a RunArgs) *Run {
	t.Helper()
	if a.Listen == "" {
		a.Listen = testkit.FreeAddr(t)
	}
	return &Run{Proc: Start(t, bin, logPath, env, a.Args()...), Addr: a.Listen, http: &http.Client{Timeout: 15 * time.Second}}
}

// Get fetches a path of the run's API; it returns the status and body.
func (r *Run) Get(path string) (int, []byte, error) {
	resp, err := r.http.Get("http://" + r.Addr + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Ready fetches /readyz: its status, and its answer decoded (zero when
// it could not be fetched or decoded).
func (r *Run) Ready() (int, httpapi.ReadyResponse) {
	var rr httpapi.ReadyResponse
	code, b, err := r.Get("/readyz")
	if err == nil {
		_ = json.Unmarshal(b, &rr)
	}
	return code, rr
}

// GetJSON fetches a path of the run's API into v; an answer other than
// 200 is an error.
func (r *Run) GetJSON(path string, v any) error {
	code, b, err := r.Get(path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, code, b)
	}
	return json.Unmarshal(b, v)
}

// Runners are the run's runner records (GET /api/v1/runners).
func (r *Run) Runners() ([]store.Runner, error) {
	var out httpapi.RunnersResponse
	err := r.GetJSON("/api/v1/runners", &out)
	return out.Runners, err
}

// History is the run's runner history (GET /api/v1/history).
func (r *Run) History() ([]store.HistoryRecord, error) {
	var out httpapi.HistoryResponse
	err := r.GetJSON("/api/v1/history", &out)
	return out.History, err
}

// ScaleSets are the run's scale sets (GET /api/v1/scalesets).
func (r *Run) ScaleSets() ([]controller.ScaleSetStatus, error) {
	var out httpapi.ScaleSetsResponse
	err := r.GetJSON("/api/v1/scalesets", &out)
	return out.ScaleSets, err
}

// Alive fails the test if the run exited.
func (r *Run) Alive() {
	r.t.Helper()
	if r.Exited() {
		r.t.Fatalf("run exited (code %d):\n%s", r.ExitCode(), r.Tail(60))
	}
}

// WaitUp waits until the run's API answers /healthz.
func (r *Run) WaitUp() {
	r.t.Helper()
	WaitFor(r.t, "the daemon's API", 30*time.Second, func() (bool, string) {
		r.Alive()
		code, _, err := r.Get("/healthz")
		return err == nil && code == http.StatusOK, fmt.Sprint(code, err)
	})
}

// Stop stops the run with SIGTERM and requires exit code 0 within the
// shutdown timeout plus the session deletions (45s).
func (r *Run) Stop() {
	r.t.Helper()
	code, took := r.Terminate(45 * time.Second)
	if code != 0 {
		r.t.Fatalf("run exited %d after SIGTERM (took %v)\n%s", code, took, r.Tail(40))
	}
}

// WaitRecords waits until cond holds for the run's runner records, and
// returns the records it held for. It fails at once if the run exits.
func (r *Run) WaitRecords(what string, timeout time.Duration, cond func([]store.Runner) bool) []store.Runner {
	r.t.Helper()
	var seen []store.Runner
	WaitFor(r.t, what, timeout, func() (bool, string) {
		r.Alive()
		rs, err := r.Runners()
		if err != nil {
			return false, err.Error()
		}
		seen = rs
		return cond(rs), fmt.Sprint(scenario.CountStates(rs))
	})
	return seen
}

// WaitRunners waits until cond holds for the run's records, counted by
// state.
func (r *Run) WaitRunners(what string, timeout time.Duration, cond func(map[store.RunnerState]int) bool) {
	r.t.Helper()
	r.WaitRecords(what, timeout, func(rs []store.Runner) bool { return cond(scenario.CountStates(rs)) })
}

// WaitDrained waits until the run holds no runner on its way in or out
// (pending, configured, busy, deleting): what is left is idle runners and
// unknown-instance records.
func (r *Run) WaitDrained(timeout time.Duration) {
	r.t.Helper()
	r.WaitRunners("no runner pending, configured, busy or deleting", timeout, func(c map[store.RunnerState]int) bool {
		return c[store.StatePending]+c[store.StateConfigured]+c[store.StateBusy]+c[store.StateDeleting] == 0
	})
}

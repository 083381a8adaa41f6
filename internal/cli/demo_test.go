package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/demo"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// demoResult is the outcome of one demo command line run in-process.
type demoResult struct {
	code        int
	out, errOut string
}

// runDemoMain runs `shoes-scaleset demo args...` through Main, with the
// built binary as the fake plugin, and the demo's work directory under
// tmp. The plugin processes inherit the test's environment.
func runDemoMain(t *testing.T, tmp string, timeout time.Duration, args ...string) demoResult {
	t.Helper()
	t.Setenv("TMPDIR", tmp)
	ctx, stop := context.WithTimeout(context.Background(), timeout)
	defer stop()
	var out, errOut bytes.Buffer
	args = append([]string{"demo", "--plugin-binary", cliBinary}, args...)
	code := Main(ctx, stop, args, &out, &errOut)
	res := demoResult{code: code, out: out.String(), errOut: errOut.String()}
	if ctx.Err() != nil {
		t.Fatalf("demo still running after %v\nstdout:\n%s\nstderr:\n%s", timeout, res.out, res.errOut)
	}
	return res
}

// runDemoJSON runs the demo with --json and args, requires the exit code
// want, and returns the result and the report it printed.
func runDemoJSON(t *testing.T, tmp string, timeout time.Duration, want int, args ...string) (demoResult, demo.Report) {
	t.Helper()
	res := runDemoMain(t, tmp, timeout, append([]string{"--json"}, args...)...)
	if res.code != want {
		t.Fatalf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, want, res.out, res.errOut)
	}
	var rep demo.Report
	if err := json.Unmarshal([]byte(res.out), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, res.out)
	}
	return res, rep
}

// runInProcessDemo runs a demo that must succeed with the sim runners in
// the plugin processes (jobs of 200ms, a 60s timeout) and returns its
// report.
func runInProcessDemo(t *testing.T, tmp string, args ...string) demo.Report {
	t.Helper()
	_, rep := runDemoJSON(t, tmp, 90*time.Second, exitOK,
		append(args, "--plugin-mode", "inprocess", "--job-duration", "200ms", "--timeout", "60s")...)
	return rep
}

// demoWorkDir returns the names of the files the demo left in the work
// directory dir (--work-dir).
func demoWorkDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// noDemoTempDir fails the test if a demo left a work directory of its own
// under tmp (its TMPDIR).
func noDemoTempDir(t *testing.T, tmp string) {
	t.Helper()
	if dirs, _ := filepath.Glob(filepath.Join(tmp, "shoes-scaleset-demo-*")); len(dirs) != 0 {
		t.Errorf("the demo left its temporary work directory: %v", dirs)
	}
}

// wantDemoUsageError runs demo with args: exit 2, want on stderr, and no
// demo started (no temporary work directory left).
func wantDemoUsageError(t *testing.T, want string, args ...string) {
	t.Helper()
	tmp := t.TempDir()
	res := runDemoMain(t, tmp, 10*time.Second, args...)
	if res.code != exitUsage {
		t.Fatalf("exit code = %d, want 2\nstdout:\n%s\nstderr:\n%s", res.code, res.out, res.errOut)
	}
	if !strings.Contains(res.errOut, want) {
		t.Errorf("stderr = %q, want it to contain %q", res.errOut, want)
	}
	noDemoTempDir(t, tmp)
}

func TestDemoJSON(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(t.TempDir(), "work")
	res, rep := runDemoJSON(t, tmp, 90*time.Second, exitOK,
		"--jobs", "20", "--plugin-latency", "100ms", "--job-duration", "300ms", "--timeout", "60s", "--work-dir", dir)
	if res.errOut != "" {
		t.Errorf("stderr = %q, want nothing", res.errOut)
	}

	// stdout is one JSON object with exactly the report's keys.
	dec := json.NewDecoder(strings.NewReader(res.out))
	var keys map[string]json.RawMessage
	if err := dec.Decode(&keys); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, res.out)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Errorf("stdout has more than one JSON value:\n%s", res.out)
	}
	var got []string
	for k := range keys {
		got = append(got, k)
	}
	slices.Sort(got)
	want := []string{
		"all_idle_seconds", "all_up_seconds", "bound_seconds",
		"duplicate_runners", "instances_created", "instances_deleted", "job_start_p50_ms", "job_start_p99_ms",
		"jobs", "jobs_completed", "leaked_instances", "log_file", "plugin_mode", "protocol_violations",
		"provision_p50_ms", "provision_p99_ms", "ratio_to_bound", "wall_seconds",
	}
	if !slices.Equal(got, want) {
		t.Errorf("JSON keys = %v, want %v", got, want)
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"jobs = 20", rep.Jobs == 20},
		{"jobs_completed = 20", rep.JobsCompleted == 20},
		{"instances_created = 20", rep.InstancesCreated == 20},
		{"instances_deleted = 20", rep.InstancesDeleted == 20},
		{"leaked_instances = 0", rep.LeakedInstances == 0},
		{"duplicate_runners = 0", rep.DuplicateRunners == 0},
		{"protocol_violations = 0", rep.ProtocolViolations == 0},
		{"wall_seconds > 0", rep.WallSeconds > 0},
		// A provision includes an AddInstance of at least the plugin latency.
		{"provision_p50_ms >= 100", rep.ProvisionP50MS >= 100},
		{"provision_p99_ms >= p50", rep.ProvisionP99MS >= rep.ProvisionP50MS},
		// A job starts once its runner's instance is up and online.
		{"job_start_p50_ms >= 100", rep.JobStartP50MS >= 100},
		{"job_start_p99_ms >= p50", rep.JobStartP99MS >= rep.JobStartP50MS},
		// 20 jobs at provision concurrency 16 are 2 waves of 100ms at least.
		{"bound_seconds = 0.2", rep.BoundSeconds == 0.2},
		{"all_up_seconds >= bound", rep.AllUpSeconds >= rep.BoundSeconds},
		{"all_idle_seconds >= all_up_seconds", rep.AllIdleSeconds >= rep.AllUpSeconds},
		{"ratio_to_bound >= 1", rep.RatioToBound >= 1},
		{"plugin_mode = script", rep.PluginMode == "script"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("report: want %s\n%s", c.what, res.out)
		}
	}

	// Only the logs outlive the demo, in --work-dir; the controller logged
	// to its file, and its clean stop last.
	if names := demoWorkDir(t, dir); !slices.Equal(names, []string{"calls.jsonl", "controller.log"}) {
		t.Errorf("files left in %s: %v, want only calls.jsonl and controller.log", dir, names)
	}
	noDemoTempDir(t, tmp)
	if rep.LogFile != filepath.Join(dir, "controller.log") {
		t.Errorf("log_file = %q, want %q", rep.LogFile, filepath.Join(dir, "controller.log"))
	}
	if log, err := os.ReadFile(rep.LogFile); err != nil || !strings.Contains(string(log), "shoes-scaleset stopped") {
		t.Errorf("controller log lacks the clean stop (err %v)", err)
	}
}

func TestDemoPlainOutput(t *testing.T) {
	tmp := t.TempDir()
	stateFile := filepath.Join(t.TempDir(), "kept", "state.db")
	res := runDemoMain(t, tmp, 90*time.Second,
		"--jobs", "4", "--targets", "2", "--plugin-latency", "50ms", "--job-duration", "200ms", "--state-file", stateFile)
	if res.code != exitOK {
		t.Fatalf("exit code = %d, want 0\nstdout:\n%s\nstderr:\n%s", res.code, res.out, res.errOut)
	}
	for _, want := range []string{
		"demo: 4 jobs of 200ms over 2 targets (demo-org-1 ... demo-org-2), plugin latency 50ms, plugin mode script\n",
		"controller API:  127.0.0.1:",
		"controller ready: 2 scale sets listening",
		"\njobs 4 | queued ",
		"| instances up 0 created 4 deleted 4 |",
		"demo passed: all 4 jobs completed, nothing leaked\n",
		"  jobs completed       4/4\n",
		"  instances created    4\n",
		"  instances deleted    4\n",
		"  leaked instances     0\n",
		"  duplicate runners    0\n",
		"  protocol violations  0\n",
		"  sessions left open   0 ",
		"  wall time            ",
		"  provision p50/p99    ",
		"  job start p50/p99    ",
		"  all instances up     ",
		"  bound                0.05s (ceil(jobs/provision concurrency) x plugin latency); ratio ",
		"  plugin mode          script\n",
		"  state file           " + stateFile + " (kept: shoes-scaleset runners ls --state-file " + stateFile + ")\n",
		"  controller log:  " + tmp, // while it runs
		"  logs                 deleted with the temporary work directory (keep them with --work-dir DIR)\n",
	} {
		if !strings.Contains(res.out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, res.out)
		}
	}
	if strings.Contains(res.out, "\r") || strings.Contains(res.out, "\x1b[") {
		t.Errorf("plain output has terminal control characters:\n%q", res.out)
	}
	noDemoTempDir(t, tmp)

	// The kept state file has the run's history and no runner left.
	st, err := store.Open(store.Options{Path: stateFile, ReadOnly: true})
	if err != nil {
		t.Fatalf("open the kept state file: %v", err)
	}
	defer st.Close()
	wantAllCompleted(t, st, 4)
}

// wantAllCompleted checks the state a demo left: n runners completed in
// the history, and no runner record left.
func wantAllCompleted(t *testing.T, st *store.Store, n int) {
	t.Helper()
	if runners, err := st.ListRunners(store.RunnerFilter{}); err != nil || len(runners) != 0 {
		t.Errorf("runner records left: %d (err %v), want 0", len(runners), err)
	}
	history, err := st.ListHistory(store.HistoryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	completed := 0
	for _, h := range history {
		if h.Reason == "completed" {
			completed++
		}
	}
	if completed != n {
		t.Errorf("the history has %d completed runners (of %d records), want %d", completed, len(history), n)
	}
}

// In inprocess mode the sim runners run inside the plugin processes and
// the whole loop still closes: every job completes, nothing leaks, and no
// setup script ran.
func TestDemoInProcess(t *testing.T) {
	tmp, dir := t.TempDir(), t.TempDir()
	rep := runInProcessDemo(t, tmp, "--jobs", "12", "--targets", "2", "--plugin-latency", "50ms", "--work-dir", dir)
	if rep.PluginMode != "inprocess" || rep.JobsCompleted != 12 || rep.InstancesDeleted != 12 || rep.LeakedInstances != 0 {
		t.Errorf("report = %+v, want plugin_mode inprocess, 12 jobs completed, 12 instances deleted, none leaked", rep)
	}
	calls, err := shoesfake.ReadCallLog(filepath.Join(dir, "calls.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	adds := 0
	for _, c := range calls {
		if c.Method == shoesfake.MethodAddInstance && c.Code == scenario.CodeOK {
			adds++
			if c.RunnerMode != shoesfake.RunnerModeInProcess {
				t.Errorf("AddInstance of %s ran in mode %q, want inprocess", c.RunnerName, c.RunnerMode)
			}
		}
	}
	if adds != 12 {
		t.Errorf("%d OK AddInstance calls, want 12", adds)
	}
}

// With --min-runners the demo queues the jobs once the warm pool is
// online: each job is paired with an idle runner when it is queued, so it
// starts without waiting for any AddInstance.
func TestDemoWarmPool(t *testing.T) {
	rep := runInProcessDemo(t, t.TempDir(), "--jobs", "4", "--targets", "2", "--min-runners", "2", "--max-runners", "4",
		"--plugin-latency", "300ms")
	if rep.JobsCompleted != 4 || rep.LeakedInstances != 0 {
		t.Errorf("report = %+v, want 4 jobs completed, nothing leaked", rep)
	}
	if rep.JobStartP99MS >= 300 {
		t.Errorf("job_start_p99_ms = %d, want < the 300ms of one AddInstance: the jobs should start on warm runners", rep.JobStartP99MS)
	}
}

// A run whose runners never come online: the jobs cannot complete, so the
// demo gives up at --timeout, still reports, and exits 1 with the reason.
func TestDemoFailureExits1(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("SIM_PLUGIN_NO_RUNNER", "true") // reaches the plugin processes
	res, rep := runDemoJSON(t, tmp, 60*time.Second, exitFailure,
		"--jobs", "2", "--targets", "1", "--plugin-latency", "10ms", "--timeout", "6s")
	if rep.Jobs != 2 || rep.JobsCompleted != 0 || rep.InstancesCreated == 0 {
		t.Errorf("report = %+v, want 2 jobs, none completed, some instances created", rep)
	}
	// The idle runners' instances outlive the stopped controller: leaks.
	if rep.LeakedInstances != rep.InstancesCreated-rep.InstancesDeleted || rep.LeakedInstances == 0 {
		t.Errorf("leaked_instances = %d, want created - deleted = %d - %d > 0", rep.LeakedInstances, rep.InstancesCreated, rep.InstancesDeleted)
	}
	for _, want := range []string{"Error: demo failed: timed out after 6s", "0 of 2 jobs completed", "instances leaked"} {
		if !strings.Contains(res.errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.errOut)
		}
	}
	noDemoTempDir(t, tmp)
}

func TestDemoUsageErrors(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(existing, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--jobs", "0"}, "--jobs: must not be 0 (default 20)"},
		{[]string{"--jobs", "20000"}, "--jobs: jobs: must be from 1 to 10000"},
		{[]string{"--targets", "0"}, "--targets: must not be 0 (default 3)"},
		{[]string{"--targets", "-1"}, "--targets: targets: must be from 1 to 100"},
		{[]string{"--job-duration", "-1s"}, "--job-duration: job duration: must not be negative"},
		{[]string{"--min-runners", "3", "--max-runners", "2"}, "--min-runners: min runners must not exceed max runners (3 > 2)"},
		{[]string{"--max-runners", "0"}, "--max-runners: must not be 0 (default 10)"},
		{[]string{"--provision-concurrency", "-1"}, "--provision-concurrency: provision concurrency must be at least 1"},
		{[]string{"--plugin-pool-size", "-1"}, "--plugin-pool-size: plugin pool size -1"},
		{[]string{"--timeout", "0s"}, "--timeout: must not be 0s (default 5m0s)"},
		{[]string{"--timeout", "-1s"}, "--timeout: timeout: must be positive"},
		{[]string{"--plugin-mode", "vm"}, `--plugin-mode: plugin mode "vm": want script or inprocess`},
		{[]string{"--state-file", existing}, "exists: the demo starts from an empty state"},
		{[]string{"--work-dir", filepath.Dir(existing)}, "--work-dir: work directory " + filepath.Dir(existing) + " is not empty"},
		{[]string{"--jobs", "x"}, "invalid argument"},
		{[]string{"extra"}, "unknown command"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			wantDemoUsageError(t, tc.want, tc.args...)
			if b, _ := os.ReadFile(existing); string(b) != "old" {
				t.Error("the existing state file was changed")
			}
		})
	}
}

// The options the demo gives run pass run's own validation: a new run
// option that needs a value fails here, not in the demo.
func TestDemoRunOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	keyFile := testkit.KeyFile(t, dir)
	o := demoRunOptions(demo.ControllerSetup{
		MyshoesURL: "http://127.0.0.1:1/myshoes", GitHubURL: "http://127.0.0.1:1", AppID: 4242, AppKeyFile: keyFile,
		PluginPath: cliBinary, PluginArgs: []string{"sim", "plugin"}, PluginPoolSize: 4,
		StateFile: filepath.Join(dir, "state.db"), Listen: "127.0.0.1:0", PollHold: time.Second,
		RunnerBaseDirectory: filepath.Join(dir, "runners"), MaxRunners: 10, ProvisionConcurrency: 16, HistoryMaxCount: 10000,
		Log: io.Discard,
	})
	if _, err := o.validate(io.Discard); err != nil {
		t.Fatalf("run rejects the demo's options: %v", err)
	}
}

package scenariotest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testbin"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

var binary string

func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m, "./cmd/shoes-scaleset", &binary))
}

// The whole loop with processes: sim serve, run killed with SIGKILL and
// started again on its files, jobs completed, a clean stop, and the
// invariants gathered from the files.
func TestScenario(t *testing.T) {
	dir := t.TempDir()
	scopes := []string{"org-a", "org-b"}
	s := StartSim(t, binary, dir, SimOptions{Targets: scopes, PollHold: 300 * time.Millisecond})
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || s.GitHubURL == "" || s.MyshoesURL == "" || s.AppID == "" || s.KeyPath != filepath.Join(dir, "app-key.pem") {
		t.Fatalf("sim serve announced %+v", s.Peers())
	}
	f := NewFiles(t, dir)
	args := RunArgs{Peers: s.Peers(), Plugin: PluginWrapper(t, binary, dir), StateFile: f.StateFile,
		Flags: []string{"--poll-hold", "300ms", "--runner-base-directory", filepath.Join(dir, "runners"), "--sync-interval", "1s",
			"--reaper-interval", "1s", "--janitor-interval", "500ms", "--retry-backoff", "200ms", "--shutdown-timeout", "20s", "--log-level", "debug"}}
	env := f.PluginEnv("SIM_PLUGIN_LATENCY=100ms")

	r := StartRun(t, binary, filepath.Join(dir, "run-1.log"), env, args)
	r.WaitUp()
	s.WaitListening(r, r.Started, scopes, time.Minute)
	if err := scenario.QueueRoundRobin(s.Client, scopes, 2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	r.WaitRunners("2 busy runners", time.Minute, func(c map[store.RunnerState]int) bool { return c[store.StateBusy] == 2 })
	r.Kill9()
	if code := r.ExitCode(); code != -1 {
		t.Errorf("exit code after SIGKILL = %d, want -1 (a signal)", code)
	}

	r = StartRun(t, binary, filepath.Join(dir, "run-2.log"), env, args)
	if took := s.WaitListening(r, r.Started, scopes, time.Minute); took <= 0 {
		t.Errorf("listening again after %v", took)
	}
	s.QueueJobs("org-a", 1, 500*time.Millisecond)
	s.WaitJobsDone(r, 2*time.Minute)
	r.WaitDrained(time.Minute)
	r.Stop()

	iv := Check(t, Gather(t, binary, s.Client, f), scenario.Options{Owners: scenario.EveryState})
	if iv.Jobs != 3 || iv.Completed != 3 || iv.Created < 3 {
		t.Errorf("invariants %s; want 3 jobs completed on at least 3 instances", iv)
	}
	if rs := RunnersLs(t, binary, f.StateFile); len(rs) != iv.UnknownRecords {
		t.Errorf("runners ls after the stop: %v, want only unknown-instance records", scenario.CountStates(rs))
	}
}

func TestExec(t *testing.T) {
	r := Exec(t, binary, 30*time.Second, testkit.ChildEnv(), "runners", "ls", "--no-such-flag")
	if r.Code != 2 || !strings.Contains(r.Stderr, "no-such-flag") || r.Took <= 0 {
		t.Errorf("a bad flag: %s", r)
	}
	r = Exec(t, binary, 30*time.Second, testkit.ChildEnv(), "version")
	if r.Code != 0 || r.Stdout == "" {
		t.Errorf("version: %s", r)
	}
}

// Terminate waits for a clean exit and reports its code; the log keeps
// the output.
func TestProcTerminate(t *testing.T) {
	dir := t.TempDir()
	s := StartSim(t, binary, dir, SimOptions{})
	code, took := s.Terminate(30 * time.Second)
	if code != 0 || took <= 0 || !s.Exited() {
		t.Errorf("sim serve after SIGTERM: exit %d after %v", code, took)
	}
	if !strings.Contains(s.Log(), "listening on 127.0.0.1:") || !strings.Contains(s.Tail(10), "--github-private-key-path=") {
		t.Errorf("log:\n%s", s.Log())
	}
}

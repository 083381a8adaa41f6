//go:build bench

package bench

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// recovery is the outcome of one P3 scenario.
type recovery struct {
	killedAt, listening, firstPoll, allDone time.Duration
	completed, canceled                     int
	states                                  map[store.RunnerState]int
	reasons                                 map[string]int
}

// runRecovery queues a burst of jobs on a `run` against `sim serve`; with
// killAfter > 0 it kills the run's process group with SIGKILL that long
// after the jobs were queued and starts a new run on the same state file
// at once.
func runRecovery(t *testing.T, targets, jobsPerTarget int, latency time.Duration, killAfter time.Duration) recovery {
	t.Helper()
	dir := t.TempDir()
	scopeList := scenario.Scopes("bench-org-", targets)
	sim := scenariotest.StartSim(t, binary, dir, scenariotest.SimOptions{Targets: scopeList, PollHold: 2 * time.Second, AssignTimeout: 2 * time.Minute, LogLevel: "error"})
	f := scenariotest.NewFiles(t, dir)
	plugin := scenariotest.PluginWrapper(t, binary, dir)
	env := f.PluginEnv(shoesfake.EnvLatency+"="+latency.String(), shoesfake.EnvRunnerMode+"="+shoesfake.RunnerModeInProcess)
	flags := []string{"--provision-concurrency", "64", "--max-runners", "100", "--poll-hold", "2s",
		"--sync-interval", "1s", "--janitor-interval", "1s", "--reaper-interval", "1s", "--retry-backoff", "200ms",
		"--github-retry-wait-max", "200ms", "--shutdown-timeout", "20s", "--runner-base-directory", filepath.Join(dir, "runners"),
		"--log-level", "info"}
	startRun := func(n int) *scenariotest.Run {
		return scenariotest.StartRun(t, binary, filepath.Join(dir, fmt.Sprintf("run-%d.log", n)), env,
			scenariotest.RunArgs{Peers: sim.Peers(), Plugin: plugin, StateFile: f.StateFile, Flags: flags})
	}

	run := startRun(1)
	sim.WaitListening(run, time.Time{}, scopeList, 60*time.Second)

	var r recovery
	t0 := time.Now()
	for _, s := range scopeList {
		sim.QueueJobs(s, jobsPerTarget, 2*time.Second)
	}
	if killAfter > 0 {
		time.Sleep(time.Until(t0.Add(killAfter)))
		old := map[int]string{} // the killed process's sessions
		for _, ss := range sim.State().ScaleSets {
			if ss.Session != nil {
				old[ss.ID] = ss.Session.ID
			}
		}
		run.Kill9()
		r.killedAt = time.Since(t0)
		restart := time.Now()
		run = startRun(2)
		// Every scale set has a new session (seen by the sim), then has
		// polled (seen by the new process).
		if !testkit.Poll(2*time.Minute, func() (bool, string) {
			if r.listening == 0 {
				n := 0
				for _, ss := range sim.State().ScaleSets {
					if ss.Session != nil && ss.Session.ID != old[ss.ID] {
						n++
					}
				}
				if n < targets {
					return false, ""
				}
				r.listening = time.Since(restart)
			}
			sets, err := run.ScaleSets()
			if err != nil || len(sets) < targets {
				return false, ""
			}
			for _, ss := range sets {
				if ss.LastPoll.Before(restart) {
					return false, ""
				}
			}
			return true, ""
		}) {
			t.Fatalf("not every scale set polled within 2m of the restart:\n%s", run.Tail(30))
		}
		r.firstPoll = time.Since(restart)
	}
	total := targets * jobsPerTarget
	if !testkit.PollEvery(5*time.Minute, 50*time.Millisecond, func() (bool, string) {
		c := scenario.JobCounts(sim.State())
		r.completed, r.canceled = c["completed"], c["canceled"]
		return r.completed+r.canceled >= total, ""
	}) {
		t.Errorf("jobs not done 5m after the burst: %v\n%s", scenario.JobCounts(sim.State()), run.Tail(30))
	}
	r.allDone = time.Since(t0)
	// Let the last deletes finish, then stop cleanly and read the state.
	testkit.PollEvery(30*time.Second, 100*time.Millisecond, func() (bool, string) {
		sets, err := run.ScaleSets()
		if err != nil {
			return false, ""
		}
		for _, ss := range sets {
			for st, n := range ss.Runners {
				if n > 0 && st != store.StateUnknownInstance {
					return false, ""
				}
			}
		}
		return true, ""
	})
	run.Terminate(45 * time.Second)
	st, err := store.Open(store.Options{Path: f.StateFile, ReadOnly: true})
	if err != nil {
		t.Fatalf("open the state file: %v", err)
	}
	defer st.Close()
	rs, err := st.ListRunners(store.RunnerFilter{})
	if err != nil {
		t.Fatal(err)
	}
	r.states = map[store.RunnerState]int{}
	for _, rn := range rs {
		r.states[rn.State]++
	}
	hs, err := st.ListHistory(store.HistoryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	r.reasons = map[string]int{}
	for _, h := range hs {
		r.reasons[h.Reason]++
	}
	return r
}

// P3: kill -9 (the run process and its plugin processes, as systemd does)
// during a burst; the time from the restart until every scale set polled
// again, and until all jobs completed, against an uninterrupted run.
func TestP3Recovery(t *testing.T) {
	const targets, perTarget = 10, 50
	latency, killAfter := time.Second, 3*time.Second
	var rows strings.Builder
	n := runs()
	var base, killed, listening, polled []float64
	var last recovery
	for i := range n {
		u := runRecovery(t, targets, perTarget, latency, 0)
		k := runRecovery(t, targets, perTarget, latency, killAfter)
		t.Logf("run %d/%d: uninterrupted all jobs done %.2fs; killed at %.2fs: every scale set listening %.2fs and polled %.2fs after the restart, all jobs done %.2fs (completed %d, canceled %d), records left %v, history %v",
			i+1, n, u.allDone.Seconds(), k.killedAt.Seconds(), k.listening.Seconds(), k.firstPoll.Seconds(), k.allDone.Seconds(), k.completed, k.canceled, k.states, k.reasons)
		if k.completed != targets*perTarget || u.completed != targets*perTarget {
			t.Errorf("jobs completed: uninterrupted %d, killed %d; want %d", u.completed, k.completed, targets*perTarget)
		}
		base = append(base, u.allDone.Seconds())
		killed = append(killed, k.allDone.Seconds())
		listening = append(listening, k.listening.Seconds())
		polled = append(polled, k.firstPoll.Seconds())
		last = k
	}
	fmt.Fprintf(&rows, "| uninterrupted | %d | — | — | %s | — |\n", n, spread(base, "%.2f"))
	fmt.Fprintf(&rows, "| kill -9 after %s, restarted at once | %d | %s | %s | %s | %s |\n", killAfter, n,
		spread(listening, "%.2f"), spread(polled, "%.2f"), spread(killed, "%.2f"), fmtCounts(last.states))
	report(t, "\n### P3 recovery: %d jobs over %d targets (sim serve + run, plugin mode inprocess, --plugin-latency %s, C=64, --poll-hold 2s)\n\n"+
		"| scenario | runs | restart → a new session on every scale set (s) | restart → every scale set polled (s) | queued → all jobs completed (s) | runner records left (last run) |\n|---|---|---|---|---|---|\n%s",
		targets*perTarget, targets, latency, rows.String())
}

// fmtCounts formats per-state counts in a stable order.
func fmtCounts(m map[store.RunnerState]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, st := range []store.RunnerState{store.StatePending, store.StateConfigured, store.StateIdle, store.StateBusy, store.StateDeleting, store.StateUnknownInstance} {
		if m[st] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", st, m[st]))
		}
	}
	return strings.Join(parts, ", ")
}

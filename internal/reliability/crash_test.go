//go:build reliability

package reliability

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// maxRecovery is the longest "listening again" time after a restart the
// issue accepts.
const maxRecovery = 5 * time.Second

// restartAfterKill starts run again after a kill, measures the time to
// listening again, and checks that no 409 was needed.
func (s *world) restartAfterKill(point string, scopes []string) *daemon {
	s.t.Helper()
	before := scenario.Conflicts(s.sim.State())
	d := s.startRun()
	took := s.waitListening(d, d.Started, scopes, time.Minute)
	s.res.addRecovery(took)
	if took > maxRecovery {
		s.t.Errorf("kill %s: listening again took %v after the restart, want ≤ %v", point, took, maxRecovery)
	}
	if c := scenario.Conflicts(s.sim.State()); c != before {
		s.t.Errorf("kill %s: the restart hit %d session conflicts (409)", point, c-before)
	}
	s.t.Logf("kill %s: listening again %.2fs after the restart", point, took.Seconds())
	return d
}

// waitFaultHit waits until the sim's fault matching match has been hit.
func (s *world) waitFaultHit(d *daemon, match string, timeout time.Duration) {
	s.t.Helper()
	scenariotest.WaitFor(s.t, "a request held by the fault "+match, timeout, func() (bool, string) {
		d.Alive()
		st := s.sim.State()
		for _, f := range st.Faults {
			if f.Match == match && f.Hits > 0 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", st.Faults)
	})
}

// TestKillBurst kills run with SIGKILL at six points of a 100-job burst
// over 3 targets and restarts it each time.
func TestKillBurst(t *testing.T) {
	res := newResult(t, 6, "kill -9 at 6 points of a 100-job burst",
		"3 targets, 100 jobs; SIGKILL right after queueing, during session creation, during JIT config generation, during AddInstance, with busy runners, during deletes; restart after each; once with opaque cloud IDs, once with a name-keyed plugin (0 unknown-instance left)")
	forEachPluginKind(t, res, killBurst)
}

func killBurst(t *testing.T, res *Result, cloudIDs string) {
	scopes := []string{"org-a", "org-b", "owner-c/repo-c"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes},
		pluginKind(cloudIDs), pluginKnobs("SIM_PLUGIN_LATENCY=500ms"), runFlags("--max-runners", "10", "--plugin-pool-size", "8"))

	queue := func(n int) {
		for i := range n {
			s.sim.QueueJobs(scopes[i%len(scopes)], 1, 3*time.Second)
		}
	}
	// 1. Right after the jobs were queued.
	queue(50)
	d.Alive()
	d.Kill9()
	d = s.restartAfterKill("right after queueing", scopes)

	// 2. During session creation: the broker ends every session (404) and
	// the sim holds the new session creations for 3s.
	sessions := "POST .*/runnerscalesets/[0-9]+/sessions$"
	s.sim.AddFault(actionsfake.Fault{Match: sessions, DelayMS: 3000})
	s.sim.AddFault(actionsfake.Fault{Match: "GET /_broker/", Status: 404, Times: len(scopes)})
	s.waitFaultHit(d, sessions, 30*time.Second)
	d.Kill9()
	s.sim.ClearFaults()
	d = s.restartAfterKill("during session creation", scopes)

	// 3. During JIT config generation: held for 3s.
	jit := "POST .*/generatejitconfig$"
	s.sim.AddFault(actionsfake.Fault{Match: jit, DelayMS: 3000})
	queue(10)
	s.waitFaultHit(d, jit, 30*time.Second)
	d.WaitRunners("a pending runner", 30*time.Second, func(c map[store.RunnerState]int) bool { return c[store.StatePending] > 0 })
	d.Kill9()
	s.sim.ClearFaults()
	d = s.restartAfterKill("during JIT config generation", scopes)

	// 4. During AddInstance.
	d.WaitRunners("an AddInstance in flight", time.Minute, func(c map[store.RunnerState]int) bool { return c[store.StateConfigured] > 0 })
	d.Kill9()
	d = s.restartAfterKill("during AddInstance", scopes)

	// 5. With busy runners.
	queue(20)
	d.WaitRunners("5 busy runners", 2*time.Minute, func(c map[store.RunnerState]int) bool { return c[store.StateBusy] >= 5 })
	d.Kill9()
	d = s.restartAfterKill("with busy runners", scopes)

	// 6. During deletes.
	queue(20)
	d.WaitRunners("a runner being deleted", 2*time.Minute, func(c map[store.RunnerState]int) bool { return c[store.StateDeleting] > 0 })
	d.Kill9()
	d = s.restartAfterKill("during deletes", scopes)

	iv := s.settle(d, 5*time.Minute, s.invariantOptions())
	if iv.Jobs != 100 || iv.Completed != 100 {
		t.Errorf("%d of %d jobs completed, want 100 of 100", iv.Completed, iv.Jobs)
	}
	res.figure("%s cloud IDs: %d unknown-instance records left, %d instances behind them, %d leaked", cloudIDs, iv.UnknownRecords, iv.UnknownOwned, iv.Leaked)
}

// TestPluginCrash: the plugin process dies during AddInstance or during
// DeleteInstance; the call's outcome is handled and nothing is lost.
func TestPluginCrash(t *testing.T) {
	res := newResult(t, 7, "plugin crash",
		"the plugin process exits during AddInstance (call 1) and during DeleteInstance (call 2): the runner becomes unknown-instance or the delete is retried; every job completes")
	t.Run("AddInstance", func(t *testing.T) {
		// Call 1 is the first AddInstance.
		s, d := listening(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}},
			pluginKnobs("SIM_PLUGIN_CRASH_ON_CALL=1", "SIM_PLUGIN_LATENCY=300ms"))
		s.sim.QueueJobs("org-a", 3, time.Second)
		iv := s.settle(d, 3*time.Minute, scenario.Options{})
		crashes := 0
		for _, c := range s.calls() {
			if c.Code == "Crash" {
				crashes++
			}
		}
		if crashes != 1 || iv.UnknownRecords != 1 || iv.Completed != 3 {
			t.Errorf("crashes %d, unknown-instance records %d, completed %d; want 1, 1, 3", crashes, iv.UnknownRecords, iv.Completed)
		}
		res.figure("AddInstance crash: %d unknown-instance record, %d of 3 jobs completed", iv.UnknownRecords, iv.Completed)
	})
	t.Run("DeleteInstance", func(t *testing.T) {
		// One job: call 1 is its AddInstance, call 2 its DeleteInstance.
		s, d := listening(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}},
			pluginKnobs("SIM_PLUGIN_CRASH_ON_CALL=2", "SIM_PLUGIN_LATENCY=300ms"))
		s.sim.QueueJobs("org-a", 1, time.Second)
		s.waitJobsDone(d, 2*time.Minute)
		s.sim.QueueJobs("org-a", 2, time.Second)
		iv := s.settle(d, 3*time.Minute, scenario.Options{})
		calls := rpcCalls(s.calls())
		if len(calls) < 2 || calls[1].Method != "DeleteInstance" || calls[1].Code != "Crash" {
			t.Errorf("call 2 was %+v, want a crashed DeleteInstance", calls[min(1, len(calls)-1)])
		}
		if iv.Completed != 3 || iv.UnknownRecords != 0 {
			t.Errorf("completed %d, unknown-instance records %d; want 3, 0", iv.Completed, iv.UnknownRecords)
		}
		res.figure("DeleteInstance crash: retried, %d DeleteInstance calls for %d instances", countCalls(calls, "DeleteInstance"), iv.Created)
	})
}

// TestPluginHang: plugin calls that never return are cut at the call
// deadline (--plugin-add-timeout, --plugin-delete-timeout); provisioning
// backs off instead of piling up hung calls; once the plugin behaves,
// every job completes.
func TestPluginHang(t *testing.T) {
	res := newResult(t, 8, "plugin hang",
		"AddInstance hangs past --plugin-add-timeout 2s: unknown-instance, provisioning backs off; DeleteInstance hangs past --plugin-delete-timeout 2s: retried; then the plugin recovers and every job completes")
	t.Run("AddInstance", func(t *testing.T) {
		s, d := listening(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}},
			runFlags("--plugin-add-timeout", "2s"), pluginKnobs("SIM_PLUGIN_HANG=AddInstance"))
		s.sim.QueueJobs("org-a", 3, time.Second)
		window := 20 * time.Second
		time.Sleep(window) // a fixed window, to count the calls the hang drew
		d.Alive()
		hung := 0
		for _, c := range s.calls() {
			if c.Code == "Hang" {
				hung++
			}
		}
		rs, err := d.Runners()
		if err != nil {
			t.Fatal(err)
		}
		unknown := scenario.CountStates(rs)[store.StateUnknownInstance]
		// 3 wanted runners, each AddInstance cut after 2s, provisioning
		// paused 0.2s, 0.4s, 0.8s, ... after each: a handful of calls.
		if hung < 1 || hung > 12 {
			t.Errorf("%d hung AddInstance calls in %v, want between 1 and 12 (backoff)", hung, window)
		}
		if unknown != hung {
			t.Errorf("%d unknown-instance records for %d hung calls", unknown, hung)
		}
		res.figure("AddInstance hang: %d calls in %v, each cut at 2s and left as unknown-instance", hung, window)
		d.Stop()
		s.pluginEnv = nil
		d = s.startRun()
		s.settle(d, 3*time.Minute, scenario.Options{})
	})
	t.Run("DeleteInstance", func(t *testing.T) {
		s, d := listening(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}},
			runFlags("--plugin-delete-timeout", "2s"), pluginKnobs("SIM_PLUGIN_HANG=DeleteInstance"))
		s.sim.QueueJobs("org-a", 2, time.Second)
		s.waitJobsDone(d, 2*time.Minute)
		scenariotest.WaitFor(t, "2 hung DeleteInstance calls", time.Minute, func() (bool, string) {
			n := 0
			for _, c := range s.calls() {
				if c.Method == "DeleteInstance" && c.Code == "Hang" {
					n++
				}
			}
			return n >= 2, fmt.Sprint(n)
		})
		scenariotest.WaitFor(t, "the deletes retried after the deadline", time.Minute, func() (bool, string) {
			rs, err := d.Runners()
			if err != nil {
				return false, err.Error()
			}
			for _, r := range rs {
				if r.State == store.StateDeleting && r.Attempts > 0 && strings.Contains(r.LastError, "DeadlineExceeded") {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%+v", rs)
		})
		d.Stop()
		s.pluginEnv = nil
		d = s.startRun()
		iv := s.settle(d, 3*time.Minute, scenario.Options{})
		res.figure("DeleteInstance hang: deletes cut at 2s, retried, all %d instances deleted once the plugin answered", iv.Deleted)
	})
}

// TestKillAfterAddInstanceAnswered: the plugin answers AddInstance but
// run dies before it handles the answer, so the instance exists while
// nobody knows its cloud ID, and its runner takes a job before run is
// back (RestartSec=5 in the systemd unit). After the restart the record
// must stay unknown-instance (its instance exists), not be finished as if
// its instance had been deleted.
func TestKillAfterAddInstanceAnswered(t *testing.T) {
	res := newResult(t, 5, "kill -9 after the plugin answered AddInstance, restart 5s later",
		"run frozen (SIGSTOP) while AddInstance is in flight, the plugin creates the instance and answers, its runner takes a job; SIGKILL, restart 5s later: the record is unknown-instance and its instance reported, not leaked")
	s, d := listening(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}}, pluginKnobs("SIM_PLUGIN_LATENCY=2s"))
	s.sim.QueueJobs("org-a", 2, 12*time.Second) // still running when run is back
	cut := namesIn(d.WaitRecords("2 AddInstance calls in flight", time.Minute, func(rs []store.Runner) bool {
		return len(namesIn(rs, store.StateConfigured)) == 2
	}), store.StateConfigured)
	// Freeze run: its plugin processes go on and answer into its socket.
	if err := syscall.Kill(d.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	scenariotest.WaitFor(t, "the plugin to answer both calls", 30*time.Second, func() (bool, string) {
		n := 0
		for _, c := range s.calls() {
			if c.Method == "AddInstance" && c.Code == "OK" && slices.Contains(cut, c.RunnerName) {
				n++
			}
		}
		return n == 2, fmt.Sprint(n)
	})
	scenariotest.WaitFor(t, "their runners to take the jobs", time.Minute, func() (bool, string) {
		c := scenario.JobCounts(s.sim.State())
		return c["running"]+c["completed"] == 2, fmt.Sprint(c)
	})
	d.Kill9() // run and its plugin processes
	killed := time.Now()
	time.Sleep(5*time.Second - time.Since(killed)) // RestartSec=5
	d = s.startRun()
	iv := s.settle(d, 2*time.Minute, scenario.Options{})
	live := s.runnersLs()
	for _, name := range cut {
		if !slices.ContainsFunc(live, func(r store.Runner) bool { return r.Name == name && r.State == store.StateUnknownInstance }) {
			t.Errorf("runner %s, whose instance exists with an unknown cloud ID, is not an unknown-instance record", name)
		}
	}
	if iv.UnknownOwned != 2 {
		t.Errorf("%d instances reported behind unknown-instance records, want 2", iv.UnknownOwned)
	}
	res.figure("the 2 instances the plugin created ran their jobs while run was down; after the restart: %d unknown-instance records, %d instances behind them, %d leaked",
		iv.UnknownRecords, iv.UnknownOwned, iv.Leaked)
}

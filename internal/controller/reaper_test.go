package controller_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// historyReasons counts the history records by reason.
func (e *testEnv) historyReasons() map[string]int {
	e.t.Helper()
	hs, err := e.st.ListHistory(store.HistoryFilter{})
	if err != nil {
		e.t.Fatalf("history: %v", err)
	}
	out := map[string]int{}
	for _, h := range hs {
		out[h.Reason]++
	}
	return out
}

func TestReaperBootstrapTimeout(t *testing.T) {
	e := newTestEnv(t, envOptions{
		targets:    []string{"org-a"},
		minRunners: 1,
		pluginEnv:  []string{shoesfake.EnvNoRunner + "=true"},
		tune: func(c *controller.Config) {
			c.BootstrapTimeout = time.Second
		},
	})
	e.start()
	e.waitFor("2 runners reaped for bootstrap timeout", 60*time.Second, func() bool {
		return e.historyReasons()["bootstrap-timeout"] >= 2
	})
	// Each reaped runner was removed from GitHub and its instance deleted.
	hs, _ := e.st.ListHistory(store.HistoryFilter{})
	deleted := map[string]bool{}
	for _, c := range methodCalls(e.calls(), "DeleteInstance") {
		deleted[c.CloudID] = true
	}
	simRunners := map[string]string{}
	for _, r := range e.state().Runners {
		simRunners[r.Name] = r.State
	}
	for _, h := range hs {
		if h.Reason != "bootstrap-timeout" {
			t.Errorf("history reason %q, want only bootstrap-timeout", h.Reason)
			continue
		}
		if !deleted[h.Runner.CloudID] {
			t.Errorf("reaped runner %s: instance %s not deleted", h.Runner.Name, h.Runner.CloudID)
		}
		if st := simRunners[h.Runner.Name]; st != "removed" {
			t.Errorf("reaped runner %s is %q on GitHub, want removed", h.Runner.Name, st)
		}
	}
}

func TestReaperIdleTTLLeavesBusyRunners(t *testing.T) {
	e := newTestEnv(t, envOptions{
		targets:    []string{"org-a"},
		minRunners: 1,
		tune: func(c *controller.Config) {
			c.IdleTTL = 700 * time.Millisecond
		},
	})
	e.start()
	e.waitFor("an idle runner reaped by idle TTL", 60*time.Second, func() bool {
		return e.historyReasons()["idle-ttl"] >= 1
	})
	// A long job: its runner is busy far longer than the TTL and is
	// never removed while busy.
	e.queueJobs("org-a", 1, 3*time.Second)
	e.waitFor("job completed", 60*time.Second, func() bool { return countJobs(e.state())["completed"] == 1 })
	job := e.state().Jobs[0]
	e.waitFor("its runner deleted after the job", 30*time.Second, func() bool {
		_, err := e.st.GetRunner(job.RunnerName)
		return errors.Is(err, store.ErrNotFound)
	})
	hs, _ := e.st.ListHistory(store.HistoryFilter{})
	for _, h := range hs {
		if h.Runner.Name == job.RunnerName && h.Reason != "completed" {
			t.Errorf("the busy runner %s left with reason %q, want completed", h.Runner.Name, h.Reason)
		}
	}
	if job.Result != "succeeded" {
		t.Errorf("job result %q, want succeeded", job.Result)
	}
}

func TestReaperScaleDown(t *testing.T) {
	// Runners never come online, so the sim cancels the jobs for good
	// after its assign attempts: desired falls to 0 below the count, and
	// scale-down removes the surplus idle runners.
	e := newTestEnv(t, envOptions{
		targets:           []string{"org-a"},
		pluginEnv:         []string{shoesfake.EnvNoRunner + "=true"},
		assignTimeout:     300 * time.Millisecond,
		maxAssignAttempts: 1,
		tune: func(c *controller.Config) {
			c.ScaleDownGrace = 300 * time.Millisecond
		},
	})
	e.start()
	e.queueJobs("org-a", 3, time.Second)
	e.waitFor("3 runners scaled down", 60*time.Second, func() bool {
		return e.historyReasons()["scale-down"] == 3
	})
	if n := countJobs(e.state())["canceled"]; n != 3 {
		t.Errorf("canceled jobs = %d, want 3", n)
	}
	e.waitFor("no runner left", 30*time.Second, func() bool { return len(e.runnersIn("")) == 0 })
}

func TestDeleteRetries(t *testing.T) {
	e := newTestEnv(t, envOptions{
		targets: []string{"org-a"},
		pluginEnv: []string{
			shoesfake.EnvFailMethod + "=DeleteInstance",
			shoesfake.EnvFailCode + "=Internal",
			shoesfake.EnvFailTimes + "=3",
		},
	})
	e.start()
	e.queueJobs("org-a", 1, 100*time.Millisecond)
	e.waitFor("job completed", 60*time.Second, func() bool { return countJobs(e.state())["completed"] == 1 })
	e.waitFor("runner deleted after retries", 60*time.Second, func() bool { return len(e.runnersIn("")) == 0 })
	failed, ok := 0, 0
	for _, c := range e.calls() {
		if c.Method == "DeleteInstance" {
			if c.Code == "OK" {
				ok++
			} else {
				failed++
			}
		}
	}
	if failed != 3 || ok != 1 {
		t.Errorf("DeleteInstance calls: %d failed, %d ok; want 3 and 1", failed, ok)
	}
	if r := e.historyReasons(); r["completed"] != 1 {
		t.Errorf("history = %v, want 1 completed", r)
	}
	if e.liveInstances() != 0 {
		t.Errorf("%d instances left", e.liveInstances())
	}
}

func TestDeleteGiveUp(t *testing.T) {
	e := newTestEnv(t, envOptions{
		targets: []string{"org-a"},
		pluginEnv: []string{
			shoesfake.EnvFailMethod + "=DeleteInstance",
			shoesfake.EnvFailCode + "=Internal",
		},
		tune: func(c *controller.Config) { c.DeleteGiveUp = time.Second },
	})
	e.start()
	e.queueJobs("org-a", 1, 100*time.Millisecond)
	e.waitFor("delete given up", 60*time.Second, func() bool { return e.historyReasons()["delete-failed"] == 1 })
	hs, _ := e.st.ListHistory(store.HistoryFilter{})
	if hs[0].Runner.LastError == "" || hs[0].Runner.CloudID == "" {
		t.Errorf("delete-failed record lacks the error or cloud ID: %+v", hs[0].Runner)
	}
}

func TestRemoveRunnerByHand(t *testing.T) {
	e := newTestEnv(t, envOptions{targets: []string{"org-a"}, minRunners: 1})
	e.start()
	e.waitFor("an idle runner", 60*time.Second, func() bool { return len(e.runnersIn("org-a", store.StateIdle)) == 1 })
	idle := e.runnersIn("org-a", store.StateIdle)[0]
	if err := e.ctrl.RemoveRunner(context.Background(), idle.Name, false); err != nil {
		t.Fatalf("remove idle runner: %v", err)
	}
	e.waitFor("removed runner in history", 30*time.Second, func() bool { return e.historyReasons()["removed"] == 1 })

	e.queueJobs("org-a", 1, 3*time.Second)
	e.waitFor("a busy runner", 60*time.Second, func() bool { return len(e.runnersIn("org-a", store.StateBusy)) == 1 })
	busy := e.runnersIn("org-a", store.StateBusy)[0]
	err := e.ctrl.RemoveRunner(context.Background(), busy.Name, false)
	if !errors.Is(err, controller.ErrRunnerBusy) {
		t.Fatalf("remove busy runner without force: err = %v, want ErrRunnerBusy", err)
	}
	if err := e.ctrl.RemoveRunner(context.Background(), "myshoes-nope", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("remove unknown runner: err = %v, want ErrNotFound", err)
	}
	if err := e.ctrl.RemoveRunner(context.Background(), busy.Name, true); err != nil {
		t.Fatalf("remove busy runner with force: %v", err)
	}
	e.waitFor("forced removal in history", 30*time.Second, func() bool { return e.historyReasons()["removed"] == 2 })
}

func TestTargetRemovalRetiresRunners(t *testing.T) {
	for _, deleteSets := range []bool{false, true} {
		name := "keep-scale-set"
		if deleteSets {
			name = "delete-scale-set"
		}
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, envOptions{
				targets:    []string{"org-a"},
				minRunners: 2,
				tune:       func(c *controller.Config) { c.DeleteScaleSetsOnTargetRemoval = deleteSets },
			})
			e.start()
			e.waitFor("2 idle runners", 60*time.Second, func() bool { return len(e.runnersIn("org-a", store.StateIdle)) == 2 })
			for _, tg := range e.world.Myshoes.Targets() {
				e.world.Myshoes.RemoveTarget(tg.ID)
			}
			e.waitFor("idle runners removed", 30*time.Second, func() bool { return e.historyReasons()["target-removed"] == 2 })
			e.waitFor("no runner and no session", 30*time.Second, func() bool {
				st := e.state()
				return len(e.runnersIn("")) == 0 && (len(st.ScaleSets) == 0 || st.ScaleSets[0].Session == nil)
			})
			if deleteSets {
				e.waitFor("scale set deleted on GitHub", 30*time.Second, func() bool { return len(e.state().ScaleSets) == 0 })
			} else if n := len(e.state().ScaleSets); n != 1 {
				t.Errorf("scale sets on GitHub = %d, want the scale set kept", n)
			}
			if e.liveInstances() != 0 {
				t.Errorf("%d instances left", e.liveInstances())
			}
		})
	}
}

func TestAddInstanceTimeoutLeavesUnknownInstance(t *testing.T) {
	e := newTestEnv(t, envOptions{
		targets:    []string{"org-a"},
		minRunners: 1,
		pluginEnv:  []string{shoesfake.EnvHang + "=AddInstance"},
		addTimeout: 500 * time.Millisecond,
	})
	e.start()
	e.waitFor("an unknown-instance record", 60*time.Second, func() bool {
		return len(e.runnersIn("org-a", store.StateUnknownInstance)) >= 1
	})
	r := e.runnersIn("org-a", store.StateUnknownInstance)[0]
	if r.LastError == "" || r.CloudID != "" {
		t.Errorf("unknown-instance record: last error %q, cloud ID %q", r.LastError, r.CloudID)
	}
	// It was removed from GitHub so it can take no job, and AddInstance
	// was not retried under the same name.
	e.waitFor("runner removed on GitHub", 30*time.Second, func() bool {
		for _, sr := range e.state().Runners {
			if sr.Name == r.Name {
				return sr.State == "removed"
			}
		}
		return false
	})
	n := 0
	for _, c := range e.calls() {
		if c.Method == "AddInstance" && c.RunnerName == r.Name {
			n++
		}
	}
	if n != 1 {
		t.Errorf("AddInstance calls for %s = %d, want 1 (no retry after an unknown outcome)", r.Name, n)
	}
	// An operator who checked the provider removes the record by hand.
	if err := e.ctrl.RemoveRunner(context.Background(), r.Name, false); err != nil {
		t.Fatalf("runners rm of an unknown-instance record: %v", err)
	}
	if e.historyReasons()["removed"] != 1 {
		t.Errorf("history = %v, want 1 removed", e.historyReasons())
	}
}

package controller_test

import (
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// A runner gets its JIT config while it waits for an AddInstance slot.
// When its listener stops first, it is removed from GitHub, not left
// registered, and goes to history as canceled; the runner whose
// AddInstance had started finishes.
func TestCanceledPreparedRunnerLeavesGitHub(t *testing.T) {
	e := newTestEnv(t, envOptions{
		targets:       []string{"org-a"},
		minRunners:    3,
		pluginLatency: 2 * time.Second,
		tune:          func(c *controller.Config) { c.ProvisionConcurrency = 1 },
	})
	e.start()
	// One runner in AddInstance, one prepared (registered on GitHub) and
	// waiting for the slot, one waiting to be prepared.
	e.waitFor("2 runners registered on GitHub, 1 AddInstance started", 30*time.Second, func() bool {
		return len(e.state().Runners) == 2 && len(e.runnersIn("org-a", store.StatePending)) == 2
	})
	var prepared string
	for _, r := range e.state().Runners {
		if rec, err := e.st.GetRunner(r.Name); err == nil && rec.State == store.StatePending {
			prepared = r.Name
		}
	}
	if prepared == "" {
		t.Fatal("no prepared runner found")
	}
	for _, tg := range e.world.Myshoes.Targets() {
		e.world.Myshoes.RemoveTarget(tg.ID)
	}
	e.waitFor("2 runners canceled", 30*time.Second, func() bool { return e.historyReasons()["canceled"] == 2 })
	e.waitFor("the prepared runner removed on GitHub", 30*time.Second, func() bool {
		for _, r := range e.state().Runners {
			if r.Name == prepared {
				return r.State == "removed"
			}
		}
		return false
	})
	e.waitFor("the started runner finished and retired", 30*time.Second, func() bool {
		return e.historyReasons()["target-removed"] == 1 && e.liveInstances() == 0
	})
	for _, c := range e.calls() {
		if c.Method == "AddInstance" && c.RunnerName == prepared {
			t.Errorf("AddInstance was called for the canceled runner %s", prepared)
		}
	}
}

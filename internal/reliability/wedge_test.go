package reliability

// Faults that once left a target unserved until a restart (issue 11).

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// TestScaleSetDeletedOnGitHub: GitHub (or an admin) deletes the scale set
// while run serves it. run creates a new one and serves it: jobs run
// within seconds, the old scale set's runner is cleaned up (its instance
// deleted), and /readyz and scalesets ls show the new ID.
func TestScaleSetDeletedOnGitHub(t *testing.T) {
	res := newResult(t, 36, "scale set deleted on GitHub (issue 11)",
		"the served scale set is deleted on GitHub with an idle runner on it: a new one is created and served, 3 jobs complete within 30s, the old runner's instance deleted (scale-set-deleted), readiness and scalesets ls show the new ID")
	scopes := []string{"org-a"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes}, runFlags("--min-runners", "1"))
	idle := d.WaitRecords("the min runner idle", time.Minute, func(rs []store.Runner) bool {
		return len(rs) == 1 && rs[0].State == store.StateIdle
	})[0]
	oldID := idle.ScaleSetID

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.gitHubAdmin().DeleteScaleSet(ctx, "org-a", oldID); err != nil {
		t.Fatalf("delete scale set %d: %v", oldID, err)
	}
	deleted := time.Now()
	var newID int
	scenariotest.WaitFor(t, "a new scale set served", time.Minute, func() (bool, string) {
		d.Alive()
		st := s.sim.State()
		for _, ss := range st.ScaleSets {
			if ss.ID != oldID && ss.Session != nil {
				newID = ss.ID
				return true, ""
			}
		}
		return false, scenario.SummarizeScaleSets(st)
	})
	s.sim.QueueJobs("org-a", 3, time.Second)
	scenariotest.WaitFor(t, "3 jobs completed on the new scale set", 30*time.Second, func() (bool, string) {
		d.Alive()
		c := scenario.JobCounts(s.sim.State())
		return c["completed"] == 3, fmt.Sprint(c)
	})
	note(t, res, "3 jobs completed %.1fs after the scale set was deleted", time.Since(deleted).Seconds())
	scenariotest.WaitFor(t, "the old scale set's runner gone", 30*time.Second, func() (bool, string) {
		h, err := d.History()
		if err != nil {
			return false, err.Error()
		}
		i := slices.IndexFunc(h, func(r store.HistoryRecord) bool { return r.Runner.Name == idle.Name })
		if i < 0 {
			return false, "not in history yet"
		}
		return h[i].Reason == "scale-set-deleted", "reason " + h[i].Reason
	})
	if _, ok := s.instanceDirs()[idle.CloudID]; ok {
		t.Errorf("the instance %s of the old scale set's runner still exists", idle.CloudID)
	}
	sets, err := d.ScaleSets()
	if err != nil || len(sets) != 1 || sets[0].ScaleSetID != newID {
		t.Errorf("scalesets: %+v, %v; want the new ID %d", sets, err, newID)
	}
	scenariotest.WaitFor(t, "ready", 30*time.Second, func() (bool, string) {
		code, body, err := d.Get("/readyz")
		return err == nil && code == http.StatusOK, fmt.Sprint(code, string(body), err)
	})
	s.settle(d, 2*time.Minute, scenario.Options{})
}

// TestTwoTargetsOneScope: myshoes lists two targets for one scope (one of
// them differing only in case). One is served, the other is skipped with
// a warning naming both target IDs; no two workers delete each other's
// sessions.
func TestTwoTargetsOneScope(t *testing.T) {
	res := newResult(t, 37, "two targets for one scope (issue 11)",
		"targets org-a and ORG-A, and org-b twice: one served per scope, a warning naming both IDs, 1 session per scale set, jobs complete")
	s := newScenario(t, res, scenariotest.SimOptions{Targets: []string{"org-z"}})
	s.sim.SetTargets([]scenario.Target{{ID: "aaaaaaaa-0000-4000-8000-000000000001", Scope: "org-a"}, {ID: "aaaaaaaa-0000-4000-8000-000000000002", Scope: "ORG-A"},
		{ID: "bbbbbbbb-0000-4000-8000-000000000001", Scope: "org-b"}, {ID: "bbbbbbbb-0000-4000-8000-000000000002", Scope: "org-b"}})
	d := s.startRun()
	d.WaitUp()
	scenariotest.WaitFor(t, "one session per scope", time.Minute, func() (bool, string) {
		d.Alive()
		st := s.sim.State()
		live := 0
		for _, ss := range st.ScaleSets {
			if ss.Session != nil {
				live++
			}
		}
		return live == 2, scenario.SummarizeScaleSets(st)
	})
	s.sim.QueueJobs("org-a", 3, time.Second)
	s.sim.QueueJobs("org-b", 3, time.Second)
	s.waitJobsDone(d, 2*time.Minute)
	st := s.sim.State()
	for _, ss := range st.ScaleSets {
		if ss.SessionsCreated != 1 || ss.Conflicts != 0 {
			t.Errorf("scale set %s: %d sessions created, %d conflicts; want 1 and 0", ss.Name, ss.SessionsCreated, ss.Conflicts)
		}
	}
	if len(st.ScaleSets) != 2 {
		t.Errorf("%d scale sets on GitHub, want 2:\n%s", len(st.ScaleSets), scenario.SummarizeScaleSets(st))
	}
	log := d.Log()
	for _, pair := range [][2]string{{"aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"}, {"bbbbbbbb-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"}} {
		re := regexp.MustCompile(`two myshoes targets for one scope.*served_target=` + pair[0] + `.*skipped_target=` + pair[1])
		if n := len(re.FindAllString(log, -1)); n != 1 {
			t.Errorf("the warning naming %s and %s appears %d times, want once", pair[0], pair[1], n)
		}
	}
	s.settle(d, time.Minute, scenario.Options{})
}

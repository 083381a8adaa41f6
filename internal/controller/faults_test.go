package controller_test

import (
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
)

func (e *testEnv) sessionID(scope string) string {
	for _, ss := range e.state().ScaleSets {
		if ss.Scope == scope && ss.Session != nil {
			return ss.Session.ID
		}
	}
	return ""
}

func (e *testEnv) fault(f actionsfake.Fault) {
	e.t.Helper()
	if err := e.world.Actions.AddFault(f); err != nil {
		e.t.Fatalf("add fault: %v", err)
	}
}

func TestE2EBrokerFaultsKeepTheSession(t *testing.T) {
	e := newTestEnv(t, envOptions{targets: []string{"org-a"}})
	e.start()
	e.waitFor("session", 30*time.Second, func() bool { return e.sessionID("org-a") != "" })
	before := e.sessionID("org-a")
	e.fault(actionsfake.Fault{Match: "GET /_broker/", Status: 503, Times: 3})
	e.queueJobs("org-a", 2, 100*time.Millisecond)
	e.waitFor("jobs completed through broker faults", 60*time.Second, func() bool {
		return scenario.JobCounts(e.state())["completed"] == 2
	})
	if after := e.sessionID("org-a"); after != before {
		t.Errorf("session changed from %s to %s: a transient broker failure should be retried on the same session", before, after)
	}
	if hits := e.state().Faults[0].Hits; hits != 3 {
		t.Errorf("fault hits = %d, want 3", hits)
	}
	e.checkClean(2)
}

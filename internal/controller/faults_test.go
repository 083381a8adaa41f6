package controller_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
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

func TestBrokerFaultsKeepTheSession(t *testing.T) {
	e := newTestEnv(t, envOptions{targets: []string{"org-a"}})
	e.start()
	e.waitFor("session", 30*time.Second, func() bool { return e.sessionID("org-a") != "" })
	before := e.sessionID("org-a")
	e.fault(actionsfake.Fault{Match: "GET /_broker/", Status: 503, Times: 3})
	e.queueJobs("org-a", 2, 100*time.Millisecond)
	e.waitFor("jobs completed through broker faults", 60*time.Second, func() bool {
		return countJobs(e.state())["completed"] == 2
	})
	if after := e.sessionID("org-a"); after != before {
		t.Errorf("session changed from %s to %s: a transient broker failure should be retried on the same session", before, after)
	}
	if hits := e.state().Faults[0].Hits; hits != 3 {
		t.Errorf("fault hits = %d, want 3", hits)
	}
	e.checkClean(2)
}

func TestReadinessFollowsTheBroker(t *testing.T) {
	e := newTestEnv(t, envOptions{targets: []string{"org-a", "org-b"}})
	e.start()
	e.waitFor("ready", 30*time.Second, func() bool { ok, _ := e.ctrl.Ready(); return ok })

	// Every poll of org-b's queue fails: its listener stops polling
	// successfully, and readiness names it.
	var orgB int
	for _, ss := range e.state().ScaleSets {
		if ss.Scope == "org-b" {
			orgB = ss.ID
		}
	}
	e.fault(actionsfake.Fault{Match: "GET /_broker/" + strconv.Itoa(orgB) + "/", Status: 500})
	e.waitFor("not ready because of org-b", 30*time.Second, func() bool {
		ok, why := e.ctrl.Ready()
		return !ok && len(why) == 1 && why[0].Scope == "org-b" && why[0].Reason != ""
	})
	_, why := e.ctrl.Ready()
	if !strings.Contains(why[0].Reason, "poll") && !strings.Contains(why[0].Reason, "session") {
		t.Errorf("reason %q says neither poll nor session", why[0].Reason)
	}
	e.world.Actions.ClearFaults()
	e.waitFor("ready again", 60*time.Second, func() bool { ok, _ := e.ctrl.Ready(); return ok })
}

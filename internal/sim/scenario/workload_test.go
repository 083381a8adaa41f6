package scenario

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/myshoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

func TestScopes(t *testing.T) {
	if got := Scopes("demo-org-", 3); !slices.Equal(got, []string{"demo-org-1", "demo-org-2", "demo-org-3"}) {
		t.Errorf("Scopes = %v", got)
	}
}

func TestStateHelpers(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := actionsfake.State{
		ScaleSets: []actionsfake.ScaleSetState{
			{Scope: "org-a", Session: &actionsfake.SessionState{ID: "s1", CreatedAt: t0}, Conflicts: 2},
			{Scope: "org-b", Session: &actionsfake.SessionState{ID: "s2", CreatedAt: t0.Add(time.Second)}, Conflicts: 1},
			{Scope: "org-c"},
		},
		Jobs: []actionsfake.JobState{{State: "completed"}, {State: "canceled"}, {State: "completed"}},
	}
	if n := Sessions(st); n != 2 {
		t.Errorf("Sessions = %d, want 2", n)
	}
	if n := Conflicts(st); n != 3 {
		t.Errorf("Conflicts = %d, want 3", n)
	}
	for _, tc := range []struct {
		scopes []string
		since  time.Time
		want   bool
	}{
		{[]string{"org-a", "org-b"}, time.Time{}, true},
		{[]string{"org-a", "org-b"}, t0.Add(time.Second), false},
		{[]string{"org-b"}, t0.Add(time.Second), true},
		{[]string{"org-c"}, time.Time{}, false},
	} {
		if ok, seen := Listening(st, tc.scopes, tc.since); ok != tc.want || (!ok && !strings.Contains(seen, "org-c id=0 session=none")) {
			t.Errorf("Listening(%v, %v) = %v, %q; want %v", tc.scopes, tc.since, ok, seen, tc.want)
		}
	}
	if !JobsFinal(st) {
		t.Error("JobsFinal: every job is completed or canceled")
	}
	st.Jobs = append(st.Jobs, actionsfake.JobState{State: "assigned"})
	if JobsFinal(st) {
		t.Error("JobsFinal with an assigned job")
	}
	if c := JobCounts(st); c["completed"] != 2 || c["canceled"] != 1 || c["assigned"] != 1 {
		t.Errorf("JobCounts = %v", c)
	}
	c := CountStates([]store.Runner{{State: store.StateIdle}, {State: store.StateIdle}, {State: store.StateBusy}})
	if c[store.StateIdle] != 2 || c[store.StateBusy] != 1 {
		t.Errorf("CountStates = %v", c)
	}
}

func TestFreeLoopbackAddr(t *testing.T) {
	addr, err := FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("FreeLoopbackAddr = %q (%v)", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the address is not free: %v", err)
	}
	ln.Close()
}

// The control API through SimClient, and the in-process Sim, on one World:
// both see the same jobs.
func TestSimClientAndInProcess(t *testing.T) {
	w, err := sim.Start(sim.Config{Targets: []string{"org-a"}, PollHold: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	c := NewSimClient(w.URL())
	local := InProcess(w)

	if err := QueueRoundRobin(c, []string{"org-a", "org-b"}, 3, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := QueueRoundRobin(local, []string{"org-a"}, 1, time.Second); err != nil {
		t.Fatal(err)
	}
	for _, s := range []Sim{c, local} {
		st, err := s.State()
		if err != nil {
			t.Fatal(err)
		}
		scopes := map[string]int{}
		for _, j := range st.Jobs {
			scopes[j.Scope]++
		}
		if len(st.Jobs) != 4 || scopes["org-a"] != 3 || scopes["org-b"] != 1 {
			t.Errorf("%T: jobs by scope %v, want org-a 3, org-b 1", s, scopes)
		}
	}
	if _, err := c.QueueJobs(actionsfake.JobsRequest{Scope: ""}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("queue jobs without a scope: %v, want a 400", err)
	}

	if err := c.AddFault(actionsfake.Fault{Match: "GET /_broker/", Status: 503, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.State(); len(st.Faults) != 1 {
		t.Errorf("faults after AddFault: %+v", st.Faults)
	}
	if err := c.ClearFaults(); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.State(); len(st.Faults) != 0 {
		t.Errorf("faults after ClearFaults: %+v", st.Faults)
	}
	if n, err := c.EvictSessions(); err != nil || n != 0 {
		t.Errorf("EvictSessions with no session = %d, %v", n, err)
	}
	if _, err := c.Requests("GET /_broker/{id}/{sid}/messages"); err != nil {
		t.Error(err)
	}

	if err := c.SetTargets([]Target{{Scope: "org-b", ResourceType: "small", Status: "active"}}); err != nil {
		t.Fatal(err)
	}
	ts, err := c.Targets()
	if err != nil || len(ts) != 1 || ts[0].Scope != "org-b" || ts[0].ID == "" {
		t.Errorf("Targets = %+v, %v; want org-b with an ID", ts, err)
	}
	if err := c.MyshoesFault(myshoesfake.Fault{Status: 500, Times: 1}); err != nil {
		t.Error(err)
	}
}

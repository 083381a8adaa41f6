package scenario

import (
	"slices"
	"strings"
	"testing"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

func add(name, cloudID, code string) shoesfake.Call {
	return shoesfake.Call{Method: shoesfake.MethodAddInstance, RunnerName: name, CloudID: cloudID, Code: code}
}

func del(cloudID, code string) shoesfake.Call {
	return shoesfake.Call{Method: shoesfake.MethodDeleteInstance, CloudID: cloudID, Code: code}
}

// From the call log alone (the demo's way): what is leaked and what was
// provisioned twice.
func TestCheckCallLog(t *testing.T) {
	for _, tc := range []struct {
		name       string
		calls      []shoesfake.Call
		leaked     []string
		duplicates []string
	}{
		{"none", nil, nil, nil},
		{"created and deleted", []shoesfake.Call{add("r1", "c1", "OK"), del("c1", "OK")}, nil, nil},
		{"never deleted", []shoesfake.Call{add("r1", "c1", "OK"), add("r2", "c2", "OK"), del("c1", "OK")}, []string{"c2"}, nil},
		{"failed delete does not count", []shoesfake.Call{add("r1", "c1", "OK"), del("c1", "Unavailable")}, []string{"c1"}, nil},
		{"failed delete then retried", []shoesfake.Call{add("r1", "c1", "OK"), del("c1", "Unavailable"), del("c1", "OK")}, nil, nil},
		{"failed add creates nothing", []shoesfake.Call{add("r1", "", "Internal"), add("r1", "c1", "OK"), del("c1", "OK")}, nil, nil},
		{"crash mid-add is not a duplicate", []shoesfake.Call{add("r1", "c0", "Crash"), add("r1", "c1", "OK"), del("c1", "OK")}, nil, nil},
		{
			"same name created twice",
			[]shoesfake.Call{add("r1", "c1", "OK"), add("r1", "c2", "OK"), add("r2", "c3", "OK"), del("c1", "OK"), del("c2", "OK"), del("c3", "OK")},
			nil, []string{"r1"},
		},
		{"script exit events are ignored", []shoesfake.Call{add("r1", "c1", "OK"), {Event: shoesfake.EventScriptExit, CloudID: "c1"}}, []string{"c1"}, nil},
		{"sorted", []shoesfake.Call{add("b", "c2", "OK"), add("a", "c1", "OK"), add("b", "c3", "OK"), add("a", "c4", "OK")}, []string{"c1", "c2", "c3", "c4"}, []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iv := Check(Inputs{Calls: tc.calls}, Options{})
			if !slices.Equal(iv.LeakedIDs, tc.leaked) || iv.Leaked != len(tc.leaked) {
				t.Errorf("leaked %d %v, want %v", iv.Leaked, iv.LeakedIDs, tc.leaked)
			}
			if !slices.Equal(iv.ProvisionedTwice, tc.duplicates) || iv.DuplicateNames != len(tc.duplicates) {
				t.Errorf("provisioned twice %d %v, want %v", iv.DuplicateNames, iv.ProvisionedTwice, tc.duplicates)
			}
			if want := len(tc.leaked) + len(tc.duplicates); len(iv.Problems) != want {
				t.Errorf("problems %q, want %d", iv.Problems, want)
			}
			if iv.Created != iv.Deleted+iv.Leaked {
				t.Errorf("created %d != deleted %d + leaked %d", iv.Created, iv.Deleted, iv.Leaked)
			}
		})
	}
}

func listed(ids ...string) []shoesfake.Instance {
	var out []shoesfake.Instance
	for _, id := range ids {
		out = append(out, shoesfake.Instance{CloudID: id, RunnerName: "r-" + id})
	}
	return out
}

// With the instances listed (the reliability suite's way): who owns what
// is left, and every other invariant.
func TestCheck(t *testing.T) {
	job := func(id, state, runner string) actionsfake.JobState {
		return actionsfake.JobState{ID: id, Scope: "org-a", State: state, RunnerName: runner}
	}
	session := &actionsfake.SessionState{ID: "0123456789abcdef", Owner: "host"}
	for _, tc := range []struct {
		name string
		in   Inputs
		o    Options
		want Invariants // figures only; Problems are matched by want
		// problems are substrings of the problems, in order.
		problems []string
	}{
		{
			name: "clean",
			in: Inputs{
				State:           actionsfake.State{Jobs: []actionsfake.JobState{job("j1", "completed", "r1")}},
				Calls:           []shoesfake.Call{add("r1", "c1", "OK"), del("c1", "OK")},
				InstancesListed: true,
			},
			o:    Options{Owners: EveryState},
			want: Invariants{Jobs: 1, Completed: 1, Created: 1, Deleted: 1},
		},
		{
			name: "a deleted instance counts as deleted even without its DeleteInstance",
			in:   Inputs{Calls: []shoesfake.Call{add("r1", "c1", "OK")}, InstancesListed: true},
			o:    Options{Owners: EveryState},
			want: Invariants{Created: 1, Deleted: 1},
		},
		{
			name: "owned by a live record, by an unknown-instance record, and leaked",
			in: Inputs{
				Calls: []shoesfake.Call{add("r-c1", "c1", "OK"), add("r-c2", "c2", "OK")},
				Runners: []store.Runner{
					{Name: "r-c1", CloudID: "c1", State: store.StateBusy},
					{Name: "r-c3", State: store.StateUnknownInstance},
				},
				// c3 exists without a call: an AddInstance cut by a kill.
				Instances: listed("c1", "c2", "c3"), InstancesListed: true,
			},
			o:        Options{Owners: EveryState},
			want:     Invariants{Created: 3, LiveOwned: 1, UnknownOwned: 1, Leaked: 1, UnknownRecords: 1, LeakedIDs: []string{"c2"}},
			problems: []string{`instance c2 (runner "r-c2") leaked`},
		},
		{
			name: "only idle records own their instances",
			in: Inputs{
				Calls:   []shoesfake.Call{add("r1", "c1", "OK"), add("r2", "c2", "OK")},
				Runners: []store.Runner{{Name: "r1", CloudID: "c1", State: store.StateIdle}, {Name: "r2", CloudID: "c2", State: store.StateDeleting}},
			},
			o:        Options{Owners: []store.RunnerState{store.StateIdle}},
			want:     Invariants{Created: 2, LiveOwned: 1, Leaked: 1, LeakedIDs: []string{"c2"}},
			problems: []string{"instance c2"},
		},
		{
			name: "lost by a plugin that answered an empty cloud ID",
			in: Inputs{
				Calls:     []shoesfake.Call{add("r-c1", "", "OK")},
				History:   []store.HistoryRecord{{Runner: store.Runner{Name: "r-c1", LastError: "add instance: empty cloud ID"}}},
				Instances: listed("c1"), InstancesListed: true,
			},
			o:    Options{Owners: EveryState, LostOK: true},
			want: Invariants{Created: 1, Lost: 1},
		},
		{
			name: "lost is a leak without LostOK",
			in: Inputs{
				Calls:     []shoesfake.Call{add("r-c1", "", "OK")},
				History:   []store.HistoryRecord{{Runner: store.Runner{Name: "r-c1", LastError: "add instance: empty cloud ID"}}},
				Instances: listed("c1"), InstancesListed: true,
			},
			o:        Options{Owners: EveryState},
			want:     Invariants{Created: 1, Leaked: 1, LeakedIDs: []string{"c1"}},
			problems: []string{"instance c1"},
		},
		{
			name: "ghost record, unknown record with a name-keyed plugin",
			in: Inputs{
				Runners:         []store.Runner{{Name: "r1", CloudID: "c1", State: store.StateIdle}, {Name: "r2", State: store.StateUnknownInstance}},
				InstancesListed: true,
			},
			o:        Options{Owners: EveryState, ResolvedByName: true},
			want:     Invariants{GhostRecords: 1, UnknownRecords: 1},
			problems: []string{"runner r1 is idle but its instance c1 does not exist", "1 unknown-instance records"},
		},
		{
			name: "jobs canceled and stuck, duplicates, violations, sessions",
			in: Inputs{
				State: actionsfake.State{
					Jobs: []actionsfake.JobState{job("j1", "canceled", ""), job("j2", "running", "r1"), job("j3", "completed", "r1")},
					Runners: []actionsfake.RunnerState{
						{Name: "r1", JobID: "j2"}, {Name: "r2", JobID: "j2"}, {Name: "r2"},
					},
					Violations: []actionsfake.Violation{{Kind: "stale token"}, {Kind: "double connect"}, {Kind: "stale token"}},
					ScaleSets:  []actionsfake.ScaleSetState{{Name: "myshoes-org-a", Session: session}},
				},
			},
			want: Invariants{Jobs: 3, Completed: 1, Canceled: 1, Stuck: 1, DuplicateNames: 1, DuplicateJobs: 2, Violations: 3, OpenSessions: 1,
				ViolationKinds: []string{"stale token", "double connect"}},
			problems: []string{"job j1 (org-a) canceled", "job j2 (org-a) stuck in running", "runner name r2 registered 2 times", "job j2 ran on 2 runners",
				"runner r1 was given 2 jobs", `violation "stale token"`, `violation "double connect"`, `violation "stale token"`, "still has session 01234567"},
		},
		{
			name: "canceled jobs and open sessions accepted",
			in: Inputs{State: actionsfake.State{
				Jobs:      []actionsfake.JobState{job("j1", "canceled", "")},
				ScaleSets: []actionsfake.ScaleSetState{{Name: "myshoes-org-a", Session: session}},
			}},
			o:    Options{CanceledOK: true, SessionsOK: true},
			want: Invariants{Jobs: 1, Canceled: 1, OpenSessions: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iv := Check(tc.in, tc.o)
			got := iv
			got.Problems = nil
			if got.String() != tc.want.String() || !slices.Equal(got.LeakedIDs, tc.want.LeakedIDs) || !slices.Equal(got.ViolationKinds, tc.want.ViolationKinds) ||
				got.GhostRecords != tc.want.GhostRecords {
				t.Errorf("Check:\n got  %s (ghosts %d, leaked %v, violations %v)\n want %s (ghosts %d, leaked %v, violations %v)",
					got, got.GhostRecords, got.LeakedIDs, got.ViolationKinds, tc.want, tc.want.GhostRecords, tc.want.LeakedIDs, tc.want.ViolationKinds)
			}
			if len(iv.Problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %d matching %q", iv.Problems, len(tc.problems), tc.problems)
			}
			for i, want := range tc.problems {
				if !strings.Contains(iv.Problems[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, iv.Problems[i], want)
				}
			}
		})
	}
}

func TestInvariantsString(t *testing.T) {
	iv := Invariants{Jobs: 3, Completed: 2, Leaked: 1, Violations: 4}
	for _, want := range []string{"jobs 3 completed 2", "leaked 1", "violations 4"} {
		if !strings.Contains(iv.String(), want) {
			t.Errorf("%q lacks %q", iv, want)
		}
	}
}

func TestLiveInstances(t *testing.T) {
	live := LiveInstances([]shoesfake.Call{add("r1", "c1", "OK"), add("r2", "c2", "OK"), del("c1", "OK"), add("r3", "", "OK"), del("c2", "Internal")})
	if len(live) != 1 || !live["c2"] {
		t.Errorf("LiveInstances = %v, want c2", live)
	}
}

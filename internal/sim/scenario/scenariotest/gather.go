package scenariotest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// Gather reads the inputs of scenario.Check once the last daemon on f
// stopped: the sim's state, the records through `runners ls -o json` on
// the state file (and `scalesets ls`: the file must open for an
// operator), the history, the call log and the instances that exist.
func Gather(t testing.TB, bin string, s scenario.Sim, f Files) scenario.Inputs {
	t.Helper()
	st, err := s.State()
	if err != nil {
		t.Fatalf("sim state: %v", err)
	}
	in := scenario.Inputs{State: st, InstancesListed: true}
	in.Runners = RunnersLs(t, bin, f.StateFile)
	_ = ScaleSetsLs(t, bin, f.StateFile)
	in.History = History(t, f.StateFile)
	in.Calls = Calls(t, f.CallLog)
	in.Instances = Instances(t, f.InstanceDir)
	return in
}

// lsJSON runs `<what> ls -o json` on stateFile with no daemon answering,
// as an operator would after a stop, and decodes its output into v.
func lsJSON(t testing.TB, bin, what, stateFile string, v any) {
	t.Helper()
	res := Exec(t, bin, 30*time.Second, testkit.ChildEnv(), what, "ls", "-o", "json", "--state-file", stateFile, "--listen", "127.0.0.1:1")
	if res.Code != 0 {
		t.Fatalf("%s ls on the state file:\n%s", what, res)
	}
	if err := json.Unmarshal([]byte(res.Stdout), v); err != nil {
		t.Fatalf("%s ls -o json: %v\n%s", what, err, res.Stdout)
	}
}

// RunnersLs is `runners ls -o json` on a state file no daemon holds.
func RunnersLs(t testing.TB, bin, stateFile string) []store.Runner {
	t.Helper()
	var rs []store.Runner
	lsJSON(t, bin, "runners", stateFile, &rs)
	return rs
}

// ScaleSetsLs is `scalesets ls -o json` on a state file no daemon holds.
func ScaleSetsLs(t testing.TB, bin, stateFile string) []controller.ScaleSetStatus {
	t.Helper()
	var out []controller.ScaleSetStatus
	lsJSON(t, bin, "scalesets", stateFile, &out)
	return out
}

// History reads the runner history from a state file no daemon holds.
func History(t testing.TB, stateFile string) []store.HistoryRecord {
	t.Helper()
	st, err := store.Open(store.Options{Path: stateFile, ReadOnly: true})
	if err != nil {
		t.Fatalf("open state file read-only: %v", err)
	}
	defer st.Close()
	h, err := st.ListHistory(store.HistoryFilter{})
	if err != nil {
		t.Fatalf("list history: %v", err)
	}
	return h
}

// Calls reads the fake plugin's call log.
func Calls(t testing.TB, callLog string) []shoesfake.Call {
	t.Helper()
	calls, err := shoesfake.ReadCallLog(callLog)
	if err != nil {
		t.Fatalf("read call log: %v", err)
	}
	return calls
}

// Instances lists the fake plugin's instances that exist under dir.
func Instances(t testing.TB, dir string) []shoesfake.Instance {
	t.Helper()
	in, err := shoesfake.ListInstances(dir)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// Check checks a finished run with scenario.Check: it fails the test for
// every broken invariant and logs the figures.
func Check(t testing.TB, in scenario.Inputs, o scenario.Options) scenario.Invariants {
	t.Helper()
	iv := scenario.Check(in, o)
	for _, p := range iv.Problems {
		t.Errorf("invariant: %s", p)
	}
	t.Logf("invariants: %s", iv)
	return iv
}

package scenariotest

import (
	"encoding/json"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

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
	in.Runners = lsStore[[]store.Runner](t, bin, "runners", f.StoreFlags())
	_ = lsStore[[]controller.ScaleSetStatus](t, bin, "scalesets", f.StoreFlags())
	if f.EtcdEndpoint != "" {
		in.History = etcdHistory(t, f.EtcdEndpoint, f.EtcdPrefix)
	} else {
		in.History = History(t, f.StateFile)
	}
	in.Calls = Calls(t, f.CallLog)
	in.Instances = Instances(t, f.InstanceDir)
	return in
}

// lsStore runs `<what> ls -o json` with storeFlags (Files.StoreFlags)
// and no daemon answering, as an operator would after a stop, and
// decodes its output.
func lsStore[T any](t testing.TB, bin, what string, storeFlags []string) T {
	t.Helper()
	args := append([]string{what, "ls", "-o", "json", "--listen", "127.0.0.1:1"}, storeFlags...)
	res := Exec(t, bin, 30*time.Second, testkit.ChildEnv(), args...)
	if res.Code != 0 {
		t.Fatalf("%s ls on the state:\n%s", what, res)
	}
	var v T
	if err := json.Unmarshal([]byte(res.Stdout), &v); err != nil {
		t.Fatalf("%s ls -o json: %v\n%s", what, err, res.Stdout)
	}
	return v
}

// RunnersLs is `runners ls -o json` on a state file no daemon holds.
func RunnersLs(t testing.TB, bin, stateFile string) []store.Runner {
	t.Helper()
	return lsStore[[]store.Runner](t, bin, "runners", []string{"--state-file", stateFile})
}

// ScaleSetsLs is `scalesets ls -o json` on a state file no daemon holds.
func ScaleSetsLs(t testing.TB, bin, stateFile string) []controller.ScaleSetStatus {
	t.Helper()
	return lsStore[[]controller.ScaleSetStatus](t, bin, "scalesets", []string{"--state-file", stateFile})
}

// ScaleSetsLsEtcd is `scalesets ls -o json` on the state in etcd.
func ScaleSetsLsEtcd(t testing.TB, bin string, f Files) []controller.ScaleSetStatus {
	t.Helper()
	return lsStore[[]controller.ScaleSetStatus](t, bin, "scalesets", f.StoreFlags())
}

// etcdHistory reads the runner history from the state in etcd.
func etcdHistory(t testing.TB, endpoint, prefix string) []store.HistoryRecord {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer c.Close()
	st, err := store.OpenEtcd(store.EtcdOptions{Client: c, Prefix: prefix + "state/", OwnerID: "test"})
	if err != nil {
		t.Fatalf("open the state in etcd: %v", err)
	}
	h, err := st.ListHistory(store.HistoryFilter{})
	if err != nil {
		t.Fatalf("list history: %v", err)
	}
	return h
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

package actionsfake

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/actions/scaleset"
)

const jitRoute = "POST /_actions/_apis/runtime/runnerscalesets/{id}/generatejitconfig"

func TestFaultHitsExactlyTimes(t *testing.T) {
	f := newFake(t, nil)
	ctx := t.Context()
	c := f.client(t, "org-a")
	ss, err := c.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{Name: "ss", RunnerGroupID: 1})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := f.srv.AddFault(Fault{Match: "POST .*/generatejitconfig", Status: 500, Times: 2}); err != nil {
		t.Fatalf("add fault: %v", err)
	}

	// WithRetryMax(1): the call and its retry take both hits.
	if _, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "a"}, ss.ID); err == nil {
		t.Fatal("jit during the fault: want error")
	}
	if _, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "b"}, ss.ID); err != nil {
		t.Fatalf("jit after the fault: %v", err)
	}
	st := f.srv.State()
	if len(st.Faults) != 1 || st.Faults[0].Hits != 2 || st.Faults[0].Active {
		t.Fatalf("faults %+v", st.Faults)
	}
	if got := st.Calls[jitRoute]; got != 3 {
		t.Fatalf("jit calls = %d, want 3", got)
	}
	// Other routes were never hit.
	if _, err := c.GetRunnerScaleSetByID(ctx, ss.ID); err != nil {
		t.Fatalf("get: %v", err)
	}

	// The same through the control API and raw requests.
	f.srv.ClearFaults()
	fault := map[string]any{"match": "POST .*/generatejitconfig", "status": 503, "times": 2}
	if st := call(t, "POST", f.url+"/_sim/faults", "", fault, nil); st != http.StatusNoContent {
		t.Fatalf("POST /_sim/faults: status %d", st)
	}
	admin := "Bearer " + f.adminToken(t, "org-a")
	u := f.actionsURL(fmt.Sprintf("_apis/runtime/runnerscalesets/%d/generatejitconfig", ss.ID))
	want := []int{http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusOK}
	for i, code := range want {
		var e actionsError
		got := call(t, "POST", u, admin, map[string]string{"name": fmt.Sprintf("raw-%d", i)}, &e)
		if got != code {
			t.Fatalf("raw request %d: status %d, want %d", i, got, code)
		}
		if code != http.StatusOK && e.TypeName != "SimulatedFaultException" {
			t.Fatalf("raw request %d: body %+v", i, e)
		}
	}
	if st := f.srv.State(); st.Faults[0].Hits != 2 {
		t.Fatalf("hits = %d, want 2", st.Faults[0].Hits)
	}
	if st := call(t, "DELETE", f.url+"/_sim/faults", "", nil, nil); st != http.StatusNoContent || len(f.srv.State().Faults) != 0 {
		t.Fatalf("DELETE /_sim/faults: status %d", st)
	}
	f.requireNoViolations(t)
}

func TestFaultDropAndExemptions(t *testing.T) {
	f := newFake(t, nil)
	admin := "Bearer " + f.adminToken(t, "org-a")
	u := f.actionsURL("_apis/runtime/runnergroups/")
	if err := f.srv.AddFault(Fault{Match: "GET .*/runnergroups", Drop: true, Times: 1}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	req.Header.Set("Authorization", admin)
	// A fresh connection: net/http silently retries a GET dropped on a reused one.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := fresh.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped request: got status %d, want a transport error", resp.StatusCode)
	}
	if st := call(t, "GET", u, admin, nil, nil); st != http.StatusOK {
		t.Fatalf("after the drop: status %d", st)
	}

	// Unlimited faults on everything leave /_sim/ alone.
	if err := f.srv.AddFault(Fault{Match: "* .*", Status: 500}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	if st := call(t, "GET", f.url+"/_sim/state", "", nil, nil); st != http.StatusOK {
		t.Fatalf("state under faults: status %d", st)
	}
	for range 3 {
		if st := call(t, "GET", u, admin, nil, nil); st != http.StatusInternalServerError {
			t.Fatalf("under an unlimited fault: status %d", st)
		}
	}
	if st := f.srv.State(); st.Faults[1].Hits != 3 || !st.Faults[1].Active {
		t.Fatalf("faults %+v", st.Faults)
	}

	for _, bad := range []Fault{{Match: "GET"}, {Match: "GET ("}, {Match: "GET /x"}, {Match: "GET /x", Status: 42}} {
		if err := f.srv.AddFault(bad); err == nil {
			t.Errorf("AddFault(%+v): want error", bad)
		}
	}
}

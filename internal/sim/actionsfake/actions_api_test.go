package actionsfake

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/actions/scaleset"
)

func TestLabelTypes(t *testing.T) {
	f, c := newClient(t, nil)
	ss := newScaleSet(t, c, "ss", scaleset.Label{Name: "linux"}, scaleset.Label{Name: "gpu", Type: "user"}, scaleset.Label{Name: "x64", Type: "SYSTEM"})
	want := []scaleset.Label{{Type: "System", Name: "linux"}, {Type: "User", Name: "gpu"}, {Type: "System", Name: "x64"}}
	if !slices.Equal(ss.Labels, want) {
		t.Fatalf("labels %+v, want %+v", ss.Labels, want)
	}

	// Any other type is refused, on create and on update.
	if _, err := c.CreateRunnerScaleSet(t.Context(), &scaleset.RunnerScaleSet{Name: "bad", RunnerGroupID: 1, Labels: []scaleset.Label{{Name: "l", Type: "Custom"}}}); err == nil ||
		!strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "System.ArgumentNullException") {
		t.Fatalf("create with type Custom: err = %v, want 400 System.ArgumentNullException", err)
	}
	admin := "Bearer " + f.adminToken(t, "org-a")
	var e actionsError
	body := map[string]any{"name": "ss", "labels": []map[string]string{{"name": "l", "type": "Bogus"}}}
	if st := call(t, "PATCH", f.actionsURL(fmt.Sprintf("_apis/runtime/runnerscalesets/%d", ss.ID)), admin, body, &e); st != http.StatusBadRequest || e.TypeName != "System.ArgumentNullException" {
		t.Fatalf("update with type Bogus: status %d, %+v", st, e)
	}
	if got := f.srv.State().ScaleSets[0].Labels; !slices.Equal(got, []string{"linux", "gpu", "x64"}) {
		t.Fatalf("labels after a refused update: %v", got)
	}
	f.requireNoViolations(t)
}

// GHES 3.18-3.20 without the custom-labels feature keep only the name.
func TestDropCustomLabels(t *testing.T) {
	f, c := newClient(t, func(c *Config) { c.DropCustomLabels = true })
	ctx := t.Context()
	ss := newScaleSet(t, c, "ss", scaleset.Label{Name: "linux"}, scaleset.Label{Name: "gpu", Type: "User"})
	only := func(name string) []scaleset.Label { return []scaleset.Label{{Type: "System", Name: name}} }
	if !slices.Equal(ss.Labels, only("ss")) {
		t.Fatalf("created labels %+v, want only the name", ss.Labels)
	}
	got, err := c.GetRunnerScaleSetByID(ctx, ss.ID)
	if err != nil || !slices.Equal(got.Labels, only("ss")) {
		t.Fatalf("stored labels %+v, %v", got, err)
	}
	// The type check still applies.
	if _, err := c.UpdateRunnerScaleSet(ctx, ss.ID, &scaleset.RunnerScaleSet{Name: "ss", RunnerGroupID: 1, Labels: []scaleset.Label{{Name: "l", Type: "Nope"}}}); err == nil {
		t.Fatal("update with type Nope: want error")
	}
	upd, err := c.UpdateRunnerScaleSet(ctx, ss.ID, &scaleset.RunnerScaleSet{Name: "ss-2", RunnerGroupID: 1, Labels: []scaleset.Label{{Name: "linux"}}})
	if err != nil || !slices.Equal(upd.Labels, only("ss-2")) {
		t.Fatalf("updated labels %+v, %v; want only the new name", upd, err)
	}

	// Jobs match the stored labels: one asking for a dropped label waits.
	f.queue(t, JobsRequest{Scope: "org-a", Labels: []string{"linux"}})
	f.queue(t, JobsRequest{Scope: "org-a", Labels: []string{"ss-2"}})
	st := f.srv.State()
	if st.ScopeQueued["org-a"] != 1 || st.ScaleSets[0].Jobs.Assigned != 1 || !slices.Equal(st.ScaleSets[0].Labels, []string{"ss-2"}) {
		t.Fatalf("scope queued %v, scale set %+v; want the linux job waiting and the ss-2 job assigned", st.ScopeQueued, st.ScaleSets[0])
	}

	// Without the mode the labels are kept.
	g := newFake(t, nil)
	kept, err := g.client(t, "org-a").CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{Name: "ss", RunnerGroupID: 1, Labels: []scaleset.Label{{Name: "linux"}}})
	if err != nil || !slices.Equal(kept.Labels, []scaleset.Label{{Type: "System", Name: "linux"}}) {
		t.Fatalf("without DropCustomLabels: %+v, %v", kept, err)
	}
}

// Config.RunnerGroups are groups besides the default one: found by name,
// holding scale sets, counted per group; an unknown group is not found.
func TestRunnerGroups(t *testing.T) {
	f, c := newClient(t, func(c *Config) { c.RunnerGroups = []string{"gpu pool", "arm"} })
	ctx := t.Context()
	gpu, err := c.GetRunnerGroupByName(ctx, "GPU Pool")
	if err != nil || gpu.ID != 2 || gpu.Name != "gpu pool" || gpu.IsDefault {
		t.Fatalf("GetRunnerGroupByName(GPU Pool) = %+v, %v; want group 2", gpu, err)
	}
	ss, err := c.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{Name: "ss", RunnerGroupID: gpu.ID})
	if err != nil || ss.RunnerGroupID != 2 || ss.RunnerGroupName != "gpu pool" {
		t.Fatalf("create in group 2: %+v, %v", ss, err)
	}
	if _, err := c.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{Name: "ss", RunnerGroupID: 1}); err != nil {
		t.Fatalf("the same name in the default group: %v", err)
	}
	if _, err := c.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{Name: "x", RunnerGroupID: 4}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("create in group 4: err = %v, want 404", err)
	}
	var groups listJSON[runnerGroupJSON]
	if st := call(t, "GET", f.actionsURL("_apis/runtime/runnergroups/"), "Bearer "+f.adminToken(t, "org-a"), nil, &groups); st != http.StatusOK {
		t.Fatalf("list groups: status %d", st)
	}
	want := []runnerGroupJSON{{ID: 1, Name: "default", Size: 1, IsDefault: true}, {ID: 2, Name: "gpu pool", Size: 1}, {ID: 3, Name: "arm"}}
	if !slices.Equal(groups.Value, want) {
		t.Fatalf("groups %+v, want %+v", groups.Value, want)
	}
	for _, bad := range [][]string{{""}, {"Default"}} {
		if _, err := New(Config{Tokens: []string{"x"}, RunnerGroups: bad}); err == nil {
			t.Errorf("New with RunnerGroups %q: want an error", bad)
		}
	}
	f.requireNoViolations(t)
}

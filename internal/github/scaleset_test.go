package github

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"testing"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
)

func labelsJSON(names ...string) []any {
	out := []any{}
	for _, n := range names {
		out = append(out, map[string]any{"type": "System", "name": n})
	}
	return out
}

// bodyOf decodes the JSON body of r.
func bodyOf(t *testing.T, r seenRequest) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("%s %s body %q: %v", r.method, r.path, r.body, err)
	}
	return m
}

// lookups lists the runnerGroupId/name queries of the scale set lookups.
func (f *fakeGitHub) lookups() []string {
	var out []string
	for _, r := range f.requests("GET", scaleSetsPath) {
		out = append(out, r.query.Get("runnerGroupId")+"/"+r.query.Get("name"))
	}
	return out
}

// withScaleSet serves a fake that has scale set shoes-acme with labels,
// and a provider on it.
func withScaleSet(t *testing.T, labels ...string) (*fakeGitHub, *Provider, *scaleset.RunnerScaleSet) {
	t.Helper()
	f, p := newFakeProvider(t)
	set, _, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "", "shoes-acme", labels)
	if err != nil {
		t.Fatal(err)
	}
	return f, p, set
}

func TestGetOrCreateScaleSet(t *testing.T) {
	wanted := []string{"self-hosted", "shoes-acme"}

	t.Run("not found is created", func(t *testing.T) {
		f, p := newFakeProvider(t)
		set, created, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "", "shoes-acme", wanted)
		if err != nil || !created || set.ID == 0 || set.ID != f.srv.State().ScaleSets[0].ID {
			t.Fatalf("GetOrCreateScaleSet = %+v, %v, %v; want the one created", set, created, err)
		}
		if !reflect.DeepEqual(f.lookups(), []string{"1/shoes-acme"}) {
			t.Fatalf("lookup queries = %v, want default group 1", f.lookups())
		}
		want := map[string]any{
			"name":          "shoes-acme",
			"runnerGroupId": float64(1),
			"labels":        labelsJSON(wanted...),
			"RunnerSetting": map[string]any{"disableUpdate": true},
			"createdOn":     "0001-01-01T00:00:00Z",
		}
		if got := bodyOf(t, f.requests("POST", scaleSetsPath)[0]); !reflect.DeepEqual(got, want) {
			t.Fatalf("create body = %v\nwant %v", got, want)
		}
	})

	t.Run("exists is not created", func(t *testing.T) {
		f, p, old := withScaleSet(t, "shoes-acme", "Self-Hosted")
		set, created, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "default", "shoes-acme", wanted)
		if err != nil || created || set.ID != old.ID {
			t.Fatalf("GetOrCreateScaleSet = %+v, %v, %v; want existing %d", set, created, err, old.ID)
		}
		if f.count("POST", scaleSetsPath) != 1 || f.count("PATCH", scaleSetPath(old.ID, "")) != 0 {
			t.Fatal("an existing scale set with the same labels was written")
		}
	})

	t.Run("exists with other labels is updated", func(t *testing.T) {
		f, p, old := withScaleSet(t, "self-hosted", "old")
		_, created, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "", "shoes-acme", wanted)
		if err != nil || created {
			t.Fatalf("created=%v err=%v", created, err)
		}
		if f.count("POST", scaleSetsPath) != 1 {
			t.Fatal("created a duplicate")
		}
		updates := f.requests("PATCH", scaleSetPath(old.ID, ""))
		if len(updates) != 1 || !reflect.DeepEqual(bodyOf(t, updates[0])["labels"], labelsJSON(wanted...)) {
			t.Fatalf("updates %+v, want one with labels %v", updates, wanted)
		}
	})

	t.Run("server error on get never creates", func(t *testing.T) {
		f := newFake(t)
		f.fault(t, actionsfake.Fault{Match: "GET " + scaleSetsPath + "$", Status: http.StatusInternalServerError})
		p, _ := newProvider(t, f)
		_, created, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "", "shoes-acme", wanted)
		if err == nil || created {
			t.Fatalf("created=%v err=%v; want an error", created, err)
		}
		if !IsTransient(err) || errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want transient", err)
		}
		if got := f.count("GET", scaleSetsPath); got != 2 {
			t.Fatalf("get called %d times, want 2 (RetryMax 1)", got)
		}
		if got := f.count("POST", scaleSetsPath); got != 0 {
			t.Fatalf("create called %d times after a failed get, want 0", got)
		}
	})

	t.Run("named runner group", func(t *testing.T) {
		f, p := newFakeProvider(t, func(c *actionsfake.Config) { c.RunnerGroups = []string{"gpu pool"} })
		if _, _, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "gpu pool", "shoes-acme", wanted); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(f.lookups(), []string{"2/shoes-acme"}) {
			t.Fatalf("lookup queries = %v, want group 2", f.lookups())
		}
	})

	t.Run("missing runner group", func(t *testing.T) {
		f, p := newFakeProvider(t)
		_, _, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "nope", "shoes-acme", wanted)
		if !errors.Is(err, ErrRunnerGroupNotFound) {
			t.Fatalf("err = %v, want ErrRunnerGroupNotFound", err)
		}
		if f.count("GET", scaleSetsPath)+f.count("POST", scaleSetsPath) != 0 {
			t.Fatal("scale set touched without a group")
		}
	})
}

// TestEnsureScaleSetDroppedLabels: GHES 3.18–3.20 without custom labels
// keep only the scale set's name as its label. The scale set is read back
// after a write, the dropped labels are reported, and once the caller
// passes what GitHub kept, the labels are not written again.
func TestEnsureScaleSetDroppedLabels(t *testing.T) {
	wanted := []string{"self-hosted", "shoes-acme", "gpu"}
	f, p := newFakeProvider(t, func(c *actionsfake.Config) { c.DropCustomLabels = true })
	spec := ScaleSetSpec{Scope: "acme", Name: "shoes-acme", Labels: wanted}

	res, err := p.EnsureScaleSet(testCtx(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || !reflect.DeepEqual(res.Labels, []string{"shoes-acme"}) || !reflect.DeepEqual(res.Dropped, []string{"self-hosted", "gpu"}) {
		t.Fatalf("create: %+v; want created, labels [shoes-acme], dropped [self-hosted gpu]", res)
	}
	id := res.ScaleSet.ID
	if got := f.count("GET", scaleSetPath(id, "")); got != 1 {
		t.Fatalf("read back %d times after the create, want 1", got)
	}

	// The next lookup finds the name-only labels. Not knowing what GitHub
	// kept, it updates them (once more, to no avail)...
	res, err = p.EnsureScaleSet(testCtx(t), spec)
	if err != nil || !res.Updated || !reflect.DeepEqual(res.Dropped, []string{"self-hosted", "gpu"}) {
		t.Fatalf("second ensure: %+v, %v; want an update that still drops", res, err)
	}
	// ...knowing it, it leaves them alone and still reports them.
	spec.KeptLabels = res.Labels
	for range 3 {
		res, err = p.EnsureScaleSet(testCtx(t), spec)
		if err != nil || res.Updated || res.Created || !reflect.DeepEqual(res.Dropped, []string{"self-hosted", "gpu"}) {
			t.Fatalf("ensure with kept labels: %+v, %v; want no write, dropped reported", res, err)
		}
	}
	if got := f.count("PATCH", scaleSetPath(id, "")); got != 1 {
		t.Fatalf("labels written %d times, want 1", got)
	}

	// A scale set with the name-only labels where GitHub keeps them all
	// is updated, and reports nothing dropped.
	g := newFake(t)
	q, _ := newProvider(t, g)
	if _, err := q.EnsureScaleSet(testCtx(t), ScaleSetSpec{Scope: "acme", Name: "shoes-acme", Labels: []string{"shoes-acme"}}); err != nil {
		t.Fatal(err)
	}
	if res, err = q.EnsureScaleSet(testCtx(t), ScaleSetSpec{Scope: "acme", Name: "shoes-acme", Labels: wanted}); err != nil || !res.Updated || res.Dropped != nil {
		t.Fatalf("with labels kept: %+v, %v; want updated, nothing dropped", res, err)
	}
}

func TestScaleSetClientCached(t *testing.T) {
	_, p := newFakeProvider(t)
	ctx := testCtx(t)
	a, err := p.ScaleSetClient(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.ScaleSetClient(ctx, "acme")
	if err != nil || a != b {
		t.Fatalf("second ScaleSetClient = %p, %v; want the cached %p", b, err, a)
	}
	c, err := p.ScaleSetClient(ctx, "acme/widgets")
	if err != nil || c == a {
		t.Fatalf("other scope got %p, %v", c, err)
	}
}

func TestScaleSetName(t *testing.T) {
	tests := []struct{ prefix, scope, want string }{
		{"shoes", "acme", "shoes-acme"},
		{"shoes", "acme/widgets", "shoes-acme-widgets"},
		{"shoes", "my.org/my_repo", "shoes-my-org-my-repo"},
		{"shoes", "Acme-1/Repo.Name", "shoes-Acme-1-Repo-Name"},
		{"shoes", "enterprises/big", "shoes-enterprises-big"},
		{"my pool", "ü/x", "my-pool---x"},
		{"", "acme/w", "acme-w"},
	}
	for _, tt := range tests {
		if got := ScaleSetName(tt.prefix, tt.scope); got != tt.want {
			t.Errorf("ScaleSetName(%q, %q) = %q, want %q", tt.prefix, tt.scope, got, tt.want)
		}
	}
}

func TestScaleSetLabels(t *testing.T) {
	tests := []struct {
		name  string
		extra []string
		want  []string
	}{
		{"shoes-acme", nil, []string{"self-hosted", "shoes-acme"}},
		{"shoes-acme", []string{"linux", "Self-Hosted", "", " gpu ", "linux", "shoes-acme"}, []string{"self-hosted", "shoes-acme", "linux", "gpu"}},
	}
	for _, tt := range tests {
		if got := ScaleSetLabels(tt.name, tt.extra); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ScaleSetLabels(%q, %q) = %q, want %q", tt.name, tt.extra, got, tt.want)
		}
	}
}

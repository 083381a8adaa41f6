package github

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"testing"
)

const scaleSetsPath = "/tenant/_apis/runtime/runnerscalesets"

type scaleSetFake struct {
	f        *fakeGitHub
	existing map[string]any // nil: not found
	getCode  int
	created  map[string]any
	updated  map[string]any
	groups   []map[string]any
	getQuery []string
	// stored is the scale set as the service holds it after a create or
	// update, served on GET by ID; dropLabels keeps only its name as its
	// label, as GHES 3.18–3.20 do without custom labels.
	stored     map[string]any
	dropLabels bool
}

// store records a written scale set and returns the answer to the write.
func (s *scaleSetFake) store(body map[string]any) map[string]any {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	out := map[string]any{"id": 77}
	for k, v := range body {
		out[k] = v
	}
	if s.dropLabels {
		out["labels"] = labelsJSON(body["name"].(string))
	}
	s.stored = out
	return out
}

func newScaleSetFake(t *testing.T) *scaleSetFake {
	s := &scaleSetFake{f: newFake(t), getCode: http.StatusOK}
	f := s.f
	f.route("GET", scaleSetsPath, func(w http.ResponseWriter, r *http.Request) {
		if !f.checkAdmin(w, r) {
			return
		}
		f.mu.Lock()
		s.getQuery = append(s.getQuery, r.URL.Query().Get("runnerGroupId")+"/"+r.URL.Query().Get("name"))
		f.mu.Unlock()
		if s.getCode != http.StatusOK {
			writeJSON(w, s.getCode, map[string]string{"typeName": "InternalError", "message": "database unavailable"})
			return
		}
		if s.existing == nil {
			writeJSON(w, http.StatusOK, map[string]any{"count": 0, "value": []any{}})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": 1, "value": []any{s.existing}})
	})
	f.route("POST", scaleSetsPath, func(w http.ResponseWriter, r *http.Request) {
		if !f.checkAdmin(w, r) {
			return
		}
		if err := json.Unmarshal(readBody(t, r), &s.created); err != nil {
			t.Errorf("create body: %v", err)
		}
		writeJSON(w, http.StatusOK, s.store(s.created))
	})
	f.route("PATCH", scaleSetsPath+"/77", func(w http.ResponseWriter, r *http.Request) {
		if !f.checkAdmin(w, r) {
			return
		}
		if err := json.Unmarshal(readBody(t, r), &s.updated); err != nil {
			t.Errorf("update body: %v", err)
		}
		writeJSON(w, http.StatusOK, s.store(s.updated))
	})
	f.route("GET", scaleSetsPath+"/77", func(w http.ResponseWriter, r *http.Request) {
		if !f.checkAdmin(w, r) {
			return
		}
		f.mu.Lock()
		stored := s.stored
		if stored == nil {
			stored = s.existing
		}
		f.mu.Unlock()
		if stored == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"typeName": "GitHub.Actions.Runtime.WebApi.RunnerScaleSetNotFoundException", "message": "no"})
			return
		}
		writeJSON(w, http.StatusOK, stored)
	})
	f.route("GET", "/tenant/_apis/runtime/runnergroups/", func(w http.ResponseWriter, r *http.Request) {
		if !f.checkAdmin(w, r) {
			return
		}
		var match []map[string]any
		for _, g := range s.groups {
			if g["name"] == r.URL.Query().Get("groupName") {
				match = append(match, g)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": len(match), "value": match})
	})
	return s
}

func labelsJSON(names ...string) []any {
	out := []any{}
	for _, n := range names {
		out = append(out, map[string]any{"type": "System", "name": n})
	}
	return out
}

func TestGetOrCreateScaleSet(t *testing.T) {
	wanted := []string{"self-hosted", "shoes-acme"}

	t.Run("not found is created", func(t *testing.T) {
		s := newScaleSetFake(t)
		p, _ := newProvider(t, s.f)
		set, created, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "", "shoes-acme", wanted)
		if err != nil || !created || set.ID != 77 {
			t.Fatalf("GetOrCreateScaleSet = %+v, %v, %v; want created 77", set, created, err)
		}
		if !reflect.DeepEqual(s.getQuery, []string{"1/shoes-acme"}) {
			t.Fatalf("lookup queries = %v, want default group 1", s.getQuery)
		}
		want := map[string]any{
			"name":          "shoes-acme",
			"runnerGroupId": float64(1),
			"labels":        labelsJSON(wanted...),
			"RunnerSetting": map[string]any{"disableUpdate": true},
			"createdOn":     "0001-01-01T00:00:00Z",
		}
		if !reflect.DeepEqual(s.created, want) {
			t.Fatalf("create body = %v\nwant %v", s.created, want)
		}
	})

	t.Run("exists is not created", func(t *testing.T) {
		s := newScaleSetFake(t)
		s.existing = map[string]any{"id": 77, "name": "shoes-acme", "runnerGroupId": 1, "labels": labelsJSON("shoes-acme", "Self-Hosted")}
		p, _ := newProvider(t, s.f)
		set, created, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "default", "shoes-acme", wanted)
		if err != nil || created || set.ID != 77 {
			t.Fatalf("GetOrCreateScaleSet = %+v, %v, %v; want existing 77", set, created, err)
		}
		if s.f.count("POST", scaleSetsPath) != 0 || s.f.count("PATCH", scaleSetsPath+"/77") != 0 {
			t.Fatal("an existing scale set with the same labels was written")
		}
	})

	t.Run("exists with other labels is updated", func(t *testing.T) {
		s := newScaleSetFake(t)
		s.existing = map[string]any{"id": 77, "name": "shoes-acme", "runnerGroupId": 1, "labels": labelsJSON("self-hosted", "old")}
		p, _ := newProvider(t, s.f)
		_, created, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "", "shoes-acme", wanted)
		if err != nil || created {
			t.Fatalf("created=%v err=%v", created, err)
		}
		if s.f.count("POST", scaleSetsPath) != 0 {
			t.Fatal("created a duplicate")
		}
		if got := s.updated["labels"]; !reflect.DeepEqual(got, labelsJSON(wanted...)) {
			t.Fatalf("updated labels = %v", got)
		}
	})

	t.Run("server error on get never creates", func(t *testing.T) {
		s := newScaleSetFake(t)
		s.getCode = http.StatusInternalServerError
		p, _ := newProvider(t, s.f)
		_, created, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "", "shoes-acme", wanted)
		if err == nil || created {
			t.Fatalf("created=%v err=%v; want an error", created, err)
		}
		if !IsTransient(err) || errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want transient", err)
		}
		if got := s.f.count("GET", scaleSetsPath); got != 2 {
			t.Fatalf("get called %d times, want 2 (RetryMax 1)", got)
		}
		if got := s.f.count("POST", scaleSetsPath); got != 0 {
			t.Fatalf("create called %d times after a failed get, want 0", got)
		}
	})

	t.Run("named runner group", func(t *testing.T) {
		s := newScaleSetFake(t)
		s.groups = []map[string]any{{"id": 9, "name": "gpu pool", "size": 0, "isDefaultGroup": false}}
		p, _ := newProvider(t, s.f)
		if _, _, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "gpu pool", "shoes-acme", wanted); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s.getQuery, []string{"9/shoes-acme"}) {
			t.Fatalf("lookup queries = %v, want group 9", s.getQuery)
		}
	})

	t.Run("missing runner group", func(t *testing.T) {
		s := newScaleSetFake(t)
		p, _ := newProvider(t, s.f)
		_, _, err := p.GetOrCreateScaleSet(testCtx(t), "acme", "nope", "shoes-acme", wanted)
		if !errors.Is(err, ErrRunnerGroupNotFound) {
			t.Fatalf("err = %v, want ErrRunnerGroupNotFound", err)
		}
		if s.f.count("GET", scaleSetsPath)+s.f.count("POST", scaleSetsPath) != 0 {
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
	s := newScaleSetFake(t)
	s.dropLabels = true
	p, _ := newProvider(t, s.f)
	spec := ScaleSetSpec{Scope: "acme", Name: "shoes-acme", Labels: wanted}

	res, err := p.EnsureScaleSet(testCtx(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || !reflect.DeepEqual(res.Labels, []string{"shoes-acme"}) || !reflect.DeepEqual(res.Dropped, []string{"self-hosted", "gpu"}) {
		t.Fatalf("create: %+v; want created, labels [shoes-acme], dropped [self-hosted gpu]", res)
	}
	if got := s.f.count("GET", scaleSetsPath+"/77"); got != 1 {
		t.Fatalf("read back %d times after the create, want 1", got)
	}

	// The next lookup finds the name-only labels. Not knowing what GitHub
	// kept, it updates them (once more, to no avail)...
	s.existing = s.stored
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
	if got := s.f.count("PATCH", scaleSetsPath+"/77"); got != 1 {
		t.Fatalf("labels written %d times, want 1", got)
	}
	// A scale set that has every wanted label reports nothing dropped.
	s.dropLabels = false
	spec.KeptLabels = nil
	if res, err = p.EnsureScaleSet(testCtx(t), spec); err != nil || !res.Updated || res.Dropped != nil {
		t.Fatalf("with labels kept: %+v, %v; want updated, nothing dropped", res, err)
	}
}

func TestScaleSetClientCached(t *testing.T) {
	f := newFake(t)
	p, _ := newProvider(t, f)
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

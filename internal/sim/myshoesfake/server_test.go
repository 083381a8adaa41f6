package myshoesfake

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

type answer struct {
	status int
	ctype  string
	body   string
}

// serve serves a new fake on loopback until the test ends.
func serve(t *testing.T) (*Server, *httptest.Server) {
	s := New(nil)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return s, srv
}

func do(t *testing.T, srv *httptest.Server, method, path, body string) answer {
	t.Helper()
	resp, b := testkit.Fetch(t, method, srv.URL+path, strings.NewReader(body), nil)
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

// Wire details myshoes has and the client depends on.
func TestWireShapes(t *testing.T) {
	s, srv := serve(t)

	// Empty list is the literal null.
	if a := do(t, srv, "GET", "/target", ""); a.status != 200 || a.body != "null\n" || a.ctype != "application/json;charset=utf-8" {
		t.Errorf("empty GET /target = %+v, want 200 null", a)
	}

	tg := s.AddTarget("octocat/hello-world", "large")
	a := do(t, srv, "GET", "/target", "")
	var raw []map[string]any
	if err := json.Unmarshal([]byte(a.body), &raw); err != nil || len(raw) != 1 {
		t.Fatalf("GET /target = %q: %v", a.body, err)
	}
	for _, key := range []string{"id", "scope", "token_expired_at", "resource_type", "provider_url", "status", "status_description", "created_at", "updated_at"} {
		if _, ok := raw[0][key]; !ok {
			t.Errorf("target JSON has no %q: %s", key, a.body)
		}
	}
	if len(raw[0]) != 9 {
		t.Errorf("target JSON has %d keys, want 9: %s", len(raw[0]), a.body)
	}
	if raw[0]["id"] != tg.ID || raw[0]["status"] != "active" || raw[0]["resource_type"] != "large" {
		t.Errorf("target JSON = %v", raw[0])
	}
	if _, err := time.Parse(time.RFC3339, raw[0]["created_at"].(string)); err != nil {
		t.Errorf("created_at is not RFC3339: %v", err)
	}

	tests := []struct {
		method, path string
		want         answer
	}{
		{"GET", "/healthz", answer{200, "application/json;charset=utf-8", `{"health":"ok"}` + "\n"}},
		{"GET", "/target/nope", answer{400, "application/json;charset=utf-8", `{"error":"incorrect target id"}` + "\n"}},
		{"GET", "/target/6f7a1e34-5c1d-4b7e-9a44-0a4f1f2f9b10", answer{500, "application/json;charset=utf-8", `{"error":"datastore read error"}` + "\n"}},
		{"GET", "/nope", answer{404, "text/plain; charset=utf-8", "404 page not found\n"}},
		{"POST", "/healthz", answer{404, "text/plain; charset=utf-8", "404 page not found\n"}},
	}
	for _, tt := range tests {
		if got := do(t, srv, tt.method, tt.path, ""); got != tt.want {
			t.Errorf("%s %s = %+v, want %+v", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestListFilterAndOrder(t *testing.T) {
	s := New(nil)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s.SetTargets([]myshoes.Target{
		{Scope: "old", CreatedAt: base},
		{Scope: "tie-large", ResourceType: "large", CreatedAt: base.Add(time.Hour)},
		{Scope: "tie-nano", ResourceType: "nano", CreatedAt: base.Add(time.Hour)},
		{Scope: "suspended", Status: "suspend", CreatedAt: base.Add(2 * time.Hour)},
		{Scope: "deleted", Status: "deleted", CreatedAt: base.Add(3 * time.Hour)},
		{Scope: "running", Status: "running", CreatedAt: base.Add(4 * time.Hour)},
		{Scope: "error", Status: "error", CreatedAt: base.Add(5 * time.Hour)},
	})
	_, v := s.handleList(nil, nil)
	var got []string
	for _, tg := range v.([]myshoes.Target) {
		got = append(got, tg.Scope)
	}
	if g := strings.Join(got, ","); g != "error,running,tie-nano,tie-large,old" {
		t.Errorf("listed %s", g)
	}
	if n := len(s.Targets()); n != 7 {
		t.Errorf("Targets() has %d, want all 7", n)
	}
}

func TestTargetMutations(t *testing.T) {
	s := New(nil)
	a := s.AddTarget("a", "")
	b := s.AddTarget("b", "small")
	if a.ResourceType != "nano" || a.Status != "active" || a.ID == "" || !b.CreatedAt.After(a.CreatedAt) {
		t.Errorf("AddTarget filled %+v / %+v", a, b)
	}
	if !s.SetStatus(a.ID, "suspend", "paused") || s.SetStatus("missing", "active", "") {
		t.Error("SetStatus reports the wrong existence")
	}
	if !s.RemoveTarget(b.ID) || s.RemoveTarget(b.ID) {
		t.Error("RemoveTarget reports the wrong existence")
	}
	got := s.Targets()
	if len(got) != 1 || got[0].ID != a.ID || got[0].Status != "suspend" || got[0].StatusDescription != "paused" {
		t.Errorf("Targets() = %+v", got)
	}
}

func TestSimRoutes(t *testing.T) {
	s, srv := serve(t)

	const id = "6F7A1E34-5C1D-4B7E-9A44-0A4F1F2F9B10"
	a := do(t, srv, "PUT", "/_sim/targets",
		`[{"id":"`+id+`","scope":"octo-org","resource_type":"micro"},{"scope":"o/r","status":"suspend"}]`)
	if a.status != 200 {
		t.Fatalf("PUT /_sim/targets = %+v", a)
	}
	var all []myshoes.Target
	if err := json.Unmarshal([]byte(do(t, srv, "GET", "/_sim/targets", "").body), &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != strings.ToLower(id) || all[1].ID == "" || all[1].Status != "suspend" || all[1].ResourceType != "nano" {
		t.Errorf("GET /_sim/targets = %+v", all)
	}
	if a := do(t, srv, "GET", "/target/"+id, ""); a.status != 200 || !strings.Contains(a.body, `"scope":"octo-org"`) {
		t.Errorf("GET /target/{id} = %+v", a)
	}

	bad := []string{
		`{"scope":"x"}`,
		`[{"id":"nope","scope":"x"}]`,
		`[{"scope":"x","status":"sleeping"}]`,
		`[{"id":"` + id + `"},{"id":"` + strings.ToLower(id) + `"}]`,
	}
	for _, body := range bad {
		if a := do(t, srv, "PUT", "/_sim/targets", body); a.status != 400 {
			t.Errorf("PUT %s = %d, want 400", body, a.status)
		}
	}
	if n := len(s.Targets()); n != 2 {
		t.Errorf("a rejected PUT changed the targets: %d", n)
	}

	// Faults over HTTP, limited to one request.
	if a := do(t, srv, "POST", "/_sim/myshoes-fault", `{"status":503,"times":1}`); a.status != 204 {
		t.Fatalf("POST fault = %+v", a)
	}
	if a := do(t, srv, "GET", "/target", ""); a.status != 503 {
		t.Errorf("faulted GET /target = %d, want 503", a.status)
	}
	if a := do(t, srv, "GET", "/target", ""); a.status != 200 {
		t.Errorf("GET /target after a one-shot fault = %d", a.status)
	}
	if a := do(t, srv, "POST", "/_sim/myshoes-fault", `{"bogus":true}`); a.status != 400 {
		t.Errorf("unknown fault field = %d, want 400", a.status)
	}
	// The control routes stay up while the API is faulted.
	s.SetFault(Fault{Down: true})
	if a := do(t, srv, "GET", "/_sim/targets", ""); a.status != 200 {
		t.Errorf("GET /_sim/targets during a fault = %d", a.status)
	}
	if n := s.Requests("GET /target"); n != 2 {
		t.Errorf("Requests(GET /target) = %d, want 2", n)
	}
}

func TestFaults(t *testing.T) {
	s, srv := serve(t)
	s.AddTarget("octo-org", "nano")

	get := func() (int, string, error) {
		resp, err := srv.Client().Get(srv.URL + "/target")
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	tests := []struct {
		name    string
		fault   Fault
		status  int
		body    string // exact, when no error
		wantErr bool
	}{
		{"null", Fault{Null: true}, 200, "null\n", false},
		{"status", Fault{Status: 500}, 500, `{"error":"injected fault"}` + "\n", false},
		{"body", Fault{Body: "<html>"}, 200, "<html>", false},
		{"truncate", Fault{Truncate: true}, 200, "", true},
		{"down", Fault{Down: true}, 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.SetFault(tt.fault)
			t.Cleanup(func() { s.SetFault(Fault{}) })
			status, body, err := get()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %d %q, want a transport error", status, body)
				}
				return
			}
			if err != nil || status != tt.status || body != tt.body {
				t.Errorf("got %d %q %v, want %d %q", status, body, err, tt.status, tt.body)
			}
		})
	}
}

func TestOnTargetsChanged(t *testing.T) {
	s, srv := serve(t)
	var calls [][]string
	s.OnTargetsChanged(func(ts []myshoes.Target) {
		var scopes []string
		for _, tg := range ts {
			scopes = append(scopes, tg.Scope)
		}
		calls = append(calls, scopes)
		// The hook runs outside the lock: reading the fake does not deadlock.
		_ = s.Targets()
	})
	s.AddTarget("org-a", "")
	if a := do(t, srv, "PUT", "/_sim/targets", `[{"scope":"org-b"},{"scope":"o/r"}]`); a.status != http.StatusOK {
		t.Fatalf("PUT /_sim/targets = %+v", a)
	}
	s.SetStatus(s.Targets()[0].ID, "suspend", "") // not a change of the set of targets
	want := [][]string{{"org-a"}, {"org-b", "o/r"}}
	if len(calls) != len(want) || strings.Join(calls[0], ",") != "org-a" || strings.Join(calls[1], ",") != "org-b,o/r" {
		t.Fatalf("hook calls %v, want %v", calls, want)
	}
	s.OnTargetsChanged(nil)
	s.AddTarget("org-c", "")
	if len(calls) != 2 {
		t.Fatalf("hook called after removal: %v", calls)
	}
}

package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

type fakeReadiness struct {
	ready bool
	why   []controller.NotReady
}

func (f fakeReadiness) Ready() (bool, []controller.NotReady) { return f.ready, f.why }

type fakeScaleSets struct{ list []controller.ScaleSetStatus }

func (f fakeScaleSets) ScaleSets() ([]controller.ScaleSetStatus, error) { return f.list, nil }

// removeCall is one RemoveRunner call.
type removeCall struct {
	name  string
	force bool
}

// fakeRemover records calls and answers err.
type fakeRemover struct {
	err   error
	mu    sync.Mutex
	calls []removeCall
}

func (f *fakeRemover) RemoveRunner(_ context.Context, name string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, removeCall{name, force})
	return f.err
}

func (f *fakeRemover) Calls() []removeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

var (
	_ httpapi.Readiness = fakeReadiness{}
	_ httpapi.ScaleSets = fakeScaleSets{}
	_ httpapi.Remover   = (*fakeRemover)(nil)
	_ httpapi.Runners   = (*store.Store)(nil)
	_ httpapi.Readiness = (*controller.Controller)(nil)
	_ httpapi.ScaleSets = (*controller.Controller)(nil)
)

// testToken is the API token of the servers serve starts.
const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef"

// serve serves the API with testToken on a loopback port.
func serve(t *testing.T, deps httpapi.Deps) *httptest.Server {
	t.Helper()
	h, err := httpapi.NewHandler(deps, httpapi.Config{Token: testToken, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// do sends a request, with testToken unless it is a GET, and returns the
// status and body.
func do(t *testing.T, method, url string) (int, []byte) {
	t.Helper()
	h := http.Header{}
	if method != http.MethodGet {
		httpapi.SetToken(h, testToken)
	}
	resp, body := testkit.Fetch(t, method, url, nil, h)
	return resp.StatusCode, body
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, body, err)
	}
	return v
}

func TestHealthz(t *testing.T) {
	srv := serve(t, httpapi.Deps{})
	code, body := do(t, http.MethodGet, srv.URL+"/healthz")
	if code != http.StatusOK {
		t.Fatalf("GET /healthz = %d %s, want 200", code, body)
	}
	if got := decode[map[string]string](t, body)["status"]; got != "ok" {
		t.Errorf("status %q, want ok", got)
	}
}

func TestReadyz(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		srv := serve(t, httpapi.Deps{Readiness: fakeReadiness{ready: true}})
		code, body := do(t, http.MethodGet, srv.URL+"/readyz")
		if code != http.StatusOK {
			t.Fatalf("GET /readyz = %d %s, want 200", code, body)
		}
		if got := decode[map[string]any](t, body); len(got) != 1 || got["status"] != "ready" {
			t.Errorf("body %s, want {\"status\":\"ready\"}", body)
		}
	})
	t.Run("not ready", func(t *testing.T) {
		why := []controller.NotReady{
			{Reason: "no successful read of the myshoes target list yet"},
			{Target: "target-1", Scope: "org/acme", Reason: "no message session"},
		}
		srv := serve(t, httpapi.Deps{Readiness: fakeReadiness{why: why}})
		code, body := do(t, http.MethodGet, srv.URL+"/readyz")
		if code != http.StatusServiceUnavailable {
			t.Fatalf("GET /readyz = %d %s, want 503", code, body)
		}
		got := decode[httpapi.ReadyResponse](t, body)
		if got.Status != "not ready" || !slices.Equal(got.NotReady, why) {
			t.Errorf("body %+v, want status \"not ready\" and %+v", got, why)
		}
		raw := decode[struct {
			NotReady []map[string]string `json:"not_ready"`
		}](t, body)
		if len(raw.NotReady) != 2 || raw.NotReady[1]["target"] != "target-1" || raw.NotReady[1]["scope"] != "org/acme" || raw.NotReady[1]["reason"] != "no message session" {
			t.Errorf("not_ready %v does not name target-1 with its scope and reason", raw.NotReady)
		}
	})
	t.Run("no readiness", func(t *testing.T) {
		srv := serve(t, httpapi.Deps{})
		if code, _ := do(t, http.MethodGet, srv.URL+"/readyz"); code != http.StatusNotFound {
			t.Errorf("GET /readyz without Readiness = %d, want 404", code)
		}
	})
}

func TestRunnersFilters(t *testing.T) {
	st, err := store.Open(store.Options{Path: filepath.Join(t.TempDir(), "state.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for _, r := range []store.Runner{
		{Name: "a-idle", Scope: "org/a", State: store.StateIdle},
		{Name: "a-busy", Scope: "org/a", State: store.StateBusy},
		{Name: "b-idle", Scope: "org/b", State: store.StateIdle},
	} {
		if err := st.CreateRunner(r); err != nil {
			t.Fatal(err)
		}
	}
	srv := serve(t, httpapi.Deps{Runners: st})

	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"a-busy", "a-idle", "b-idle"}},
		{"?scope=org/a", []string{"a-busy", "a-idle"}},
		{"?state=idle", []string{"a-idle", "b-idle"}},
		{"?scope=org/a&state=idle", []string{"a-idle"}},
		{"?scope=org/c", []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			code, body := do(t, http.MethodGet, srv.URL+"/api/v1/runners"+tc.query)
			if code != http.StatusOK {
				t.Fatalf("GET = %d %s", code, body)
			}
			resp := decode[httpapi.RunnersResponse](t, body)
			if resp.Runners == nil {
				t.Fatalf("runners is null, want a list: %s", body)
			}
			var got []string
			for _, r := range resp.Runners {
				got = append(got, r.Name)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("runners %v, want %v", got, tc.want)
			}
		})
	}
}

func TestScaleSets(t *testing.T) {
	srv := serve(t, httpapi.Deps{ScaleSets: fakeScaleSets{list: []controller.ScaleSetStatus{{TargetID: "t1", ScaleSet: "linux"}}}})
	code, body := do(t, http.MethodGet, srv.URL+"/api/v1/scalesets")
	if code != http.StatusOK {
		t.Fatalf("GET = %d %s", code, body)
	}
	if got := decode[httpapi.ScaleSetsResponse](t, body).ScaleSets; len(got) != 1 || got[0].ScaleSet != "linux" {
		t.Errorf("scale sets %+v, want linux", got)
	}
}

func TestRemoveRunner(t *testing.T) {
	tests := []struct {
		name      string
		query     string
		err       error
		wantCode  int
		wantCall  *removeCall
		wantError string
	}{
		{name: "removed", err: nil, wantCode: http.StatusAccepted, wantCall: &removeCall{"r1", false}},
		{name: "forced", query: "?force=true", wantCode: http.StatusAccepted, wantCall: &removeCall{"r1", true}},
		{name: "not forced", query: "?force=false", wantCode: http.StatusAccepted, wantCall: &removeCall{"r1", false}},
		{name: "not found", err: fmt.Errorf("remove runner %q: %w", "r1", store.ErrNotFound), wantCode: http.StatusNotFound, wantCall: &removeCall{"r1", false}, wantError: "not found"},
		{name: "failure", query: "?force=true", err: errors.New("plugin unavailable"), wantCode: http.StatusInternalServerError, wantCall: &removeCall{"r1", true}, wantError: "plugin unavailable"},
		{name: "bad force", query: "?force=maybe", wantCode: http.StatusBadRequest, wantError: "force"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rm := &fakeRemover{err: tc.err}
			srv := serve(t, httpapi.Deps{Remover: rm})
			code, body := do(t, http.MethodPost, srv.URL+"/api/v1/runners/r1/remove"+tc.query)
			if code != tc.wantCode {
				t.Fatalf("POST = %d %s, want %d", code, body, tc.wantCode)
			}
			calls := rm.Calls()
			switch {
			case tc.wantCall == nil && len(calls) != 0:
				t.Errorf("RemoveRunner called %v, want no call", calls)
			case tc.wantCall != nil && !slices.Equal(calls, []removeCall{*tc.wantCall}):
				t.Errorf("RemoveRunner calls %v, want [%v]", calls, *tc.wantCall)
			}
			if tc.wantError != "" {
				if got := decode[httpapi.ErrorResponse](t, body).Error; !strings.Contains(got, tc.wantError) {
					t.Errorf("error %q, want it to contain %q", got, tc.wantError)
				}
				return
			}
			got := decode[httpapi.RemoveResponse](t, body)
			if got.Runner != "r1" || got.Force != tc.wantCall.force {
				t.Errorf("body %+v, want runner r1 force %v", got, tc.wantCall.force)
			}
		})
	}

	t.Run("GET is not allowed", func(t *testing.T) {
		rm := &fakeRemover{}
		srv := serve(t, httpapi.Deps{Remover: rm})
		if code, _ := do(t, http.MethodGet, srv.URL+"/api/v1/runners/r1/remove"); code != http.StatusMethodNotAllowed {
			t.Errorf("GET = %d, want 405", code)
		}
		if len(rm.Calls()) != 0 {
			t.Errorf("RemoveRunner called on GET")
		}
	})
	t.Run("no remover", func(t *testing.T) {
		srv := serve(t, httpapi.Deps{})
		if code, _ := do(t, http.MethodPost, srv.URL+"/api/v1/runners/r1/remove"); code != http.StatusNotFound {
			t.Errorf("POST without Remover = %d, want 404", code)
		}
	})
}

func TestMetrics(t *testing.T) {
	t.Run("served from the gatherer", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_requests_total", Help: "test"})
		reg.MustRegister(c)
		c.Add(3)
		srv := serve(t, httpapi.Deps{Gatherer: reg})
		code, body := do(t, http.MethodGet, srv.URL+"/metrics")
		if code != http.StatusOK || !strings.Contains(string(body), "test_requests_total 3") {
			t.Errorf("GET /metrics = %d\n%s\nwant 200 with test_requests_total 3", code, body)
		}
	})
	t.Run("no gatherer", func(t *testing.T) {
		srv := serve(t, httpapi.Deps{})
		if code, _ := do(t, http.MethodGet, srv.URL+"/metrics"); code != http.StatusNotFound {
			t.Errorf("GET /metrics without Gatherer = %d, want 404", code)
		}
	})
}

package myshoes_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/myshoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// newFake starts the fake myshoes on loopback and a client for it.
func newFake(t *testing.T, cfg myshoes.Config) (*myshoesfake.Server, *myshoes.Client) {
	t.Helper()
	fake := myshoesfake.New(nil)
	srv := httptest.NewServer(fake.Handler())
	t.Cleanup(srv.Close)
	cfg.BaseURL = srv.URL
	c, err := myshoes.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return fake, c
}

func scopes(ts []myshoes.Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Scope
	}
	return out
}

func TestListTargets(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(*myshoesfake.Server)
		cfg        myshoes.Config
		wantScopes []string // nil with wantErr
		wantErr    string   // substring; "" = no error
		wantStatus int      // APIError status, when an error
	}{
		{
			name: "three targets newest first",
			setup: func(f *myshoesfake.Server) {
				f.AddTarget("octo-org", "nano")
				f.AddTarget("other-org", "large")
				f.AddTarget("octocat/hello-world", "2xlarge")
			},
			wantScopes: []string{"octocat/hello-world", "other-org", "octo-org"},
		},
		{
			name:       "null is an empty list",
			setup:      func(*myshoesfake.Server) {},
			wantScopes: []string{},
		},
		{
			name: "only active running and error are listed",
			setup: func(f *myshoesfake.Server) {
				for _, st := range []string{"active", "suspend", "running", "deleted", "error"} {
					tg := f.AddTarget("org-"+st, "small")
					f.SetStatus(tg.ID, st, "")
				}
			},
			wantScopes: []string{"org-error", "org-running", "org-active"},
		},
		{
			name: "null fault with targets present",
			setup: func(f *myshoesfake.Server) {
				f.AddTarget("octo-org", "nano")
				f.SetFault(myshoesfake.Fault{Null: true})
			},
			wantScopes: []string{},
		},
		{
			name: "500 is an error",
			setup: func(f *myshoesfake.Server) {
				f.AddTarget("octo-org", "nano")
				f.SetFault(myshoesfake.Fault{Status: http.StatusInternalServerError})
			},
			wantErr:    "status 500",
			wantStatus: 500,
		},
		{
			name: "truncated body is an error",
			setup: func(f *myshoesfake.Server) {
				f.AddTarget("octo-org", "nano")
				f.AddTarget("octocat/hello-world", "nano")
				f.SetFault(myshoesfake.Fault{Truncate: true})
			},
			wantErr: "unexpected EOF",
		},
		{
			name:    "truncated null is an error",
			setup:   func(f *myshoesfake.Server) { f.SetFault(myshoesfake.Fault{Null: true, Truncate: true}) },
			wantErr: "list targets",
		},
		{
			name:    "non-JSON body is an error",
			setup:   func(f *myshoesfake.Server) { f.SetFault(myshoesfake.Fault{Body: "datastore is on fire"}) },
			wantErr: "decode",
		},
		{
			name: "HTML content type is an error",
			setup: func(f *myshoesfake.Server) {
				f.SetFault(myshoesfake.Fault{Body: "[]", ContentType: "text/html; charset=utf-8"})
			},
			wantErr: "not JSON",
		},
		{
			name:    "empty body is an error",
			setup:   func(f *myshoesfake.Server) { f.SetFault(myshoesfake.Fault{Body: " "}) },
			wantErr: "decode",
		},
		{
			name:    "object instead of array is an error",
			setup:   func(f *myshoesfake.Server) { f.SetFault(myshoesfake.Fault{Body: `{"targets":[]}`}) },
			wantErr: "decode",
		},
		{
			name:    "array of numbers is an error",
			setup:   func(f *myshoesfake.Server) { f.SetFault(myshoesfake.Fault{Body: `[1,2]`}) },
			wantErr: "decode",
		},
		{
			name:    "target without id is an error",
			setup:   func(f *myshoesfake.Server) { f.SetFault(myshoesfake.Fault{Body: `[{"scope":"org"}]`}) },
			wantErr: "has no id",
		},
		{
			name: "duplicate id is an error",
			setup: func(f *myshoesfake.Server) {
				f.SetFault(myshoesfake.Fault{Body: `[{"id":"a","scope":"org"},{"id":"a","scope":"org2"}]`})
			},
			wantErr: "appears twice",
		},
		{
			name:    "trailing garbage is an error",
			setup:   func(f *myshoesfake.Server) { f.SetFault(myshoesfake.Fault{Body: `[] []`}) },
			wantErr: "decode",
		},
		{
			name:    "refused connection is an error",
			setup:   func(f *myshoesfake.Server) { f.SetFault(myshoesfake.Fault{Down: true}) },
			wantErr: "/target",
		},
		{
			name: "body over the limit is an error",
			setup: func(f *myshoesfake.Server) {
				for range 20 {
					f.AddTarget("octo-org", "nano")
				}
			},
			cfg:     myshoes.Config{MaxBodyBytes: 1024},
			wantErr: "exceeds 1024 bytes",
		},
		{
			name: "invalid scopes are returned for the caller to judge",
			setup: func(f *myshoesfake.Server) {
				f.AddTarget("", "nano")
				f.AddTarget("bad scope!", "nano")
			},
			wantScopes: []string{"bad scope!", ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, c := newFake(t, tt.cfg)
			tt.setup(fake)
			got, err := c.ListTargets(t.Context())
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ListTargets = %v, want error containing %q", scopes(got), tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("got targets %v with an error", got)
				}
				var apiErr *myshoes.APIError
				if gotAPI := errors.As(err, &apiErr); gotAPI != (tt.wantStatus != 0) {
					t.Errorf("errors.As(APIError) = %v, want %v (err %v)", gotAPI, tt.wantStatus != 0, err)
				} else if gotAPI && apiErr.StatusCode != tt.wantStatus {
					t.Errorf("APIError.StatusCode = %d, want %d", apiErr.StatusCode, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatalf("ListTargets: %v", err)
			}
			if got == nil {
				t.Fatal("ListTargets returned a nil slice, want non-nil")
			}
			if g := scopes(got); strings.Join(g, ",") != strings.Join(tt.wantScopes, ",") || len(g) != len(tt.wantScopes) {
				t.Errorf("scopes = %q, want %q", g, tt.wantScopes)
			}
		})
	}
}

func TestListTargetsFields(t *testing.T) {
	fake, c := newFake(t, myshoes.Config{})
	org := fake.AddTarget("octo-org", "xlarge")
	repo := fake.AddTarget("octocat/hello-world", "4xlarge")
	fake.SetStatus(repo.ID, myshoes.StatusError, "github app is not installed")

	got, err := c.ListTargets(t.Context())
	if err != nil {
		t.Fatalf("ListTargets: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d targets, want 2", len(got))
	}
	r, o := got[0], got[1]
	if r.ID != repo.ID || o.ID != org.ID {
		t.Errorf("ids = %s, %s; want %s, %s", r.ID, o.ID, repo.ID, org.ID)
	}
	if !r.IsRepo() || r.Owner() != "octocat" || r.Repo() != "hello-world" {
		t.Errorf("repo target: IsRepo=%v Owner=%q Repo=%q", r.IsRepo(), r.Owner(), r.Repo())
	}
	if o.IsRepo() || o.Owner() != "octo-org" || o.Repo() != "" {
		t.Errorf("org target: IsRepo=%v Owner=%q Repo=%q", o.IsRepo(), o.Owner(), o.Repo())
	}
	if r.Status != "error" || r.StatusDescription != "github app is not installed" {
		t.Errorf("status = %q %q", r.Status, r.StatusDescription)
	}
	if r.ResourceTypeValue() != myshoes.ResourceTypeXLarge4 || o.ResourceTypeValue() != myshoes.ResourceTypeXLarge {
		t.Errorf("resource types = %v, %v", r.ResourceTypeValue(), o.ResourceTypeValue())
	}
	if !r.CreatedAt.After(o.CreatedAt) || r.TokenExpiredAt.IsZero() || o.UpdatedAt.IsZero() {
		t.Errorf("times: created %v / %v, token expiry %v, updated %v", r.CreatedAt, o.CreatedAt, r.TokenExpiredAt, o.UpdatedAt)
	}
	for _, tg := range got {
		if err := tg.Validate(); err != nil {
			t.Errorf("Validate(%s): %v", tg.Scope, err)
		}
	}
}

// A caller keeps its last good list through a fault and picks up the new
// one as soon as myshoes answers again.
func TestListTargetsRecoversAfterFault(t *testing.T) {
	fake, c := newFake(t, myshoes.Config{})
	fake.AddTarget("octo-org", "nano")
	fake.SetFault(myshoesfake.Fault{Status: http.StatusBadGateway, Times: 2})
	for i := range 2 {
		if _, err := c.ListTargets(t.Context()); err == nil {
			t.Fatalf("call %d: want the injected 502", i+1)
		}
	}
	got, err := c.ListTargets(t.Context())
	if err != nil {
		t.Fatalf("after the fault: %v", err)
	}
	if len(got) != 1 || got[0].Scope != "octo-org" {
		t.Errorf("got %q", scopes(got))
	}
	if n := fake.Requests("GET /target"); n != 3 {
		t.Errorf("fake served %d list requests, want 3", n)
	}
}

func TestErrorBodyIsTruncated(t *testing.T) {
	huge := strings.Repeat("x", 100_000)
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"200 with a text body", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte(huge))
		}},
		{"500 with a huge body", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(huge))
		}},
		{"500 with a huge JSON error", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":"` + huge[:3000] + `"}`))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			c, err := myshoes.New(myshoes.Config{BaseURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.ListTargets(t.Context())
			if err == nil {
				t.Fatal("want an error")
			}
			if len(err.Error()) > 600 {
				t.Errorf("error is %d bytes long, want a truncated body", len(err.Error()))
			}
			if !strings.Contains(err.Error(), "(truncated)") || !strings.Contains(err.Error(), srv.URL+"/target") {
				t.Errorf("error %q does not name the URL and say it is truncated", err)
			}
		})
	}
}

func TestGetTarget(t *testing.T) {
	fake, c := newFake(t, myshoes.Config{})
	tg := fake.AddTarget("octocat/hello-world", "medium")
	fake.SetStatus(tg.ID, myshoes.StatusSuspend, "")

	tests := []struct {
		name       string
		id         string
		wantStatus int
		wantMsg    string
	}{
		{name: "found, any status", id: tg.ID},
		{name: "found, upper case id", id: strings.ToUpper(tg.ID)},
		{name: "malformed id is 400", id: "not-a-uuid", wantStatus: 400, wantMsg: "incorrect target id"},
		{name: "unknown id is 500", id: "3f1b7e7a-0000-4000-8000-000000000000", wantStatus: 500, wantMsg: "datastore read error"},
		{name: "id with a slash stays one segment", id: "a/b", wantStatus: 400, wantMsg: "incorrect target id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.GetTarget(t.Context(), tt.id)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("GetTarget: %v", err)
				}
				if got.ID != tg.ID || got.Status != "suspend" || got.Scope != "octocat/hello-world" {
					t.Errorf("got %+v", got)
				}
				return
			}
			var apiErr *myshoes.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v, want an *APIError", err)
			}
			if apiErr.StatusCode != tt.wantStatus || apiErr.Message != tt.wantMsg {
				t.Errorf("APIError = %d %q, want %d %q", apiErr.StatusCode, apiErr.Message, tt.wantStatus, tt.wantMsg)
			}
			if !strings.Contains(err.Error(), "/target/") {
				t.Errorf("error %q does not name the URL", err)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	fake, c := newFake(t, myshoes.Config{})
	if err := c.Health(t.Context()); err != nil {
		t.Fatalf("Health: %v", err)
	}
	fake.SetFault(myshoesfake.Fault{Down: true})
	if err := c.Health(t.Context()); err == nil {
		t.Fatal("Health with myshoes down: want an error")
	}
}

// The combined sim mounts the fake under /myshoes.
func TestPrefixMount(t *testing.T) {
	fake := myshoesfake.New(nil)
	mux := http.NewServeMux()
	mux.Handle("/myshoes/", http.StripPrefix("/myshoes", fake.Handler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	// Drive the fake through its own HTTP control route under the prefix.
	resp, _ := testkit.Fetch(t, http.MethodPut, srv.URL+"/myshoes/_sim/targets",
		strings.NewReader(`[{"scope":"octo-org","resource_type":"nano"},{"scope":"octocat/hello-world","resource_type":"large","status":"running"}]`), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT _sim/targets: status %d", resp.StatusCode)
	}

	for _, base := range []string{srv.URL + "/myshoes", srv.URL + "/myshoes/"} {
		c, err := myshoes.New(myshoes.Config{BaseURL: base})
		if err != nil {
			t.Fatalf("New(%s): %v", base, err)
		}
		got, err := c.ListTargets(t.Context())
		if err != nil {
			t.Fatalf("ListTargets(%s): %v", base, err)
		}
		if g := strings.Join(scopes(got), ","); g != "octocat/hello-world,octo-org" {
			t.Errorf("ListTargets(%s) = %s", base, g)
		}
		one, err := c.GetTarget(t.Context(), got[0].ID)
		if err != nil || one.ID != got[0].ID {
			t.Errorf("GetTarget(%s) = %+v, %v", base, one, err)
		}
	}
	// Without the prefix there is no myshoes.
	c, err := myshoes.New(myshoes.Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	var apiErr *myshoes.APIError
	if _, err := c.ListTargets(t.Context()); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Errorf("ListTargets without prefix: %v, want a 404 APIError", err)
	}
}

func TestClientHeadersAndTimeout(t *testing.T) {
	gotUA := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case gotUA <- r.Header.Get("User-Agent"):
		default:
		}
		if r.URL.Path == "/slow/target" {
			<-r.Context().Done() // answer never comes; the client gives up
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("null"))
	}))
	t.Cleanup(srv.Close)

	c, err := myshoes.New(myshoes.Config{BaseURL: srv.URL, UserAgent: "test-agent/1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListTargets(t.Context()); err != nil {
		t.Fatalf("ListTargets: %v", err)
	}
	if ua := <-gotUA; ua != "test-agent/1" {
		t.Errorf("User-Agent = %q", ua)
	}

	slow, err := myshoes.New(myshoes.Config{BaseURL: srv.URL + "/slow", Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = slow.ListTargets(t.Context())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow ListTargets: %v, want deadline exceeded", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg     myshoes.Config
		wantErr bool
	}{
		{myshoes.Config{BaseURL: "http://127.0.0.1:8080"}, false},
		{myshoes.Config{BaseURL: "https://myshoes.example.com/api/"}, false},
		{myshoes.Config{BaseURL: "http://127.0.0.1:8080/myshoes"}, false},
		{myshoes.Config{BaseURL: ""}, true},
		{myshoes.Config{BaseURL: "127.0.0.1:8080"}, true},
		{myshoes.Config{BaseURL: "/target"}, true},
		{myshoes.Config{BaseURL: "ftp://host"}, true},
		{myshoes.Config{BaseURL: "http://"}, true},
		{myshoes.Config{BaseURL: "http://user:secret@host"}, true},
		{myshoes.Config{BaseURL: "http://host/?x=1"}, true},
		{myshoes.Config{BaseURL: "http://host", Timeout: -time.Second}, true},
		{myshoes.Config{BaseURL: "http://host", MaxBodyBytes: -1}, true},
	}
	for _, tt := range tests {
		_, err := myshoes.New(tt.cfg)
		if (err != nil) != tt.wantErr {
			t.Errorf("New(%+v) err = %v, wantErr %v", tt.cfg, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}

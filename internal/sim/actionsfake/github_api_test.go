package actionsfake

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestGitHubAPI(t *testing.T) {
	f := newFake(t, nil)
	jwtAuth := "Bearer " + goodAppJWT(t)
	idA := f.installationID(t, "org-a")
	if again := f.installationID(t, "org-a"); again != idA {
		t.Fatalf("installation id changed: %d then %d", idA, again)
	}
	idB := f.installationID(t, "org-b")
	token := func(id int64) string {
		var tok tokenJSON
		if st := call(t, "POST", fmt.Sprintf("%s/api/v3/app/installations/%d/access_tokens", f.url, id), jwtAuth, nil, &tok); st != http.StatusCreated {
			t.Fatalf("access token: status %d", st)
		}
		if tok.Token == "" || !tok.ExpiresAt.After(time.Now()) {
			t.Fatalf("access token %+v", tok)
		}
		return "Bearer " + tok.Token
	}
	tokA := token(idA)

	tests := []struct {
		name, method, path, auth string
		body                     any
		want                     int
	}{
		{"repo installation", "GET", "/api/v3/repos/org-a/repo/installation", jwtAuth, nil, http.StatusOK},
		{"uninstalled org", "GET", "/api/v3/orgs/not-installed/installation", jwtAuth, nil, http.StatusNotFound},
		{"installation without jwt", "GET", "/api/v3/orgs/org-a/installation", "", nil, http.StatusUnauthorized},
		{"unknown installation", "POST", "/api/v3/app/installations/424242/access_tokens", jwtAuth, nil, http.StatusNotFound},
		{"org registration token", "POST", "/api/v3/orgs/org-a/actions/runners/registration-token", tokA, nil, http.StatusCreated},
		{"repo registration token", "POST", "/api/v3/repos/org-a/r/actions/runners/registration-token", tokA, nil, http.StatusCreated},
		{"other org's installation", "POST", "/api/v3/orgs/org-b/actions/runners/registration-token", tokA, nil, http.StatusForbidden},
		{"enterprise with PAT", "POST", "/api/v3/enterprises/ent/actions/runners/registration-token", "Bearer test-pat", nil, http.StatusCreated},
		{"bad token", "POST", "/api/v3/orgs/org-a/actions/runners/registration-token", "Bearer nope", nil, http.StatusUnauthorized},
		{"repo downloads", "GET", "/api/v3/repos/org-a/r/actions/runners/downloads", tokA, nil, http.StatusOK},
		{"registration without token", "POST", "/api/v3/actions/runner-registration", "RemoteAuth nope",
			map[string]string{"url": f.url + "/org-a", "runner_event": "register"}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw json.RawMessage
			got := call(t, tt.method, f.url+tt.path, tt.auth, tt.body, &raw)
			if got != tt.want {
				t.Fatalf("status %d, want %d (%s)", got, tt.want, raw)
			}
			var e githubError
			if got >= 400 && (json.Unmarshal(raw, &e) != nil || e.Message == "") {
				t.Fatalf("error without a message: %s", raw)
			}
		})
	}

	var list []installationJSON
	if st := call(t, "GET", f.url+"/api/v3/app/installations", jwtAuth, nil, &list); st != http.StatusOK || len(list) != 2 ||
		list[0].ID != idA || list[1].ID != idB || list[1].Account.Login != "org-b" || list[0].AppID != testAppID {
		t.Fatalf("installations: status %d, %+v", st, list)
	}

	var downloads []downloadJSON
	if st := call(t, "GET", f.url+"/api/v3/orgs/org-a/actions/runners/downloads", "Bearer test-pat", nil, &downloads); st != http.StatusOK || len(downloads) != 4 {
		t.Fatalf("downloads: status %d, %+v", st, downloads)
	}
	d := downloads[0]
	if d.OS != "linux" || d.Architecture != "x64" || d.Filename != "actions-runner-linux-x64-2.330.0.tar.gz" ||
		d.DownloadURL != "https://github.com/actions/runner/releases/download/v2.330.0/actions-runner-linux-x64-2.330.0.tar.gz" {
		t.Fatalf("download %+v", d)
	}

	// A registration token works only for its own scope.
	var rt tokenJSON
	if st := call(t, "POST", f.url+"/api/v3/orgs/org-a/actions/runners/registration-token", tokA, nil, &rt); st != http.StatusCreated {
		t.Fatalf("registration token: %d", st)
	}
	var e githubError
	body := map[string]string{"url": f.url + "/org-b", "runner_event": "register"}
	if st := call(t, "POST", f.url+"/api/v3/actions/runner-registration", "RemoteAuth "+rt.Token, body, &e); st != http.StatusForbidden {
		t.Fatalf("registration for another scope: %d %+v", st, e)
	}

	// The admin token carries the scope; without api-version the service refuses.
	admin := "Bearer " + f.adminToken(t, "org-a")
	if st := call(t, "GET", f.url+"/_actions/_apis/runtime/runnergroups/?groupName=default", admin, nil, nil); st != http.StatusBadRequest {
		t.Fatalf("without api-version: status %d", st)
	}
	f.requireViolation(t, ViolationMissingAPIVersion)
	if st := call(t, "GET", f.actionsURL("_apis/runtime/runnergroups/"), "Bearer "+strings.Repeat("x", 20), nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("bad admin token: status %d", st)
	}
}

func TestAdminTokenExpiry(t *testing.T) {
	var skew atomic.Int64
	f := newFake(t, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	admin := "Bearer " + f.adminToken(t, "org-a")
	if st := call(t, "GET", f.actionsURL("_apis/runtime/runnergroups/"), admin, nil, nil); st != http.StatusOK {
		t.Fatalf("fresh admin token: status %d", st)
	}
	skew.Store(int64(2 * time.Hour))
	if st := call(t, "GET", f.actionsURL("_apis/runtime/runnergroups/"), admin, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("expired admin token: status %d", st)
	}
}

func TestConfigValidate(t *testing.T) {
	key := &rsa.PublicKey{}
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"app", Config{AppID: 1, AppPublicKey: key}, true},
		{"client id only", Config{ClientID: "Iv1.x", AppPublicKey: key}, true},
		{"pat only", Config{Tokens: []string{"t"}}, true},
		{"no auth", Config{}, false},
		{"key without id", Config{AppPublicKey: key}, false},
		{"empty pat", Config{Tokens: []string{""}}, false},
		{"negative hold", Config{Tokens: []string{"t"}, PollHold: -1}, false},
		{"negative reoffer", Config{Tokens: []string{"t"}, ReofferInterval: -1}, false},
		{"sessions never expire", Config{Tokens: []string{"t"}, SessionTTL: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%t", err, tt.ok)
			}
			if tt.ok && (tt.cfg.PollHold != 50*time.Second || tt.cfg.RunnerVersion != "2.330.0" || tt.cfg.MaxAssignAttempts != 3 ||
				tt.cfg.ReofferInterval != 30*time.Second || tt.cfg.SessionTTL == 0) {
				t.Fatalf("defaults not applied: %+v", tt.cfg)
			}
			if wantTTL := 10 * time.Minute; tt.ok && tt.cfg.SessionTTL != wantTTL && tt.name != "sessions never expire" {
				t.Fatalf("SessionTTL = %v, want %v", tt.cfg.SessionTTL, wantTTL)
			}
		})
	}
}

// GET /app/installations lists the owners installed from the start and
// those installed since, before anyone looked them up; never an uninstalled one.
func TestInstallations(t *testing.T) {
	f := newFake(t, func(c *Config) { c.Installations = []string{"org-x", "not-installed", "Org-X"} })
	list := func() []string {
		t.Helper()
		var out []installationJSON
		if st := call(t, "GET", f.url+"/api/v3/app/installations", "Bearer "+goodAppJWT(t), nil, &out); st != http.StatusOK {
			t.Fatalf("list installations: status %d", st)
		}
		var owners []string
		for _, in := range out {
			owners = append(owners, in.Account.Login)
		}
		return owners
	}
	if got := list(); !slices.Equal(got, []string{"org-x"}) {
		t.Fatalf("installations %v, want [org-x]", got)
	}
	f.srv.Install("org-y", "not-installed", "org-x")
	if got := list(); !slices.Equal(got, []string{"org-x", "org-y"}) {
		t.Fatalf("installations %v, want [org-x org-y]", got)
	}
	if id, ok := f.srv.InstallationID("org-y"); !ok || id != f.installationID(t, "org-y") {
		t.Fatalf("InstallationID(org-y) = %d, %t", id, ok)
	}
}

package github

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

func TestInstallationIDByScope(t *testing.T) {
	tests := []struct {
		scope string
		path  string
	}{
		{"acme", "/api/v3/orgs/acme/installation"},
		{"acme/widgets", "/api/v3/repos/acme/widgets/installation"},
		{"/acme/widgets/", "/api/v3/repos/acme/widgets/installation"},
	}
	for _, tt := range tests {
		t.Run(tt.scope, func(t *testing.T) {
			f, p := newFakeProvider(t)
			ctx := testCtx(t)

			want := f.installationID(t, "acme")
			id, err := p.InstallationID(ctx, tt.scope)
			if err != nil || id != want {
				t.Fatalf("InstallationID = %d, %v; want %d", id, err, want)
			}
			if got := f.count("GET", tt.path); got != 1 {
				t.Fatalf("%s called %d times, want 1", tt.path, got)
			}
			before := f.total()
			if id, err := p.InstallationID(ctx, tt.scope); err != nil || id != want {
				t.Fatalf("cached InstallationID = %d, %v", id, err)
			}
			if f.total() != before {
				t.Fatalf("second lookup made %d requests, want 0", f.total()-before)
			}
		})
	}
}

func TestInstallationIDOutcomes(t *testing.T) {
	const path = "/api/v3/orgs/acme/installation"
	tests := []struct {
		name      string
		status    int
		times     int // of the fault; 0: every request
		wantIs    error
		transient bool
		requests  int
	}{
		{"not installed", http.StatusNotFound, 0, ErrNotInstalled, false, 1},
		{"bad key", http.StatusUnauthorized, 0, ErrUnauthorized, false, 1},
		{"server error", http.StatusBadGateway, 0, nil, true, 2}, // RetryMax 1
		{"server error once", http.StatusInternalServerError, 1, nil, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.fault(t, actionsfake.Fault{Match: "GET " + path, Status: tt.status, Times: tt.times})
			p, _ := newProvider(t, f)

			id, err := p.InstallationID(testCtx(t), "acme")
			if got := f.count("GET", path); got != tt.requests {
				t.Errorf("requests = %d, want %d", got, tt.requests)
			}
			if tt.times > 0 { // retried, then answered
				if want := f.installationID(t, "acme"); err != nil || id != want {
					t.Fatalf("InstallationID = %d, %v; want %d after one retry", id, err, want)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, s := range []error{ErrNotInstalled, ErrUnauthorized} {
				if want := s == tt.wantIs; errors.Is(err, s) != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, s, !want, want)
				}
			}
			if IsTransient(err) != tt.transient {
				t.Errorf("IsTransient(%v) = %v, want %v", err, !tt.transient, tt.transient)
			}
		})
	}
}

func TestAppJWTFromKeyFormats(t *testing.T) {
	tests := []struct {
		name   string
		key    func(t *testing.T) []byte
		wantOK bool
	}{
		{"pkcs1", func(t *testing.T) []byte { _, p := testkit.SharedKey(t); return p }, true},
		{"pkcs8", func(t *testing.T) []byte { return pemPKCS8(t, testKey(t)) }, true},
		{"wrong key", func(t *testing.T) []byte { _, p := testkit.Key(t); return p }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			p, _ := newProvider(t, f, func(c *Config) { c.PrivateKeyPEM = tt.key(t) })
			ctx := testCtx(t)

			_, err := p.InstallationID(ctx, "acme")
			if tt.wantOK != (err == nil) {
				t.Fatalf("InstallationID err = %v, want ok=%v", err, tt.wantOK)
			}
			if !tt.wantOK {
				if !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("err = %v, want ErrUnauthorized", err)
				}
				return
			}
			// The installation token request is signed the same way.
			if _, err := p.adminConn(ctx, mustScope(t, "acme")); err != nil {
				t.Fatalf("adminConn: %v", err)
			}
			for _, route := range []string{"GET /api/v3/orgs/{owner}/installation", "POST /api/v3/app/installations/{id}/access_tokens"} {
				if reqs := f.srv.Requests(route); len(reqs) != 1 || reqs[0].Status >= 300 {
					t.Fatalf("%s: %+v, want one request the fake accepted the app JWT of", route, reqs)
				}
			}
		})
	}
}

// TestInstallationIDEnterprise: an enterprise's installation is found in
// the app's installations by the account's slug; the actionsfake lists
// accounts by login only, so the list is local.
func TestInstallationIDEnterprise(t *testing.T) {
	f := newFake(t)
	f.route("GET /api/v3/app/installations", func(w http.ResponseWriter, r *http.Request) {
		if rec := f.answer(r); rec.Code != http.StatusOK { // the fake checks the app JWT
			w.WriteHeader(rec.Code)
			return
		}
		writeJSON(w, http.StatusOK, []map[string]any{
			{"id": 1, "account": map[string]any{"login": "someorg"}, "target_type": "Organization"},
			{"id": 99, "account": map[string]any{"slug": "big-corp", "name": "Big Corp"}, "target_type": "Enterprise"},
		})
	})
	p, _ := newProvider(t, f)
	ctx := testCtx(t)
	if id, err := p.InstallationID(ctx, "enterprises/big-corp"); err != nil || id != 99 {
		t.Fatalf("InstallationID = %d, %v; want 99", id, err)
	}
	if _, err := p.InstallationID(ctx, "enterprises/nobody"); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("unknown enterprise: err = %v, want ErrNotInstalled", err)
	}
}

func TestAdminConnChainAndCache(t *testing.T) {
	f, p := newFakeProvider(t)
	ctx := testCtx(t)
	sc := mustScope(t, "acme")

	chain := [][2]string{
		{"GET", "/api/v3/orgs/acme/installation"},
		{"POST", f.accessTokensPath(t, "acme")},
		{"POST", "/api/v3/orgs/acme/actions/runners/registration-token"},
		{"POST", registrationPath},
	}
	for i := 0; i < 3; i++ {
		c, err := p.adminConn(ctx, sc)
		if err != nil {
			t.Fatalf("adminConn #%d: %v", i, err)
		}
		if c.url != f.url+"/_actions/" || !f.adminWorks(t, c.token) {
			t.Fatalf("adminConn = %q (token works=%v)", c.url, f.adminWorks(t, c.token))
		}
	}
	for _, call := range chain {
		if got := f.count(call[0], call[1]); got != 1 {
			t.Errorf("%s %s called %d times, want 1 (cached until exp - adminTokenLeeway)", call[0], call[1], got)
		}
	}

	// A token expiring within the leeway is never cached.
	f.shortAdminToken(fakeJWT(time.Now().Add(30*time.Second), "admin-short"))
	p.Forget("acme")
	for i := 0; i < 2; i++ {
		if _, err := p.adminConn(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.count("POST", registrationPath); got != 3 {
		t.Fatalf("runner-registration called %d times, want 3", got)
	}
	// The installation token itself is reused (ghinstallation caches it).
	if got := f.count(chain[1][0], chain[1][1]); got != 1 {
		t.Fatalf("access_tokens called %d times, want 1", got)
	}
}

// TestPAT: with a PAT there is no installation to look up, and the admin
// connection is made with the PAT alone.
func TestPAT(t *testing.T) {
	f := newFake(t)
	p, _ := newProvider(t, f, withPAT)
	id, err := p.InstallationID(testCtx(t), "acme")
	if id != 0 || err != nil {
		t.Fatalf("InstallationID = %d, %v; want 0, nil", id, err)
	}
	if f.total() != 0 {
		t.Fatalf("InstallationID made %d requests, want 0", f.total())
	}
	c, err := p.adminConn(testCtx(t), mustScope(t, "acme/widgets"))
	if err != nil {
		t.Fatal(err)
	}
	if f.count("POST", "/api/v3/repos/acme/widgets/actions/runners/registration-token") != 1 {
		t.Fatal("repo registration token not requested")
	}
	for _, a := range f.seenAuth() {
		if strings.HasPrefix(a, "Bearer ") && a != "Bearer "+testPAT {
			t.Fatalf("unexpected bearer credential used with a PAT")
		}
	}
	if !f.adminWorks(t, c.token) {
		t.Fatal("wrong admin token")
	}
}

func TestAdminConnRejectsTokenWithoutExp(t *testing.T) {
	f := newFake(t)
	token := fakeJWT(time.Time{}, "no-exp")
	f.shortAdminToken(token)
	p, _ := newProvider(t, f)
	_, err := p.adminConn(testCtx(t), mustScope(t, "acme"))
	if err == nil || !strings.Contains(err.Error(), "no exp") {
		t.Fatalf("err = %v, want a missing exp error", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Fatal("error quotes the admin token")
	}
}

func TestParsePrivateKey(t *testing.T) {
	_, key := testkit.SharedKey(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pem     []byte
		wantErr string
	}{
		{"pkcs1", key, ""},
		{"pkcs8", pemPKCS8(t, testKey(t)), ""},
		{"garbage", []byte("definitely not a key"), "not PEM"},
		{"empty", nil, "not PEM"},
		{"pkcs8 ec", pemPKCS8(t, ec), "not an RSA key"},
		{"sec1 ec", testkit.ECKeyPEM(t), "not an RSA key"},
		{"corrupt pkcs1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1, 2, 3}}), "invalid PKCS#1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ParsePrivateKey(tt.pem)
			if tt.wantErr == "" {
				if err != nil || !key.Equal(testKey(t)) {
					t.Fatalf("ParsePrivateKey = %v, want the test key", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	_, key := testkit.SharedKey(t)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"app ok", Config{AppID: 1, PrivateKeyPEM: key}, ""},
		{"pat ok", Config{Token: "x", URL: "https://ghes.example/"}, ""},
		{"both", Config{AppID: 1, PrivateKeyPEM: key, Token: "x"}, "not both"},
		{"neither", Config{}, "set a GitHub App"},
		{"no key", Config{AppID: 1}, "private key is required"},
		{"no app id", Config{PrivateKeyPEM: key}, "app ID"},
		{"bad key", Config{AppID: 1, PrivateKeyPEM: []byte("nope")}, "not PEM"},
		{"url path", Config{Token: "x", URL: "https://ghes.example/org"}, "without a path"},
		{"url scheme", Config{Token: "x", URL: "ftp://ghes.example"}, "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestAPIBaseURL(t *testing.T) {
	for _, tt := range []struct{ url, api string }{
		{"https://github.com", "https://api.github.com"},
		{"https://www.github.com", "https://api.github.com"},
		{"https://tenant.ghe.com", "https://api.tenant.ghe.com"},
		{"https://ghes.example", "https://ghes.example/api/v3"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/api/v3"},
		{"https://ghes.example:8443", "https://ghes.example:8443/api/v3"},
	} {
		p, err := New(Config{URL: tt.url, Token: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if p.api != tt.api {
			t.Errorf("api(%q) = %q, want %q", tt.url, p.api, tt.api)
		}
	}
}

func TestConfigValidateAppliesDefaults(t *testing.T) {
	if err := (Config{Token: "x"}).Validate(); err != nil {
		t.Fatalf("a PAT with the default URL must validate: %v", err)
	}
}

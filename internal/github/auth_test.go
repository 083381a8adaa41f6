package github

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
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
			f := newFake(t)
			p, _ := newProvider(t, f)
			ctx := testCtx(t)

			id, err := p.InstallationID(ctx, tt.scope)
			if err != nil || id != testInstID {
				t.Fatalf("InstallationID = %d, %v; want %d", id, err, testInstID)
			}
			if got := f.count("GET", tt.path); got != 1 {
				t.Fatalf("%s called %d times, want 1", tt.path, got)
			}
			before := f.total()
			if id, err := p.InstallationID(ctx, tt.scope); err != nil || id != testInstID {
				t.Fatalf("cached InstallationID = %d, %v", id, err)
			}
			if f.total() != before {
				t.Fatalf("second lookup made %d requests, want 0", f.total()-before)
			}
		})
	}
}

func TestInstallationIDOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		wantIs    error
		transient bool
		requests  int
	}{
		{"not installed", http.StatusNotFound, ErrNotInstalled, false, 1},
		{"bad key", http.StatusUnauthorized, ErrUnauthorized, false, 1},
		{"server error", http.StatusBadGateway, nil, true, 2}, // RetryMax 1
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.route("GET", "/api/v3/orgs/acme/installation", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, tt.status, map[string]string{"message": "nope"})
			})
			p, _ := newProvider(t, f)

			_, err := p.InstallationID(testCtx(t), "acme")
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
			if got := f.count("GET", "/api/v3/orgs/acme/installation"); got != tt.requests {
				t.Errorf("requests = %d, want %d", got, tt.requests)
			}
		})
	}
}

func TestInstallationIDRetriesTransientFailure(t *testing.T) {
	f := newFake(t)
	f.route("GET", "/api/v3/orgs/acme/installation", func(w http.ResponseWriter, r *http.Request) {
		if f.count("GET", r.URL.Path) == 1 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": 7})
	})
	p, _ := newProvider(t, f)
	if id, err := p.InstallationID(testCtx(t), "acme"); err != nil || id != 7 {
		t.Fatalf("InstallationID = %d, %v; want 7 after one retry", id, err)
	}
}

func TestAppJWTFromKeyFormats(t *testing.T) {
	tests := []struct {
		name   string
		key    func(t *testing.T) []byte
		wantOK bool
	}{
		{"pkcs1", func(*testing.T) []byte { return pemPKCS1(testKey()) }, true},
		{"pkcs8", func(t *testing.T) []byte { return pemPKCS8(t, testKey()) }, true},
		{"wrong key", func(*testing.T) []byte { return pemPKCS1(otherKey()) }, false},
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
			if n := f.verifiedJWTs(); n != 2 {
				t.Fatalf("fake verified %d app JWTs, want 2 (lookup, access token)", n)
			}
		})
	}
}

func TestInstallationIDWithPAT(t *testing.T) {
	f := newFake(t)
	p, _ := newProvider(t, f, withPAT(f))
	id, err := p.InstallationID(testCtx(t), "acme")
	if id != 0 || err != nil {
		t.Fatalf("InstallationID = %d, %v; want 0, nil", id, err)
	}
	if f.total() != 0 {
		t.Fatalf("made %d requests, want 0", f.total())
	}
}

func TestInstallationIDEnterprise(t *testing.T) {
	f := newFake(t)
	f.route("GET", "/api/v3/app/installations", func(w http.ResponseWriter, r *http.Request) {
		if !f.checkAppJWT(w, r) {
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
	f := newFake(t)
	p, _ := newProvider(t, f)
	ctx := testCtx(t)
	sc := mustScope(t, "acme")

	chain := [][2]string{
		{"GET", "/api/v3/orgs/acme/installation"},
		{"POST", "/api/v3/app/installations/42/access_tokens"},
		{"POST", "/api/v3/orgs/acme/actions/runners/registration-token"},
		{"POST", "/api/v3/actions/runner-registration"},
	}
	for i := 0; i < 3; i++ {
		c, err := p.adminConn(ctx, sc)
		if err != nil {
			t.Fatalf("adminConn #%d: %v", i, err)
		}
		if c.url != f.srv.URL+"/tenant/" || c.token != f.adminToken {
			t.Fatalf("adminConn = %q (token ok=%v)", c.url, c.token == f.adminToken)
		}
	}
	for _, call := range chain {
		if got := f.count(call[0], call[1]); got != 1 {
			t.Errorf("%s %s called %d times, want 1 (cached until exp-60s)", call[0], call[1], got)
		}
	}

	// A token expiring within the 60 s leeway is never cached.
	f.mu.Lock()
	f.adminToken = fakeJWT(time.Now().Add(30*time.Second), "admin-short")
	f.mu.Unlock()
	p.Forget("acme")
	for i := 0; i < 2; i++ {
		if _, err := p.adminConn(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.count("POST", "/api/v3/actions/runner-registration"); got != 3 {
		t.Fatalf("runner-registration called %d times, want 3", got)
	}
	// The installation token itself is reused (ghinstallation caches it).
	if got := f.count("POST", "/api/v3/app/installations/42/access_tokens"); got != 1 {
		t.Fatalf("access_tokens called %d times, want 1", got)
	}
}

func TestAdminConnWithPAT(t *testing.T) {
	f := newFake(t)
	p, _ := newProvider(t, f, withPAT(f))
	c, err := p.adminConn(testCtx(t), mustScope(t, "acme/widgets"))
	if err != nil {
		t.Fatal(err)
	}
	if c.token != f.adminToken {
		t.Fatal("wrong admin token")
	}
	if f.count("POST", "/api/v3/repos/acme/widgets/actions/runners/registration-token") != 1 {
		t.Fatal("repo registration token not requested")
	}
	for _, a := range f.seenAuth() {
		if strings.HasPrefix(a, "Bearer ") && a != "Bearer "+f.pat {
			t.Fatalf("unexpected bearer credential used with a PAT")
		}
	}
}

func TestAdminConnRejectsTokenWithoutExp(t *testing.T) {
	f := newFake(t)
	f.adminToken = fakeJWT(time.Time{}, "no-exp")
	p, _ := newProvider(t, f)
	_, err := p.adminConn(testCtx(t), mustScope(t, "acme"))
	if err == nil || !strings.Contains(err.Error(), "no exp") {
		t.Fatalf("err = %v, want a missing exp error", err)
	}
	if strings.Contains(err.Error(), f.adminToken) {
		t.Fatal("error quotes the admin token")
	}
}

func TestParsePrivateKey(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pem     []byte
		wantErr string
	}{
		{"pkcs1", pemPKCS1(testKey()), ""},
		{"pkcs8", pemPKCS8(t, testKey()), ""},
		{"garbage", []byte("definitely not a key"), "not PEM"},
		{"empty", nil, "not PEM"},
		{"pkcs8 ec", pemPKCS8(t, ec), "not an RSA key"},
		{"sec1 ec", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), "not an RSA key"},
		{"corrupt pkcs1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1, 2, 3}}), "invalid PKCS#1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ParsePrivateKey(tt.pem)
			if tt.wantErr == "" {
				if err != nil || !key.Equal(testKey()) {
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
	key := pemPKCS1(testKey())
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
	tests := map[string]string{
		"https://github.com":        "https://api.github.com",
		"https://www.github.com":    "https://api.github.com",
		"https://tenant.ghe.com":    "https://api.tenant.ghe.com",
		"https://ghes.example":      "https://ghes.example/api/v3",
		"http://127.0.0.1:8080":     "http://127.0.0.1:8080/api/v3",
		"https://ghes.example:8443": "https://ghes.example:8443/api/v3",
	}
	for in, want := range tests {
		p, err := New(Config{URL: in, Token: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if p.api != want {
			t.Errorf("api(%q) = %q, want %q", in, p.api, want)
		}
	}
}

func TestConfigValidateAppliesDefaults(t *testing.T) {
	if err := (Config{Token: "x"}).Validate(); err != nil {
		t.Fatalf("a PAT with the default URL must validate: %v", err)
	}
}

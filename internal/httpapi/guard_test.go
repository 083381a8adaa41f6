package httpapi_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// guardRequest is one request to the API and the answer it must get.
type guardRequest struct {
	name     string
	method   string
	path     string
	host     string // "" keeps the server's address
	origin   string
	auth     string // the Authorization header; "" sends none
	wantCode int
}

// sendGuarded sends rq to srv and returns the status and the decoded
// error, if the answer is one.
func sendGuarded(t *testing.T, srv *httptest.Server, rq guardRequest) (int, string) {
	t.Helper()
	resp, body := testkit.Fetch(t, rq.method, srv.URL+rq.path, nil,
		testkit.Headers("Host", rq.host, "Origin", rq.origin, "Authorization", rq.auth))
	if resp.StatusCode < 400 {
		return resp.StatusCode, ""
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: refused with Content-Type %q, want application/json", rq.name, ct)
	}
	e := decode[httpapi.ErrorResponse](t, body)
	if e.Error == "" {
		t.Errorf("%s: refused without an error message: %s", rq.name, body)
	}
	return resp.StatusCode, e.Error
}

// TestGuard: a foreign Host is refused on every route, a mutating request
// needs the token and no Origin, and GETs need no token.
func TestGuard(t *testing.T) {
	rm := &fakeRemover{}
	reg := prometheus.NewRegistry()
	srv := serve(t, httpapi.Deps{Remover: rm, Gatherer: reg, Readiness: fakeReadiness{ready: true}})
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	const remove = "/api/v1/runners/r1/remove"
	bearer := "Bearer " + testToken
	tests := []guardRequest{
		// Host names and addresses of loopback, with or without port.
		{name: "GET healthz at the listen address", method: "GET", path: "/healthz", wantCode: 200},
		{name: "GET healthz as 127.0.0.1", method: "GET", path: "/healthz", host: "127.0.0.1", wantCode: 200},
		{name: "GET healthz as localhost:port", method: "GET", path: "/healthz", host: "localhost:" + port, wantCode: 200},
		{name: "GET healthz as LOCALHOST", method: "GET", path: "/healthz", host: "LOCALHOST", wantCode: 200},
		{name: "GET healthz as [::1]:port", method: "GET", path: "/healthz", host: "[::1]:" + port, wantCode: 200},
		{name: "GET healthz as [::1]", method: "GET", path: "/healthz", host: "[::1]", wantCode: 200},
		{name: "GET healthz as 127.0.0.2", method: "GET", path: "/healthz", host: "127.0.0.2:" + port, wantCode: 200},
		{name: "GET metrics as localhost", method: "GET", path: "/metrics", host: "localhost:" + port, wantCode: 200},
		{name: "HEAD healthz", method: "HEAD", path: "/healthz", wantCode: 200},
		{name: "GET with a foreign Origin needs no token", method: "GET", path: "/readyz", origin: "http://evil.example", wantCode: 200},
		// DNS rebinding: a name of the attacker's pointing at loopback.
		{name: "GET healthz as a foreign name", method: "GET", path: "/healthz", host: "evil.example:" + port, wantCode: 403},
		{name: "GET metrics as a foreign name", method: "GET", path: "/metrics", host: "evil.example", wantCode: 403},
		{name: "GET readyz as localhost.evil.example", method: "GET", path: "/readyz", host: "localhost.evil.example:" + port, wantCode: 403},
		{name: "GET runners as a foreign address", method: "GET", path: "/api/v1/runners", host: "10.1.2.3:" + port, wantCode: 403},
		{name: "GET unknown route as a foreign name", method: "GET", path: "/nope", host: "evil.example", wantCode: 403},
		{name: "POST with token as a foreign name", method: "POST", path: remove, host: "evil.example:" + port, auth: bearer, wantCode: 403},
		// Cross-site requests: browsers send an Origin.
		{name: "POST with token and a foreign Origin", method: "POST", path: remove, origin: "http://evil.example", auth: bearer, wantCode: 403},
		{name: "POST with token and the API's own Origin", method: "POST", path: remove, origin: srv.URL, auth: bearer, wantCode: 403},
		{name: "POST with token and Origin null", method: "POST", path: remove, origin: "null", auth: bearer, wantCode: 403},
		{name: "OPTIONS preflight", method: "OPTIONS", path: remove, origin: "http://evil.example", wantCode: 403},
		// The token.
		{name: "POST without token", method: "POST", path: remove, wantCode: 401},
		{name: "POST with a wrong token", method: "POST", path: remove, auth: "Bearer " + strings.Repeat("f", len(testToken)), wantCode: 401},
		{name: "POST with a token prefix", method: "POST", path: remove, auth: bearer[:len(bearer)-1], wantCode: 401},
		{name: "POST with the token in another scheme", method: "POST", path: remove, auth: "Basic " + testToken, wantCode: 401},
		{name: "POST with the bare token", method: "POST", path: remove, auth: testToken, wantCode: 401},
		{name: "DELETE without token", method: "DELETE", path: remove, wantCode: 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(rm.Calls())
			code, msg := sendGuarded(t, srv, tc)
			if code != tc.wantCode {
				t.Fatalf("%s %s (Host %q, Origin %q) = %d %q, want %d", tc.method, tc.path, tc.host, tc.origin, code, msg, tc.wantCode)
			}
			if tc.wantCode >= 400 && len(rm.Calls()) != before {
				t.Errorf("RemoveRunner was called by a refused request")
			}
		})
	}

	t.Run("POST with the token", func(t *testing.T) {
		for _, auth := range []string{bearer, "bearer " + testToken} {
			before := len(rm.Calls())
			code, msg := sendGuarded(t, srv, guardRequest{name: "token", method: "POST", path: remove, auth: auth})
			if code != http.StatusAccepted || len(rm.Calls()) != before+1 {
				t.Errorf("POST with %q = %d %q, %d calls; want 202 and one call", auth[:7], code, msg, len(rm.Calls())-before)
			}
		}
	})
	t.Run("error names what to do", func(t *testing.T) {
		_, msg := sendGuarded(t, srv, guardRequest{name: "no token", method: "POST", path: remove})
		if !strings.Contains(msg, "token") {
			t.Errorf("401 error %q does not mention the token", msg)
		}
		_, msg = sendGuarded(t, srv, guardRequest{name: "host", method: "GET", path: "/healthz", host: "evil.example"})
		if !strings.Contains(msg, "Host") {
			t.Errorf("403 error %q does not mention the Host", msg)
		}
	})
}

// TestGuardWithoutToken: an API started without a token refuses every
// mutating request, even one that sends a token; New is such an API.
func TestGuardWithoutToken(t *testing.T) {
	for name, h := range map[string]func(httpapi.Deps) http.Handler{
		"New": func(d httpapi.Deps) http.Handler { return httpapi.New(d, slog.New(slog.DiscardHandler)) },
		"NewHandler without token": func(d httpapi.Deps) http.Handler {
			h, err := httpapi.NewHandler(d, httpapi.Config{})
			if err != nil {
				t.Fatal(err)
			}
			return h
		},
	} {
		t.Run(name, func(t *testing.T) {
			rm := &fakeRemover{}
			srv := httptest.NewServer(h(httpapi.Deps{Remover: rm}))
			t.Cleanup(srv.Close)
			for _, auth := range []string{"", "Bearer ", "Bearer " + testToken} {
				if code, _ := sendGuarded(t, srv, guardRequest{name: "no token", method: "POST", path: "/api/v1/runners/r1/remove", auth: auth}); code != http.StatusUnauthorized {
					t.Errorf("POST with Authorization %q = %d, want 401", auth, code)
				}
			}
			if n := len(rm.Calls()); n != 0 {
				t.Errorf("RemoveRunner called %d times", n)
			}
			if code, _ := sendGuarded(t, srv, guardRequest{name: "healthz", method: "GET", path: "/healthz"}); code != http.StatusOK {
				t.Errorf("GET /healthz = %d, want 200", code)
			}
		})
	}
}

// TestGuardListenAddress: a daemon listening on a non-loopback address
// also answers its own address, and the address a request arrived on;
// checked on the handler, with the arrival address set as net/http sets
// it, since a test may not bind other addresses than loopback.
func TestGuardListenAddress(t *testing.T) {
	tests := []struct {
		listen  string
		arrived string // the connection's local address
		host    string
		want    int
	}{
		{"10.0.0.5:9780", "10.0.0.5:9780", "10.0.0.5:9780", 200},
		{"10.0.0.5:9780", "10.0.0.5:9780", "10.0.0.5", 200},
		{"10.0.0.5:9780", "10.0.0.5:9780", "127.0.0.1:9780", 200},
		{"10.0.0.5:9780", "10.0.0.5:9780", "localhost", 200},
		{"10.0.0.5:9780", "10.0.0.5:9780", "10.0.0.6:9780", 403},
		{"10.0.0.5:9780", "10.0.0.5:9780", "evil.example:9780", 403},
		{"[fd00::5]:9780", "[fd00::5]:9780", "[fd00::5]:9780", 200},
		{"[fd00::5]:9780", "[fd00::5]:9780", "[fd00::6]:9780", 403},
		{"myhost.example:9780", "192.0.2.7:9780", "MyHost.Example:9780", 200},
		{"myhost.example:9780", "192.0.2.7:9780", "192.0.2.7:9780", 200},
		{"myhost.example:9780", "192.0.2.7:9780", "other.example:9780", 403},
		// Listening on every address: the one the request arrived on.
		{"0.0.0.0:9780", "192.0.2.7:9780", "192.0.2.7:9780", 200},
		{"0.0.0.0:9780", "192.0.2.7:9780", "192.0.2.8:9780", 403},
		{"0.0.0.0:9780", "192.0.2.7:9780", "0.0.0.0:9780", 403},
		{"[::]:9780", "[::ffff:192.0.2.7]:9780", "192.0.2.7", 200},
		{"0.0.0.0:9780", "192.0.2.7:9780", "evil.example", 403},
		{"0.0.0.0:9780", "192.0.2.7:9780", "", 403},
		// Loopback listen: loopback names only.
		{"127.0.0.1:9780", "127.0.0.1:9780", "192.0.2.7", 403},
	}
	for _, tc := range tests {
		t.Run(tc.listen+" "+tc.host, func(t *testing.T) {
			h, err := httpapi.NewHandler(httpapi.Deps{}, httpapi.Config{Listen: tc.listen, Token: testToken})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
			req.Host = tc.host
			addr, err := net.ResolveTCPAddr("tcp", tc.arrived)
			if err != nil {
				t.Fatal(err)
			}
			req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, net.Addr(addr)))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("listen %s, arrived on %s, Host %q: %d %s, want %d", tc.listen, tc.arrived, tc.host, rec.Code, rec.Body, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	good, err := httpapi.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     httpapi.Config
		wantErr string
	}{
		{"zero", httpapi.Config{}, ""},
		{"listen and token", httpapi.Config{Listen: "127.0.0.1:9780", Token: good}, ""},
		{"listen without port", httpapi.Config{Listen: "127.0.0.1"}, "listen"},
		{"short token", httpapi.Config{Token: "abc"}, "shorter"},
		{"token with a newline", httpapi.Config{Token: good + "\nx"}, "white space"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate = %v, want an error containing %q", err, tc.wantErr)
			}
			if _, err := httpapi.NewHandler(httpapi.Deps{}, tc.cfg); (err == nil) != (tc.wantErr == "") {
				t.Errorf("NewHandler error %v, want error: %v", err, tc.wantErr != "")
			}
		})
	}
}

func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, err := httpapi.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) != 64 || strings.Trim(tok, "0123456789abcdef") != "" {
			t.Fatalf("token %q: want 64 hex characters", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q made twice", tok)
		}
		seen[tok] = true
		if err := (httpapi.Config{Token: tok}).Validate(); err != nil {
			t.Fatalf("a new token does not validate: %v", err)
		}
	}
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.db")
	path := httpapi.TokenFile(state)
	if path != state+".api-token" {
		t.Fatalf("TokenFile(%s) = %s, want it next to the state file", state, path)
	}
	if _, err := httpapi.ReadTokenFile(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadTokenFile of a missing file = %v, want fs.ErrNotExist", err)
	}
	// A file left by an earlier start, readable by others, is replaced.
	if err := os.WriteFile(path, []byte("old-token\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, _ := httpapi.NewToken()
	if err := httpapi.WriteTokenFile(path, tok); err != nil {
		t.Fatalf("WriteTokenFile: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("token file mode %o, want 600", perm)
	}
	got, err := httpapi.ReadTokenFile(path)
	if err != nil || got != tok {
		t.Errorf("ReadTokenFile = %q, %v; want the token written", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after the write, want only the token file", len(entries))
	}
	if err := httpapi.RemoveTokenFile(path); err != nil {
		t.Fatalf("RemoveTokenFile: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("token file still there after RemoveTokenFile: %v", err)
	}
	if err := httpapi.RemoveTokenFile(path); err != nil {
		t.Errorf("RemoveTokenFile of a removed file: %v", err)
	}
	if err := os.WriteFile(path, []byte("  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := httpapi.ReadTokenFile(path); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("ReadTokenFile of an empty file = %v, want an error", err)
	}
	if err := httpapi.WriteTokenFile(filepath.Join(dir, "missing", "state.db.api-token"), tok); err == nil {
		t.Errorf("WriteTokenFile into a missing directory: no error")
	}
}

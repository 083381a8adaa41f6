package github

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

const (
	testAppID = int64(1234)
	testPAT   = "ghp_personalACCESStoken"
)

// testKey is the app's key, made once for the test binary.
func testKey(t testing.TB) *rsa.PrivateKey {
	k, _ := testkit.SharedKey(t)
	return k
}

func pemPKCS8(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// fakeJWT builds an unsigned-looking JWT with the given exp (0: no exp).
func fakeJWT(exp time.Time, subject string) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims := map[string]any{"sub": subject}
	if !exp.IsZero() {
		claims["exp"] = exp.Unix()
	}
	payload, _ := json.Marshal(claims)
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc(payload) + "." + enc([]byte("sig-"+subject))
}

// seenRequest is a request the fake was sent.
type seenRequest struct {
	method, path string
	query        url.Values
	header       http.Header
	body         []byte
}

// fakeGitHub is the actionsfake service (the GitHub API under /api/v3,
// the Actions service under /_actions/, the broker under /_broker/) with a
// record of every request. A test overrides a route with route where it
// needs an answer the actionsfake does not give.
type fakeGitHub struct {
	srv       *actionsfake.Server
	url       string
	overrides *http.ServeMux

	mu   sync.Mutex
	seen []seenRequest
}

// newFake serves an actionsfake that knows app testAppID by testKey and the
// PAT testPAT, and holds an empty poll for 100ms. It fails the test if the
// client broke the protocol.
func newFake(t *testing.T, mutate ...func(*actionsfake.Config)) *fakeGitHub {
	t.Helper()
	cfg := actionsfake.Config{
		AppID:        testAppID,
		AppPublicKey: &testKey(t).PublicKey,
		Tokens:       []string{testPAT},
		PollHold:     100 * time.Millisecond,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := actionsfake.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeGitHub{srv: srv, overrides: http.NewServeMux()}
	ts := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(ts.Close)
	t.Cleanup(srv.Close) // runs first: releases held polls
	srv.SetBaseURL(ts.URL)
	f.url = ts.URL
	t.Cleanup(func() {
		if v := srv.State().Violations; len(v) > 0 {
			t.Errorf("protocol violations: %+v", v)
		}
	})
	return f
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	f.mu.Lock()
	f.seen = append(f.seen, seenRequest{method: r.Method, path: r.URL.Path, query: r.URL.Query(), header: r.Header.Clone(), body: body})
	f.mu.Unlock()
	if h, pattern := f.overrides.Handler(r); pattern != "" {
		h.ServeHTTP(w, r)
		return
	}
	f.srv.Handler().ServeHTTP(w, r)
}

// route answers the requests pattern (of http.ServeMux) matches with h
// instead of the actionsfake.
func (f *fakeGitHub) route(pattern string, h http.HandlerFunc) { f.overrides.HandleFunc(pattern, h) }

// answer is what the actionsfake answers r, for a route that changes it.
func (f *fakeGitHub) answer(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, r)
	return rec
}

// fault adds a fault to the actionsfake.
func (f *fakeGitHub) fault(t *testing.T, fault actionsfake.Fault) {
	t.Helper()
	if err := f.srv.AddFault(fault); err != nil {
		t.Fatal(err)
	}
}

// requests returns the requests of method to path, oldest first.
func (f *fakeGitHub) requests(method, path string) []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []seenRequest
	for _, r := range f.seen {
		if r.method == method && r.path == path {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeGitHub) count(method, path string) int { return len(f.requests(method, path)) }

func (f *fakeGitHub) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seen)
}

// seenAuth returns every Authorization header sent.
func (f *fakeGitHub) seenAuth() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.seen {
		if a := r.header.Get("Authorization"); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// installationID is the fake's installation of owner.
func (f *fakeGitHub) installationID(t *testing.T, owner string) int64 {
	t.Helper()
	id, ok := f.srv.InstallationID(owner)
	if !ok {
		t.Fatalf("the app is not installed for %s", owner)
	}
	return id
}

// shortAdminToken makes the runner-registration of f hand out token
// instead of the fake's own admin token.
func (f *fakeGitHub) shortAdminToken(token string) {
	f.route("POST "+registrationPath, func(w http.ResponseWriter, r *http.Request) {
		rec := f.answer(r)
		var conn map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &conn); err != nil || rec.Code != http.StatusOK {
			w.WriteHeader(rec.Code)
			return
		}
		conn["token"] = token
		writeJSON(w, http.StatusOK, conn)
	})
}

// accessTokensPath is the path of the installation tokens of owner.
func (f *fakeGitHub) accessTokensPath(t *testing.T, owner string) string {
	return fmt.Sprintf("/api/v3/app/installations/%d/access_tokens", f.installationID(t, owner))
}

// adminWorks reports whether the Actions service takes token as an admin token.
func (f *fakeGitHub) adminWorks(t *testing.T, token string) bool {
	t.Helper()
	resp, _ := testkit.Fetch(t, "GET", f.url+"/_actions/_apis/runtime/runnergroups/?api-version=6.0-preview", nil,
		http.Header{"Authorization": {"Bearer " + token}})
	return resp.StatusCode == http.StatusOK
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// newProvider builds a Provider against f authenticating as the app,
// logging at debug into the returned buffer.
func newProvider(t *testing.T, f *fakeGitHub, mutate ...func(*Config)) (*Provider, *testkit.SyncBuffer) {
	t.Helper()
	logs := &testkit.SyncBuffer{}
	_, key := testkit.SharedKey(t)
	cfg := Config{
		URL:           f.url,
		AppID:         testAppID,
		PrivateKeyPEM: key,
		RetryMax:      1,
		RetryWaitMax:  time.Millisecond,
		Timeout:       10 * time.Second,
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(p.CloseIdleConnections)
	return p, logs
}

// newFakeProvider is newFake with a provider on it (see newProvider).
func newFakeProvider(t *testing.T, mutate ...func(*actionsfake.Config)) (*fakeGitHub, *Provider) {
	t.Helper()
	f := newFake(t, mutate...)
	p, _ := newProvider(t, f)
	return f, p
}

func withPAT(c *Config) { c.AppID, c.PrivateKeyPEM, c.Token = 0, nil, testPAT }

// Paths of the Actions service.
const (
	scaleSetsPath    = "/_actions/_apis/runtime/runnerscalesets"
	registrationPath = "/api/v3/actions/runner-registration"
)

func scaleSetPath(id int, rest string) string { return fmt.Sprintf("%s/%d%s", scaleSetsPath, id, rest) }

// newScaleSet creates scale set name in scope through p and returns its ID.
func newScaleSet(t *testing.T, p *Provider, scope, name string) int {
	t.Helper()
	res, err := p.EnsureScaleSet(testCtx(t), ScaleSetSpec{Scope: scope, Name: name, Labels: ScaleSetLabels(name, nil)})
	if err != nil {
		t.Fatalf("EnsureScaleSet %s: %v", name, err)
	}
	return res.ScaleSet.ID
}

// openSession creates scale set shoes-acme and opens a message session on
// it as host-1.
func openSession(t *testing.T, p *Provider) *Session {
	t.Helper()
	s, err := p.CreateSession(testCtx(t), "acme", newScaleSet(t, p, "acme", "shoes-acme"), "host-1")
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return s
}

// sessionPath is the Actions service path of s.
func sessionPath(s *Session) string { return scaleSetPath(s.ScaleSetID(), "/sessions/"+s.ID()) }

// queuePath is the broker path of the message queue of s.
func queuePath(t *testing.T, s *Session) string {
	t.Helper()
	raw, _ := s.queue()
	u, err := url.Parse(raw)
	if err != nil || !strings.HasPrefix(u.Path, "/_broker/") {
		t.Fatalf("queue URL %q: %v", raw, err)
	}
	return u.Path
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustScope(t *testing.T, s string) scopeRef {
	t.Helper()
	sc, err := parseScope(s)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

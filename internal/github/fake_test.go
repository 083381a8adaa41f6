package github

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testAppID  = int64(1234)
	testOrg    = "acme"
	testInstID = 42
)

// One key for the whole test binary: RSA key generation is slow under -race.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

var otherKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func pemPKCS1(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
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

// verifyAppJWT checks an "Authorization: Bearer <jwt>" header: RS256 with
// pub, iss = the app ID, a valid time window.
func verifyAppJWT(header string, pub *rsa.PublicKey, appID int64) error {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return errors.New("no bearer token")
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	dec := base64.RawURLEncoding.DecodeString
	hdr, err := dec(parts[0])
	if err != nil {
		return err
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hdr, &h); err != nil || h.Alg != "RS256" {
		return fmt.Errorf("alg %q: %v", h.Alg, err)
	}
	sig, err := dec(parts[2])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	payload, err := dec(parts[1])
	if err != nil {
		return err
	}
	var c struct {
		Iss string `json:"iss"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return err
	}
	now := time.Now().Unix()
	if c.Iss != strconv.FormatInt(appID, 10) {
		return fmt.Errorf("iss %q", c.Iss)
	}
	if c.Iat > now+1 || c.Exp <= now || c.Exp-c.Iat > 600 {
		return fmt.Errorf("bad time window iat=%d exp=%d now=%d", c.Iat, c.Exp, now)
	}
	return nil
}

// fakeGitHub is a loopback GHES (API under /api/v3) plus an Actions service
// under /tenant/. Tests add routes for what they exercise.
type fakeGitHub struct {
	t   *testing.T
	srv *httptest.Server
	pub *rsa.PublicKey

	instToken  string
	regToken   string
	adminToken string
	pat        string

	mu      sync.Mutex
	bom     bool // every answer body begins with a UTF-8 BOM
	routes  map[string]http.HandlerFunc
	calls   map[string]int
	auths   []string // every Authorization header seen
	appJWTs int      // verified app JWTs
}

func newFake(t *testing.T) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{
		t:          t,
		pub:        &testKey().PublicKey,
		instToken:  "ghs_installationTOKEN42",
		regToken:   "REGISTRATIONtoken0001",
		adminToken: fakeJWT(time.Now().Add(time.Hour), "admin-1"),
		pat:        "ghp_personalACCESStoken",
		routes:     map[string]http.HandlerFunc{},
		calls:      map[string]int{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.installChain()
	return f
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " " + r.URL.Path
	f.mu.Lock()
	f.calls[key]++
	if a := r.Header.Get("Authorization"); a != "" {
		f.auths = append(f.auths, a)
	}
	h := f.routes[key]
	if f.bom {
		w = &bomWriter{ResponseWriter: w}
	}
	f.mu.Unlock()
	if h == nil {
		f.t.Errorf("fake: unexpected request %s", key)
		http.Error(w, "no route", http.StatusNotFound)
		return
	}
	h(w, r)
}

// bomWriter begins a body with the UTF-8 BOM, as the Actions service may.
type bomWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *bomWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.wrote = true
		if _, err := w.ResponseWriter.Write(utf8BOM); err != nil {
			return 0, err
		}
	}
	return w.ResponseWriter.Write(b)
}

func (f *fakeGitHub) route(method, path string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[method+" "+path] = h
}

func (f *fakeGitHub) count(method, path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method+" "+path]
}

func (f *fakeGitHub) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func (f *fakeGitHub) verifiedJWTs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.appJWTs
}

func (f *fakeGitHub) seenAuth() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auths...)
}

// checkAppJWT verifies the app JWT of r; on failure it answers 401.
func (f *fakeGitHub) checkAppJWT(w http.ResponseWriter, r *http.Request) bool {
	if err := verifyAppJWT(r.Header.Get("Authorization"), f.pub, testAppID); err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "A JSON web token could not be decoded"})
		return false
	}
	f.mu.Lock()
	f.appJWTs++
	f.mu.Unlock()
	return true
}

func (f *fakeGitHub) checkBearer(w http.ResponseWriter, r *http.Request, want ...string) bool {
	got := r.Header.Get("Authorization")
	for _, tok := range want {
		if got == "Bearer "+tok {
			return true
		}
	}
	writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Bad credentials"})
	return false
}

// installChain serves the installation lookup and the admin connection chain
// for org acme and repo acme/widgets.
func (f *fakeGitHub) installChain() {
	for _, p := range []string{"/api/v3/orgs/acme/installation", "/api/v3/repos/acme/widgets/installation"} {
		f.route("GET", p, func(w http.ResponseWriter, r *http.Request) {
			if f.checkAppJWT(w, r) {
				writeJSON(w, http.StatusOK, map[string]any{"id": testInstID, "account": map[string]any{"login": "acme"}})
			}
		})
	}
	f.route("POST", fmt.Sprintf("/api/v3/app/installations/%d/access_tokens", testInstID), func(w http.ResponseWriter, r *http.Request) {
		if f.checkAppJWT(w, r) {
			writeJSON(w, http.StatusCreated, map[string]any{"token": f.instToken, "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
		}
	})
	for _, p := range []string{"/api/v3/orgs/acme/actions/runners/registration-token", "/api/v3/repos/acme/widgets/actions/runners/registration-token"} {
		f.route("POST", p, func(w http.ResponseWriter, r *http.Request) {
			if f.checkBearer(w, r, f.instToken, f.pat) {
				writeJSON(w, http.StatusCreated, map[string]any{"token": f.regToken, "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
			}
		})
	}
	f.route("POST", "/api/v3/actions/runner-registration", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "RemoteAuth "+f.regToken {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "bad registration token"})
			return
		}
		var body struct {
			URL         string `json:"url"`
			RunnerEvent string `json:"runner_event"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.RunnerEvent != "register" ||
			(body.URL != f.srv.URL+"/acme" && body.URL != f.srv.URL+"/acme/widgets") {
			writeJSON(w, http.StatusBadRequest, map[string]string{"message": fmt.Sprintf("bad body %+v", body)})
			return
		}
		f.mu.Lock()
		tok := f.adminToken
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]string{"url": f.srv.URL + "/tenant/", "token": tok})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newProvider builds a Provider against f authenticating as the app with
// the PKCS#1 test key, logging at debug into the returned buffer.
func newProvider(t *testing.T, f *fakeGitHub, mutate ...func(*Config)) (*Provider, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cfg := Config{
		URL:           f.srv.URL,
		AppID:         testAppID,
		PrivateKeyPEM: pemPKCS1(testKey()),
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

func withPAT(f *fakeGitHub) func(*Config) {
	return func(c *Config) {
		c.AppID, c.PrivateKeyPEM, c.Token = 0, nil, f.pat
	}
}

func readBody(t *testing.T, r *http.Request) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("read body: %v", err)
	}
	return b
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

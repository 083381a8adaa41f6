package shoesfake

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func testJIT(serverURL, token string) JITConfig {
	jc := JITConfig{Runner: RunnerFile{AgentID: 42, AgentName: "myshoes-r", ServerURL: serverURL, Ephemeral: true}}
	jc.Credentials.Scheme = "OAuth"
	jc.Credentials.Data.Token = token
	return jc
}

func TestJITConfigRoundTrip(t *testing.T) {
	t.Parallel()
	jc := testJIT("http://127.0.0.1:1/", "secret")
	enc, err := EncodeJITConfig(jc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeJITConfig(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got != jc {
		t.Fatalf("round trip: got %+v, want %+v", got, jc)
	}
}

func TestDecodeJITConfigErrors(t *testing.T) {
	t.Parallel()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	runner := b64(`{"agentId":1,"agentName":"a","serverUrl":"http://127.0.0.1:1"}`)
	creds := b64(`{"scheme":"OAuth","data":{"token":"t"}}`)
	tests := []struct {
		name, in, want string
	}{
		{"not base64", "%%%", "decode jit config"},
		{"not json", b64("nope"), "decode jit config"},
		{"no .runner", b64(`{".credentials":"` + creds + `"}`), "no .runner"},
		{"no .credentials", b64(`{".runner":"` + runner + `"}`), "no .credentials"},
		{"bad .runner", b64(`{".runner":"` + b64("{") + `",".credentials":"` + creds + `"}`), ".runner"},
		{"no token", b64(`{".runner":"` + runner + `",".credentials":"` + b64(`{"scheme":"OAuth"}`) + `"}`), "no token"},
		{"no server url", b64(`{".runner":"` + b64(`{"agentId":1}`) + `",".credentials":"` + creds + `"}`), "no serverUrl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeJITConfig(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// The real runner writes its files with a UTF-8 BOM.
	bom := b64("\xef\xbb\xbf" + `{"agentId":1,"agentName":"a","serverUrl":"http://127.0.0.1:1"}`)
	if _, err := DecodeJITConfig(b64(`{".runner":"` + bom + `",".credentials":"` + creds + `"}`)); err != nil {
		t.Errorf("BOM: %v", err)
	}
}

// stub is a scripted fake of the service's runner endpoints.
type stub struct {
	mu          sync.Mutex
	connectCode int
	waitCodes   []int    // status of successive waits (200 when exhausted)
	states      []string // state of successive 200 waits; the last repeats
	waits, oks  int
	paths       []string
	auth        []string
}

func (s *stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paths = append(s.paths, r.Method+" "+r.URL.Path)
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	switch {
	case strings.HasSuffix(r.URL.Path, "/_sim/runner/connect"):
		if s.connectCode != 0 && s.connectCode != http.StatusOK {
			http.Error(w, "connect refused", s.connectCode)
			return
		}
		_, _ = w.Write([]byte(`{"state":"idle"}`))
	case strings.HasSuffix(r.URL.Path, "/wait"):
		if r.URL.Query().Get("holdMs") == "" {
			http.Error(w, "no holdMs", http.StatusBadRequest)
			return
		}
		i := s.waits
		s.waits++
		if i < len(s.waitCodes) && s.waitCodes[i] != http.StatusOK {
			http.Error(w, "wait failed", s.waitCodes[i])
			return
		}
		st := s.states[min(s.oks, len(s.states)-1)]
		s.oks++
		_, _ = w.Write([]byte(`{"state":"` + st + `","jobId":"j"}`))
	default:
		http.NotFound(w, r)
	}
}

func TestRunRunner(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		stub     *stub
		prefix   string // path the service lives under
		budget   time.Duration
		wantErr  string
		wantPath string
	}{
		{name: "done", stub: &stub{states: []string{"idle", "busy", "done"}}, wantPath: "GET /_sim/runner/42/wait"},
		{name: "removed", stub: &stub{states: []string{"removed"}}},
		{name: "server url with a path", stub: &stub{states: []string{"done"}}, prefix: "/svc", wantPath: "POST /svc/_sim/runner/connect"},
		{name: "transient wait errors are retried", stub: &stub{waitCodes: []int{503, 502, 429}, states: []string{"done"}}},
		{name: "connect 401", stub: &stub{connectCode: 401}, wantErr: "401"},
		{name: "connect 409", stub: &stub{connectCode: 409}, wantErr: "409"},
		{name: "connect 500 is not retried", stub: &stub{connectCode: 500}, wantErr: "500"},
		{name: "wait 404 is fatal", stub: &stub{waitCodes: []int{404}}, wantErr: "404"},
		{name: "transient errors past the budget", stub: &stub{waitCodes: []int{503, 503, 503, 503, 503, 503, 503, 503}}, budget: 150 * time.Millisecond, wantErr: "giving up"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := http.NewServeMux()
			mux.Handle("/", tt.stub)
			srv := httptest.NewServer(mux)
			defer srv.Close()
			jc := testJIT(srv.URL+tt.prefix+"/", "tok")
			r := &simRunner{
				jit: jc, http: srv.Client(), log: slog.New(slog.DiscardHandler),
				hold: time.Second, budget: time.Minute, backoffMin: time.Millisecond, backoffMax: 20 * time.Millisecond,
			}
			if tt.budget > 0 {
				r.budget = tt.budget
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := r.run(ctx)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("run: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("run = %v, want an error containing %q", err, tt.wantErr)
			}
			tt.stub.mu.Lock()
			defer tt.stub.mu.Unlock()
			for _, a := range tt.stub.auth {
				if a != "Bearer tok" {
					t.Errorf("Authorization %q, want Bearer tok", a)
				}
			}
			if tt.wantPath != "" && !contains(tt.stub.paths, tt.wantPath) {
				t.Errorf("paths %v lack %q", tt.stub.paths, tt.wantPath)
			}
			for _, p := range tt.stub.paths {
				if strings.Contains(p, "//") {
					t.Errorf("path %q has a double slash", p)
				}
			}
		})
	}
}

func TestRunRunnerConnectUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	r := &simRunner{
		jit: testJIT(url, "tok"), http: &http.Client{}, log: slog.New(slog.DiscardHandler),
		hold: time.Second, budget: 100 * time.Millisecond, backoffMin: time.Millisecond, backoffMax: 10 * time.Millisecond,
	}
	if err := r.run(context.Background()); err == nil || !strings.Contains(err.Error(), "giving up") {
		t.Fatalf("run = %v, want giving up after retrying", err)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

package cli

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
)

// cliRemover records the removals the API asks for.
type cliRemover struct {
	mu    sync.Mutex
	names []string
}

func (r *cliRemover) RemoveRunner(_ context.Context, name string, force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.names = append(r.names, name)
	return nil
}

func (r *cliRemover) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.names)
}

var _ httpapi.Remover = (*cliRemover)(nil)

// TestRunnersRmSendsToken: runners rm reads the API token next to
// --state-file (or SHOES_SCALESET_STATE_FILE) and sends it; without the
// file it fails before sending anything, and a token the daemon does not
// know is refused with a message that points at --state-file.
func TestRunnersRmSendsToken(t *testing.T) {
	token, err := httpapi.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	rm := &cliRemover{}
	h, err := httpapi.NewHandler(httpapi.Deps{Remover: rm}, httpapi.Config{Token: token, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	listen := strings.TrimPrefix(srv.URL, "http://")

	dir := t.TempDir()
	good := filepath.Join(dir, "good", "state.db")
	stale := filepath.Join(dir, "stale", "state.db")
	missing := filepath.Join(dir, "missing", "state.db")
	for path, tok := range map[string]string{good: token, stale: strings.Repeat("0", 64)} {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := httpapi.WriteTokenFile(httpapi.TokenFile(path), tok); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantCode  int
		wantCalls int
		wantIn    []string
	}{
		{name: "token next to --state-file", args: []string{"--state-file", good}, wantCode: exitOK, wantCalls: 1, wantIn: []string{"is being removed"}},
		{name: "token next to SHOES_SCALESET_STATE_FILE", env: map[string]string{"SHOES_SCALESET_STATE_FILE": good}, wantCode: exitOK, wantCalls: 1},
		{name: "no token file", args: []string{"--state-file", missing}, wantCode: exitFailure,
			wantIn: []string{"api token", missing + ".api-token", "--state-file"}},
		{name: "another daemon's token", args: []string{"--state-file", stale}, wantCode: exitFailure,
			wantIn: []string{"refused the token", stale + ".api-token"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SHOES_SCALESET_STATE_FILE", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			before := rm.calls()
			res := runCLIMain(t, 30*time.Second, append([]string{"runners", "rm", "myshoes-x", "--listen", listen}, tc.args...)...)
			if res.code != tc.wantCode {
				t.Fatalf("exit %d, want %d\n%s", res.code, tc.wantCode, res)
			}
			if got := rm.calls() - before; got != tc.wantCalls {
				t.Errorf("%d removals, want %d", got, tc.wantCalls)
			}
			for _, s := range tc.wantIn {
				if !strings.Contains(res.stdout+res.stderr, s) {
					t.Errorf("output lacks %q:\n%s", s, res)
				}
			}
			if strings.Contains(res.stdout+res.stderr, token) {
				t.Errorf("runners rm printed the token")
			}
		})
	}
}

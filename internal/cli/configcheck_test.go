package cli

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/myshoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

const checkedPolicy = `defaults:
  max_runners: 4
  labels: [linux]
rules:
  - name: gpu
    match: {scope: gpu-org, resource_type: large}
    max_runners: 2
    labels: [gpu]
    scale_set_name: "gpu-{scope}"
  - name: legacy
    match: {scope: "legacy-org/*"}
    disabled: true
`

// TestConfigCheck: config check validates a file, and with myshoes's URL
// shows what each target gets (table and json); a bad file exits 2 with
// the file, the line and the key.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "policy.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	for p, text := range map[string]string{good: checkedPolicy, bad: "defaults:\n  max_runners: 4\n  min_runner: 1\n"} {
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ms := myshoesfake.New(slog.New(slog.DiscardHandler))
	ms.SetTargets([]myshoes.Target{
		{ID: "t1", Scope: "gpu-org", ResourceType: "large", Status: "active"},
		{ID: "t2", Scope: "legacy-org/app", ResourceType: "small", Status: "active"},
		{ID: "t3", Scope: "other-org", ResourceType: "nano", Status: "active"},
	})
	srv := httptest.NewServer(ms.Handler())
	t.Cleanup(srv.Close)
	env := testkit.ChildEnv()

	r := runCLIBinary(t, 30*time.Second, env, "config", "check", good)
	if r.code != 0 || !strings.Contains(r.stdout, "policy.yaml: valid: 2 rules") {
		t.Errorf("config check of a good file without myshoes: want exit 0 and valid\n%+v", r)
	}

	r = runCLIBinary(t, 30*time.Second, env, "config", "check", good, "--myshoes-url", srv.URL)
	if r.code != 0 {
		t.Fatalf("config check with myshoes: exit %d\n%+v", r.code, r)
	}
	for _, want := range []string{
		"gpu-org         large     gpu       0    2    gpu",
		"gpu-gpu-org",
		"legacy-org/app  small     legacy    -    -",
		"(disabled)",
		"other-org       nano      defaults  0    4    linux",
		"myshoes-other-org",
		"valid: 2 rules, 3 targets",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("config check table lacks %q:\n%s", want, r.stdout)
		}
	}

	r = runCLIBinary(t, 30*time.Second, append(env, "SHOES_SCALESET_MYSHOES_URL="+srv.URL, "SHOES_SCALESET_MAX_RUNNERS=7"), "config", "check", good, "-o", "json")
	var got []targetPolicy
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 || len(got) != 3 {
		t.Fatalf("config check -o json: exit %d, %v\n%+v", r.code, err, r)
	}
	if g := got[0]; g.Rule != "gpu" || g.MaxRunners != 2 || g.ScaleSetName != "gpu-gpu-org" || g.RunnerGroup != "default" {
		t.Errorf("gpu-org gets %+v, want rule gpu, max 2, scale set gpu-gpu-org, group default", g)
	}
	if !got[1].Disabled || got[1].Rule != "legacy" {
		t.Errorf("legacy-org/app gets %+v, want disabled by legacy", got[1])
	}

	r = runCLIBinary(t, 30*time.Second, env, "config", "check", bad)
	if r.code != 2 || !strings.Contains(r.stderr, "bad.yaml:3: defaults.min_runner: unknown key") {
		t.Errorf("config check of a bad file: want exit 2 naming line 3 and the key\n%+v", r)
	}
}

package shoes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// TestPluginEnvironmentDropsSecrets: the variables Config.DropEnv names
// (exactly, or by a prefix ending in *) do not reach the plugin process;
// every other variable of ours does, and Config.Env is added. Not
// parallel: it sets the process environment.
func TestPluginEnvironmentDropsSecrets(t *testing.T) {
	secrets := map[string]string{
		"GITHUB_PRIVATE_KEY_BASE64":                "c2VjcmV0LWtleQ==",
		"GITHUB_PRIVATE_KEY_PATH_EXTRA":            "/secret/key.pem",
		"GITHUB_APP_SECRET":                        "webhook-secret",
		"GITHUB_TOKEN":                             "ghp_secret",
		"SHOES_SCALESET_GITHUB_TOKEN":              "ghp_secret2",
		"SHOES_SCALESET_GITHUB_PRIVATE_KEY_BASE64": "c2VjcmV0LWtleTI=",
	}
	kept := map[string]string{
		"LXD_HOST":                   "https://lxd.example:8443",
		"GITHUB_APP_ID":              "12",
		"GITHUB_TOKENS_ARE_NOT_MINE": "kept: only the exact name GITHUB_TOKEN is dropped",
		"SHOES_SCALESET_MAX_RUNNERS": "3",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	for k, v := range kept {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	envFile := filepath.Join(dir, "plugin.env")
	script := writeScript(t, dir, "env-plugin", fmt.Sprintf("env > %s\nexec '%s' \"$@\"\n", envFile, fakeshoesBin))
	f := newFixture(t, map[string]string{"PLUGIN_OWN_SETTING": "from Config.Env"}, func(c *Config) {
		c.Path = script
		c.DropEnv = []string{"GITHUB_PRIVATE_KEY*", "GITHUB_APP_SECRET", "GITHUB_TOKEN", "SHOES_SCALESET_GITHUB_*"}
	})
	if _, err := f.host.AddInstance(context.Background(), addReq()); err != nil {
		t.Fatal(err)
	}
	var env map[string]string
	testkit.Eventually(t, 5*time.Second, "the plugin's environment", func() bool {
		b, err := os.ReadFile(envFile)
		if err != nil {
			return false
		}
		env = map[string]string{}
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "="); ok {
				env[k] = v
			}
		}
		return len(env) > 0
	})
	for k := range secrets {
		if _, ok := env[k]; ok {
			t.Errorf("%s reached the plugin's environment", k)
		}
	}
	for k, v := range kept {
		if env[k] != v {
			t.Errorf("%s = %q in the plugin's environment, want %q", k, env[k], v)
		}
	}
	if env["PLUGIN_OWN_SETTING"] != "from Config.Env" || env[shoesfake.EnvCallLog] != f.callLog {
		t.Errorf("Config.Env did not reach the plugin: PLUGIN_OWN_SETTING=%q %s=%q", env["PLUGIN_OWN_SETTING"], shoesfake.EnvCallLog, env[shoesfake.EnvCallLog])
	}
	if env["SHOES_PLUGIN_MAGIC_COOKIE"] == "" {
		t.Errorf("the go-plugin handshake cookie is missing")
	}
}

func TestFilterEnv(t *testing.T) {
	t.Parallel()
	env := []string{"A=1", "AB=2", "B_X=3", "B_=4", "B=5", "C", "=weird", "GITHUB_TOKEN=x", "GITHUB_TOKEN_EXTRA=y"}
	tests := []struct {
		drop []string
		want []string
	}{
		{nil, env},
		{[]string{"A"}, []string{"AB=2", "B_X=3", "B_=4", "B=5", "C", "=weird", "GITHUB_TOKEN=x", "GITHUB_TOKEN_EXTRA=y"}},
		{[]string{"B_*"}, []string{"A=1", "AB=2", "B=5", "C", "=weird", "GITHUB_TOKEN=x", "GITHUB_TOKEN_EXTRA=y"}},
		{[]string{"GITHUB_TOKEN", "C"}, []string{"A=1", "AB=2", "B_X=3", "B_=4", "B=5", "=weird", "GITHUB_TOKEN_EXTRA=y"}},
		{[]string{"*"}, nil},
	}
	for _, tt := range tests {
		got := filterEnv(env, tt.drop)
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("filterEnv(%v) = %v, want %v", tt.drop, got, tt.want)
		}
	}
}

package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
)

// TestPluginErrorExitCodes: of the errors of shoes.New, only configuration
// errors are usage errors (exit 2), naming --plugin, or --plugin-sha256 for
// a checksum; the rest (a download that kept failing) are runtime
// failures (exit 1), which the systemd unit restarts.
func TestPluginErrorExitCodes(t *testing.T) {
	o := &runOptions{}
	o.addFlags(pflag.NewFlagSet("run", pflag.ContinueOnError), func(string) (string, bool) { return "", false })
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantFlag string
	}{
		{"configuration", fmt.Errorf("download plugin x: server answered 404: %w", shoes.ErrConfig), exitUsage, "--plugin"},
		{"checksum", fmt.Errorf("plugin x: %w: %w", shoes.ErrConfig, shoes.ErrChecksumMismatch), exitUsage, "--plugin-sha256"},
		{"download kept failing", errors.New("download plugin x: connection refused (gave up after 5 attempts)"), exitFailure, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := o.pluginError(tt.err)
			var ue *usageError
			code := exitFailure
			if errors.As(err, &ue) {
				code = exitUsage
			}
			if code != tt.wantCode {
				t.Errorf("pluginError(%v) = %v: exit %d, want %d", tt.err, err, code, tt.wantCode)
			}
			if tt.wantFlag != "" && !hasCLIWord(err.Error(), tt.wantFlag) {
				t.Errorf("error %q does not name %s", err, tt.wantFlag)
			}
			if !strings.Contains(err.Error(), tt.err.Error()) {
				t.Errorf("error %q lost the cause %q", err, tt.err)
			}
		})
	}
}

// TestPluginEnvDrop: run keeps our GitHub secrets from plugin processes,
// and nothing else (the plugin's own settings, PLUGIN).
func TestPluginEnvDrop(t *testing.T) {
	drop := pluginEnvDrop()
	dropped := func(name string) bool {
		return slices.ContainsFunc(drop, func(d string) bool {
			if p, ok := strings.CutSuffix(d, "*"); ok {
				return strings.HasPrefix(name, p)
			}
			return d == name
		})
	}
	for _, name := range []string{"GITHUB_PRIVATE_KEY_BASE64", "GITHUB_PRIVATE_KEY_PATH", "GITHUB_APP_SECRET", "GITHUB_TOKEN",
		envName("github-private-key-base64"), envName("github-private-key-path"), envName("github-token"), envName("github-app-id")} {
		if !dropped(name) {
			t.Errorf("%s reaches plugin processes", name)
		}
	}
	for _, name := range []string{"PLUGIN", "LXD_HOST", "GITHUB_URL", "GITHUB_APP_ID", "RUNNER_USER", envName("plugin"), envName("max-runners"), "PATH", "HOME"} {
		if dropped(name) {
			t.Errorf("%s is kept from plugin processes", name)
		}
	}
}

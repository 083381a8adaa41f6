package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunPluginCheckExit2: run starts one plugin process and completes the
// go-plugin handshake before it touches the state file; a plugin that
// cannot is a configuration error (exit 2) that names the plugin, with
// what the plugin wrote to stderr.
func TestRunPluginCheckExit2(t *testing.T) {
	f := newCLIRunFixture(t, cliRSAKeyPEM(t))
	talker := filepath.Join(f.dir, "exits-with-a-reason")
	if err := os.WriteFile(talker, []byte("#!/bin/sh\necho 'my-plugin: LXD_HOST is not set' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, plugin string
		wantIn       []string
	}{
		{"true", "/bin/true", []string{"--plugin", "start plugin /bin/true"}},
		{"exits with a message", talker, []string{"--plugin", "start plugin " + talker, "LXD_HOST is not set"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runCLIBinary(t, 2*time.Minute, cliChildEnv(), f.args(nil, "plugin="+tc.plugin)...)
			if res.code != exitUsage {
				t.Fatalf("exit code = %d, want %d\n%s", res.code, exitUsage, res)
			}
			for _, want := range tc.wantIn {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
				}
			}
			if _, err := os.Stat(filepath.Dir(f.stateFile)); !os.IsNotExist(err) {
				t.Errorf("the state directory was created for a plugin that does not start (err %v)", err)
			}
		})
	}
}

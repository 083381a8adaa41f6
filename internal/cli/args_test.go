package cli

import (
	"strings"
	"testing"
	"time"
)

// TestArgumentErrorsExit2 checks that a wrong number of arguments and an
// unknown command, at any level, are usage errors.
func TestArgumentErrorsExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"runners", "bogus"}, `unknown command "bogus"`},
		{[]string{"sim", "bogus"}, `unknown command "bogus"`},
		{[]string{"run", "extra"}, `unknown command "extra"`},
		{[]string{"runners", "ls", "extra"}, `unknown command "extra"`},
		{[]string{"runners", "rm"}, "accepts 1 arg"},
		{[]string{"runners", "rm", "a", "b"}, "accepts 1 arg"},
		{[]string{"version", "x"}, `unknown command "x"`},
		{[]string{"state", "bogus"}, `unknown command "bogus"`},
		{[]string{"state", "migrate", "extra"}, `unknown command "extra"`},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			res := runCLIMain(t, 10*time.Second, tc.args...)
			if res.code != exitUsage {
				t.Errorf("exit code = %d, want %d; stderr: %s", res.code, exitUsage, res.stderr)
			}
			if !strings.Contains(res.stderr, tc.want) {
				t.Errorf("stderr %q does not say %q", res.stderr, tc.want)
			}
		})
	}
	// A group command with no argument prints its help and succeeds.
	if res := runCLIMain(t, 10*time.Second, "runners"); res.code != exitOK || !strings.Contains(res.stdout, "Available Commands") {
		t.Errorf("runners: exit %d, stdout %q", res.code, res.stdout)
	}
}

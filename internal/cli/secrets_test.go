package cli

import (
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSecretFlagWarning: a secret given as a flag, where `ps` shows it,
// makes run log a warning that names the flag and the variables to use
// instead; one given through a variable does not. Neither the warning nor
// anything else run logs holds the secret.
func TestSecretFlagWarning(t *testing.T) {
	f := newCLIRunFixture(t, cliRSAKeyPEM(t))
	pemKey, err := os.ReadFile(f.key)
	if err != nil {
		t.Fatal(err)
	}
	keyB64 := base64.StdEncoding.EncodeToString(pemKey)
	const token = "ghp_doNotLogThisToken0123456789abcdef"
	const warning = "a secret was given on the command line"
	keyInstead := []string{"SHOES_SCALESET_GITHUB_PRIVATE_KEY_BASE64", "GITHUB_PRIVATE_KEY_BASE64", "--github-private-key-path"}
	tests := []struct {
		name        string
		drop        []string
		set         []string
		env         map[string]string
		wantFlag    string // "" = no warning
		wantInstead []string
	}{
		{name: "key as a flag", drop: []string{"github-private-key-path"}, set: []string{"github-private-key-base64=" + keyB64},
			wantFlag: "--github-private-key-base64", wantInstead: keyInstead},
		{name: "key as a flag over a variable", drop: []string{"github-private-key-path"}, set: []string{"github-private-key-base64=" + keyB64},
			env: map[string]string{"GITHUB_PRIVATE_KEY_BASE64": keyB64}, wantFlag: "--github-private-key-base64", wantInstead: keyInstead},
		{name: "key from SHOES_SCALESET_GITHUB_PRIVATE_KEY_BASE64", drop: []string{"github-private-key-path"},
			env: map[string]string{"SHOES_SCALESET_GITHUB_PRIVATE_KEY_BASE64": keyB64}},
		{name: "key from GITHUB_PRIVATE_KEY_BASE64", drop: []string{"github-private-key-path"},
			env: map[string]string{"GITHUB_PRIVATE_KEY_BASE64": keyB64}},
		{name: "key file"},
		{name: "empty key flag cancelling the variable", set: []string{"github-private-key-base64="},
			env: map[string]string{"GITHUB_PRIVATE_KEY_BASE64": keyB64}},
		{name: "token as a flag", drop: []string{"github-private-key-path", "github-app-id"}, set: []string{"github-token=" + token},
			wantFlag: "--github-token", wantInstead: []string{"SHOES_SCALESET_GITHUB_TOKEN"}},
		{name: "token from SHOES_SCALESET_GITHUB_TOKEN", drop: []string{"github-private-key-path", "github-app-id"},
			env: map[string]string{"SHOES_SCALESET_GITHUB_TOKEN": token}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearCLIConfigEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			// The state file is a directory: run logs its start, then
			// fails to open it (exit 1) instead of running on.
			res := runCLIMain(t, 30*time.Second, f.args(tc.drop, append(tc.set, "state-file="+f.dir)...)...)
			if res.code != exitFailure || !strings.Contains(res.stderr, "open state") {
				t.Fatalf("want exit 1 at opening the state file, after the start:\n%s", res)
			}
			var warnings []string
			for _, line := range strings.Split(res.stderr, "\n") {
				if strings.Contains(line, warning) {
					warnings = append(warnings, line)
				}
			}
			switch {
			case tc.wantFlag == "" && len(warnings) > 0:
				t.Errorf("warning for a secret not on the command line:\n%s", strings.Join(warnings, "\n"))
			case tc.wantFlag != "" && len(warnings) != 1:
				t.Errorf("%d warnings, want one naming %s:\n%s", len(warnings), tc.wantFlag, res.stderr)
			case tc.wantFlag != "":
				w := warnings[0]
				if !strings.Contains(w, "level=WARN") || !hasCLIWord(w, tc.wantFlag) {
					t.Errorf("warning %q: want level WARN and the flag %s", w, tc.wantFlag)
				}
				for _, v := range tc.wantInstead {
					if !hasCLIWord(w, v) {
						t.Errorf("warning %q does not point to %s", w, v)
					}
				}
			}
			out := res.stdout + res.stderr
			for _, secret := range []string{keyB64, keyB64[:40], keyB64[len(keyB64)-40:], token} {
				if strings.Contains(out, secret) {
					t.Errorf("the output holds the secret %.12s...:\n%s", secret, out)
				}
			}
			for _, line := range strings.Split(strings.TrimSpace(string(pemKey)), "\n") {
				if !strings.HasPrefix(line, "-----") && strings.Contains(out, line) {
					t.Fatalf("the output holds a line of the private key")
				}
			}
		})
	}
}

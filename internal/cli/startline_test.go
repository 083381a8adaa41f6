package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestStartLineSettings: the start line's settings have every flag's
// effective value, defaults included, and say where the others came from;
// no secret value appears, wherever it came from.
func TestStartLineSettings(t *testing.T) {
	const (
		key      = "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=" // "-----BEGIN RSA PRIVATE KEY-----"
		token    = "ghp_startLineToken0123456789"
		password = "etcd-Pa55word"
	)
	env := map[string]string{
		"SHOES_SCALESET_ETCD_PASSWORD": password,
		"GITHUB_PRIVATE_KEY_BASE64":    key, // myshoes's variable
		"SHOES_SCALESET_SYNC_INTERVAL": "2m",
	}
	o := &runOptions{}
	f := pflag.NewFlagSet("run", pflag.ContinueOnError)
	o.addFlags(f, func(name string) (string, bool) { v, ok := env[name]; return v, ok })
	if err := f.Parse([]string{"--github-token", token, "--max-runners", "7", "--labels", "gpu,big"}); err != nil {
		t.Fatal(err)
	}
	if err := o.env.apply(); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	log, err := newLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("shoes-scaleset starting", o.settingsAttr(), o.settingsFromAttr())
	out := buf.String()
	for _, secret := range []string{key, token, password} {
		if strings.Contains(out, secret) {
			t.Errorf("the start line has the secret %q:\n%s", secret, out)
		}
	}
	var rec struct {
		Settings     map[string]string `json:"settings"`
		SettingsFrom map[string]string `json:"settings_from"`
	}
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{
		"max-runners":               "7", // flag
		"labels":                    "[gpu,big]",
		"sync-interval":             "2m0s", // SHOES_SCALESET_
		"poll-hold":                 "50s",  // default
		"min-runners":               "0",    // default
		"state-file":                defaultStateFile,
		"github-private-key-base64": "<redacted>",
		"github-token":              "<redacted>",
		"etcd-password":             "<redacted>",
	} {
		if got := rec.Settings[flag]; got != want {
			t.Errorf("settings[%s] = %q, want %q", flag, got, want)
		}
	}
	if _, ok := rec.Settings["help"]; ok {
		t.Error("settings has --help")
	}
	for flag, want := range map[string]string{
		"max-runners": "flag", "sync-interval": "SHOES_SCALESET_SYNC_INTERVAL", "github-private-key-base64": "GITHUB_PRIVATE_KEY_BASE64",
	} {
		if got := rec.SettingsFrom[flag]; got != want {
			t.Errorf("settings_from[%s] = %q, want %q", flag, got, want)
		}
	}
	if _, ok := rec.SettingsFrom["poll-hold"]; ok {
		t.Error("settings_from names a default")
	}

	// The text format hides them too.
	buf.Reset()
	if log, err = newLogger(&buf, "info", "text"); err != nil {
		t.Fatal(err)
	}
	log.Info("shoes-scaleset starting", o.settingsAttr(), o.settingsFromAttr())
	for _, secret := range []string{key, token, password} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("the text start line has the secret %q:\n%s", secret, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "settings.max-runners=7") {
		t.Errorf("text start line lacks settings.max-runners=7:\n%s", buf.String())
	}
}

// TestIsSecretFlag: every flag of run whose name says it holds a secret
// is one of secretFlags: a new secret flag must be listed there too (it
// is then kept off the command line's warnings and the plugin's
// environment as well).
func TestIsSecretFlag(t *testing.T) {
	newRunCmd(streams{}, nil).Flags().VisitAll(func(f *pflag.Flag) {
		if _, listed := secretFlags()[f.Name]; isSecretFlag(f.Name) && !listed {
			t.Errorf("--%s looks like a secret but is not in secretFlags", f.Name)
		}
	})
}

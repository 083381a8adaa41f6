package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/replica"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// cliRunFixture is a valid `run` configuration on disk, and files that
// make it invalid.
type cliRunFixture struct {
	dir       string
	stateFile string
	key       string // RSA PKCS#1
	notPEM    string
	ecPKCS8   string
	ecSEC1    string
	plugin    string // executable
	textFile  string // a plugin that is not executable
	missing   string // a path that does not exist
	notADir   string // a regular file, used as a directory
}

func newCLIRunFixture(t *testing.T, rsaPEM []byte) *cliRunFixture {
	t.Helper()
	dir := t.TempDir()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate ECDSA key: %v", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatalf("marshal ECDSA key: %v", err)
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatalf("marshal ECDSA key: %v", err)
	}
	f := &cliRunFixture{
		dir:       dir,
		stateFile: filepath.Join(dir, "state", "state.db"),
		missing:   filepath.Join(dir, "does-not-exist"),
	}
	for _, file := range []struct {
		dst  *string
		name string
		data []byte
		perm os.FileMode
	}{
		{&f.key, "app-key.pem", rsaPEM, 0o600},
		{&f.notPEM, "not-pem.pem", []byte("this is not a PEM file\n"), 0o600},
		{&f.ecPKCS8, "ec-pkcs8.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600},
		{&f.ecSEC1, "ec-sec1.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), 0o600},
		{&f.textFile, "plugin.txt", []byte("not a plugin\n"), 0o644},
		{&f.notADir, "a-file", []byte("x"), 0o644},
	} {
		*file.dst = filepath.Join(dir, file.name)
		if err := os.WriteFile(*file.dst, file.data, file.perm); err != nil {
			t.Fatalf("write %s: %v", file.name, err)
		}
	}
	f.plugin = writeCLIPluginWrapper(t, dir)
	return f
}

// args returns the run command line of the valid configuration, with the
// flags in drop left out and set ("flag=value") replacing or adding flags.
func (f *cliRunFixture) args(drop []string, set ...string) []string {
	flags := [][2]string{
		{"myshoes-url", "http://127.0.0.1:1/myshoes"},
		{"github-url", "http://127.0.0.1:1"},
		{"github-app-id", "1"},
		{"github-private-key-path", f.key},
		{"plugin", f.plugin},
		{"state-file", f.stateFile},
		{"listen", "127.0.0.1:0"},
		{"runner-base-directory", filepath.Join(f.dir, "runners")},
		{"sync-interval", "1s"},
	}
	overrides := map[string]string{}
	var order []string
	for _, kv := range set {
		k, v, _ := strings.Cut(kv, "=")
		if _, seen := overrides[k]; !seen {
			order = append(order, k)
		}
		overrides[k] = v
	}
	args := []string{"run"}
	for _, fl := range flags {
		if slices.Contains(drop, fl[0]) {
			continue
		}
		v := fl[1]
		if o, ok := overrides[fl[0]]; ok {
			v = o
			delete(overrides, fl[0])
		}
		args = append(args, "--"+fl[0]+"="+v)
	}
	for _, k := range order {
		if v, ok := overrides[k]; ok {
			args = append(args, "--"+k+"="+v)
		}
	}
	return args
}

// clearCLIConfigEnv empties every variable the run command reads, so that
// the environment of the test process cannot leak into a case.
func clearCLIConfigEnv(t *testing.T) {
	t.Helper()
	newRunCmd(streams{}, nil).Flags().VisitAll(func(fl *pflag.Flag) {
		t.Setenv(envName(fl.Name), "")
	})
	for _, name := range cliConfigEnv {
		t.Setenv(name, "")
	}
}

// hasCLIWord reports whether w occurs in s as a whole word: GITHUB_URL does
// not count inside SHOES_SCALESET_GITHUB_URL, nor --plugin inside
// --plugin-pool-size.
func hasCLIWord(s, w string) bool {
	re := regexp.MustCompile(`(?:^|[^A-Za-z0-9_-])` + regexp.QuoteMeta(w) + `(?:$|[^A-Za-z0-9_-])`)
	return re.MatchString(s)
}

func TestRunConfigErrorsExit2(t *testing.T) {
	f := newCLIRunFixture(t, cliRSAKeyPEM(t))
	const badB64 = "%%%not-base64%%%"
	const token = "ghp_doNotEchoThisToken0123"
	tests := []struct {
		name string
		drop []string
		set  []string
		env  map[string]string
		// wantFlag is the flag the error must be about; wantEnv the
		// variables it must name, as whole words.
		wantFlag  string
		wantEnv   []string
		wantIn    []string
		wantNotIn []string
	}{
		{name: "missing myshoes-url", drop: []string{"myshoes-url"},
			wantFlag: "--myshoes-url", wantEnv: []string{"SHOES_SCALESET_MYSHOES_URL"}, wantIn: []string{"required"}},
		// Several missing settings are reported at once, each with its
		// variables, not one per try.
		{name: "everything required missing", drop: []string{"myshoes-url", "github-app-id", "github-private-key-path", "plugin"},
			wantFlag: "--myshoes-url", wantEnv: []string{"SHOES_SCALESET_MYSHOES_URL", "SHOES_SCALESET_GITHUB_APP_ID", "GITHUB_APP_ID", "SHOES_SCALESET_GITHUB_PRIVATE_KEY_PATH", "SHOES_SCALESET_PLUGIN", "PLUGIN"},
			wantIn: []string{"missing required settings", "--github-app-id", "--github-private-key-path", "--plugin", "--github-token instead"}},
		{name: "myshoes-url and plugin missing", drop: []string{"myshoes-url", "plugin"},
			wantFlag: "--myshoes-url", wantIn: []string{"missing required settings: --myshoes-url", ", --plugin (env SHOES_SCALESET_PLUGIN or PLUGIN)"}, wantNotIn: []string{"github"}},
		{name: "myshoes-url not a url", set: []string{"myshoes-url=not a url"},
			wantFlag: "--myshoes-url", wantEnv: []string{"SHOES_SCALESET_MYSHOES_URL"}, wantIn: []string{"not a url"}},
		{name: "myshoes-url ftp", set: []string{"myshoes-url=ftp://x"},
			wantFlag: "--myshoes-url", wantEnv: []string{"SHOES_SCALESET_MYSHOES_URL"}, wantIn: []string{"ftp://x"}},
		{name: "github-url without scheme", set: []string{"github-url=github.com"},
			wantFlag: "--github-url", wantEnv: []string{"SHOES_SCALESET_GITHUB_URL", "GITHUB_URL"}, wantIn: []string{"github.com"}},
		{name: "missing app id", drop: []string{"github-app-id"},
			wantFlag: "--github-app-id", wantEnv: []string{"SHOES_SCALESET_GITHUB_APP_ID", "GITHUB_APP_ID"}},
		{name: "key file does not exist", set: []string{"github-private-key-path=" + f.missing},
			wantFlag: "--github-private-key-path", wantEnv: []string{"SHOES_SCALESET_GITHUB_PRIVATE_KEY_PATH"}, wantIn: []string{"no such file"}},
		{name: "key is not PEM", set: []string{"github-private-key-path=" + f.notPEM},
			wantFlag: "--github-private-key-path", wantEnv: []string{"SHOES_SCALESET_GITHUB_PRIVATE_KEY_PATH"}, wantIn: []string{"not PEM"}},
		{name: "ECDSA key PKCS#8", set: []string{"github-private-key-path=" + f.ecPKCS8},
			wantFlag: "--github-private-key-path", wantEnv: []string{"SHOES_SCALESET_GITHUB_PRIVATE_KEY_PATH"}, wantIn: []string{"not an RSA key"}},
		{name: "ECDSA key SEC1", set: []string{"github-private-key-path=" + f.ecSEC1},
			wantFlag: "--github-private-key-path", wantEnv: []string{"SHOES_SCALESET_GITHUB_PRIVATE_KEY_PATH"}, wantIn: []string{"not an RSA key"}},
		{name: "invalid base64 key from GITHUB_PRIVATE_KEY_BASE64", drop: []string{"github-private-key-path"},
			env:      map[string]string{"GITHUB_PRIVATE_KEY_BASE64": badB64},
			wantFlag: "--github-private-key-base64", wantEnv: []string{"SHOES_SCALESET_GITHUB_PRIVATE_KEY_BASE64", "GITHUB_PRIVATE_KEY_BASE64"},
			wantIn: []string{"base64"}, wantNotIn: []string{badB64}},
		{name: "token and app together", set: []string{"github-token=" + token},
			wantFlag: "--github-token", wantEnv: []string{"SHOES_SCALESET_GITHUB_TOKEN"}, wantNotIn: []string{token}},
		{name: "plugin does not exist", set: []string{"plugin=" + f.missing},
			wantFlag: "--plugin", wantEnv: []string{"SHOES_SCALESET_PLUGIN", "PLUGIN"}, wantIn: []string{"no such file"}},
		{name: "plugin is a non-executable text file", set: []string{"plugin=" + f.textFile},
			wantFlag: "--plugin", wantEnv: []string{"SHOES_SCALESET_PLUGIN", "PLUGIN"}, wantIn: []string{"not executable"}},
		{name: "plugin does not exist and the state directory cannot be created",
			set:      []string{"plugin=" + f.missing, "state-file=" + filepath.Join(f.notADir, "sub", "state.db")},
			wantFlag: "--plugin", wantEnv: []string{"SHOES_SCALESET_PLUGIN", "PLUGIN"}, wantIn: []string{"no such file"}},
		{name: "plugin-sha256 does not match", set: []string{"plugin-sha256=" + strings.Repeat("0", 64)},
			wantFlag: "--plugin-sha256", wantEnv: []string{"SHOES_SCALESET_PLUGIN_SHA256"}, wantIn: []string{"checksum mismatch", f.plugin}},
		{name: "plugin-sha256 is not a sha256", env: map[string]string{"SHOES_SCALESET_PLUGIN_SHA256": "abc"},
			wantFlag: "--plugin-sha256", wantEnv: []string{"SHOES_SCALESET_PLUGIN_SHA256"}, wantIn: []string{"64 hex digits"}},
		{name: "negative max-runners", set: []string{"max-runners=-1"},
			wantFlag: "--max-runners", wantEnv: []string{"SHOES_SCALESET_MAX_RUNNERS"}},
		{name: "min-runners above max-runners", set: []string{"min-runners=3", "max-runners=2"},
			wantFlag: "--min-runners", wantEnv: []string{"SHOES_SCALESET_MIN_RUNNERS"}, wantIn: []string{"3 > 2"}},
		{name: "negative plugin-pool-size", set: []string{"plugin-pool-size=-1"},
			wantFlag: "--plugin-pool-size", wantEnv: []string{"SHOES_SCALESET_PLUGIN_POOL_SIZE"}, wantIn: []string{"must not be negative"}},
		{name: "unknown log level", set: []string{"log-level=loud"},
			wantFlag: "--log-level", wantEnv: []string{"SHOES_SCALESET_LOG_LEVEL"}, wantIn: []string{"loud"}},
		{name: "unknown log format", set: []string{"log-format=xml"},
			wantFlag: "--log-format", wantEnv: []string{"SHOES_SCALESET_LOG_FORMAT"}, wantIn: []string{"xml"}},
		{name: "bogus runner version", set: []string{"runner-version=bogus"},
			wantFlag: "--runner-version", wantEnv: []string{"SHOES_SCALESET_RUNNER_VERSION", "RUNNER_VERSION"}, wantIn: []string{"bogus"}},
		{name: "empty runner-base-directory", set: []string{"runner-base-directory="},
			wantFlag: "--runner-base-directory", wantEnv: []string{"SHOES_SCALESET_RUNNER_BASE_DIRECTORY", "RUNNER_BASE_DIRECTORY"}, wantIn: []string{"must not be empty"}},
		{name: "runner-base-directory with a control character", set: []string{"runner-base-directory=runners\tx"},
			wantFlag: "--runner-base-directory", wantEnv: []string{"SHOES_SCALESET_RUNNER_BASE_DIRECTORY", "RUNNER_BASE_DIRECTORY"}, wantIn: []string{"control character"}},
		// A relative base directory is accepted, as myshoes accepts it: the
		// error moves on to the next check, an empty --runner-group.
		{name: "relative runner-base-directory is accepted", set: []string{"runner-base-directory=runners", "runner-group= "},
			wantFlag: "--runner-group", wantNotIn: []string{"--runner-base-directory", "RUNNER_BASE_DIRECTORY"}},
		{name: "relative RUNNER_BASE_DIRECTORY (myshoes variable) is accepted", drop: []string{"runner-base-directory"}, set: []string{"runner-group= "},
			env:      map[string]string{"RUNNER_BASE_DIRECTORY": "runners"},
			wantFlag: "--runner-group", wantNotIn: []string{"--runner-base-directory", "RUNNER_BASE_DIRECTORY"}},
		{name: "bad value from SHOES_SCALESET_MAX_RUNNERS",
			env:      map[string]string{"SHOES_SCALESET_MAX_RUNNERS": "abc"},
			wantFlag: "--max-runners", wantEnv: []string{"SHOES_SCALESET_MAX_RUNNERS"}, wantIn: []string{"abc"}},
		{name: "bad value from the myshoes variable GITHUB_URL", drop: []string{"github-url"},
			env:      map[string]string{"GITHUB_URL": "ftp://from-myshoes"},
			wantFlag: "--github-url", wantEnv: []string{"GITHUB_URL"}, wantIn: []string{"ftp://from-myshoes"}},
		{name: "bad plugin from the myshoes variable PLUGIN", drop: []string{"plugin"},
			env:      map[string]string{"PLUGIN": f.missing},
			wantFlag: "--plugin", wantEnv: []string{"PLUGIN"}, wantIn: []string{"no such file"}},
		// Precedence: flag, SHOES_SCALESET_*, myshoes variable. A good
		// value that wins moves the error on to the missing --plugin.
		{name: "good flag beats bad SHOES_SCALESET_ variable", drop: []string{"plugin"},
			env:      map[string]string{"SHOES_SCALESET_GITHUB_URL": "ftp://bad-env"},
			wantFlag: "--plugin", wantNotIn: []string{"--github-url", "ftp://bad-env"}},
		{name: "good SHOES_SCALESET_ variable beats bad myshoes variable", drop: []string{"github-url", "plugin"},
			env:      map[string]string{"SHOES_SCALESET_GITHUB_URL": "http://127.0.0.1:1", "GITHUB_URL": "ftp://bad-myshoes"},
			wantFlag: "--plugin", wantNotIn: []string{"--github-url", "ftp://bad-myshoes"}},
		{name: "good SHOES_SCALESET_ app id beats bad myshoes app id", drop: []string{"github-app-id", "plugin"},
			env:      map[string]string{"SHOES_SCALESET_GITHUB_APP_ID": "7", "GITHUB_APP_ID": "abc"},
			wantFlag: "--plugin", wantNotIn: []string{"--github-app-id", "abc"}},
		{name: "bad flag beats good SHOES_SCALESET_ variable", set: []string{"github-url=ftp://bad-flag"},
			env:      map[string]string{"SHOES_SCALESET_GITHUB_URL": "http://127.0.0.1:1"},
			wantFlag: "--github-url", wantEnv: []string{"SHOES_SCALESET_GITHUB_URL", "GITHUB_URL"}, wantIn: []string{"ftp://bad-flag"}},
		{name: "good int flag beats bad SHOES_SCALESET_ variable", set: []string{"max-runners=2", "min-runners=3"},
			env:      map[string]string{"SHOES_SCALESET_MAX_RUNNERS": "abc"},
			wantFlag: "--min-runners", wantIn: []string{"3 > 2"}, wantNotIn: []string{"abc"}},
		{name: "unknown flag", set: []string{"no-such-flag=1"},
			wantFlag: "--no-such-flag"},
		// Ranges are the components' (their Validate); the error names the
		// flag that set the field.
		{name: "sync-interval below controller.MinSyncInterval", set: []string{"sync-interval=999ms"},
			wantFlag: "--sync-interval", wantEnv: []string{"SHOES_SCALESET_SYNC_INTERVAL"}, wantIn: []string{"at least 1s"}},
		{name: "negative scale-down-grace", set: []string{"scale-down-grace=-1s"},
			wantFlag: "--scale-down-grace", wantEnv: []string{"SHOES_SCALESET_SCALE_DOWN_GRACE"}, wantIn: []string{"must be positive"}},
		{name: "negative idle-runner-ttl", set: []string{"idle-runner-ttl=-1s"},
			wantFlag: "--idle-runner-ttl", wantEnv: []string{"SHOES_SCALESET_IDLE_RUNNER_TTL"}, wantIn: []string{"must not be negative"}},
		{name: "blank runner-user", set: []string{"runner-user= "},
			wantFlag: "--runner-user", wantEnv: []string{"SHOES_SCALESET_RUNNER_USER", "RUNNER_USER"}, wantIn: []string{"blank"}},
		{name: "negative plugin-delete-timeout", set: []string{"plugin-delete-timeout=-1s"},
			wantFlag: "--plugin-delete-timeout", wantEnv: []string{"SHOES_SCALESET_PLUGIN_DELETE_TIMEOUT"}, wantIn: []string{"must be positive"}},
		{name: "negative history-max-age", set: []string{"history-max-age=-1h"},
			wantFlag: "--history-max-age", wantEnv: []string{"SHOES_SCALESET_HISTORY_MAX_AGE"}, wantIn: []string{"must not be negative"}},
		{name: "negative github-retry-wait-max", set: []string{"github-retry-wait-max=-1s"},
			wantFlag: "--github-retry-wait-max", wantEnv: []string{"SHOES_SCALESET_GITHUB_RETRY_WAIT_MAX"}, wantIn: []string{"must not be negative"}},
		{name: "github-url with a path", set: []string{"github-url=http://127.0.0.1:1/api/v3"},
			wantFlag: "--github-url", wantEnv: []string{"SHOES_SCALESET_GITHUB_URL", "GITHUB_URL"}, wantIn: []string{"without a path"}},
		{name: "github-url with user info", set: []string{"github-url=http://u:secret@127.0.0.1:1"},
			wantFlag: "--github-url", wantEnv: []string{"SHOES_SCALESET_GITHUB_URL"}, wantIn: []string{"user info"}, wantNotIn: []string{"secret"}},
		{name: "listen without a port", set: []string{"listen=127.0.0.1"},
			wantFlag: "--listen", wantEnv: []string{"SHOES_SCALESET_LISTEN"}, wantIn: []string{"127.0.0.1"}},
		// A zero value would be read as the component's default: refused.
		{name: "zero shutdown-timeout", set: []string{"shutdown-timeout=0s"},
			wantFlag: "--shutdown-timeout", wantEnv: []string{"SHOES_SCALESET_SHUTDOWN_TIMEOUT"}, wantIn: []string{"must not be 0s", "30s"}},
		{name: "zero plugin-add-timeout", set: []string{"plugin-add-timeout=0"},
			wantFlag: "--plugin-add-timeout", wantEnv: []string{"SHOES_SCALESET_PLUGIN_ADD_TIMEOUT"}, wantIn: []string{"must not be 0s"}},
		{name: "zero max-runners", set: []string{"max-runners=0"},
			wantFlag: "--max-runners", wantEnv: []string{"SHOES_SCALESET_MAX_RUNNERS"}, wantIn: []string{"must not be 0"}},
		{name: "zero history-max-count from the variable", env: map[string]string{"SHOES_SCALESET_HISTORY_MAX_COUNT": "0"},
			wantFlag: "--history-max-count", wantEnv: []string{"SHOES_SCALESET_HISTORY_MAX_COUNT"}, wantIn: []string{"must not be 0"}},
		{name: "empty state-file", set: []string{"state-file="},
			wantFlag: "--state-file", wantEnv: []string{"SHOES_SCALESET_STATE_FILE"}, wantIn: []string{"must not be empty"}},
		// The state's backend (issue 13): checked before anything is
		// reached, etcd included.
		{name: "unknown store", set: []string{"store=mysql"},
			wantFlag: "--store", wantEnv: []string{"SHOES_SCALESET_STORE"}, wantIn: []string{"bbolt or etcd"}},
		{name: "etcd without endpoints", set: []string{"store=etcd"},
			wantFlag: "--etcd-endpoints", wantEnv: []string{"SHOES_SCALESET_ETCD_ENDPOINTS"}, wantIn: []string{"required"}},
		{name: "etcd endpoints with the bbolt store", env: map[string]string{"SHOES_SCALESET_ETCD_ENDPOINTS": "127.0.0.1:2379"},
			wantFlag: "--etcd-endpoints", wantEnv: []string{"SHOES_SCALESET_ETCD_ENDPOINTS"}, wantIn: []string{"--store etcd"}},
		{name: "etcd endpoint without a port", set: []string{"store=etcd", "etcd-endpoints=http://127.0.0.1"},
			wantFlag: "--etcd-endpoints", wantIn: []string{"host:port"}},
		{name: "etcd prefix without slashes", set: []string{"store=etcd", "etcd-endpoints=127.0.0.1:2379", "etcd-prefix=cluster"},
			wantFlag: "--etcd-prefix", wantEnv: []string{"SHOES_SCALESET_ETCD_PREFIX"}, wantIn: []string{"start and end with /"}},
		{name: "etcd client certificate without its key", set: []string{"store=etcd", "etcd-endpoints=127.0.0.1:2379", "etcd-cert-file=/nonexistent.pem"},
			wantFlag: "--etcd-key-file", wantEnv: []string{"SHOES_SCALESET_ETCD_KEY_FILE"}},
		{name: "missing etcd CA file", set: []string{"store=etcd", "etcd-endpoints=127.0.0.1:2379", "etcd-ca-file=/nonexistent-ca.pem"},
			wantFlag: "--etcd-ca-file", wantEnv: []string{"SHOES_SCALESET_ETCD_CA_FILE"}, wantIn: []string{"no such file"}},
		{name: "etcd password without a user", set: []string{"store=etcd", "etcd-endpoints=127.0.0.1:2379"},
			env:      map[string]string{"SHOES_SCALESET_ETCD_PASSWORD": "doNotEchoThisPassword"},
			wantFlag: "--etcd-password", wantEnv: []string{"SHOES_SCALESET_ETCD_PASSWORD"}, wantNotIn: []string{"doNotEchoThisPassword"}},
		{name: "replica TTL not whole seconds", set: []string{"store=etcd", "etcd-endpoints=127.0.0.1:2379", "replica-ttl=1500ms"},
			wantFlag: "--replica-ttl", wantEnv: []string{"SHOES_SCALESET_REPLICA_TTL"}, wantIn: []string{"whole seconds"}},
		{name: "replica ID with a slash", set: []string{"store=etcd", "etcd-endpoints=127.0.0.1:2379", "replica-id=a/b"},
			wantFlag: "--replica-id", wantEnv: []string{"SHOES_SCALESET_REPLICA_ID"}},
		{name: "negative replica join delay", set: []string{"store=etcd", "etcd-endpoints=127.0.0.1:2379", "replica-join-delay=-1s"},
			wantFlag: "--replica-join-delay", wantEnv: []string{"SHOES_SCALESET_REPLICA_JOIN_DELAY"}},
		// ... except where the zero has a meaning of its own: no retries.
		{name: "zero github-retry-max is accepted", set: []string{"github-retry-max=0", "runner-group= "},
			wantFlag: "--runner-group", wantNotIn: []string{"--github-retry-max"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearCLIConfigEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			stateFile := f.stateFile
			for _, kv := range tc.set {
				if v, ok := strings.CutPrefix(kv, "state-file="); ok {
					stateFile = v
				}
			}
			res := runCLIMain(t, 30*time.Second, f.args(tc.drop, tc.set...)...)
			if res.code != exitUsage {
				t.Fatalf("exit code = %d, want %d\n%s", res.code, exitUsage, res)
			}
			if n := strings.Count(res.stderr, "\n"); n != 1 || !strings.HasSuffix(res.stderr, "\n") {
				t.Errorf("stderr has %d lines, want exactly one:\n%s", n, res.stderr)
			}
			if res.stdout != "" {
				t.Errorf("stdout = %q, want nothing", res.stdout)
			}
			if !hasCLIWord(res.stderr, tc.wantFlag) {
				t.Errorf("stderr does not name %s:\n%s", tc.wantFlag, res.stderr)
			}
			for _, v := range tc.wantEnv {
				if !hasCLIWord(res.stderr, v) {
					t.Errorf("stderr does not name the variable %s:\n%s", v, res.stderr)
				}
			}
			for _, s := range tc.wantIn {
				if !strings.Contains(res.stderr, s) {
					t.Errorf("stderr does not contain %q:\n%s", s, res.stderr)
				}
			}
			for _, s := range tc.wantNotIn {
				if strings.Contains(res.stderr, s) {
					t.Errorf("stderr contains %q:\n%s", s, res.stderr)
				}
			}
			// A configuration error is found before anything is touched.
			if _, err := os.Stat(stateFile); err == nil {
				t.Errorf("state file %s was created despite a configuration error", stateFile)
			}
		})
	}
}

// TestRunRuntimeFailureExits1 gives run a valid configuration with a state
// file it cannot use: a runtime failure, exit 1, not a usage error.
func TestRunRuntimeFailureExits1(t *testing.T) {
	f := newCLIRunFixture(t, cliRSAKeyPEM(t))
	garbage := filepath.Join(f.dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bbolt file\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		stateFile string
		wantIn    []string
	}{
		{"state directory cannot be created", filepath.Join(f.notADir, "sub", "state.db"), []string{"state directory", "not a directory"}},
		{"state file is a directory", f.dir, []string{f.dir}},
		{"state file is not a bbolt file", garbage, []string{"garbage.db", "corrupt"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearCLIConfigEnv(t)
			res := runCLIMain(t, 30*time.Second, f.args(nil, "state-file="+tc.stateFile)...)
			if res.code != exitFailure {
				t.Fatalf("exit code = %d, want %d\n%s", res.code, exitFailure, res)
			}
			for _, s := range tc.wantIn {
				if !strings.Contains(res.stderr, s) {
					t.Errorf("stderr does not contain %q:\n%s", s, res.stderr)
				}
			}
		})
	}
	b, err := os.ReadFile(garbage)
	if err != nil || !strings.HasPrefix(string(b), "not a bbolt file\n") {
		t.Errorf("the corrupt state file was modified (err %v)", err)
	}
}

func TestVersion(t *testing.T) {
	res := runCLIMain(t, 10*time.Second, "version")
	if res.code != exitOK || !strings.HasPrefix(res.stdout, "shoes-scaleset ") {
		t.Fatalf("version: want exit 0 and a line starting %q\n%s", "shoes-scaleset ", res)
	}
	bin := runCLIBinary(t, 10*time.Second, cliChildEnv(), "version")
	if bin.code != exitOK || !strings.HasPrefix(bin.stdout, "shoes-scaleset ") {
		t.Fatalf("binary version: want exit 0 and a line starting %q\n%s", "shoes-scaleset ", bin)
	}
}

func TestHelpOfEveryCommand(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the usage line
	}{
		{[]string{"--help"}, "shoes-scaleset [command]"},
		{[]string{"run", "--help"}, "shoes-scaleset run [flags]"},
		{[]string{"runners", "--help"}, "shoes-scaleset runners [command]"},
		{[]string{"runners", "ls", "--help"}, "shoes-scaleset runners ls [flags]"},
		{[]string{"scalesets", "ls", "--help"}, "shoes-scaleset scalesets ls [flags]"},
		{[]string{"state", "--help"}, "shoes-scaleset state [command]"},
		{[]string{"state", "migrate", "--help"}, "shoes-scaleset state migrate [flags]"},
		{[]string{"sim", "serve", "--help"}, "shoes-scaleset sim serve [flags]"},
		{[]string{"sim", "plugin", "--help"}, "shoes-scaleset sim plugin [flags]"},
		{[]string{"sim", "runner", "--help"}, "shoes-scaleset sim runner [flags]"},
		{[]string{"version", "--help"}, "shoes-scaleset version [flags]"},
		{[]string{"help", "run"}, "shoes-scaleset run [flags]"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			res := runCLIMain(t, 10*time.Second, tc.args...)
			if res.code != exitOK {
				t.Fatalf("exit code = %d, want 0\n%s", res.code, res)
			}
			if !strings.Contains(res.stdout, "Usage:") || !strings.Contains(res.stdout, tc.want) {
				t.Errorf("stdout lacks the usage %q:\n%s", tc.want, res.stdout)
			}
			if res.stderr != "" {
				t.Errorf("stderr = %q, want nothing", res.stderr)
			}
		})
	}
}

func TestPluginPoolSizeDefault(t *testing.T) {
	for _, tc := range []struct{ flag, concurrency, want int }{
		{0, 16, 32}, // the default: as many deletes as provisions at once
		{0, 64, 128},
		{4, 64, 4}, // an explicit size is kept
	} {
		if got := pluginPoolSize(tc.flag, tc.concurrency); got != tc.want {
			t.Errorf("pluginPoolSize(%d, %d) = %d, want %d", tc.flag, tc.concurrency, got, tc.want)
		}
	}
}

// TestRunFlagDefaultsAreTheComponents: every run flag that sets a
// component's field has that component's default (DefaultConfig), so the
// default is stated once; and every run flag is accounted for.
func TestRunFlagDefaultsAreTheComponents(t *testing.T) {
	// The run flags that set no component field through runSettings:
	// what only the command line has.
	runOnly := []string{
		"myshoes-url", // myshoes.Config.BaseURL, the only myshoes field a flag sets
		"github-private-key-path", "github-private-key-base64", "github-ca-file",
		"setup-script-template", "log-level", "log-format",
		"store", "etcd-endpoints", "etcd-prefix", "etcd-ca-file", "etcd-cert-file", "etcd-key-file",
		"etcd-username", "etcd-password", "etcd-dial-timeout", "replica-id", "replica-join-delay",
		"config", // the policy file: internal/policy over the controller's defaults
	}
	defaults := map[string]any{
		componentController: controller.DefaultConfig(),
		componentShoes:      shoes.DefaultConfig(),
		componentGitHub:     github.DefaultConfig(),
		componentStore:      store.DefaultOptions(),
		componentAPI:        httpapi.Config{},
		componentReplica:    replica.DefaultConfig(),
	}
	flags := newRunCmd(streams{}, nil).Flags()
	inTable := map[string]bool{}
	for _, s := range runSettings() {
		inTable[s.flag] = true
		f := flags.Lookup(s.flag)
		if f == nil {
			t.Errorf("runSettings names --%s, which run does not have", s.flag)
			continue
		}
		def, ok := defaults[s.component]
		if !ok {
			t.Errorf("--%s: unknown component %q", s.flag, s.component)
			continue
		}
		field := reflect.ValueOf(def).FieldByName(s.field)
		if !field.IsValid() {
			t.Errorf("--%s: %s has no field %s", s.flag, s.component, s.field)
			continue
		}
		if s.own {
			continue
		}
		if want := flagText(field.Interface()); f.DefValue != want {
			t.Errorf("--%s: default %q, but %s.%s defaults to %q", s.flag, f.DefValue, s.component, s.field, want)
		}
	}
	flags.VisitAll(func(f *pflag.Flag) {
		if _, known := zeroText(f.Value.Type()); !known {
			t.Errorf("--%s: zeroText does not know the flag type %q", f.Name, f.Value.Type())
		}
		switch own := slices.Contains(runOnly, f.Name); {
		case f.Name == "help":
		case own && inTable[f.Name]:
			t.Errorf("--%s is in runSettings and in the run-only flags", f.Name)
		case !own && !inTable[f.Name]:
			t.Errorf("--%s is neither in runSettings nor in the run-only flags", f.Name)
		}
	})
}

// flagText prints a Config field's value as pflag prints the default of
// the flag that sets it.
func flagText(v any) string {
	switch x := v.(type) {
	case []string:
		return "[" + strings.Join(x, ",") + "]"
	case fmt.Stringer: // time.Duration
		return x.String()
	}
	return fmt.Sprint(v)
}

// TestSettingError: a component's field error names the flag that set the
// field; one about a field no flag sets is still a usage error.
func TestSettingError(t *testing.T) {
	o := defaultRunOptions()
	tests := []struct {
		name      string
		component string
		err       error
		wantFlag  string
	}{
		{"controller field", componentController, fmt.Errorf("wrapped: %w", &controller.FieldError{Field: "MaxRunners", Err: errors.New("bad")}), "--max-runners"},
		{"field two components share", componentShoes, &shoes.FieldError{Field: "AddTimeout", Err: errors.New("bad")}, "--plugin-add-timeout"},
		{"store field", componentStore, &store.FieldError{Field: "HistoryMaxAge", Err: errors.New("bad")}, "--history-max-age"},
		{"field no flag sets", componentController, &controller.FieldError{Field: "AddAttempts", Err: errors.New("bad")}, ""},
		{"not a field error", componentGitHub, errors.New("bad"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := o.settingError(tc.component, tc.err)
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("settingError = %v, not a usage error", err)
			}
			if !strings.Contains(err.Error(), "bad") {
				t.Errorf("settingError = %q lost the cause", err)
			}
			if tc.wantFlag != "" && !hasCLIWord(err.Error(), tc.wantFlag) {
				t.Errorf("settingError = %q, want it to name %s", err, tc.wantFlag)
			}
			if tc.wantFlag == "" && !strings.Contains(err.Error(), tc.component+" config") {
				t.Errorf("settingError = %q, want it to name the %s config", err, tc.component)
			}
		})
	}
}

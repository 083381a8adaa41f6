//go:build reliability

package reliability

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestBadStateFile: a state file locked by another run, a garbage file, a
// truncated one and one written by a newer shoes-scaleset: run exits 1
// fast with a clear message and leaves the file byte for byte as it was.
func TestBadStateFile(t *testing.T) {
	res := newResult(t, 14, "bad state file",
		"locked by another run → exit 1 fast, naming the lock; garbage, truncated, newer schema → exit 1, file unchanged (sha256)")
	s, d := listening(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}})
	s.sim.QueueJobs("org-a", 2, 500*time.Millisecond)
	s.waitJobsDone(d, time.Minute)
	d.WaitDrained(time.Minute)

	t.Run("locked", func(t *testing.T) {
		r := runBinary(t, 30*time.Second, s.pluginEnvironment(), s.runArgs(testkit.FreeAddr(t))...)
		if r.Code != 1 || !strings.Contains(r.Stderr, "locked") {
			t.Errorf("a second run on a locked state file: want exit 1 and a message about the lock\n%s", r)
		}
		if r.Took > 10*time.Second {
			t.Errorf("a second run on a locked state file took %v to give up", r.Took)
		}
		res.figure("locked: exit %d after %.1fs: %s", r.Code, r.Took.Seconds(), firstLine(r.Stderr))
		d.Alive()
	})
	d.Stop()
	valid, err := os.ReadFile(s.stateFile)
	if err != nil {
		t.Fatal(err)
	}

	newer := filepath.Join(t.TempDir(), "newer.db")
	if err := os.WriteFile(newer, valid, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(newer, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("99"))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("write a newer schema version: %v", err)
	}
	garbage := make([]byte, 64<<10)
	if _, err := rand.Read(garbage); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"garbage", "corrupt", garbage},
		{"truncated", "corrupt", valid[:len(valid)/3]},
		{"newer schema", "newer", mustRead(t, newer)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			before := fileSum(t, path)
			args := append(s.runArgs(testkit.FreeAddr(t)), "--state-file", path)
			r := runBinary(t, 30*time.Second, s.pluginEnvironment(), args...)
			if r.Code != 1 || !strings.Contains(r.Stderr, tc.want) || !strings.Contains(r.Stderr, "untouched") {
				t.Errorf("run on a %s state file: want exit 1 and a message with %q and \"untouched\"\n%s", tc.name, tc.want, r)
			}
			if after := fileSum(t, path); after != before {
				t.Errorf("run changed the %s state file: sha256 %s → %s", tc.name, before, after)
			}
			res.figure("%s: exit %d after %.1fs, sha256 unchanged: %s", tc.name, r.Code, r.Took.Seconds(), firstLine(r.Stderr))
		})
	}
	s.checkInvariants(scenario.Options{})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBadConfig: bad inputs exit 2 with a message naming the flag and its
// environment variable, before the state file is touched; a key of
// another app is valid configuration, so run runs, and the target shows
// the authentication error in scalesets ls, with no session.
func TestBadConfig(t *testing.T) {
	res := newResult(t, 15, "bad configuration",
		"17 bad inputs (flags and variables) → exit 2 naming the flag and its variable, no state file; a key of another app → runs, scalesets ls shows the auth error, no session")
	s := newScenario(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}})
	dir := t.TempDir()
	ecPath := filepath.Join(dir, "ec.pem")
	textPlugin := filepath.Join(dir, "plugin.txt")
	for p, b := range map[string][]byte{
		ecPath:     testkit.ECKeyPEM(t),
		textPlugin: []byte("this is not a plugin\n"),
	} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		flag string   // the flag the message must name
		args []string // appended to the scenario's run flags
		env  []string
	}{
		{"empty myshoes URL", "myshoes-url", []string{"--myshoes-url", ""}, nil},
		{"myshoes URL not http", "myshoes-url", []string{"--myshoes-url", "ftp://127.0.0.1/x"}, nil},
		{"GitHub URL with a path", "github-url", []string{"--github-url", "http://127.0.0.1:1/api/v3"}, nil},
		{"no app ID", "github-app-id", []string{"--github-app-id", "0"}, nil},
		{"non-RSA key", "github-private-key-path", []string{"--github-private-key-path", ecPath}, nil},
		{"missing key file", "github-private-key-path", []string{"--github-private-key-path", filepath.Join(dir, "nope.pem")}, nil},
		{"key not base64 (myshoes variable)", "github-private-key-base64", []string{"--github-private-key-path="}, []string{"GITHUB_PRIVATE_KEY_BASE64=not*base64"}},
		{"plugin is a text file", "plugin", []string{"--plugin", textPlugin}, nil},
		{"negative max runners", "max-runners", []string{"--max-runners", "-1"}, nil},
		{"min runners above max", "min-runners", []string{"--min-runners", "5", "--max-runners", "2"}, nil},
		{"unknown log level", "log-level", []string{"--log-level", "loud"}, nil},
		{"sync interval below 1s", "sync-interval", []string{"--sync-interval", "100ms"}, nil},
		{"zero shutdown timeout", "shutdown-timeout", []string{"--shutdown-timeout", "0s"}, nil},
		{"negative plugin pool size", "plugin-pool-size", []string{"--plugin-pool-size", "-1"}, nil},
		{"runner base directory with a control character", "runner-base-directory", []string{"--runner-base-directory", "runners\tx"}, nil},
		{"max runners not a number (variable)", "max-runners", nil, []string{"SHOES_SCALESET_MAX_RUNNERS=many"}},
		{"zero plugin add timeout", "plugin-add-timeout", []string{"--plugin-add-timeout", "0s"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state", "state.db")
			args := append(s.runArgs(testkit.FreeAddr(t)), "--state-file", state)
			args = append(args, tc.args...)
			r := runBinary(t, 30*time.Second, append(s.pluginEnvironment(), tc.env...), args...)
			envVar := "SHOES_SCALESET_" + strings.ToUpper(strings.ReplaceAll(tc.flag, "-", "_"))
			if r.Code != 2 || !strings.Contains(r.Stderr, "--"+tc.flag) || !strings.Contains(r.Stderr, envVar) {
				t.Errorf("want exit 2 and a message naming --%s and %s\n%s", tc.flag, envVar, r)
			}
			if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a configuration error created the state file (%v)", err)
			}
		})
	}
	res.figure("%d bad inputs, each exit 2 naming the flag and its variable", len(cases))

	t.Run("key of another app", func(t *testing.T) {
		_, other := testkit.Key(t)
		keyPath := filepath.Join(t.TempDir(), "other-app.pem")
		if err := os.WriteFile(keyPath, other, 0o600); err != nil {
			t.Fatal(err)
		}
		s.flags = []string{"--github-private-key-path", keyPath}
		d := s.startRun()
		d.WaitUp()
		var sets []controller.ScaleSetStatus
		scenariotest.WaitFor(t, "an authentication error on org-a", time.Minute, func() (bool, string) {
			d.Alive()
			var err error
			sets, err = d.ScaleSets()
			return err == nil && len(sets) == 1 && sets[0].Error != "", fmt.Sprintf("%+v %v", sets, err)
		})
		r := runBinary(t, 30*time.Second, testkit.ChildEnv(), "scalesets", "ls", "--listen", d.Addr)
		if r.Code != 0 || !strings.Contains(r.Stdout, "org-a") || !strings.Contains(r.Stdout, "401") {
			t.Errorf("scalesets ls: want org-a with the 401 in its status\n%s", r)
		}
		code, _, _ := d.Get("/readyz")
		if code != http.StatusServiceUnavailable {
			t.Errorf("/readyz answered %d with a wrong key, want 503", code)
		}
		if st := s.sim.State(); len(st.ScaleSets) != 0 {
			t.Errorf("a scale set or session exists with a wrong key: %s", scenario.SummarizeScaleSets(st))
		}
		res.figure("key of another app: run keeps running; scalesets ls status: %s", firstLine(sets[0].Error))
		d.Stop()
		s.flags = nil
	})
	s.checkInvariants(scenario.Options{})
}

// TestBadPluginOutput: a plugin that answers an empty cloud ID, a 1 MiB
// IP address, or InvalidArgument on every call. A runner that cannot be
// provisioned goes to history with the reason, and provisioning backs off
// instead of calling the plugin in a loop.
func TestBadPluginOutput(t *testing.T) {
	res := newResult(t, 16, "bad plugin output",
		"empty cloud ID, 1 MiB IP, InvalidArgument on every call: failed runners go to history with the reason; AddInstance calls over 20s stay bounded by the backoff (no retry storm); a huge IP is dropped")
	window := 20 * time.Second
	for _, tc := range []struct {
		name   string
		env    []string
		reason string // in the history records' last error
	}{
		{"empty cloud ID", []string{"SIM_PLUGIN_EMPTY_CLOUD_ID=true", "SIM_PLUGIN_NO_RUNNER=true"}, "empty cloud"},
		{"InvalidArgument", []string{"SIM_PLUGIN_FAIL_CODE=InvalidArgument", "SIM_PLUGIN_FAIL_METHOD=AddInstance"}, "InvalidArgument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, d := listening(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}}, pluginKnobs(tc.env...))
			s.sim.QueueJobs("org-a", 3, time.Second)
			start := time.Now()
			scenariotest.WaitFor(t, "a first AddInstance", 30*time.Second, func() (bool, string) {
				return countCalls(s.calls(), "AddInstance") > 0, ""
			})
			time.Sleep(window - time.Since(start)) // the fixed window the calls are counted over
			d.Alive()
			adds := countCalls(s.calls(), "AddInstance")
			// 3 runners wanted; each failure pauses provisioning for
			// 200ms, doubling: about 3 rounds of 3 calls in 20s. A retry
			// storm would be hundreds.
			if adds > 15 {
				t.Errorf("%d AddInstance calls in %v: provisioning does not back off", adds, window)
			}
			hist, err := d.History()
			if err != nil {
				t.Fatal(err)
			}
			failed := 0
			for _, h := range hist {
				if h.Reason == "failed" && strings.Contains(h.Runner.LastError, tc.reason) {
					failed++
				}
			}
			if failed == 0 || failed != adds {
				t.Errorf("%d history records with reason failed and %q for %d AddInstance calls", failed, tc.reason, adds)
			}
			res.figure("%s: %d AddInstance calls in %v, %d runners in history as failed (%s)", tc.name, adds, window, failed, firstLine(hist[0].Runner.LastError))
			d.Stop()
			// The plugin is fixed: the jobs run.
			s.pluginEnv = nil
			d = s.startRun()
			s.settle(d, 3*time.Minute, scenario.Options{LostOK: true})
		})
	}
	t.Run("huge IP", func(t *testing.T) {
		s, d := listening(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}}, pluginKnobs("SIM_PLUGIN_HUGE_IP=true"))
		s.sim.QueueJobs("org-a", 3, 2*time.Second)
		waitRunnersIPs := func() (bool, string) {
			d.Alive()
			rs, err := d.Runners()
			if err != nil {
				return false, err.Error()
			}
			up := 0
			for _, r := range rs {
				if r.CloudID != "" {
					up++
					if len(r.IPAddress) > 64 {
						t.Fatalf("runner %s stored a %d-byte IP address", r.Name, len(r.IPAddress))
					}
				}
			}
			return up == 3, fmt.Sprint(scenario.CountStates(rs))
		}
		scenariotest.WaitFor(t, "3 runners up", time.Minute, waitRunnersIPs)
		fi, err := os.Stat(s.stateFile)
		if err != nil {
			t.Fatal(err)
		}
		iv := s.settle(d, 2*time.Minute, scenario.Options{})
		res.figure("huge IP: the 1 MiB ip_address was dropped; %d jobs completed; state file %d KiB", iv.Completed, fi.Size()>>10)
	})
}

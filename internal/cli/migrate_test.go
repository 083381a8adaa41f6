package cli

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/replica"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// clearMigrateEnv empties every variable state migrate reads, so that the
// test's own environment cannot fill a flag.
func clearMigrateEnv(t *testing.T) {
	t.Helper()
	newStateMigrateCmd(streams{}, nil).Flags().VisitAll(func(f *pflag.Flag) {
		t.Setenv(envName(f.Name), "")
	})
}

// writeDaemonState writes a state file through the store API, as a daemon
// would have left it, and closes it.
func writeDaemonState(t *testing.T, path string) {
	t.Helper()
	st, err := store.Open(store.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.PutScaleSet(store.ScaleSet{TargetID: "t-1", Scope: "org", Name: "myshoes-org", ScaleSetID: 1})
	if err == nil {
		err = st.PutSession(store.Session{ScaleSetID: 1, TargetID: "t-1", Scope: "org", SessionID: "s-1", OwnerName: st.OwnerID()})
	}
	if err == nil {
		err = st.CreateRunners([]store.Runner{
			{Name: "r-idle", TargetID: "t-1", Scope: "org", ScaleSetID: 1, State: store.StateIdle, CloudID: "c-1"},
			{Name: "r-busy", TargetID: "t-1", Scope: "org", ScaleSetID: 1, State: store.StateBusy, JobID: "j-1"},
			{Name: "r-done", TargetID: "t-1", Scope: "org", ScaleSetID: 1, State: store.StateBusy},
		})
	}
	if err == nil {
		_, err = st.FinishRunner("r-done", "completed")
	}
	if err == nil {
		err = st.SetCloudIDs(store.CloudIDs{Plugin: "/usr/local/bin/shoes-lxd", NameKeyed: true})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// verifyFiles compares two closed state files with store.Verify.
func verifyFiles(copyPath, srcPath string) error {
	var sts []*store.Store
	defer func() {
		for _, st := range sts {
			_ = st.Close()
		}
	}()
	for _, p := range []string{copyPath, srcPath} {
		st, err := store.Open(store.Options{Path: p, ReadOnly: true})
		if err != nil {
			return err
		}
		sts = append(sts, st)
	}
	return store.Verify(sts[0], sts[1])
}

// runnerNames runs `runners ls -o json` with args and returns the names.
func runnerNames(t *testing.T, args ...string) []string {
	t.Helper()
	res := runCLIMain(t, 30*time.Second, append([]string{"runners", "ls", "-o", "json"}, args...)...)
	if res.code != exitOK {
		t.Fatalf("runners ls %s:\n%s", strings.Join(args, " "), res)
	}
	var runners []store.Runner
	if err := json.Unmarshal([]byte(res.stdout), &runners); err != nil {
		t.Fatalf("runners ls output: %v\n%s", err, res.stdout)
	}
	var names []string
	for _, r := range runners {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	return names
}

// TestStateMigrate moves a stopped daemon's file into etcd, where
// `runners ls --store etcd` shows its runners, and etcd back into a new
// file that holds the same records. A second migration into the same
// etcd, a file a daemon still holds and etcd while a replica is live are
// refused (exit 1).
func TestStateMigrate(t *testing.T) {
	clearCLIConfigEnv(t)
	clearMigrateEnv(t)
	dir := t.TempDir()
	original := filepath.Join(dir, "state.db")
	writeDaemonState(t, original)
	srv := etcdtest.Start(t)
	etcd := func(prefix string) []string {
		return []string{"--etcd-endpoints", srv.Endpoint(), "--etcd-prefix", prefix}
	}
	migrate := func(from, to, prefix string) cliResult {
		return runCLIMain(t, 30*time.Second, append([]string{"state", "migrate", "--from", from, "--to", to}, etcd(prefix)...)...)
	}

	res := migrate("bbolt:"+original, "etcd", "/migrated/")
	if res.code != exitOK {
		t.Fatalf("migrate the file into etcd:\n%s", res)
	}
	for _, want := range []string{"scale sets 1, sessions 1, runners 2, history 1, meta 1", "verified", "--store etcd"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, res.stdout)
		}
	}
	want := []string{"r-busy", "r-idle"}
	if got := runnerNames(t, append([]string{"--store", "etcd"}, etcd("/migrated/")...)...); !slices.Equal(got, want) {
		t.Errorf("runners ls --store etcd: %v, want %v", got, want)
	}

	again := migrate("bbolt:"+original, "etcd", "/migrated/")
	if again.code != exitFailure || !strings.Contains(again.stderr, "not empty") || !strings.Contains(again.stderr, "runners: 2") {
		t.Errorf("a second migration into the same etcd: want exit 1 naming what etcd holds\n%s", again)
	}

	back := filepath.Join(dir, "back.db")
	if res := migrate("etcd", "bbolt:"+back, "/migrated/"); res.code != exitOK || !strings.Contains(res.stdout, "verified") {
		t.Fatalf("migrate etcd into a new file:\n%s", res)
	}
	if got := runnerNames(t, "--state-file", back, "--listen", ""); !slices.Equal(got, want) {
		t.Errorf("runners ls of the new file: %v, want %v", got, want)
	}
	if err := verifyFiles(back, original); err != nil {
		t.Errorf("the file that came back differs from the original: %v", err)
	}

	// A daemon holds the file (its exclusive lock): refused, and etcd (a
	// prefix of its own) is not touched.
	daemon, err := store.Open(store.Options{Path: original})
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	locked := migrate("bbolt:"+original, "etcd", "/other/")
	if locked.code != exitFailure || !strings.Contains(locked.stderr, "locked") || !strings.Contains(locked.stderr, "stop the daemon") {
		t.Errorf("migrating a file a daemon holds: want exit 1 saying it is locked\n%s", locked)
	}
	if got := runnerNames(t, append([]string{"--store", "etcd"}, etcd("/other/")...)...); len(got) != 0 {
		t.Errorf("the refused migration wrote runners %v to etcd", got)
	}

	// A live replica of the prefix: refused, naming it, until it leaves.
	r, err := replica.Join(t.Context(), replica.Config{Client: srv.Client(), Prefix: "/other/", ID: "replica-a"})
	if err != nil {
		t.Fatal(err)
	}
	live := migrate("etcd", "bbolt:"+filepath.Join(dir, "live.db"), "/other/")
	if live.code != exitFailure || !strings.Contains(live.stderr, "replica-a") {
		t.Errorf("migrating while a replica is live: want exit 1 naming it\n%s", live)
	}
	if err := r.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	if res := migrate("etcd", "bbolt:"+filepath.Join(dir, "left.db"), "/other/"); res.code != exitOK {
		t.Errorf("migrating once the replica left:\n%s", res)
	}

	noDir := migrate("etcd", "bbolt:"+filepath.Join(dir, "missing", "state.db"), "/migrated/")
	if noDir.code != exitUsage || !hasCLIWord(noDir.stderr, "--to") || !hasCLIWord(noDir.stderr, "SHOES_SCALESET_TO") {
		t.Errorf("a new file in a missing directory: want exit 2 naming --to\n%s", noDir)
	}
}

// TestStateMigrateUsageErrors: every bad input exits 2 with one line
// naming the flag and its variable, before any file or etcd is touched.
func TestStateMigrateUsageErrors(t *testing.T) {
	dir := t.TempDir()
	file := "bbolt:" + filepath.Join(dir, "state.db")
	ep := []string{"--etcd-endpoints", "127.0.0.1:1"} // never dialled
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantFlag []string
		wantEnv  []string
	}{
		{"no --from", nil, nil, []string{"--from"}, []string{"SHOES_SCALESET_FROM"}},
		{"no --to", []string{"--from", "etcd"}, nil, []string{"--to"}, []string{"SHOES_SCALESET_TO"}},
		{"unknown backend", []string{"--from", "mysql:x", "--to", "etcd"}, nil, []string{"--from"}, []string{"SHOES_SCALESET_FROM"}},
		{"bbolt without a path", []string{"--from", "etcd", "--to", "bbolt:"}, nil, []string{"--to"}, []string{"SHOES_SCALESET_TO"}},
		{"bad --to from the variable", []string{"--from", "etcd"}, map[string]string{"SHOES_SCALESET_TO": "nowhere"},
			[]string{"--to"}, []string{"SHOES_SCALESET_TO"}},
		{"two files", []string{"--from", file, "--to", file + "2"}, nil,
			[]string{"--from", "--to"}, []string{"SHOES_SCALESET_FROM", "SHOES_SCALESET_TO"}},
		{"etcd to etcd", append([]string{"--from", "etcd", "--to", "etcd"}, ep...), nil,
			[]string{"--from", "--to"}, []string{"SHOES_SCALESET_FROM", "SHOES_SCALESET_TO"}},
		{"no etcd endpoints", []string{"--from", file, "--to", "etcd"}, nil,
			[]string{"--etcd-endpoints"}, []string{"SHOES_SCALESET_ETCD_ENDPOINTS"}},
		{"bad etcd endpoint", []string{"--from", file, "--to", "etcd", "--etcd-endpoints", "ftp://127.0.0.1:1"}, nil,
			[]string{"--etcd-endpoints"}, []string{"SHOES_SCALESET_ETCD_ENDPOINTS"}},
		{"bad etcd prefix", append([]string{"--from", "etcd", "--to", file, "--etcd-prefix", "nope"}, ep...), nil,
			[]string{"--etcd-prefix"}, []string{"SHOES_SCALESET_ETCD_PREFIX"}},
		{"zero dial timeout", append([]string{"--from", "etcd", "--to", file, "--etcd-dial-timeout", "0s"}, ep...), nil,
			[]string{"--etcd-dial-timeout"}, []string{"SHOES_SCALESET_ETCD_DIAL_TIMEOUT"}},
		{"password without a user", append([]string{"--from", "etcd", "--to", file}, ep...), map[string]string{"SHOES_SCALESET_ETCD_PASSWORD": "pw"},
			[]string{"--etcd-password"}, []string{"SHOES_SCALESET_ETCD_PASSWORD"}},
		{"source file missing", append([]string{"--from", "bbolt:" + filepath.Join(dir, "missing.db"), "--to", "etcd"}, ep...), nil,
			[]string{"--from"}, []string{"SHOES_SCALESET_FROM"}},
		{"--store is not a flag of migrate", append([]string{"--from", file, "--to", "etcd", "--store", "etcd"}, ep...), nil,
			[]string{"--store"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearMigrateEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			res := runCLIMain(t, 30*time.Second, append([]string{"state", "migrate"}, tc.args...)...)
			if res.code != exitUsage {
				t.Fatalf("exit code = %d, want %d\n%s", res.code, exitUsage, res)
			}
			if n := strings.Count(res.stderr, "\n"); n != 1 || res.stdout != "" {
				t.Errorf("want one line on stderr and nothing on stdout\n%s", res)
			}
			for _, w := range append(tc.wantFlag, tc.wantEnv...) {
				if !hasCLIWord(res.stderr, w) {
					t.Errorf("stderr does not name %s:\n%s", w, res.stderr)
				}
			}
			if matches, _ := filepath.Glob(filepath.Join(dir, "*")); len(matches) > 0 {
				t.Errorf("a usage error created %v", matches)
			}
		})
	}
}

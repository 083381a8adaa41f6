package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// The habits of gh and kubectl, each through the built binary: refusing
// an unknown --state or --scope, suggestions for a mistyped command,
// --version and version -o json, an example in every --help, completion
// of values, and runners history.

// habitsT0 is when the fixture's first runner was created.
var habitsT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// writeHabitsState writes a stopped daemon's state file: scale sets of
// "org" (ID 1) and "owner/repo" (ID 2), runners r-idle and r-busy of
// "org", and three finished runners, newest first: r-c of "gone-org"
// (scale set 3, whose record is gone; idle-ttl), r-b of "owner/repo"
// (failed) and r-a of "org" (completed, job j-a).
func writeHabitsState(t *testing.T, path string) {
	t.Helper()
	clock := testkit.NewClock(habitsT0)
	st, err := store.Open(store.Options{Path: path, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.PutScaleSet(store.ScaleSet{TargetID: "t-1", Scope: "org", Name: "myshoes-org", ScaleSetID: 1}))
	must(st.PutScaleSet(store.ScaleSet{TargetID: "t-2", Scope: "owner/repo", Name: "myshoes-owner-repo", ScaleSetID: 2}))
	create := func(at time.Duration, rs ...store.Runner) {
		t.Helper()
		clock.Set(habitsT0.Add(at))
		must(st.CreateRunners(rs))
	}
	finish := func(at time.Duration, name, reason string) {
		t.Helper()
		clock.Set(habitsT0.Add(at))
		_, err := st.FinishRunner(name, reason)
		must(err)
	}
	create(0, store.Runner{Name: "r-a", TargetID: "t-1", Scope: "org", ScaleSetID: 1, State: store.StateBusy, JobID: "j-a", CloudID: "c-a"})
	create(10*time.Second, store.Runner{Name: "r-b", TargetID: "t-2", Scope: "owner/repo", ScaleSetID: 2, State: store.StatePending,
		LastError: "add instance: the plugin said no"})
	create(20*time.Second, store.Runner{Name: "r-c", TargetID: "t-3", Scope: "gone-org", ScaleSetID: 3, State: store.StateIdle})
	finish(90*time.Second, "r-a", "completed")
	finish(3*time.Minute, "r-b", "failed")
	finish(5*time.Minute, "r-c", "idle-ttl")
	create(6*time.Minute,
		store.Runner{Name: "r-idle", TargetID: "t-1", Scope: "org", ScaleSetID: 1, State: store.StateIdle, CloudID: "c-1"},
		store.Runner{Name: "r-busy", TargetID: "t-1", Scope: "org", ScaleSetID: 1, State: store.StateBusy, JobID: "j-1"})
}

// storeScaleSets serves the scale sets of a store, as the daemon's
// controller does (without the live fields).
type storeScaleSets struct{ st *store.Store }

func (s storeScaleSets) ScaleSets() ([]controller.ScaleSetStatus, error) {
	return controller.ScaleSetsFromStore(s.st, nil)
}

var _ httpapi.ScaleSets = storeScaleSets{}

// habitsSource is one place the inspection commands read the state from,
// as the flags that select it.
type habitsSource struct {
	name  string
	flags []string
}

// habitsFixture is the same state in three places: a state file no daemon
// holds, a state file a "daemon" holds (open read-write in this process,
// serving the real local API), and etcd.
type habitsFixture struct {
	file, held   string // state files
	listen       string // the API of the daemon holding held
	etcdFlags    []string
	file0, held0 [sha256.Size]byte // their contents after writing
}

func (f *habitsFixture) sources() []habitsSource {
	return []habitsSource{
		{"file", []string{"--listen", "", "--state-file", f.file}},
		{"daemon", []string{"--listen", f.listen, "--state-file", f.held}},
		{"etcd", f.etcdFlags},
	}
}

// checkUnwritten fails if a command changed the state file no daemon
// holds.
func (f *habitsFixture) checkUnwritten(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(f.file)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(b) != f.file0 {
		t.Errorf("the state file %s was written", f.file)
	}
}

func newHabitsFixture(t *testing.T) *habitsFixture {
	t.Helper()
	dir := t.TempDir()
	f := &habitsFixture{file: filepath.Join(dir, "state.db"), held: filepath.Join(dir, "held.db")}
	writeHabitsState(t, f.file)
	b, err := os.ReadFile(f.file)
	if err != nil {
		t.Fatal(err)
	}
	f.file0 = sha256.Sum256(b)
	if err := os.WriteFile(f.held, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// etcd: a copy of the file.
	srv := etcdtest.Start(t)
	const prefix = "/habits/"
	src, err := store.Open(store.Options{Path: f.file, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	dst, err := etcdStore(srv.Client(), prefix, "habits-test", nil, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	_ = dst.Close()
	_ = src.Close()
	f.etcdFlags = []string{"--store", "etcd", "--etcd-endpoints", srv.Endpoint(), "--etcd-prefix", prefix}

	// The daemon: holds the file's lock, serves the API over it.
	st, err := store.Open(store.Options{Path: f.held})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	token, err := httpapi.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.NewHandler(httpapi.Deps{Runners: st, ScaleSets: storeScaleSets{st}},
		httpapi.Config{Token: token, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(h)
	t.Cleanup(api.Close)
	f.listen = strings.TrimPrefix(api.URL, "http://")
	return f
}

// runHabits runs the binary with args, in an environment without any
// SHOES_SCALESET_ variable but extra.
func runHabits(t *testing.T, extraEnv []string, args ...string) cliResult {
	t.Helper()
	return runCLIBinary(t, 30*time.Second, cliChildEnv(extraEnv...), args...)
}

// TestInspectRefusesUnknownValues: runners ls refuses a --state that is
// not a runner state before it reads anything, and runners ls and
// runners history refuse a --scope the state does not have, naming the
// scopes there are, exit code 2; the same from the file, the daemon and
// etcd. A known value that matches nothing is an empty list.
func TestInspectRefusesUnknownValues(t *testing.T) {
	f := newHabitsFixture(t)
	for _, src := range f.sources() {
		t.Run(src.name, func(t *testing.T) {
			tests := []struct {
				name     string
				args     []string
				wantCode int
				wantIn   []string // in stderr
				wantOut  string   // stdout, with the exit code 0
			}{
				{name: "unknown state", args: []string{"runners", "ls", "--state", "idel"}, wantCode: exitUsage,
					wantIn: append([]string{"--state", "SHOES_SCALESET_STATE", `"idel"`}, runnerStateNames()...)},
				{name: "unknown scope", args: []string{"runners", "ls", "--scope", "orgg"}, wantCode: exitUsage,
					wantIn: []string{"--scope", "SHOES_SCALESET_SCOPE", `"orgg"`, "org, owner/repo"}},
				{name: "a scope only the history has is not one of runners ls", args: []string{"runners", "ls", "--scope", "gone-org"},
					wantCode: exitUsage, wantIn: []string{`"gone-org"`, "org, owner/repo"}},
				{name: "known scope and state, no runner", args: []string{"runners", "ls", "--scope", "owner/repo", "--state", "idle", "-o", "json"},
					wantOut: "[]\n"},
				{name: "unknown scope of history", args: []string{"runners", "history", "--scope", "orgg"}, wantCode: exitUsage,
					wantIn: []string{"--scope", `"orgg"`, "gone-org, org, owner/repo"}},
				{name: "history: a scope with no finished runner of that reason", args: []string{"runners", "history", "--scope", "org", "--reason", "failed", "-o", "json"},
					wantOut: "[]\n"},
				{name: "history: a reason nothing has is an empty list", args: []string{"runners", "history", "--reason", "no-such-reason", "-o", "json"},
					wantOut: "[]\n"},
				{name: "history: negative limit", args: []string{"runners", "history", "--limit", "-1"}, wantCode: exitUsage,
					wantIn: []string{"--limit", "SHOES_SCALESET_LIMIT"}},
				{name: "unknown output", args: []string{"runners", "history", "-o", "yaml"}, wantCode: exitUsage,
					wantIn: []string{"--output", "table, wide or json"}},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					res := runHabits(t, nil, append(tc.args, src.flags...)...)
					if res.code != tc.wantCode {
						t.Fatalf("exit %d, want %d\n%s", res.code, tc.wantCode, res)
					}
					if tc.wantCode == exitOK {
						if res.stdout != tc.wantOut {
							t.Errorf("stdout %q, want %q", res.stdout, tc.wantOut)
						}
						return
					}
					if res.stdout != "" {
						t.Errorf("a refusal printed on stdout: %q", res.stdout)
					}
					for _, w := range tc.wantIn {
						if !strings.Contains(res.stderr, w) {
							t.Errorf("stderr lacks %q:\n%s", w, res.stderr)
						}
					}
				})
			}
		})
	}
	f.checkUnwritten(t)

	// --state is checked before anything is read: no file needed, none made.
	missing := filepath.Join(t.TempDir(), "missing.db")
	if res := runHabits(t, nil, "runners", "ls", "--listen", "", "--state-file", missing, "--state", "idel"); res.code != exitUsage {
		t.Errorf("unknown state without a state file: exit %d, want %d\n%s", res.code, exitUsage, res)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("runners ls created %s (%v)", missing, err)
	}

	// A state without any scope says so.
	empty := filepath.Join(t.TempDir(), "empty.db")
	st, err := store.Open(store.Options{Path: empty})
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	res := runHabits(t, nil, "runners", "ls", "--listen", "", "--state-file", empty, "--scope", "org")
	if res.code != exitUsage || !strings.Contains(res.stderr, "holds no scale set or runner of any scope yet") {
		t.Errorf("unknown scope in an empty state: want exit 2 saying it holds no scope\n%s", res)
	}
}

// TestRunnersHistory: runners history lists the finished runners newest
// first, with reason, times, duration, scope, scale set and job, filtered
// by --scope, --reason and --limit; the file, the daemon's API and etcd
// give the same records.
func TestRunnersHistory(t *testing.T) {
	f := newHabitsFixture(t)
	file := f.sources()[0]

	jsonOf := func(t *testing.T, args ...string) []store.HistoryRecord {
		t.Helper()
		res := runHabits(t, nil, append([]string{"runners", "history", "-o", "json"}, args...)...)
		if res.code != exitOK {
			t.Fatalf("runners history -o json %q:\n%s", args, res)
		}
		var recs []store.HistoryRecord
		if err := json.Unmarshal([]byte(res.stdout), &recs); err != nil {
			t.Fatalf("runners history -o json: %v\n%s", err, res.stdout)
		}
		return recs
	}
	names := func(recs []store.HistoryRecord) []string {
		var out []string
		for _, r := range recs {
			out = append(out, r.Runner.Name)
		}
		return out
	}

	t.Run("table", func(t *testing.T) {
		res := runHabits(t, nil, append([]string{"runners", "history"}, file.flags...)...)
		if res.code != exitOK {
			t.Fatalf("runners history:\n%s", res)
		}
		header, rows := cliTable(t, res.stdout)
		wantHeader := []string{"NAME", "SCOPE", "SCALE SET", "REASON", "CREATED", "FINISHED", "DURATION", "JOB"}
		if !slices.Equal(header, wantHeader) {
			t.Errorf("header %q, want %q", header, wantHeader)
		}
		ts := func(d time.Duration) string { return habitsT0.Add(d).Format(time.RFC3339) }
		want := [][]string{
			{"r-c", "gone-org", "3", "idle-ttl", ts(20 * time.Second), ts(5 * time.Minute), "4m40s", "-"},
			{"r-b", "owner/repo", "myshoes-owner-repo", "failed", ts(10 * time.Second), ts(3 * time.Minute), "2m50s", "-"},
			{"r-a", "org", "myshoes-org", "completed", ts(0), ts(90 * time.Second), "1m30s", "j-a"},
		}
		if len(rows) != len(want) {
			t.Fatalf("%d rows, want %d:\n%s", len(rows), len(want), res.stdout)
		}
		for i := range want {
			if !slices.Equal(rows[i], want[i]) {
				t.Errorf("row %d: %q, want %q", i, rows[i], want[i])
			}
		}

		wide := runHabits(t, nil, append([]string{"runners", "history", "-o", "wide", "--reason", "failed"}, file.flags...)...)
		header, rows = cliTable(t, wide.stdout)
		if wide.code != exitOK || len(header) != 12 || len(rows) != 1 || rows[0][0] != "r-b" ||
			rows[0][11] != "add instance: the plugin said no" {
			t.Errorf("runners history -o wide --reason failed: want r-b with its last error\n%s", wide)
		}
	})

	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			args []string
			want []string
		}{
			{nil, []string{"r-c", "r-b", "r-a"}},
			{[]string{"--limit", "2"}, []string{"r-c", "r-b"}},
			{[]string{"--limit", "0"}, []string{"r-c", "r-b", "r-a"}},
			{[]string{"--scope", "org"}, []string{"r-a"}},
			{[]string{"--scope", "gone-org"}, []string{"r-c"}},
			{[]string{"--reason", "failed"}, []string{"r-b"}},
			{[]string{"--reason", "completed", "--scope", "org"}, []string{"r-a"}},
			{[]string{"--reason", "completed", "--scope", "owner/repo"}, nil},
			// The limit counts the records of the reason, not those read.
			{[]string{"--reason", "completed", "--limit", "1"}, []string{"r-a"}},
		}
		for _, tc := range tests {
			if got := names(jsonOf(t, append(tc.args, file.flags...)...)); !slices.Equal(got, tc.want) {
				t.Errorf("runners history %q: %q, want %q", tc.args, got, tc.want)
			}
		}
		f.checkUnwritten(t)
	})

	t.Run("the file, the daemon and etcd agree", func(t *testing.T) {
		st, err := store.Open(store.Options{Path: f.file, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		want, err := st.ListHistory(store.HistoryFilter{})
		_ = st.Close()
		if err != nil {
			t.Fatal(err)
		}
		wantJSON, _ := json.Marshal(want)
		for _, src := range f.sources() {
			got, _ := json.Marshal(jsonOf(t, src.flags...))
			if !bytes.Equal(got, wantJSON) {
				t.Errorf("%s: runners history -o json differs from the store's history:\n got %s\nwant %s", src.name, got, wantJSON)
			}
			if got := names(jsonOf(t, append([]string{"--reason", "completed", "--limit", "1"}, src.flags...)...)); !slices.Equal(got, []string{"r-a"}) {
				t.Errorf("%s: --reason completed --limit 1: %q, want [r-a]", src.name, got)
			}
			if got := names(jsonOf(t, append([]string{"--limit", "1"}, src.flags...)...)); !slices.Equal(got, []string{"r-c"}) {
				t.Errorf("%s: --limit 1: %q, want [r-c]", src.name, got)
			}
		}
	})
}

// habitsComplete runs `__complete args...` through the binary and returns
// the values offered (descriptions cut) and the directive.
func habitsComplete(t *testing.T, env []string, args ...string) (values []string, directive string) {
	t.Helper()
	values, directive, _ = habitsCompleteResult(t, env, args...)
	return values, directive
}

// habitsCompleteResult is habitsComplete, with the whole result.
func habitsCompleteResult(t *testing.T, env []string, args ...string) (values []string, directive string, res cliResult) {
	t.Helper()
	res = runHabits(t, env, append([]string{"__complete"}, args...)...)
	if res.code != exitOK {
		t.Fatalf("__complete %q:\n%s", args, res)
	}
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, ":") {
		t.Fatalf("__complete %q: no directive line:\n%s", args, res)
	}
	for _, l := range lines[:len(lines)-1] {
		v, _, _ := strings.Cut(l, "\t")
		values = append(values, v)
	}
	return values, last, res
}

// TestCompletion: the values of -o, --state, --store, --scope, --reason and
// the runner names of runners rm complete through __complete, the ones of
// the state read from the file, the daemon or etcd; never writing the
// file, nor waiting on a file a daemon holds.
func TestCompletion(t *testing.T) {
	f := newHabitsFixture(t)
	const noFiles = ":4" // cobra.ShellCompDirectiveNoFileComp
	fixed := []struct {
		args []string
		want []string
	}{
		{[]string{"runners", "ls", "--state", ""}, runnerStateNames()},
		{[]string{"runners", "ls", "-o", ""}, []string{"table", "wide", "json"}},
		{[]string{"runners", "ls", "--output", ""}, []string{"table", "wide", "json"}},
		{[]string{"runners", "history", "-o", ""}, []string{"table", "wide", "json"}},
		{[]string{"scalesets", "ls", "-o", ""}, []string{"table", "json"}},
		{[]string{"version", "-o", ""}, []string{"text", "json"}},
		{[]string{"runners", "ls", "--store", ""}, []string{"bbolt", "etcd"}},
	}
	for _, tc := range fixed {
		got, dir := habitsComplete(t, nil, tc.args...)
		if !slices.Equal(got, tc.want) || dir != noFiles {
			t.Errorf("__complete %q: %q %s, want %q %s", tc.args, got, dir, tc.want, noFiles)
		}
	}

	for _, src := range f.sources() {
		t.Run(src.name, func(t *testing.T) {
			tests := []struct {
				args []string // before the flags of the source
				last []string // after them: the word to complete last
				want []string
			}{
				{[]string{"runners", "ls"}, []string{"--scope", ""}, []string{"org", "owner/repo"}},
				{[]string{"runners", "ls"}, []string{"--scope", "ow"}, []string{"owner/repo"}},
				{[]string{"runners", "history"}, []string{"--scope", ""}, []string{"gone-org", "org", "owner/repo"}},
				{[]string{"runners", "history"}, []string{"--reason", ""}, []string{"completed", "failed", "idle-ttl"}},
				{[]string{"runners", "history"}, []string{"--reason", "f"}, []string{"failed"}},
			}
			if src.name != "etcd" { // runners rm has no --store: it asks the daemon
				tests = append(tests,
					struct{ args, last, want []string }{[]string{"runners", "rm"}, []string{""}, []string{"r-busy", "r-idle"}},
					struct{ args, last, want []string }{[]string{"runners", "rm"}, []string{"r-i"}, []string{"r-idle"}},
					struct{ args, last, want []string }{[]string{"runners", "rm"}, []string{"r-idle", ""}, nil})
			}
			for _, tc := range tests {
				args := append(append(slices.Clone(tc.args), src.flags...), tc.last...)
				got, dir := habitsComplete(t, nil, args...)
				if !slices.Equal(got, tc.want) || dir != noFiles {
					t.Errorf("__complete %q: %q %s, want %q %s", args, got, dir, tc.want, noFiles)
				}
			}
		})
	}

	t.Run("from the environment", func(t *testing.T) {
		env := []string{"SHOES_SCALESET_LISTEN=" + f.listen, "SHOES_SCALESET_STATE_FILE=" + f.held}
		if got, _ := habitsComplete(t, env, "runners", "rm", ""); !slices.Equal(got, []string{"r-busy", "r-idle"}) {
			t.Errorf("runners rm with the daemon in SHOES_SCALESET_LISTEN: %q", got)
		}
		env = []string{"SHOES_SCALESET_LISTEN=", "SHOES_SCALESET_STATE_FILE=" + f.file}
		if got, _ := habitsComplete(t, env, "runners", "ls", "--scope", ""); !slices.Equal(got, []string{"org", "owner/repo"}) {
			t.Errorf("runners ls --scope with the file in SHOES_SCALESET_STATE_FILE: %q", got)
		}
	})

	t.Run("a file a daemon holds and no daemon answering", func(t *testing.T) {
		// The lock is not waited for long: nothing is offered, and the
		// binary's timeout bounds the wait.
		for _, args := range [][]string{
			{"runners", "ls", "--listen", "", "--state-file", f.held, "--scope", ""},
			{"runners", "rm", "--listen", "", "--state-file", f.held, ""},
		} {
			got, dir, res := habitsCompleteResult(t, nil, args...)
			if len(got) != 0 || dir != noFiles || !strings.Contains(res.stderr, "locked") {
				t.Errorf("__complete %q on a held file: %q %s, want nothing, and the lock on stderr\n%s", args, got, dir, res)
			}
		}
	})

	t.Run("a missing file is not created", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "missing.db")
		if got, _ := habitsComplete(t, nil, "runners", "ls", "--listen", "", "--state-file", missing, "--scope", ""); len(got) != 0 {
			t.Errorf("offered %q from a missing file", got)
		}
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Errorf("completion created %s (%v)", missing, err)
		}
	})
	f.checkUnwritten(t)
}

// TestSuggestions: a mistyped command, at the top or nested, is a usage
// error that suggests the commands close to it.
func TestSuggestions(t *testing.T) {
	tests := []struct {
		args []string
		want []string // suggested, in order; none: no suggestion
	}{
		{[]string{"rnu"}, []string{"run"}},
		{[]string{"runners", "lss"}, []string{"ls"}},
		{[]string{"runners", "histroy"}, []string{"history"}},
		{[]string{"scalesets", "sl"}, []string{"ls"}},
		{[]string{"state", "migrat"}, []string{"migrate"}},
		{[]string{"sim", "serv"}, []string{"serve"}},
		{[]string{"completion", "powershel"}, []string{"powershell"}},
		{[]string{"completion", "bsh"}, []string{"bash", "fish", "zsh"}},
		{[]string{"runners", "zzzzzz"}, nil},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			res := runHabits(t, nil, tc.args...)
			if res.code != exitUsage {
				t.Fatalf("exit %d, want %d\n%s", res.code, exitUsage, res)
			}
			if !strings.Contains(res.stderr, `unknown command "`+tc.args[len(tc.args)-1]+`"`) {
				t.Errorf("stderr does not name the unknown command:\n%s", res.stderr)
			}
			_, after, found := strings.Cut(res.stderr, "Did you mean this?\n")
			if len(tc.want) == 0 {
				if found {
					t.Errorf("suggested something for %q:\n%s", tc.args, res.stderr)
				}
				return
			}
			var got []string
			for _, l := range strings.Split(after, "\n") {
				if !strings.HasPrefix(l, "\t") {
					break
				}
				got = append(got, strings.TrimPrefix(l, "\t"))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("suggested %q, want %q:\n%s", got, tc.want, res.stderr)
			}
		})
	}
}

// TestVersionFlagAndJSON: --version prints what version prints, and
// version -o json the same version with the Go version, platform and, when
// the build recorded it, the commit.
func TestVersionFlagAndJSON(t *testing.T) {
	plain := runHabits(t, nil, "version")
	flag := runHabits(t, nil, "--version")
	line := regexp.MustCompile(`^shoes-scaleset (\S+) \((go\S+), ([a-z0-9]+)/([a-z0-9]+)\)\n$`)
	m := line.FindStringSubmatch(plain.stdout)
	if plain.code != exitOK || m == nil {
		t.Fatalf("version: want exit 0 and one line matching %s\n%s", line, plain)
	}
	if flag.code != exitOK || flag.stdout != plain.stdout {
		t.Errorf("--version printed %q, version %q", flag.stdout, plain.stdout)
	}
	if m[2] != runtime.Version() || m[3] != runtime.GOOS || m[4] != runtime.GOARCH {
		t.Errorf("version %q: want %s, %s/%s", plain.stdout, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}

	res := runHabits(t, nil, "version", "-o", "json")
	if res.code != exitOK {
		t.Fatalf("version -o json:\n%s", res)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil {
		t.Fatalf("version -o json: %v\n%s", err, res.stdout)
	}
	for k, want := range map[string]string{"version": m[1], "go_version": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH} {
		if v[k] != want {
			t.Errorf("version -o json: %s = %v, want %q", k, v[k], want)
		}
	}
	if rev, ok := v["revision"]; ok {
		if s, _ := rev.(string); !regexp.MustCompile(`^[0-9a-f]{40,64}$`).MatchString(s) {
			t.Errorf("version -o json: revision %v is not a commit hash", rev)
		}
	}
	for k := range v {
		if !slices.Contains([]string{"version", "go_version", "revision", "revision_time", "modified", "os", "arch"}, k) {
			t.Errorf("version -o json: unexpected field %q", k)
		}
	}

	if bad := runHabits(t, nil, "version", "-o", "yaml"); bad.code != exitUsage || !strings.Contains(bad.stderr, "text or json") {
		t.Errorf("version -o yaml: want exit 2 naming text or json\n%s", bad)
	}
}

// TestEveryCommandHasAnExample walks the command tree: every command that
// is not hidden shows examples in its --help (through the binary), and
// each example line that runs shoes-scaleset names commands and flags
// that exist. No command is hidden today; a hidden one would be exempt.
// The examples kept in otherExamples belong to commands that state none
// of their own.
func TestEveryCommandHasAnExample(t *testing.T) {
	root := newRootCmd(streams{Out: io.Discard, Err: io.Discard}, func() {})
	checker := newDocsChecker(docsReadSources(t))
	table := otherExamples()
	used := map[string]bool{}
	var walk func(c *cobra.Command, path []string)
	n := 0
	walk = func(c *cobra.Command, path []string) {
		key := strings.Join(path, " ")
		if ex, ok := table[key]; ok {
			used[key] = true
			if c.Example != ex {
				t.Errorf("`%s` states its own example: drop its entry in otherExamples", key)
			}
		}
		if !c.Hidden {
			n++
			checkExample(t, checker, c, path)
		}
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
	}
	walk(root, nil)
	for key := range table {
		if !used[key] {
			t.Errorf("otherExamples has an example for %q, which is not a command", key)
		}
	}
	if n < 20 {
		t.Errorf("walked %d commands; the walk is broken", n)
	}
	for _, p := range checker.problems {
		t.Errorf("an example: %s", p)
	}
}

// checkExample checks that the command at path has an example, that its
// --help shows it, and feeds its lines to the docs checker.
func checkExample(t *testing.T, checker *docsChecker, c *cobra.Command, path []string) {
	t.Helper()
	where := strings.TrimSpace("shoes-scaleset " + strings.Join(path, " "))
	if strings.TrimSpace(c.Example) == "" {
		t.Errorf("`%s` has no example (cobra.Command.Example)", where)
		return
	}
	res := runHabits(t, nil, append(slices.Clone(path), "--help")...)
	if res.code != exitOK || !strings.Contains(res.stdout, "Examples:\n"+c.Example) {
		t.Errorf("`%s --help` does not show its examples\n%s", where, res)
	}
	joined := ""
	for i, l := range strings.Split(c.Example, "\n") {
		if s := strings.TrimSpace(l); strings.HasSuffix(s, `\`) {
			joined += strings.TrimSuffix(s, `\`) + " "
			continue
		}
		checker.checkShell("example of `"+where+"`", i+1, joined+strings.TrimSpace(l))
		joined = ""
	}
}

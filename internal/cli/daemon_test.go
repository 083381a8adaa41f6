package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// cliColumns splits a table line printed by tabwriter (cells padded with at
// least two spaces) into its cells.
func cliColumns(line string) []string {
	return regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
}

// cliTable splits table output into its header and rows.
func cliTable(t *testing.T, out string) (header []string, rows [][]string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("empty table output")
	}
	for _, l := range lines[1:] {
		rows = append(rows, cliColumns(l))
	}
	return cliColumns(lines[0]), rows
}

var cliRunnerName = regexp.MustCompile(`^myshoes-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// TestRunDaemonEndToEnd runs `shoes-scaleset run` as a process against a
// simulated GitHub, Actions service and myshoes, with the fake plugin, and
// checks what `runners ls` and `scalesets ls` show while it runs and after
// it stopped, that its logs hold no secret, and that a second daemon
// cannot take its state file.
func TestRunDaemonEndToEnd(t *testing.T) {
	w := startSim(t)

	// The shared harness: the peers in this process, run as a process.
	dir := t.TempDir()
	files := scenariotest.NewFiles(t, dir)
	stateFile, callLog := files.StateFile, files.CallLog
	addr := testkit.FreeAddr(t)
	peers, plugin := scenariotest.WorldPeers(t, w, dir), writeCLIPluginWrapper(t, dir)
	runArgs := func(listen string) scenariotest.RunArgs {
		return scenariotest.RunArgs{Peers: peers, Plugin: plugin, StateFile: stateFile, Listen: listen,
			Flags: []string{"--min-runners", "2", "--sync-interval", "1s", "--runner-base-directory", filepath.Join(dir, "runners"), "--log-level", "debug"}}
	}
	pluginEnv := files.PluginEnv()
	lsEnv := testkit.ChildEnv()
	// Every output of the inspection commands, checked for secrets at the
	// end.
	var outputs strings.Builder
	ls := func(args ...string) cliResult {
		t.Helper()
		res := runCLIBinary(t, 20*time.Second, lsEnv, args...)
		outputs.WriteString(res.stdout)
		outputs.WriteString(res.stderr)
		return res
	}
	lsJSON := func(args ...string) []store.Runner {
		t.Helper()
		res := ls(append([]string{"runners", "ls", "-o", "json"}, args...)...)
		if res.code != 0 {
			t.Fatalf("runners ls -o json %v:\n%s", args, res)
		}
		var rs []store.Runner
		if err := json.Unmarshal([]byte(res.stdout), &rs); err != nil {
			t.Fatalf("runners ls -o json %v: %v\n%s", args, err, res.stdout)
		}
		return rs
	}

	d := scenariotest.StartRun(t, cliBinary, filepath.Join(dir, "run.log"), pluginEnv, runArgs(addr))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- daemon log (last 80 lines):\n%s", d.Tail(80))
		}
	})
	live := []string{"--listen", addr, "--state-file", stateFile}
	offline := []string{"--listen", "127.0.0.1:1", "--state-file", stateFile}

	d.WaitUp()
	var runners []store.Runner
	// Every check runs a process: every 100ms.
	testkit.WaitForEvery(t, "2 idle runners in runners ls", 90*time.Second, 100*time.Millisecond, func() (bool, string) {
		d.Alive()
		res := ls(append([]string{"runners", "ls", "-o", "json"}, live...)...)
		runners = nil
		if res.code != 0 || json.Unmarshal([]byte(res.stdout), &runners) != nil {
			return false, res.String()
		}
		idle := 0
		for _, r := range runners {
			if r.State == store.StateIdle {
				idle++
			}
		}
		return len(runners) == 2 && idle == 2, fmt.Sprintf("%+v", runners)
	})

	t.Run("GOGC", func(t *testing.T) {
		want := fmt.Sprintf("go_gc_gogc_percent %d\n", defaultGCPercent)
		if v, set := os.LookupEnv("GOGC"); set {
			t.Skipf("GOGC=%s is set for the daemon too", v)
		}
		code, body, err := d.Get("/metrics")
		if err != nil || code != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET /metrics: %d %v; want %q in it", code, err, want)
		}
	})

	ok := t.Run("runners ls while running", func(t *testing.T) {
		calls, err := shoesfake.ReadCallLog(callLog)
		if err != nil {
			t.Fatalf("read call log: %v", err)
		}
		created := map[string]string{} // cloud ID -> runner name
		for _, c := range calls {
			if c.Method == shoesfake.MethodAddInstance && c.Code == "OK" {
				created[c.CloudID] = c.RunnerName
			}
		}
		var names []string
		for _, r := range runners {
			names = append(names, r.Name)
			if !cliRunnerName.MatchString(r.Name) {
				t.Errorf("runner name %q: want myshoes-<uuid>", r.Name)
			}
			if r.Scope != "org-a" {
				t.Errorf("runner %s: scope %q, want org-a", r.Name, r.Scope)
			}
			if r.CloudID == "" {
				t.Errorf("runner %s has no cloud ID", r.Name)
			} else if got, ok := created[r.CloudID]; !ok || got != r.Name {
				t.Errorf("runner %s: cloud ID %s not created for it by the plugin (call log: %q)", r.Name, r.CloudID, got)
			}
		}
		var simNames []string
		for _, r := range w.Actions.State().Runners {
			simNames = append(simNames, r.Name)
		}
		slices.Sort(names)
		slices.Sort(simNames)
		if !slices.Equal(names, simNames) {
			t.Errorf("runners ls names %v, the sim's runners %v", names, simNames)
		}

		res := ls(append([]string{"runners", "ls"}, live...)...)
		header, rows := cliTable(t, res.stdout)
		wantHeader := []string{"NAME", "SCOPE", "SCALE SET", "STATE", "CLOUD ID", "AGE", "JOB"}
		if res.code != 0 || !slices.Equal(header, wantHeader) {
			t.Fatalf("runners ls header %q, want %q\n%s", header, wantHeader, res)
		}
		checkCLIRows(t, rows, runners, len(wantHeader))

		res = ls(append([]string{"runners", "ls", "-o", "wide"}, live...)...)
		header, rows = cliTable(t, res.stdout)
		wantWide := append(slices.Clone(wantHeader), "IP", "RUNNER ID", "LAST ERROR")
		if res.code != 0 || !slices.Equal(header, wantWide) {
			t.Fatalf("runners ls -o wide header %q, want %q\n%s", header, wantWide, res)
		}
		checkCLIRows(t, rows, runners, len(wantWide))
		byName := map[string]store.Runner{}
		for _, r := range runners {
			byName[r.Name] = r
		}
		for _, row := range rows {
			if len(row) != len(wantWide) {
				continue // reported by checkCLIRows
			}
			if want := strconv.FormatInt(byName[row[0]].RunnerID, 10); row[8] != want || want == "0" {
				t.Errorf("wide row %q: RUNNER ID %s, want the runner's %s (non-zero)", row, row[8], want)
			}
			if row[9] != "-" {
				t.Errorf("wide row %q: LAST ERROR %q, want -", row, row[9])
			}
		}

		checkCLIFilters(t, lsJSON, live, 2)
	})
	if !ok {
		return
	}

	ok = t.Run("scalesets ls while running", func(t *testing.T) {
		var sets []controller.ScaleSetStatus
		testkit.WaitForEvery(t, "a session and desired 2 in scalesets ls", 30*time.Second, 100*time.Millisecond, func() (bool, string) {
			res := ls(append([]string{"scalesets", "ls", "-o", "json"}, live...)...)
			if res.code != 0 {
				return false, res.String()
			}
			sets = nil
			if err := json.Unmarshal([]byte(res.stdout), &sets); err != nil {
				t.Fatalf("scalesets ls -o json: %v\n%s", err, res.stdout)
			}
			return len(sets) == 1 && sets[0].SessionID != "" && sets[0].Desired == 2, res.stdout
		})
		simSets := w.Actions.State().ScaleSets
		if len(simSets) != 1 || simSets[0].Session == nil || simSets[0].Session.ID != sets[0].SessionID {
			t.Errorf("scalesets ls session %q, the sim's scale sets %+v", sets[0].SessionID, simSets)
		}
		if sets[0].Scope != "org-a" || !sets[0].Serving {
			t.Errorf("scale set %+v: want org-a, serving", sets[0])
		}

		res := ls(append([]string{"scalesets", "ls"}, live...)...)
		header, rows := cliTable(t, res.stdout)
		wantHeader := []string{"SCOPE", "SCALE SET", "ID", "LABELS", "POLICY", "SESSION", "DESIRED", "RUNNERS", "LAST POLL", "STATUS"}
		if res.code != 0 || !slices.Equal(header, wantHeader) {
			t.Fatalf("scalesets ls header %q, want %q\n%s", header, wantHeader, res)
		}
		if len(rows) != 1 || len(rows[0]) != len(wantHeader) {
			t.Fatalf("scalesets ls rows %q, want one row of %d columns", rows, len(wantHeader))
		}
		row := rows[0]
		if row[0] != "org-a" || row[4] != "2-10 defaults" || row[5] != sets[0].SessionID || row[6] != "2" || row[7] != "idle=2" {
			t.Errorf("scalesets ls row %q: want org-a, policy 2-10 defaults (the flags), session %s, desired 2, runners idle=2", row, sets[0].SessionID)
		}
	})
	if !ok {
		return
	}

	ok = t.Run("state file locked", func(t *testing.T) {
		// A second daemon on the same state file fails: exit 1, not 2.
		res := runCLIBinary(t, 12*time.Second, pluginEnv, runArgs(testkit.FreeAddr(t)).Args()...)
		if res.code != exitFailure || !strings.Contains(res.stderr, "locked") {
			t.Errorf("second run on the same state file: want exit 1 and a message about the lock\n%s", res)
		}
		// runners ls with no daemon at --listen cannot read the file.
		res = ls(append([]string{"runners", "ls"}, offline...)...)
		if res.code != exitFailure || !strings.Contains(res.stderr, "locked") || !strings.Contains(res.stderr, "did not answer") {
			t.Errorf("runners ls with a wrong --listen: want exit 1 and a message about the lock and --listen\n%s", res)
		}
		if d.Exited() {
			t.Fatalf("the daemon exited (code %d)", d.ExitCode())
		}
	})
	if !ok {
		return
	}

	if code, _ := d.Terminate(60 * time.Second); code != 0 {
		t.Fatalf("daemon exit code after SIGTERM = %d, want 0", code)
	}
	logs := d.Log()
	if !strings.Contains(logs, "shoes-scaleset stopped") {
		t.Errorf("the daemon did not log its clean stop")
	}

	t.Run("runners ls after stop", func(t *testing.T) {
		res := ls(append([]string{"runners", "ls", "-o", "json"}, offline...)...)
		if res.code != 0 {
			t.Fatalf("runners ls -o json from the file:\n%s", res)
		}
		st, err := store.Open(store.Options{Path: stateFile, ReadOnly: true})
		if err != nil {
			t.Fatalf("open state: %v", err)
		}
		stored, err := st.ListRunners(store.RunnerFilter{})
		st.Close()
		if err != nil {
			t.Fatalf("list runners: %v", err)
		}
		if stored == nil {
			stored = []store.Runner{}
		}
		want, err := json.Marshal(stored)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := json.Compact(&got, []byte(res.stdout)); err != nil {
			t.Fatalf("runners ls output is not JSON: %v\n%s", err, res.stdout)
		}
		if got.String() != string(want) {
			t.Errorf("runners ls -o json from the file:\n%s\nthe store:\n%s", got.String(), want)
		}
		var names []string
		for _, r := range stored {
			names = append(names, r.Name)
		}
		for _, r := range runners {
			if !slices.Contains(names, r.Name) {
				t.Errorf("runner %s, idle when the daemon stopped, is not in the state file (it has %v)", r.Name, names)
			}
		}

		res = ls(append([]string{"runners", "ls"}, offline...)...)
		header, rows := cliTable(t, res.stdout)
		if res.code != 0 || len(header) != 7 || header[0] != "NAME" {
			t.Fatalf("runners ls from the file:\n%s", res)
		}
		checkCLIRows(t, rows, stored, 7)

		checkCLIFilters(t, lsJSON, offline, len(stored))

		res = ls(append([]string{"scalesets", "ls"}, offline...)...)
		_, rows = cliTable(t, res.stdout)
		if res.code != 0 || len(rows) != 1 || len(rows[0]) < 6 || rows[0][0] != "org-a" || rows[0][5] != "-" {
			t.Errorf("scalesets ls from the file: want one row for org-a, desired -\n%s", res)
		}
	})

	t.Run("no secret in the logs", func(t *testing.T) {
		if !strings.Contains(logs, "level=DEBUG") {
			t.Fatalf("the daemon logged nothing at debug level: the check would be weak\n%s", testkit.Tail(logs, 20))
		}
		secrets := w.Actions.Secrets()
		if len(secrets) == 0 {
			t.Fatal("the sim issued no secrets: the check would be empty")
		}
		out := outputs.String()
		for _, s := range secrets {
			if s == "" {
				continue
			}
			if strings.Contains(logs, s) {
				t.Errorf("a secret issued by the sim appears in the daemon's logs: %.12s...", s)
			}
			if strings.Contains(out, s) {
				t.Errorf("a secret issued by the sim appears in the output of runners/scalesets ls: %.12s...", s)
			}
		}
		lines := strings.Split(strings.TrimSpace(string(w.AppKeyPEM())), "\n")
		for _, line := range lines[1 : len(lines)-1] { // not the BEGIN/END lines
			if strings.Contains(logs, line) {
				t.Fatalf("a line of the app private key appears in the daemon's logs")
			}
		}
	})

	// The run's invariants, by the harness's one checker: the 2 idle
	// runners kept by --min-runners own their instances, nothing else is
	// left, no session open after the clean stop, no violation.
	t.Run("invariants", func(t *testing.T) {
		iv := scenariotest.Check(t, scenariotest.Gather(t, cliBinary, scenario.InProcess(w), files), scenario.Options{Owners: scenario.EveryState})
		if iv.LiveOwned != 2 || iv.Leaked != 0 {
			t.Errorf("instances: %s; want the 2 idle runners' instances left, owned", iv)
		}
	})
}

// checkCLIRows checks that rows of runners ls are the runners, one each,
// with the columns NAME SCOPE SCALE SET STATE CLOUD ID first.
func checkCLIRows(t *testing.T, rows [][]string, runners []store.Runner, columns int) {
	t.Helper()
	if len(rows) != len(runners) {
		t.Errorf("%d rows, want one per runner (%d): %q", len(rows), len(runners), rows)
	}
	byName := map[string]store.Runner{}
	for _, r := range runners {
		byName[r.Name] = r
	}
	seen := map[string]bool{}
	for _, row := range rows {
		if len(row) != columns {
			t.Errorf("row %q: %d columns, want %d", row, len(row), columns)
			continue
		}
		r, ok := byName[row[0]]
		if !ok || seen[row[0]] {
			t.Errorf("row %q: not one of the runners, or listed twice", row)
			continue
		}
		seen[row[0]] = true
		if row[1] != r.Scope || row[2] != "myshoes-org-a" || row[3] != string(r.State) || row[4] != r.CloudID {
			t.Errorf("row %q: want scope %s, scale set myshoes-org-a, state %s, cloud ID %s", row, r.Scope, r.State, r.CloudID)
		}
	}
}

// checkCLIFilters checks the --state and --scope filters of runners ls,
// given the location flags and the number of (idle, org-a) runners.
func checkCLIFilters(t *testing.T, lsJSON func(...string) []store.Runner, where []string, n int) {
	t.Helper()
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"--state", "idle"}, n},
		{[]string{"--state", "busy"}, 0},
		{[]string{"--scope", "org-a"}, n},
		// A scope the state does not have is refused: TestInspectRefusesUnknownValues.
		{[]string{"--scope", "org-a", "--state", "idle"}, n},
		{[]string{"--scope", "org-a", "--state", "pending"}, 0},
	}
	for _, tc := range tests {
		rs := lsJSON(append(slices.Clone(where), tc.args...)...)
		if len(rs) != tc.want {
			t.Errorf("runners ls %v: %d runners, want %d", tc.args, len(rs), tc.want)
		}
		for _, r := range rs {
			if r.State != store.StateIdle || r.Scope != "org-a" {
				t.Errorf("runners ls %v: runner %s is %s in %s", tc.args, r.Name, r.State, r.Scope)
			}
		}
	}
}

package reliability

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// The suite drives its scenarios with the shared harness
// (internal/sim/scenario and its scenariotest): `sim serve` and `run` as
// processes, and the one invariant checker. What is its own: a world per
// scenario with the flags every run gets, and the report.

// httpc talks to the daemon's API where a test builds its own requests.
var httpc = &http.Client{Timeout: 15 * time.Second}

// world is one scenario's world: a sim serve process, the files of the
// daemon (state file, plugin call log, instance directories) and the
// `run` processes started on them, one after the other.
type world struct {
	t         *testing.T
	res       *Result
	dir       string
	sim       *scenariotest.Sim
	stateFile string
	callLog   string
	pluginDir string
	runnerDir string
	plugin    string
	// pluginEnv holds the fake plugin's knobs (SIM_PLUGIN_*), given to run.
	pluginEnv []string
	// flags are extra run flags for every start.
	flags []string
	// cloudIDs is the fake plugin's kind: "opaque" (the default) or "name"
	// (name-keyed, like shoes-lxd).
	cloudIDs string
	// etcdEndpoint and etcdPrefix are set when the runs are replicas
	// keeping the state in etcd (replicas_test.go).
	etcdEndpoint, etcdPrefix string
	mu                       sync.Mutex
	daemons                  []*daemon
}

// daemon is one `shoes-scaleset run` process of a world.
type daemon struct {
	*scenariotest.Run
	t *testing.T
}

// newScenario starts sim serve (poll hold 500ms unless o says otherwise)
// and prepares the daemon's files.
func newScenario(t *testing.T, res *Result, o scenariotest.SimOptions) *world {
	t.Helper()
	dir := t.TempDir()
	if o.PollHold == 0 {
		o.PollHold = 500 * time.Millisecond
	}
	o.AppKeyPEM = appKey(t)
	// Cleanups run last-registered first: daemons, then instances, then
	// the sim they talk to.
	s := &world{t: t, res: res, dir: dir, sim: scenariotest.StartSim(t, binary, dir, o),
		runnerDir: filepath.Join(dir, "runners"), plugin: scenariotest.PluginWrapper(t, binary, dir)}
	f := scenariotest.NewFiles(t, dir)
	s.stateFile, s.callLog, s.pluginDir = f.StateFile, f.CallLog, f.InstanceDir
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpLogs()
		}
	})
	return s
}

// listening is how most scenarios start: a world for o (newScenario),
// changed by each setting, and a run listening on every target of o
// (startListening).
func listening(t *testing.T, res *Result, o scenariotest.SimOptions, settings ...setting) (*world, *daemon) {
	t.Helper()
	s := newScenario(t, res, o)
	for _, set := range settings {
		set(s)
	}
	return s, s.startListening(o.Targets)
}

// setting changes a world before its first run starts.
type setting func(*world)

// runFlags adds flags to every run of the world.
func runFlags(flags ...string) setting {
	return func(s *world) { s.flags = append(s.flags, flags...) }
}

// pluginKnobs adds the fake plugin's knobs (SIM_PLUGIN_*) to every run of
// the world.
func pluginKnobs(env ...string) setting {
	return func(s *world) { s.pluginEnv = append(s.pluginEnv, env...) }
}

// pluginKind is usePlugin as a setting.
func pluginKind(cloudIDs string) setting {
	return func(s *world) { s.usePlugin(cloudIDs) }
}

// files are the world's files, as the harness reads them.
func (s *world) files() scenariotest.Files {
	return scenariotest.Files{StateFile: s.stateFile, CallLog: s.callLog, InstanceDir: s.pluginDir,
		EtcdEndpoint: s.etcdEndpoint, EtcdPrefix: s.etcdPrefix}
}

// dumpLogs copies the logs of a failed scenario where they survive the
// test's temporary directory, and names them.
func (s *world) dumpLogs() {
	out, err := os.MkdirTemp("", "reliability-logs-")
	if err != nil {
		return
	}
	files := []string{s.sim.LogPath, s.callLog}
	s.mu.Lock()
	for _, d := range s.daemons {
		files = append(files, d.LogPath)
	}
	s.mu.Unlock()
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			_ = os.WriteFile(filepath.Join(out, filepath.Base(f)), b, 0o644)
		}
	}
	s.t.Logf("logs of the failed scenario kept in %s", out)
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.daemons); n > 0 {
		s.t.Logf("--- last daemon log (tail):\n%s", s.daemons[n-1].Tail(30))
	}
}

// forEachPluginKind runs run as a subtest once with each kind of
// fake plugin: "opaque" cloud IDs, and "name" (name-keyed, like
// shoes-lxd), which a scenario gives to usePlugin.
func forEachPluginKind(t *testing.T, res *Result, run func(t *testing.T, res *Result, cloudIDs string)) {
	for _, kind := range []string{"opaque", "name"} {
		t.Run(kind, func(t *testing.T) { run(t, res, kind) })
	}
}

// usePlugin makes the fake plugin of every run of the scenario "opaque"
// (a new cloud ID per instance, like shoes-aws) or "name" (the instance
// named after its runner, like shoes-lxd). A name-keyed plugin's
// unknown-instance records are resolved by name once --plugin-add-timeout
// has passed, so the scenario gives it a short one.
func (s *world) usePlugin(cloudIDs string) {
	s.cloudIDs = cloudIDs
	s.pluginEnv = append(s.pluginEnv, shoesfake.EnvCloudIDs+"="+cloudIDs)
	if cloudIDs == "name" {
		s.flags = append(s.flags, "--plugin-add-timeout", "10s")
	}
}

// invariantOptions are the scenario's invariants: a name-keyed plugin
// leaves no unknown-instance record once they are resolved.
func (s *world) invariantOptions() scenario.Options {
	return scenario.Options{ResolvedByName: s.cloudIDs == "name"}
}

// runArgs are the flags of every run process of the scenario.
func (s *world) runArgs(addr string) []string {
	return s.runArgsOf(addr).Args()
}

func (s *world) runArgsOf(addr string) scenariotest.RunArgs {
	return scenariotest.RunArgs{Peers: s.sim.Peers(), Plugin: s.plugin, StateFile: s.stateFile, Listen: addr,
		Flags: append([]string{
			"--runner-base-directory", s.runnerDir,
			"--sync-interval", "1s",
			"--runner-bootstrap-timeout", "2m",
			"--reaper-interval", "1s",
			"--janitor-interval", "500ms",
			"--retry-backoff", "200ms",
			"--github-retry-wait-max", "200ms",
			"--poll-hold", "500ms",
			"--shutdown-timeout", "20s",
			"--scale-down-grace", "5s",
			"--log-level", "debug",
		}, s.flags...)}
}

// pluginEnvironment is the environment of run (and so of its plugin
// processes): the test's own without shoes-scaleset's and the fake's
// variables, plus the call log, the instance directory and the knobs.
func (s *world) pluginEnvironment() []string { return s.files().PluginEnv(s.pluginEnv...) }

// startRun starts `run` in its own process group, logging to a file of
// its own, with the scenario's flags and extra.
func (s *world) startRun(extra ...string) *daemon {
	s.t.Helper()
	s.mu.Lock()
	n := len(s.daemons) + 1
	s.mu.Unlock()
	a := s.runArgsOf(testkit.FreeAddr(s.t))
	a.Flags = append(a.Flags, extra...)
	d := &daemon{Run: scenariotest.StartRun(s.t, binary, filepath.Join(s.dir, fmt.Sprintf("run-%d.log", n)), s.pluginEnvironment(), a), t: s.t}
	s.mu.Lock()
	s.daemons = append(s.daemons, d)
	s.mu.Unlock()
	return d
}

// startListening starts run (startRun), waits until its API answers
// and every scope has a scale set listening on a session it opened.
func (s *world) startListening(scopes []string) *daemon {
	s.t.Helper()
	d := s.startRun()
	d.WaitUp()
	s.waitListening(d, d.Started, scopes, time.Minute)
	return d
}

// waitListening waits until every scope has a scale set with a session
// created after since, and returns how long that took from since: the
// "listening again" time after a (re)start.
func (s *world) waitListening(d *daemon, since time.Time, scopes []string, timeout time.Duration) time.Duration {
	s.t.Helper()
	return s.sim.WaitListening(d.Run, since, scopes, timeout)
}

// waitJobsDone waits until every job queued in the sim is final.
func (s *world) waitJobsDone(d *daemon, timeout time.Duration) {
	s.t.Helper()
	var run *scenariotest.Run
	if d != nil {
		run = d.Run
	}
	s.sim.WaitJobsDone(run, timeout)
}

// settle waits for every job and every runner to finish, stops the
// daemon with SIGTERM (exit 0 required) and checks the invariants.
func (s *world) settle(d *daemon, timeout time.Duration, o scenario.Options) scenario.Invariants {
	s.t.Helper()
	s.waitJobsDone(d, timeout)
	d.WaitDrained(timeout)
	if o.ResolvedByName {
		// With a name-keyed plugin, unknown-instance records are
		// resolved by name.
		d.WaitRunners("no unknown-instance record (resolved by name)", timeout, func(c map[store.RunnerState]int) bool {
			return c[store.StateUnknownInstance] == 0 && c[store.StateDeleting] == 0
		})
	}
	d.Stop()
	return s.checkInvariants(o)
}

// checkInvariants checks, once the last daemon has stopped, what
// scenario.Check checks (every job completed, every instance deleted or
// owned by a live record of the state file, no duplicate, no session left
// open, no violation), and that the state file opens: runners ls and
// scalesets ls work on it. It fails the test for every broken invariant
// and records the figures in the scenario's result. A daemon keeps its
// records across a stop, so a record in any state owns its instance.
func (s *world) checkInvariants(o scenario.Options) scenario.Invariants {
	s.t.Helper()
	o.Owners = scenario.EveryState
	iv := scenariotest.Check(s.t, scenariotest.Gather(s.t, binary, s.sim.Client, s.files()), o)
	s.res.addInvariants(s, iv)
	return iv
}

// runnersLs runs `runners ls -o json` on the state file with no daemon
// answering, as an operator would after a stop.
func (s *world) runnersLs() []store.Runner {
	s.t.Helper()
	return scenariotest.RunnersLs(s.t, binary, s.stateFile)
}

// scaleSetsLs runs `scalesets ls -o json` on the state file.
func (s *world) scaleSetsLs() []controller.ScaleSetStatus {
	s.t.Helper()
	return scenariotest.ScaleSetsLs(s.t, binary, s.stateFile)
}

// history reads the runner history from the state file (no daemon may hold it).
func (s *world) history() []store.HistoryRecord {
	s.t.Helper()
	return scenariotest.History(s.t, s.stateFile)
}

// calls reads the fake plugin's call log.
func (s *world) calls() []shoesfake.Call {
	s.t.Helper()
	return scenariotest.Calls(s.t, s.callLog)
}

// instanceDirs lists the instances that exist, by cloud ID.
func (s *world) instanceDirs() map[string]shoesfake.Instance {
	s.t.Helper()
	out := map[string]shoesfake.Instance{}
	for _, in := range scenariotest.Instances(s.t, s.pluginDir) {
		out[in.CloudID] = in
	}
	return out
}

// namesIn returns the names of the records in state.
func namesIn(rs []store.Runner, state store.RunnerState) []string {
	var out []string
	for _, r := range rs {
		if r.State == state {
			out = append(out, r.Name)
		}
	}
	return out
}

// rpcCalls drops the events (script exits) from a call log.
func rpcCalls(calls []shoesfake.Call) []shoesfake.Call {
	var out []shoesfake.Call
	for _, c := range calls {
		if c.Event == "" {
			out = append(out, c)
		}
	}
	return out
}

// countCalls counts calls of method (any outcome) in the call log.
func countCalls(calls []shoesfake.Call, method string) int {
	n := 0
	for _, c := range calls {
		if c.Method == method {
			n++
		}
	}
	return n
}

// runBinary runs the binary to completion, bounded by timeout.
func runBinary(t *testing.T, timeout time.Duration, env []string, args ...string) scenariotest.Result {
	t.Helper()
	return scenariotest.Exec(t, binary, timeout, env, args...)
}

var tmpPath = regexp.MustCompile(`/tmp/[^\s:]+`)

// firstLine returns the first line of a message for the report, with
// temporary paths elided.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	s = tmpPath.ReplaceAllString(s, "…")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

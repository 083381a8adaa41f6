package controller_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/ghadapter"
	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testbin"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// binary is the shoes-scaleset binary built for the tests: its `sim
// plugin` is the fake shoes plugin, and its `sim runner` the sim runner.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m, "./cmd/shoes-scaleset", &binary))
}

// envOptions tune one test environment.
type envOptions struct {
	targets       []string
	acquire       bool
	minRunners    int
	maxRunners    int
	pluginLatency time.Duration
	pluginEnv     []string
	assignTimeout time.Duration
	// maxAssignAttempts is how often the sim assigns a job before it
	// cancels it for good.
	maxAssignAttempts int
	// addTimeout bounds each AddInstance call (default: the host's).
	addTimeout time.Duration
	// tune adjusts the controller config after the test defaults.
	tune func(*controller.Config)
}

// testEnv is a simulated world with a controller running against it.
type testEnv struct {
	t         *testing.T
	world     *sim.World
	statePath string
	callLog   string
	pluginDir string
	baseDir   string
	logs      *testkit.SyncBuffer
	opts      envOptions
	pollMark  map[string]int

	st     *store.Store
	host   *shoes.Host
	ctrl   *controller.Controller
	cancel context.CancelFunc
	done   chan error
}

func newTestEnv(t *testing.T, opts envOptions) *testEnv {
	t.Helper()
	if opts.maxRunners == 0 {
		opts.maxRunners = 10
	}
	if opts.assignTimeout == 0 {
		opts.assignTimeout = 2 * time.Minute
	}
	world, err := sim.Start(sim.Config{
		Targets:           opts.targets,
		Acquire:           opts.acquire,
		PollHold:          300 * time.Millisecond,
		AssignTimeout:     opts.assignTimeout,
		MaxAssignAttempts: opts.maxAssignAttempts,
	})
	if err != nil {
		t.Fatalf("start sim: %v", err)
	}
	t.Cleanup(func() { world.Close() })
	dir := t.TempDir()
	e := &testEnv{
		t:         t,
		world:     world,
		statePath: filepath.Join(dir, "state.db"),
		callLog:   filepath.Join(dir, "calls.jsonl"),
		pluginDir: filepath.Join(dir, "instances"),
		baseDir:   filepath.Join(dir, "runners"),
		logs:      &testkit.SyncBuffer{},
		opts:      opts,
	}
	t.Cleanup(e.killInstances)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		f, err := os.CreateTemp("", "controller-test-*.log")
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = f.WriteString(e.logs.String())
		t.Logf("full controller log: %s", f.Name())
	})
	return e
}

// start starts a controller on the env's state file.
func (e *testEnv) start() {
	e.t.Helper()
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := store.Open(store.Options{Path: e.statePath})
	if err != nil {
		e.t.Fatalf("open store: %v", err)
	}
	env := append([]string{
		shoesfake.EnvCallLog + "=" + e.callLog,
		shoesfake.EnvStateDir + "=" + e.pluginDir,
		shoesfake.EnvLatency + "=" + e.opts.pluginLatency.String(),
	}, e.opts.pluginEnv...)
	host, err := shoes.New(context.Background(), shoes.Config{
		Path: binary, Args: []string{"sim", "plugin"}, PoolSize: 4, Env: env, Logger: logger, AddTimeout: e.opts.addTimeout,
	})
	if err != nil {
		e.t.Fatalf("plugin host: %v", err)
	}
	gh, err := github.New(github.Config{
		URL: e.world.GitHubURL(), AppID: e.world.AppID(), PrivateKeyPEM: e.world.AppKeyPEM(),
		RetryMax: 1, RetryWaitMax: 50 * time.Millisecond, Logger: logger,
	})
	if err != nil {
		e.t.Fatalf("github: %v", err)
	}
	ms, err := myshoes.New(myshoes.Config{BaseURL: e.world.MyshoesURL()})
	if err != nil {
		e.t.Fatalf("myshoes: %v", err)
	}
	script, err := runnerscript.New("")
	if err != nil {
		e.t.Fatalf("runnerscript: %v", err)
	}
	cfg := controller.Config{
		MinRunners:           e.opts.minRunners,
		MaxRunners:           e.opts.maxRunners,
		ProvisionConcurrency: 8,
		SyncInterval:         time.Second,
		RunnerBaseDirectory:  e.baseDir,
		RetryBackoff:         50 * time.Millisecond,
		MaxBackoff:           time.Second,
		JanitorInterval:      200 * time.Millisecond,
		ReaperInterval:       200 * time.Millisecond,
		ShutdownTimeout:      20 * time.Second,
		PollHold:             300 * time.Millisecond,
		Logger:               logger,
	}
	if e.opts.tune != nil {
		e.opts.tune(&cfg)
	}
	ctrl, err := controller.New(st, ms, ghadapter.New(gh), host, script, cfg)
	if err != nil {
		e.t.Fatalf("controller: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.st, e.host, e.ctrl, e.cancel, e.done = st, host, ctrl, cancel, make(chan error, 1)
	go func() { e.done <- ctrl.Run(ctx) }()
	e.t.Cleanup(e.stop)
}

// stop stops the controller the way the daemon does, and closes the
// plugin host and the store. It is safe to call twice.
func (e *testEnv) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	if err := <-e.done; err != nil {
		e.t.Errorf("controller run: %v", err)
	}
	e.host.Close()
	e.st.Close()
	e.cancel = nil
}

// killInstances kills whatever the fake plugin left running.
func (e *testEnv) killInstances() { shoesfake.KillAll(e.pluginDir) }

func (e *testEnv) queueJobs(scope string, count int, duration time.Duration) {
	e.t.Helper()
	if _, err := e.world.Actions.QueueJobs(actionsfake.JobsRequest{Scope: scope, Count: count, DurationMS: int(duration.Milliseconds())}); err != nil {
		e.t.Fatalf("queue jobs: %v", err)
	}
}

func (e *testEnv) state() actionsfake.State { return e.world.Actions.State() }

// waitFor polls cond until it holds or the deadline passes.
func (e *testEnv) waitFor(what string, timeout time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s\n--- sim state summary:\n%s\n--- last logs:\n%s", timeout, what, e.summary(), testkit.Tail(e.logs.String(), 60))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *testEnv) summary() string {
	st := e.state()
	var b strings.Builder
	for _, ss := range st.ScaleSets {
		fmt.Fprintf(&b, "scale set %d %s: jobs %+v runners %+v session %v stats %+v\n", ss.ID, ss.Name, ss.Jobs, ss.Runners, ss.Session, ss.Statistics)
	}
	fmt.Fprintf(&b, "violations: %v\n", st.Violations)
	return b.String()
}

func (e *testEnv) calls() []shoesfake.Call {
	e.t.Helper()
	calls, err := shoesfake.ReadCallLog(e.callLog)
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatalf("read call log: %v", err)
	}
	return calls
}

package sim_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/google/uuid"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testbin"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// testScope is the World's one target, unless a test names others.
const testScope = "org-a"

// fakeshoesBin is the fake plugin, built once by TestMain. Its runner
// command is itself + "runner".
var fakeshoesBin string

func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m, "./internal/sim/cmd/fakeshoes", &fakeshoesBin))
}

// startWorld starts a World with one target, org-a, and closes it at the
// end of the test.
func startWorld(t *testing.T, cfg sim.Config) *sim.World {
	t.Helper()
	if cfg.PollHold == 0 {
		cfg.PollHold = 300 * time.Millisecond
	}
	if cfg.Targets == nil {
		cfg.Targets = []string{testScope}
	}
	cfg.Listen = "127.0.0.1:0"
	w, err := sim.Start(cfg)
	if err != nil {
		t.Fatalf("start world: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("close world: %v", err)
		}
	})
	return w
}

// newProvider is our GitHub client, authenticated as the World's app.
func newProvider(t *testing.T, w *sim.World, retryMax int) *github.Provider {
	t.Helper()
	p, err := github.New(github.Config{
		URL:           w.GitHubURL(),
		AppID:         w.AppID(),
		PrivateKeyPEM: w.AppKeyPEM(),
		RetryMax:      retryMax,
		RetryWaitMax:  50 * time.Millisecond,
		Timeout:       10 * time.Second,
		PollTimeout:   10 * time.Second,
	})
	if err != nil {
		t.Fatalf("github provider: %v", err)
	}
	t.Cleanup(p.CloseIdleConnections)
	return p
}

// scaleSetFixture is a scale set on org-a with its library client.
type scaleSetFixture struct {
	p      *github.Provider
	set    *scaleset.RunnerScaleSet
	client *scaleset.Client
}

func createScaleSet(t *testing.T, w *sim.World, retryMax int) scaleSetFixture {
	t.Helper()
	ctx := t.Context()
	p := newProvider(t, w, retryMax)
	name := github.ScaleSetName("shoes", testScope)
	set, created, err := p.GetOrCreateScaleSet(ctx, testScope, "", name, github.ScaleSetLabels(name, nil))
	if err != nil {
		t.Fatalf("get or create scale set: %v", err)
	}
	if !created || set.ID == 0 || set.Name != name {
		t.Fatalf("scale set = %+v, created %t; want a new one named %q", set, created, name)
	}
	client, err := p.ScaleSetClient(ctx, testScope)
	if err != nil {
		t.Fatalf("scale set client: %v", err)
	}
	return scaleSetFixture{p: p, set: set, client: client}
}

// jit asks the service for a JIT config for a runner called name.
func (f scaleSetFixture) jit(t *testing.T, name string) *scaleset.RunnerScaleSetJitRunnerConfig {
	t.Helper()
	cfg, err := f.client.GenerateJitRunnerConfig(t.Context(), &scaleset.RunnerScaleSetJitRunnerSetting{Name: name}, f.set.ID)
	if err != nil {
		t.Fatalf("generate jit config for %s: %v", name, err)
	}
	if cfg.EncodedJITConfig == "" || cfg.Runner == nil || cfg.Runner.Name != name {
		t.Fatalf("jit config for %s: runner %+v, %d bytes of config", name, cfg.Runner, len(cfg.EncodedJITConfig))
	}
	return cfg
}

func runnerName() string { return "myshoes-" + uuid.NewString() }

// plugin is a fake shoes plugin host with its own call log and state dir.
type plugin struct {
	host     *shoes.Host
	callLog  string
	stateDir string
}

func newPlugin(t *testing.T) *plugin {
	t.Helper()
	dir := t.TempDir()
	pl := &plugin{callLog: filepath.Join(dir, "calls.jsonl"), stateDir: filepath.Join(dir, "state")}
	h, err := shoes.New(context.Background(), shoes.Config{
		Path:       fakeshoesBin,
		PoolSize:   1,
		AddTimeout: 30 * time.Second,
		CacheDir:   filepath.Join(dir, "cache"),
		Logger:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Env: []string{
			shoesfake.EnvCallLog + "=" + pl.callLog,
			shoesfake.EnvStateDir + "=" + pl.stateDir,
		},
	})
	if err != nil {
		t.Fatalf("plugin host: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	// Registered last, so it runs first: no instance outlives the test.
	t.Cleanup(func() { killInstances(pl.stateDir) })
	pl.host = h
	return pl
}

// add creates an instance that runs script.
func (pl *plugin) add(t *testing.T, name, script string) shoes.Instance {
	t.Helper()
	inst, err := pl.host.AddInstance(t.Context(), shoes.AddInstanceRequest{
		RunnerName:   name,
		SetupScript:  script,
		ResourceType: shoes.ResourceSmall,
		Labels:       []string{"self-hosted"},
	})
	if err != nil {
		t.Fatalf("AddInstance %s: %v", name, err)
	}
	if inst.CloudID == "" {
		t.Fatalf("AddInstance %s: empty cloud ID", name)
	}
	return inst
}

// calls returns the lines of the call log keep holds for.
func (pl *plugin) calls(t *testing.T, keep func(shoesfake.Call) bool) []shoesfake.Call {
	t.Helper()
	all, err := shoesfake.ReadCallLog(pl.callLog)
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(all, func(c shoesfake.Call) bool { return !keep(c) })
}

// exited returns the script_exit event of cloudID, if there is one yet.
func (pl *plugin) exited(t *testing.T, cloudID string) (shoesfake.Call, bool) {
	t.Helper()
	ev := pl.calls(t, func(c shoesfake.Call) bool { return c.Event == shoesfake.EventScriptExit && c.CloudID == cloudID })
	if len(ev) == 0 {
		return shoesfake.Call{}, false
	}
	return ev[0], true
}

// scriptExit waits for the script_exit event of cloudID.
func (pl *plugin) scriptExit(t *testing.T, cloudID string) shoesfake.Call {
	t.Helper()
	var ev shoesfake.Call
	testkit.Eventually(t, 30*time.Second, "script_exit of "+cloudID, func() bool {
		var ok bool
		ev, ok = pl.exited(t, cloudID)
		return ok
	})
	return ev
}

// killInstances kills the process group of every instance in stateDir.
func killInstances(stateDir string) { shoesfake.KillAll(stateDir) }

// render renders the setup script for one runner, with the default main
// template when tmpl is "".
func render(t *testing.T, tmpl string, v runnerscript.Values) string {
	t.Helper()
	r, err := runnerscript.New(tmpl)
	if err != nil {
		t.Fatalf("runnerscript.New: %v", err)
	}
	if v.RunnerVersion == "" {
		v.RunnerVersion = "2.330.0"
	}
	if v.RunnerUser == "" {
		v.RunnerUser = "runner"
	}
	if v.RunnerBaseDirectory == "" {
		v.RunnerBaseDirectory = t.TempDir()
	}
	if v.CacheDirectory == "" {
		v.CacheDirectory = t.TempDir() // empty: no cached tarball, always "download"
	}
	script, err := r.Render(v)
	if err != nil {
		t.Fatalf("render setup script: %v", err)
	}
	return script
}

// runnerState returns the fake's record of the runner called name.
func runnerState(t *testing.T, w *sim.World, name string) actionsfake.RunnerState {
	t.Helper()
	return only(t, "runner "+name, w.Actions.State().Runners, func(r actionsfake.RunnerState) bool { return r.Name == name })
}

// jobState returns the fake's record of the job id.
func jobState(t *testing.T, w *sim.World, id string) actionsfake.JobState {
	t.Helper()
	return only(t, "job "+id, w.Actions.State().Jobs, func(j actionsfake.JobState) bool { return j.ID == id })
}

// only returns the first of items that match holds for, and fails the
// test if there is none.
func only[T any](t *testing.T, what string, items []T, match func(T) bool) T {
	t.Helper()
	for _, it := range items {
		if match(it) {
			return it
		}
	}
	t.Fatalf("the fake has no %s", what)
	var zero T
	return zero
}

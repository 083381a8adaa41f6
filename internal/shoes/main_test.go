package shoes

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testbin"
)

// fakeshoesBin is the fake plugin built once by TestMain.
var fakeshoesBin string

func TestMain(m *testing.M) {
	if os.Getenv(envHostHelper) != "" {
		os.Exit(hostHelper())
	}
	os.Exit(testbin.Main(m, "./internal/sim/cmd/fakeshoes", &fakeshoesBin))
}

// fixture is a Host running the fake plugin with its own call log and
// state directory.
type fixture struct {
	host     *Host
	callLog  string
	stateDir string
}

// newFixture starts a host on fakeshoes with the given SIM_PLUGIN_* knobs.
// Setup scripts are not run unless env sets SIM_PLUGIN_NO_RUNNER=false.
func newFixture(t testing.TB, env map[string]string, mutate func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{callLog: filepath.Join(dir, "calls.jsonl"), stateDir: filepath.Join(dir, "state")}
	vars := map[string]string{
		shoesfake.EnvCallLog:  f.callLog,
		shoesfake.EnvStateDir: f.stateDir,
		shoesfake.EnvNoRunner: "true",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg := Config{
		Path:     fakeshoesBin,
		PoolSize: 4,
		CacheDir: filepath.Join(dir, "cache"),
		Logger:   testLogger(t),
	}
	for k, v := range vars {
		cfg.Env = append(cfg.Env, k+"="+v)
	}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { closeWithin(t, h, 20*time.Second) })
	f.host = h
	return f
}

// holdCalls starts n AddInstance calls, each held in BeforeSend on the
// process it got; release lets them finish and waits for them.
func (f *fixture) holdCalls(t testing.TB, n int) (release func()) {
	t.Helper()
	held := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		req := addReq()
		req.BeforeSend = func() error { <-held; return nil }
		wg.Go(func() {
			if _, err := f.host.AddInstance(context.Background(), req); err != nil {
				t.Error(err)
			}
		})
	}
	return func() {
		close(held)
		wg.Wait()
	}
}

// closeWithin closes h, and fails the test (instead of hanging with it)
// if Close has not returned after d.
func closeWithin(t testing.TB, h *Host, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Close()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Errorf("Close still blocked after %s", d)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// calls returns the RPC lines of the call log.
func (f *fixture) calls(t testing.TB) []shoesfake.Call {
	t.Helper()
	all, err := shoesfake.ReadCallLog(f.callLog)
	if err != nil {
		t.Fatal(err)
	}
	var out []shoesfake.Call
	for _, c := range all {
		if c.Event == "" {
			out = append(out, c)
		}
	}
	return out
}

func addReq() AddInstanceRequest {
	return AddInstanceRequest{
		RunnerName:   "myshoes-" + uuid.NewString(),
		SetupScript:  "#!/bin/bash\nexit 0\n",
		ResourceType: ResourceLarge,
		Labels:       []string{"self-hosted", "linux"},
	}
}

func distinctPIDs(calls []shoesfake.Call) map[int]bool {
	pids := map[int]bool{}
	for _, c := range calls {
		pids[c.PID] = true
	}
	return pids
}

// recorder collects ObservePluginCall and PluginStartFailed calls.
type recorder struct {
	mu     sync.Mutex
	obs    []string
	starts []string
}

var _ Recorder = (*recorder)(nil)

func (r *recorder) ObservePluginCall(method, code string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs = append(r.obs, method+" "+code)
}

func (r *recorder) PluginStartFailed(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts = append(r.starts, reason)
}

// startFailures returns the reasons given to PluginStartFailed.
func (r *recorder) startFailures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.starts...)
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.obs...)
}

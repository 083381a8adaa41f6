package shoesfake_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testbin"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// fakeshoesBin is the fake plugin built once by TestMain.
var fakeshoesBin string

func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m, "./internal/sim/cmd/fakeshoes", &fakeshoesBin))
}

// env is the plugin environment shared by the hosts of one test.
type env struct {
	dir      string
	callLog  string
	stateDir string
	knobs    map[string]string
}

// newEnv makes a plugin environment in a new directory: its call log, its
// state directory and knobs.
func newEnv(t *testing.T, knobs map[string]string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{dir: dir, callLog: filepath.Join(dir, "calls.jsonl"), stateDir: filepath.Join(dir, "state")}
	e.knobs = map[string]string{shoesfake.EnvCallLog: e.callLog, shoesfake.EnvStateDir: e.stateDir}
	maps.Copy(e.knobs, knobs)
	// Runs last: kill whatever the instances left running.
	t.Cleanup(func() { killInstances(e.stateDir) })
	return e
}

// host starts a plugin host on the env.
func (e *env) host(t *testing.T, poolSize int) *shoes.Host {
	t.Helper()
	cfg := shoes.Config{
		Path:       fakeshoesBin,
		PoolSize:   poolSize,
		AddTimeout: 30 * time.Second,
		CacheDir:   filepath.Join(e.dir, "cache"),
		Logger:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for k, v := range e.knobs {
		cfg.Env = append(cfg.Env, k+"="+v)
	}
	h, err := shoes.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func (e *env) instanceDir(cloudID string) string { return filepath.Join(e.stateDir, cloudID) }

// calls returns the call log.
func (e *env) calls(t *testing.T) []shoesfake.Call { return read(t, shoesfake.ReadCallLog, e.callLog) }

// instances lists the instances of the state directory.
func (e *env) instances(t *testing.T) []shoesfake.Instance {
	return read(t, shoesfake.ListInstances, e.stateDir)
}

// read returns what f reads from path, failing the test if it cannot.
func read[T any](t *testing.T, f func(path string) ([]T, error), path string) []T {
	t.Helper()
	v, err := f(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return v
}

// scriptExit waits for the script_exit event of cloudID.
func (e *env) scriptExit(t *testing.T, cloudID string) shoesfake.Call {
	t.Helper()
	var ev shoesfake.Call
	testkit.Eventually(t, 30*time.Second, "script_exit of "+cloudID, func() bool {
		for _, c := range e.calls(t) {
			if c.Event == shoesfake.EventScriptExit && c.CloudID == cloudID {
				ev = c
				return true
			}
		}
		return false
	})
	return ev
}

// assertDeleted checks that an instance's directory and processes are gone.
func assertDeleted(t *testing.T, dir string, pids ...int) {
	t.Helper()
	if exists(dir) {
		t.Errorf("instance dir %s still there", dir)
	}
	for _, pid := range pids {
		testkit.Eventually(t, 10*time.Second, "the instance's processes to die", func() bool { return !testkit.Alive(pid) })
	}
}

// runnerName is a new runner name of the form myshoes names runners.
func runnerName() string { return "myshoes-" + uuid.NewString() }

// opaqueID is a new cloud ID of the opaque mode's form.
func opaqueID() string { return "fake-" + uuid.NewString() }

// exists reports whether path is there (or cannot be told not to be).
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

func killInstances(stateDir string) { shoesfake.KillAll(stateDir) }

// add adds an instance of a new runner name that runs script.
func add(t *testing.T, h *shoes.Host, script string) shoes.Instance {
	t.Helper()
	return addNamed(t, h, runnerName(), script)
}

func addNamed(t *testing.T, h *shoes.Host, name, script string) shoes.Instance {
	t.Helper()
	inst, err := h.AddInstance(context.Background(), shoes.AddInstanceRequest{
		RunnerName: name, SetupScript: script, ResourceType: shoes.ResourceSmall, Labels: []string{"self-hosted"},
	})
	if err != nil {
		t.Fatalf("AddInstance: %v", err)
	}
	return inst
}

// readPID waits for a pid file an instance script writes.
func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	testkit.Eventually(t, 20*time.Second, path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// renderScript renders the real setup script (the default template unless
// tmpl is set) for runner name with jit, in runner base directory base (a
// new temporary directory when "").
func renderScript(t *testing.T, tmpl, name, jit, base string) string {
	t.Helper()
	if base == "" {
		base = t.TempDir()
	}
	r, err := runnerscript.New(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	script, err := r.Render(runnerscript.Values{
		RunnerName: name, JITConfig: jit, RunnerVersion: "2.330.0",
		Scope: "org", Labels: []string{"self-hosted"}, RunnerBaseDirectory: base,
	})
	if err != nil {
		t.Fatal(err)
	}
	return script
}

// actionsStub is the runner side of the fake Actions service contract.
type actionsStub struct {
	srv    *httptest.Server
	token  string
	states []string // answers to successive waits; the last repeats

	mu       sync.Mutex
	connects []connectReq
	waits    int
}

type connectReq struct {
	Auth      string
	AgentID   int64  `json:"agentId"`
	AgentName string `json:"agentName"`
}

// newActionsStub serves the runner side with a new token; the runner's
// waits are answered with states.
func newActionsStub(t *testing.T, states ...string) *actionsStub {
	s := &actionsStub{token: "token-" + uuid.NewString(), states: states}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_sim/runner/connect", func(w http.ResponseWriter, r *http.Request) {
		var c connectReq
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.Auth = r.Header.Get("Authorization")
		s.mu.Lock()
		s.connects = append(s.connects, c)
		s.mu.Unlock()
		if c.Auth != "Bearer "+s.token {
			http.Error(w, "unknown jit config", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"state":"idle"}`))
	})
	mux.HandleFunc("GET /_sim/runner/{id}/wait", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+s.token {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		st := s.states[min(s.waits, len(s.states)-1)]
		s.waits++
		s.mu.Unlock()
		fmt.Fprintf(w, `{"state":%q,"jobId":"job-1"}`, st)
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// waitCount is how many waits the runners made.
func (s *actionsStub) waitCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waits
}

func (s *actionsStub) connectsSeen() []connectReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]connectReq(nil), s.connects...)
}

// jit returns an encoded JIT config pointing at the stub.
func (s *actionsStub) jit(t *testing.T, agentID int64, name string) string {
	t.Helper()
	jc := shoesfake.JITConfig{
		Runner: shoesfake.RunnerFile{
			AgentID: agentID, AgentName: name, PoolID: 1, PoolName: "Default", ScaleSetID: 3,
			ServerURL: s.srv.URL + "/", GitHubURL: "http://127.0.0.1/org", WorkFolder: "_work", Ephemeral: true,
		},
	}
	jc.Credentials.Scheme = "OAuth"
	jc.Credentials.Data.Token = s.token
	enc, err := shoesfake.EncodeJITConfig(jc)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

package shoesfake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testbin"
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

func newEnv(t *testing.T, knobs map[string]string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		dir:      dir,
		callLog:  filepath.Join(dir, "calls.jsonl"),
		stateDir: filepath.Join(dir, "state"),
		knobs:    knobs,
	}
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
		Env: []string{
			shoesfake.EnvCallLog + "=" + e.callLog,
			shoesfake.EnvStateDir + "=" + e.stateDir,
		},
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

func (e *env) calls(t *testing.T) []shoesfake.Call {
	t.Helper()
	calls, err := shoesfake.ReadCallLog(e.callLog)
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

// scriptExit waits for the script_exit event of cloudID.
func (e *env) scriptExit(t *testing.T, cloudID string) shoesfake.Call {
	t.Helper()
	var ev shoesfake.Call
	eventually(t, 30*time.Second, "script_exit of "+cloudID, func() bool {
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

func killInstances(stateDir string) { shoesfake.KillAll(stateDir) }

func add(t *testing.T, h *shoes.Host, script string) shoes.Instance {
	t.Helper()
	inst, err := h.AddInstance(context.Background(), shoes.AddInstanceRequest{
		RunnerName:   "myshoes-" + uuid.NewString(),
		SetupScript:  script,
		ResourceType: shoes.ResourceSmall,
		Labels:       []string{"self-hosted"},
	})
	if err != nil {
		t.Fatalf("AddInstance: %v", err)
	}
	return inst
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", d, what)
		case <-tick.C:
		}
	}
}

// alive reports whether pid runs (a zombie counts as dead).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// readPID waits for a pid file an instance script writes.
func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	eventually(t, 20*time.Second, path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
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

func newActionsStub(t *testing.T, token string, states ...string) *actionsStub {
	s := &actionsStub{token: token, states: states}
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

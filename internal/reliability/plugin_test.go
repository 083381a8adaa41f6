package reliability

// Plugin processes that misbehave, and what run must not leak through
// them: processes, stuck shutdowns, secrets, a start that exits 2 for a
// download server that is briefly down. Fast scenarios: they run in
// `make test`.

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// procInfo is a process of this user, read from /proc.
type procInfo struct {
	pid  int
	args []string
	env  []string
}

// scenarioProcs returns the live processes (zombies excluded) that carry
// the scenario's call log in their environment, as run's plugin processes
// and whatever they started do, and whose command line match accepts.
func (s *world) scenarioProcs(match func(args []string) bool) []procInfo {
	s.t.Helper()
	marker := []byte(shoesfake.EnvCallLog + "=" + s.callLog)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		s.t.Fatalf("read /proc: %v", err)
	}
	var out []procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone meanwhile
		}
		if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
			continue
		}
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !slices.ContainsFunc(bytes.Split(environ, []byte{0}), func(kv []byte) bool { return bytes.Equal(kv, marker) }) {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		if !match(args) {
			continue
		}
		out = append(out, procInfo{pid: pid, args: args, env: strings.Split(strings.TrimSuffix(string(environ), "\x00"), "\x00")})
	}
	return out
}

// isPluginProc matches the fake plugin (`shoes-scaleset sim plugin`), not
// the instances it starts (their setup scripts and `sim runner`s).
func isPluginProc(args []string) bool {
	return len(args) >= 3 && args[1] == "sim" && args[2] == "plugin"
}

func pids(ps []procInfo) []int {
	out := make([]int, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.pid)
	}
	return out
}

// killPids kills leftover processes at the end of a test, so that a
// failing scenario leaves nothing behind either.
func killPids(ps []procInfo) {
	for _, p := range ps {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

// TestKill9PluginProcesses: kill -9 of run alone (not of its process
// group, as a crash or the OOM killer does) while AddInstance calls are in
// flight: its plugin processes die with it.
func TestKill9PluginProcesses(t *testing.T) {
	res := newResult(t, 26, "kill -9 of run: its plugin processes die with it (issue 11)",
		"SIGKILL to the run process only, 3 AddInstance calls in flight (plugin latency 1m): 0 plugin processes left within 2s")
	s := newScenario(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}})
	s.pluginEnv = []string{"SIM_PLUGIN_LATENCY=1m"}
	s.flags = []string{"--max-runners", "3"}
	t.Cleanup(func() { killPids(s.scenarioProcs(isPluginProc)) })
	d := s.startListening([]string{"org-a"})
	s.sim.QueueJobs("org-a", 3, time.Second)
	var before []procInfo
	scenariotest.WaitFor(t, "3 AddInstance calls in flight on 3 plugin processes", time.Minute, func() (bool, string) {
		d.Alive()
		rs, err := d.Runners()
		if err != nil {
			return false, err.Error()
		}
		before = s.scenarioProcs(isPluginProc)
		c := scenario.CountStates(rs)
		return c[store.StateConfigured] == 3 && len(before) >= 3, fmt.Sprintf("runners %v, plugin processes %v", c, pids(before))
	})

	if err := syscall.Kill(d.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("run not reaped 10s after SIGKILL")
	}
	start := time.Now()
	var left []procInfo
	if !testkit.Poll(2*time.Second, func() (bool, string) {
		left = s.scenarioProcs(isPluginProc)
		return len(left) == 0, ""
	}) {
		t.Fatalf("%d plugin processes of %v still run 2s after kill -9 of run: %v", len(left), pids(before), pids(left))
	}
	figure(t, res, "%d plugin processes (3 in AddInstance) gone %.2fs after kill -9 of run", len(before), time.Since(start).Seconds())
}

// startStuck starts run on org-a with a plugin that never completes its
// handshake (a script whose background child holds its stdout open),
// --shutdown-timeout 3s and --max-runners jobs, and queues that many
// jobs. It returns the daemon and the plugin's path. The script's
// processes are killed when the test ends. Only the first start, run's
// check of the plugin at start (which does not keep its process), gets
// the real fake plugin: the plugin got stuck since.
func (s *world) startStuck(jobs int) (*daemon, string) {
	s.t.Helper()
	p := filepath.Join(s.dir, "stuck-plugin")
	script := fmt.Sprintf("#!/bin/sh\nif mkdir '%s' 2>/dev/null; then exec '%s'; fi\nsleep 1001 &\nexec sleep 1002\n",
		filepath.Join(s.dir, "stuck-plugin.checked"), s.plugin)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		s.t.Fatal(err)
	}
	s.flags = []string{"--plugin", p, "--shutdown-timeout", "3s", "--max-runners", strconv.Itoa(jobs)}
	s.t.Cleanup(func() { killPids(s.scenarioProcs(isStuckProc)) })
	d := s.startListening([]string{"org-a"})
	s.sim.QueueJobs("org-a", jobs, time.Second)
	return d, p
}

// isStuckProc matches the processes of startStuck's plugin script.
func isStuckProc(args []string) bool {
	return len(args) == 2 && args[0] == "sleep" && (args[1] == "1001" || args[1] == "1002")
}

// TestStuckPluginShutdown: the plugin never completes its handshake (a
// wrapper whose child holds stdout open). SIGTERM while provisioning waits
// for it ends within --shutdown-timeout (plus the clean-up of the
// canceled runners): no pending record, no runner left registered on
// GitHub, no plugin process left.
func TestStuckPluginShutdown(t *testing.T) {
	res := newResult(t, 27, "plugin that never completes its handshake: SIGTERM (issue 11)",
		"wrapper script whose child holds stdout, 2 jobs, SIGTERM during the 1m start: exit 0 within --shutdown-timeout 3s + 5s; no pending record, no runner registered, no plugin process left")
	s := newScenario(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}})
	d, _ := s.startStuck(2)
	scenariotest.WaitFor(t, "2 plugin processes stuck in their start", time.Minute, func() (bool, string) {
		d.Alive()
		ps := s.scenarioProcs(isStuckProc)
		return len(ps) == 4, fmt.Sprint(pids(ps))
	})

	code, took := d.Terminate(60 * time.Second)
	if code != 0 {
		t.Errorf("run exited %d after SIGTERM, want 0\n%s", code, d.Tail(30))
	}
	if took > 8*time.Second {
		t.Errorf("run took %v to exit after SIGTERM, want at most --shutdown-timeout 3s + 5s", took)
	}
	var left []procInfo
	if !testkit.Poll(2*time.Second, func() (bool, string) {
		left = s.scenarioProcs(isStuckProc)
		return len(left) == 0, ""
	}) {
		t.Errorf("processes of the stuck plugin still run after run exited: %v", pids(left))
	}
	if rs := s.runnersLs(); len(rs) != 0 {
		t.Errorf("runner records left after the shutdown: %v", scenario.CountStates(rs))
	}
	for _, r := range s.sim.State().Runners {
		if r.State != "removed" {
			t.Errorf("runner %s left registered on GitHub (%s)", r.Name, r.State)
		}
	}
	reasons := map[string]int{}
	for _, h := range s.history() {
		reasons[h.Reason]++
	}
	figure(t, res, "SIGTERM with 2 runners waiting for a plugin stuck in its handshake: exit %d after %.2fs (--shutdown-timeout 3s); history %v",
		code, took.Seconds(), reasons)
}

// pluginFileServer serves the scenario's plugin wrapper at /fake-plugin on
// addr once started; it counts requests.
type pluginFileServer struct {
	addr     string
	body     []byte
	requests atomic.Int32
	srv      *http.Server
}

func newPluginFileServer(t *testing.T, s *world) *pluginFileServer {
	t.Helper()
	body, err := os.ReadFile(s.plugin)
	if err != nil {
		t.Fatal(err)
	}
	p := &pluginFileServer{addr: testkit.FreeAddr(t), body: body}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		if r.URL.Path != "/fake-plugin" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(p.body)
	}), ReadHeaderTimeout: 5 * time.Second}
	t.Cleanup(func() { _ = p.srv.Close() })
	return p
}

func (p *pluginFileServer) url(path string) string { return "http://" + p.addr + path }

// start listens on the server's address and serves.
func (p *pluginFileServer) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", p.addr, err)
	}
	go func() { _ = p.srv.Serve(ln) }()
}

// TestURLPlugin: --plugin is a URL. A server that is down when run starts
// is retried and run comes up once it answers; a 404 and a
// --plugin-sha256 mismatch exit 2 naming the flag; a cached copy that was
// cut is downloaded again, not used.
func TestURLPlugin(t *testing.T) {
	res := newResult(t, 28, "URL plugin: server down at start, 404, checksum, damaged cache (issue 11)",
		"server down when run starts → retried, run comes up when it answers and jobs run; 404 → exit 2 naming --plugin; wrong --plugin-sha256 → exit 2 naming it; a cut cached copy → downloaded again")
	s := newScenario(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}})
	cache := filepath.Join(s.dir, "cache")
	s.pluginEnv = []string{"XDG_CACHE_HOME=" + cache}
	srv := newPluginFileServer(t, s)

	t.Run("404 and checksum", func(t *testing.T) {
		for _, tc := range []struct {
			flag string
			args []string
		}{
			{"plugin", []string{"--plugin", srv.url("/missing")}},
			{"plugin-sha256", []string{"--plugin-sha256", strings.Repeat("0", 64)}},
		} {
			if tc.flag == "plugin" {
				srv.start(t)
			}
			state := filepath.Join(t.TempDir(), "state.db")
			args := append(s.runArgs(testkit.FreeAddr(t)), "--state-file", state)
			r := runBinary(t, 30*time.Second, s.pluginEnvironment(), append(args, tc.args...)...)
			envVar := "SHOES_SCALESET_" + strings.ToUpper(strings.ReplaceAll(tc.flag, "-", "_"))
			if r.Code != 2 || !strings.Contains(r.Stderr, "--"+tc.flag+" ") || !strings.Contains(r.Stderr, envVar) {
				t.Errorf("want exit 2 naming --%s and %s\n%s", tc.flag, envVar, r)
			}
			figure(t, res, "--%s: exit %d: %s", tc.flag, r.Code, headLine(r.Stderr))
		}
	})
	_ = srv.srv.Close() // down again
	srv = newPluginFileServer(t, s)

	ok := t.Run("server down at start", func(t *testing.T) {
		s.flags = []string{"--plugin", srv.url("/fake-plugin")}
		d := s.startRun()
		scenariotest.WaitFor(t, "run retrying the download", 30*time.Second, func() (bool, string) {
			d.Alive()
			return strings.Contains(d.Log(), "download plugin failed; retrying"), testkit.Tail(d.Log(), 5)
		})
		srv.start(t)
		d.WaitUp()
		took := time.Since(d.Started)
		s.waitListening(d, d.Started, []string{"org-a"}, time.Minute)
		s.sim.QueueJobs("org-a", 2, time.Second)
		iv := s.settle(d, 2*time.Minute, scenario.Options{})
		if iv.Completed != 2 {
			t.Errorf("%d jobs completed, want 2", iv.Completed)
		}
		figure(t, res, "server down at start: run up %.1fs later, after %d request(s) once it listened; %d jobs completed", took.Seconds(), srv.requests.Load(), iv.Completed)
	})
	if !ok {
		return
	}
	t.Run("damaged cache", func(t *testing.T) {
		matches, _ := filepath.Glob(filepath.Join(cache, "shoes-scaleset", "plugins", "plugin-*-fake-plugin"))
		if len(matches) != 1 {
			t.Fatalf("cached plugins %v, want one", matches)
		}
		if b, err := os.ReadFile(matches[0] + ".sha256"); err != nil || len(strings.Fields(string(b))) != 2 {
			t.Errorf("no sha256 record next to the cached plugin: %q %v", b, err)
		}
		fi, err := os.Stat(matches[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(matches[0], fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		before := srv.requests.Load()
		d := s.startRun()
		d.WaitUp()
		if !strings.Contains(d.Log(), "cached plugin is damaged; downloading it again") || srv.requests.Load() != before+1 {
			t.Errorf("the cut cached copy was not downloaded again (%d requests)\n%s", srv.requests.Load()-before, testkit.Tail(d.Log(), 20))
		}
		s.sim.QueueJobs("org-a", 1, time.Second)
		s.settle(d, 2*time.Minute, scenario.Options{})
	})
}

// TestPluginSecrets: run takes the App key from myshoes's
// GITHUB_PRIVATE_KEY_BASE64 and has GitHub secrets in its environment;
// its plugin processes have none of them, and keep the plugin's own
// settings.
func TestPluginSecrets(t *testing.T) {
	res := newResult(t, 29, "GitHub secrets do not reach plugin processes (issue 11)",
		"GITHUB_PRIVATE_KEY_BASE64 (the key run uses), GITHUB_APP_SECRET, GITHUB_TOKEN, SHOES_SCALESET_GITHUB_TOKEN and the other --github-* variables: absent from every plugin process's environment; LXD_HOST and PLUGIN kept")
	s := newScenario(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}})
	secrets := map[string]string{
		"GITHUB_PRIVATE_KEY_BASE64":                base64.StdEncoding.EncodeToString(appKey(t)),
		"GITHUB_APP_SECRET":                        "webhook-secret-for-no-plugin",
		"GITHUB_TOKEN":                             "ghp_notForPlugins0123456789",
		"SHOES_SCALESET_GITHUB_RETRY_MAX":          "4",
		"SHOES_SCALESET_GITHUB_PRIVATE_KEY_BASE64": "",
	}
	kept := map[string]string{"LXD_HOST": "https://lxd.example:8443", "PLUGIN": s.plugin}
	for k, v := range secrets {
		s.pluginEnv = append(s.pluginEnv, k+"="+v)
	}
	for k, v := range kept {
		s.pluginEnv = append(s.pluginEnv, k+"="+v)
	}
	// The key comes from GITHUB_PRIVATE_KEY_BASE64, as under myshoes's env file.
	s.flags = []string{"--github-private-key-path="}
	d := s.startListening([]string{"org-a"})
	s.sim.QueueJobs("org-a", 2, 3*time.Second)
	var procs []procInfo
	scenariotest.WaitFor(t, "a plugin process", time.Minute, func() (bool, string) {
		d.Alive()
		procs = s.scenarioProcs(isPluginProc)
		return len(procs) > 0 && countCalls(s.calls(), "AddInstance") > 0, fmt.Sprint(pids(procs))
	})
	for _, p := range procs {
		env := map[string]string{}
		for _, kv := range p.env {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		for k := range secrets {
			if _, ok := env[k]; ok {
				t.Errorf("plugin process %d has %s in its environment", p.pid, k)
			}
		}
		for k, v := range kept {
			if env[k] != v {
				t.Errorf("plugin process %d: %s=%q, want %q", p.pid, k, env[k], v)
			}
		}
	}
	iv := s.settle(d, 2*time.Minute, scenario.Options{})
	figure(t, res, "%d plugin processes checked: no GitHub secret in their environment; %d jobs completed with the key from GITHUB_PRIVATE_KEY_BASE64", len(procs), iv.Completed)
}

// headLine is the first line of s, for a figure of the report.
func headLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// figure records a figure for the report and logs it.
func figure(t *testing.T, res *Result, format string, args ...any) {
	t.Helper()
	res.figure(format, args...)
	t.Logf(format, args...)
}

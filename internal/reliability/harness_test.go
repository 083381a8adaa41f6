package reliability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/myshoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// httpc talks to the sim's control API and the daemon's API.
var httpc = &http.Client{Timeout: 15 * time.Second}

// ---------------------------------------------------------------------------
// sim serve

// simOptions configure one `sim serve` process.
type simOptions struct {
	targets       []string
	acquire       bool
	tokenTTL      time.Duration
	assignTimeout time.Duration
	// pollHold is the broker's poll hold (default 500ms); a scenario that
	// changes it gives run the same --poll-hold.
	pollHold time.Duration
	// sessionTTL expires sessions nobody polls (0: the sim's default).
	sessionTTL time.Duration
	// bom, dropLabels and noAckThrough are the sim's switches of the
	// same names: BOM-prefixed answers, GHES 3.18–3.20 label dropping,
	// and lastMessageId no longer acknowledging earlier messages.
	bom, dropLabels, noAckThrough bool
}

// simProc is a `shoes-scaleset sim serve` process: the fake GitHub,
// Actions service and broker, and the fake myshoes. It outlives the `run`
// processes of a scenario.
type simProc struct {
	t          *testing.T
	cmd        *exec.Cmd
	url        string // http://127.0.0.1:PORT
	githubURL  string
	myshoesURL string
	appID      string
	keyPath    string
	logPath    string
	done       chan struct{}
}

// startSim starts `sim serve` on a free loopback port and reads the flags
// it prints for `run`.
func startSim(t *testing.T, dir string, o simOptions) *simProc {
	t.Helper()
	if len(o.targets) == 0 {
		o.targets = []string{"org-a"}
	}
	keyPath := filepath.Join(dir, "app-key.pem")
	if err := os.WriteFile(keyPath, appKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if o.pollHold == 0 {
		o.pollHold = 500 * time.Millisecond
	}
	args := []string{"sim", "serve", "--listen", "127.0.0.1:0", "--poll-hold", o.pollHold.String(),
		"--targets", strings.Join(o.targets, ","), "--app-key-file", keyPath, "--log-level", "warn"}
	for flag, on := range map[string]bool{"--acquire": o.acquire, "--bom": o.bom, "--drop-custom-labels": o.dropLabels, "--no-ack-through": o.noAckThrough} {
		if on {
			args = append(args, flag)
		}
	}
	if o.sessionTTL > 0 {
		args = append(args, "--session-ttl", o.sessionTTL.String())
	}
	if o.tokenTTL > 0 {
		args = append(args, "--token-ttl", o.tokenTTL.String())
	}
	if o.assignTimeout > 0 {
		args = append(args, "--assign-timeout", o.assignTimeout.String())
	}
	p := &simProc{t: t, keyPath: keyPath, logPath: filepath.Join(dir, "sim-serve.log"), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = childEnv()
	p.cmd.Stderr = logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start sim serve: %v", err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody reads any more; keep draining
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
	deadline := time.After(30 * time.Second)
	for p.githubURL == "" || p.myshoesURL == "" || p.appID == "" || p.url == "" {
		select {
		case l := <-lines:
			switch {
			case strings.HasPrefix(l, "listening on "):
				p.url = "http://" + strings.TrimPrefix(l, "listening on ")
			case strings.HasPrefix(l, "--github-url="):
				p.githubURL = strings.TrimPrefix(l, "--github-url=")
			case strings.HasPrefix(l, "--myshoes-url="):
				p.myshoesURL = strings.TrimPrefix(l, "--myshoes-url=")
			case strings.HasPrefix(l, "--github-app-id="):
				p.appID = strings.TrimPrefix(l, "--github-app-id=")
			}
		case <-p.done:
			t.Fatalf("sim serve exited early:\n%s", readTail(p.logPath, 40))
		case <-deadline:
			t.Fatalf("sim serve printed no address within 30s:\n%s", readTail(p.logPath, 40))
		}
	}
	return p
}

func (p *simProc) do(method, path string, body any, want int, out any) {
	p.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			p.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.url+path, rd)
	if err != nil {
		p.t.Fatal(err)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		p.t.Fatalf("%s %s: %s, want %d: %s", method, path, resp.Status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			p.t.Fatalf("%s %s: decode: %v\n%s", method, path, err, b)
		}
	}
}

// queueJobs queues count jobs of the given duration on scope.
func (p *simProc) queueJobs(scope string, count int, duration time.Duration) []string {
	p.t.Helper()
	var out actionsfake.JobsResult
	p.do(http.MethodPost, "/_sim/jobs", actionsfake.JobsRequest{Scope: scope, Count: count, DurationMS: int(duration.Milliseconds())}, http.StatusOK, &out)
	return out.JobIDs
}

func (p *simProc) addFault(f actionsfake.Fault) {
	p.t.Helper()
	p.do(http.MethodPost, "/_sim/faults", f, http.StatusNoContent, nil)
}

// evict evicts the live sessions of the given scale sets (none: all), as
// GitHub does on its side; it returns how many.
func (p *simProc) evict(ids ...int) int {
	p.t.Helper()
	var out struct {
		Evicted int `json:"evicted"`
	}
	p.do(http.MethodPost, "/_sim/sessions/evict", map[string][]int{"scale_set_ids": ids}, http.StatusOK, &out)
	return out.Evicted
}

// requests returns the requests the sim answered on route, oldest first.
func (p *simProc) requests(route string) []actionsfake.Request {
	p.t.Helper()
	var out []actionsfake.Request
	p.do(http.MethodGet, "/_sim/requests?route="+url.QueryEscape(route), nil, http.StatusOK, &out)
	return out
}

func (p *simProc) clearFaults() {
	p.t.Helper()
	p.do(http.MethodDelete, "/_sim/faults", nil, http.StatusNoContent, nil)
}

func (p *simProc) state() actionsfake.State {
	p.t.Helper()
	var st actionsfake.State
	p.do(http.MethodGet, "/_sim/state", nil, http.StatusOK, &st)
	return st
}

// simTarget is an entry of PUT /myshoes/_sim/targets.
type simTarget struct {
	ID           string `json:"id,omitempty"`
	Scope        string `json:"scope"`
	ResourceType string `json:"resource_type,omitempty"`
	Status       string `json:"status,omitempty"`
}

func (p *simProc) setTargets(ts []simTarget) {
	p.t.Helper()
	if ts == nil {
		ts = []simTarget{}
	}
	p.do(http.MethodPut, "/myshoes/_sim/targets", ts, http.StatusOK, nil)
}

// targets returns the fake myshoes's targets, of every status.
func (p *simProc) targets() []simTarget {
	p.t.Helper()
	var out []simTarget
	p.do(http.MethodGet, "/myshoes/_sim/targets", nil, http.StatusOK, &out)
	return out
}

func (p *simProc) myshoesFault(f myshoesfake.Fault) {
	p.t.Helper()
	p.do(http.MethodPost, "/myshoes/_sim/myshoes-fault", f, http.StatusNoContent, nil)
}

// ---------------------------------------------------------------------------
// scenario

// scenario is one test's world: a sim serve process, the files of the
// daemon (state file, plugin call log, instance directories) and the
// `run` processes started on them, one after the other.
type scenario struct {
	t         *testing.T
	res       *Result
	dir       string
	sim       *simProc
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
	mu       sync.Mutex
	daemons  []*daemon
}

// newScenario starts sim serve and prepares the daemon's files.
func newScenario(t *testing.T, res *Result, o simOptions) *scenario {
	t.Helper()
	dir := t.TempDir()
	s := &scenario{
		t:         t,
		res:       res,
		dir:       dir,
		stateFile: filepath.Join(dir, "state", "state.db"),
		callLog:   filepath.Join(dir, "calls.jsonl"),
		pluginDir: filepath.Join(dir, "instances"),
		runnerDir: filepath.Join(dir, "runners"),
		plugin:    filepath.Join(dir, "fake-plugin"),
	}
	script := fmt.Sprintf("#!/bin/sh\nexec '%s' sim plugin \"$@\"\n", binary)
	if err := os.WriteFile(s.plugin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-registered first: daemons, then instances, then
	// the sim they talk to.
	s.sim = startSim(t, dir, o)
	t.Cleanup(s.killInstances)
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpLogs()
		}
	})
	return s
}

// dumpLogs copies the logs of a failed scenario where they survive the
// test's temporary directory, and names them.
func (s *scenario) dumpLogs() {
	out, err := os.MkdirTemp("", "reliability-logs-")
	if err != nil {
		return
	}
	files := []string{s.sim.logPath, s.callLog}
	s.mu.Lock()
	for _, d := range s.daemons {
		files = append(files, d.logPath)
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
		s.t.Logf("--- last daemon log (tail):\n%s", readTail(s.daemons[n-1].logPath, 30))
	}
}

// usePlugin makes the fake plugin of every run of the scenario "opaque"
// (a new cloud ID per instance, like shoes-aws) or "name" (the instance
// named after its runner, like shoes-lxd). A name-keyed plugin's
// unknown-instance records are resolved by name once --plugin-add-timeout
// has passed, so the scenario gives it a short one.
func (s *scenario) usePlugin(cloudIDs string) {
	s.cloudIDs = cloudIDs
	s.pluginEnv = append(s.pluginEnv, shoesfake.EnvCloudIDs+"="+cloudIDs)
	if cloudIDs == "name" {
		s.flags = append(s.flags, "--plugin-add-timeout", "10s")
	}
}

// invariantOptions are the scenario's invariants: a name-keyed plugin
// leaves no unknown-instance record once they are resolved.
func (s *scenario) invariantOptions() invariantOptions {
	return invariantOptions{resolvedByName: s.cloudIDs == "name"}
}

// killInstances kills the process groups of the instances the fake plugin
// left running.
func (s *scenario) killInstances() { shoesfake.KillAll(s.pluginDir) }

// runArgs are the flags of every run process of the scenario.
func (s *scenario) runArgs(addr string) []string {
	args := []string{"run",
		"--myshoes-url", s.sim.myshoesURL,
		"--github-url", s.sim.githubURL,
		"--github-app-id", s.sim.appID,
		"--github-private-key-path", s.sim.keyPath,
		"--plugin", s.plugin,
		"--state-file", s.stateFile,
		"--listen", addr,
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
	}
	return append(args, s.flags...)
}

// pluginEnvironment is the environment of run (and so of its plugin
// processes): the test's own without shoes-scaleset's and the fake's
// variables, plus the call log, the instance directory and the knobs.
func (s *scenario) pluginEnvironment() []string {
	return append(childEnv(shoesfake.EnvCallLog+"="+s.callLog, shoesfake.EnvStateDir+"="+s.pluginDir), s.pluginEnv...)
}

// daemon is one `shoes-scaleset run` process.
type daemon struct {
	s       *scenario
	cmd     *exec.Cmd
	addr    string
	logPath string
	started time.Time
	done    chan struct{}
	err     error // the Wait error, set before done closes
}

// startRun starts `run` in its own process group, logging to a file of
// its own, with the scenario's flags and extra.
func (s *scenario) startRun(extra ...string) *daemon {
	s.t.Helper()
	s.mu.Lock()
	n := len(s.daemons) + 1
	s.mu.Unlock()
	d := &daemon{s: s, addr: freeAddr(s.t), logPath: filepath.Join(s.dir, fmt.Sprintf("run-%d.log", n)), done: make(chan struct{})}
	logf, err := os.Create(d.logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	d.cmd = exec.Command(binary, append(s.runArgs(d.addr), extra...)...)
	d.cmd.Env = s.pluginEnvironment()
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		s.t.Fatalf("start run: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		logf.Close()
		close(d.done)
	}()
	s.mu.Lock()
	s.daemons = append(s.daemons, d)
	s.mu.Unlock()
	s.t.Cleanup(func() {
		// The whole group: run and its plugin processes.
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			s.t.Errorf("run %d not reaped after SIGKILL", d.cmd.Process.Pid)
		}
	})
	return d
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// exitCode is the exit code of an exited daemon; -1 for a signal.
func (d *daemon) exitCode() int {
	<-d.done
	var ee *exec.ExitError
	switch {
	case d.err == nil:
		return 0
	case errors.As(d.err, &ee):
		return ee.ExitCode()
	default:
		return -2
	}
}

// log returns the daemon's log so far.
func (d *daemon) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// kill9 kills the daemon and its plugin processes with SIGKILL, as
// systemd does with the rest of the unit's processes once the main
// process died, and waits until it is reaped.
func (d *daemon) kill9() {
	d.s.t.Helper()
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.s.t.Fatalf("run %d not reaped 10s after SIGKILL", d.cmd.Process.Pid)
	}
}

// terminate sends SIGTERM to the daemon (not to its plugin processes:
// KillMode=mixed) and waits up to timeout for it to exit; it returns the
// exit code and how long the exit took.
func (d *daemon) terminate(timeout time.Duration) (int, time.Duration) {
	d.s.t.Helper()
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !d.exited() {
		d.s.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.s.t.Fatalf("run still running %v after SIGTERM\n%s", timeout, readTail(d.logPath, 40))
	}
	return d.exitCode(), time.Since(start)
}

// stop stops the daemon with SIGTERM and requires exit code 0 within the
// shutdown timeout plus the session deletions.
func (d *daemon) stop() {
	d.s.t.Helper()
	code, took := d.terminate(45 * time.Second)
	if code != 0 {
		d.s.t.Fatalf("run exited %d after SIGTERM (took %v)\n%s", code, took, readTail(d.logPath, 40))
	}
}

// get fetches a path of the daemon's API; it returns the status and body.
func (d *daemon) get(path string) (int, []byte, error) {
	resp, err := httpc.Get("http://" + d.addr + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// getJSON fetches a path of the daemon's API into v; ok false when the
// daemon did not answer 200.
func (d *daemon) getJSON(path string, v any) error {
	code, b, err := d.get(path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, code, b)
	}
	return json.Unmarshal(b, v)
}

func (d *daemon) runners() ([]store.Runner, error) {
	var out httpapi.RunnersResponse
	err := d.getJSON("/api/v1/runners", &out)
	return out.Runners, err
}

func (d *daemon) history() ([]store.HistoryRecord, error) {
	var out httpapi.HistoryResponse
	err := d.getJSON("/api/v1/history", &out)
	return out.History, err
}

func (d *daemon) scaleSets() ([]controller.ScaleSetStatus, error) {
	var out httpapi.ScaleSetsResponse
	err := d.getJSON("/api/v1/scalesets", &out)
	return out.ScaleSets, err
}

// waitUp waits until the daemon's API answers.
func (d *daemon) waitUp() {
	d.s.t.Helper()
	waitFor(d.s.t, "the daemon's API", 30*time.Second, func() (bool, string) {
		if d.exited() {
			d.s.t.Fatalf("run exited early (code %d):\n%s", d.exitCode(), readTail(d.logPath, 40))
		}
		code, _, err := d.get("/healthz")
		return err == nil && code == http.StatusOK, fmt.Sprint(code, err)
	})
}

// alive fails the test if the daemon exited.
func (d *daemon) alive() {
	d.s.t.Helper()
	if d.exited() {
		d.s.t.Fatalf("run exited (code %d):\n%s", d.exitCode(), readTail(d.logPath, 60))
	}
}

// ---------------------------------------------------------------------------
// conditions

// waitFor polls cond every 50ms until it holds, or fails the test after
// timeout with what cond last saw.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	if !poll(timeout, cond) {
		_, seen := cond()
		t.Fatalf("timed out after %v waiting for %s; last seen:\n%s", timeout, what, seen)
	}
}

// poll polls cond until it holds (true) or timeout passes (false).
func poll(timeout time.Duration, cond func() (bool, string)) bool {
	deadline := time.Now().Add(timeout)
	for {
		if ok, _ := cond(); ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitListening waits until every scope in scopes has a scale set with a
// session created after since, and returns how long that took from
// since. It is the "listening again" time after a (re)start.
func (s *scenario) waitListening(d *daemon, since time.Time, scopes []string, timeout time.Duration) time.Duration {
	s.t.Helper()
	var took time.Duration
	waitFor(s.t, fmt.Sprintf("a new session on the scale sets of %v", scopes), timeout, func() (bool, string) {
		d.alive()
		st := s.sim.state()
		fresh := map[string]bool{}
		for _, ss := range st.ScaleSets {
			if ss.Session != nil && !ss.Session.CreatedAt.Before(since.Add(-time.Millisecond)) {
				fresh[ss.Scope] = true
			}
		}
		for _, sc := range scopes {
			if !fresh[sc] {
				return false, fmt.Sprintf("fresh sessions: %v; scale sets: %s", fresh, summarizeScaleSets(st))
			}
		}
		took = time.Since(since)
		return true, ""
	})
	return took
}

// conflicts sums the sim's 409 session conflicts over all scale sets.
func conflicts(st actionsfake.State) int {
	n := 0
	for _, ss := range st.ScaleSets {
		n += ss.Conflicts
	}
	return n
}

func summarizeScaleSets(st actionsfake.State) string {
	var b strings.Builder
	for _, ss := range st.ScaleSets {
		sess := "none"
		if ss.Session != nil {
			sess = ss.Session.ID[:8] + " (" + ss.Session.Owner + ")"
		}
		fmt.Fprintf(&b, "  %s id=%d session=%s jobs=%+v runners=%+v conflicts=%d\n", ss.Scope, ss.ID, sess, ss.Jobs, ss.Runners, ss.Conflicts)
	}
	return b.String()
}

// jobCounts counts the sim's jobs by state.
func jobCounts(st actionsfake.State) map[string]int {
	out := map[string]int{}
	for _, j := range st.Jobs {
		out[j.State]++
	}
	return out
}

// jobsFinal reports whether every job of the sim is completed or canceled.
func jobsFinal(st actionsfake.State) bool {
	for _, j := range st.Jobs {
		if j.State != "completed" && j.State != "canceled" {
			return false
		}
	}
	return true
}

// waitJobsDone waits until every job queued in the sim is final.
func (s *scenario) waitJobsDone(d *daemon, timeout time.Duration) {
	s.t.Helper()
	waitFor(s.t, "every job completed", timeout, func() (bool, string) {
		if d != nil {
			d.alive()
		}
		st := s.sim.state()
		return jobsFinal(st), fmt.Sprintf("jobs %v\n%s", jobCounts(st), summarizeScaleSets(st))
	})
}

// waitDrained waits until the daemon holds no runner on its way in or out
// (pending, configured, busy, deleting): what is left is idle runners and
// unknown-instance records.
func (s *scenario) waitDrained(d *daemon, timeout time.Duration) {
	s.t.Helper()
	waitFor(s.t, "no runner pending, configured, busy or deleting", timeout, func() (bool, string) {
		d.alive()
		rs, err := d.runners()
		if err != nil {
			return false, err.Error()
		}
		counts := map[store.RunnerState]int{}
		busy := 0
		for _, r := range rs {
			counts[r.State]++
			switch r.State {
			case store.StatePending, store.StateConfigured, store.StateBusy, store.StateDeleting:
				busy++
			}
		}
		return busy == 0, fmt.Sprintf("runners by state: %v", counts)
	})
}

// settle waits for every job and every runner to finish, stops the
// daemon with SIGTERM (exit 0 required) and checks the invariants.
func (s *scenario) settle(d *daemon, timeout time.Duration, o invariantOptions) invariants {
	s.t.Helper()
	s.waitJobsDone(d, timeout)
	s.waitDrained(d, timeout)
	if o.resolvedByName {
		s.waitNoUnknown(d, timeout)
	}
	d.stop()
	return s.checkInvariants(o)
}

// waitNoUnknown waits until the daemon holds no unknown-instance record:
// with a name-keyed plugin they are resolved by name.
func (s *scenario) waitNoUnknown(d *daemon, timeout time.Duration) {
	s.t.Helper()
	waitFor(s.t, "no unknown-instance record (resolved by name)", timeout, func() (bool, string) {
		d.alive()
		rs, err := d.runners()
		if err != nil {
			return false, err.Error()
		}
		c := countStates(rs)
		return c[store.StateUnknownInstance] == 0 && c[store.StateDeleting] == 0, fmt.Sprint(c)
	})
}

// countStates counts runner records by state.
func countStates(rs []store.Runner) map[store.RunnerState]int {
	out := map[store.RunnerState]int{}
	for _, r := range rs {
		out[r.State]++
	}
	return out
}

// ---------------------------------------------------------------------------
// commands run to completion

// cmdResult is the outcome of one command line.
type cmdResult struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

func (r cmdResult) String() string {
	return fmt.Sprintf("exit %d after %v\n--- stdout:\n%s--- stderr:\n%s", r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// runBinary runs the binary to completion, bounded by timeout.
func runBinary(t *testing.T, timeout time.Duration, env []string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	res := cmdResult{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("shoes-scaleset %s: still running after %v\n%s", strings.Join(args, " "), timeout, res)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("shoes-scaleset %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// runnersLs runs `runners ls -o json` on the state file with no daemon
// answering, as an operator would after a stop; it fails the test if the
// command fails.
func (s *scenario) runnersLs() []store.Runner {
	s.t.Helper()
	res := runBinary(s.t, 30*time.Second, childEnv(), "runners", "ls", "-o", "json", "--state-file", s.stateFile, "--listen", "127.0.0.1:1")
	if res.code != 0 {
		s.t.Fatalf("runners ls on the state file:\n%s", res)
	}
	var rs []store.Runner
	if err := json.Unmarshal([]byte(res.stdout), &rs); err != nil {
		s.t.Fatalf("runners ls -o json: %v\n%s", err, res.stdout)
	}
	return rs
}

// scaleSetsLs runs `scalesets ls -o json` on the state file.
func (s *scenario) scaleSetsLs() []controller.ScaleSetStatus {
	s.t.Helper()
	res := runBinary(s.t, 30*time.Second, childEnv(), "scalesets", "ls", "-o", "json", "--state-file", s.stateFile, "--listen", "127.0.0.1:1")
	if res.code != 0 {
		s.t.Fatalf("scalesets ls on the state file:\n%s", res)
	}
	var out []controller.ScaleSetStatus
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		s.t.Fatalf("scalesets ls -o json: %v\n%s", err, res.stdout)
	}
	return out
}

// history reads the runner history from the state file (no daemon may hold it).
func (s *scenario) history() []store.HistoryRecord {
	s.t.Helper()
	st, err := store.Open(store.Options{Path: s.stateFile, ReadOnly: true})
	if err != nil {
		s.t.Fatalf("open state file read-only: %v", err)
	}
	defer st.Close()
	h, err := st.ListHistory(store.HistoryFilter{})
	if err != nil {
		s.t.Fatalf("list history: %v", err)
	}
	return h
}

// calls reads the fake plugin's call log.
func (s *scenario) calls() []shoesfake.Call {
	s.t.Helper()
	calls, err := shoesfake.ReadCallLog(s.callLog)
	if err != nil {
		s.t.Fatalf("read call log: %v", err)
	}
	return calls
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

// ---------------------------------------------------------------------------
// small helpers

// childEnv is the test's environment without any variable shoes-scaleset
// or the fake plugin reads, plus extra.
func childEnv(extra ...string) []string {
	drop := []string{"GITHUB_URL", "GITHUB_APP_ID", "GITHUB_PRIVATE_KEY_BASE64", "PLUGIN",
		"RUNNER_USER", "RUNNER_VERSION", "RUNNER_BASE_DIRECTORY"}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SHOES_SCALESET_") || strings.HasPrefix(name, "SIM_PLUGIN_") || slices.Contains(drop, name) {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// readTail returns the last n lines of a file.
func readTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), n)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

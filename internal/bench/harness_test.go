//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testbin"
)

// binary is shoes-scaleset, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m, "./cmd/shoes-scaleset", &binary))
}

// quick reports BENCH_QUICK: one configuration of each figure.
func quick() bool { return os.Getenv("BENCH_QUICK") != "" && os.Getenv("BENCH_QUICK") != "0" }

// runs is how often each configuration runs: BENCH_RUNS, else 3 (1 quick).
func runs() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_RUNS")); err == nil && n > 0 {
		return n
	}
	if quick() {
		return 1
	}
	return 3
}

// ---------------------------------------------------------------------------
// output

var printOnce sync.Once

// report prints a block of the results (Markdown) on stdout and appends
// it to BENCH_OUT, after the machine's description once.
func report(t *testing.T, format string, args ...any) {
	t.Helper()
	printOnce.Do(func() { write(t, machine()) })
	write(t, fmt.Sprintf(format, args...))
}

func write(t *testing.T, s string) {
	t.Helper()
	fmt.Print(s)
	if p := os.Getenv("BENCH_OUT"); p != "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Errorf("BENCH_OUT: %v", err)
			return
		}
		defer f.Close()
		if _, err := io.WriteString(f, s); err != nil {
			t.Errorf("BENCH_OUT: %v", err)
		}
	}
}

// machine describes the machine the figures come from.
func machine() string {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if kb, err := strconv.Atoi(f[1]); err == nil {
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return fmt.Sprintf("\nmachine: %d CPUs (%s), %s RAM, %s %s/%s, load average at start %s\n",
		runtime.NumCPU(), model, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH, loadAvg())
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// ---------------------------------------------------------------------------
// statistics

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread formats the median of xs and, with more than one run, its range.
func spread(xs []float64, format string) string {
	m := fmt.Sprintf(format, median(xs))
	if len(xs) < 2 {
		return m
	}
	return fmt.Sprintf("%s ("+format+"–"+format+")", m, slices.Min(xs), slices.Max(xs))
}

// ---------------------------------------------------------------------------
// CPU accounting

// cpuSample is the machine's CPU time so far, from /proc/stat.
type cpuSample struct{ busy, total float64 }

func sampleCPU() cpuSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var s cpuSample
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		s.total += v
		if i != 3 && i != 4 { // idle, iowait
			s.busy += v
		}
	}
	return s
}

// clockTick is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTick = 100.0

// busySeconds is the CPU time the whole machine spent between two samples.
func busySeconds(a, b cpuSample) float64 { return (b.busy - a.busy) / clockTick }

// processCPU is a process's user+system CPU time so far, in seconds, from
// /proc/<pid>/stat.
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	// After the command: state(0) ... utime(11) stime(12).
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clockTick, nil
}

// processRSS is a process's resident set size in bytes, from
// /proc/<pid>/status.
func processRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// ---------------------------------------------------------------------------
// processes

// childEnv is the test's environment without shoes-scaleset's, myshoes's
// and the fake plugin's variables, plus extra.
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

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a process of the binary in its own process group.
type proc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// start starts the binary with args in its own process group, its output
// to logPath (stdout also to stdout if set). The test's cleanup kills the
// group.
func start(t *testing.T, logPath string, env []string, stdout io.Writer, args ...string) *proc {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{logPath: logPath, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if stdout != nil {
		p.cmd.Stdout = io.MultiWriter(logf, stdout)
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", args[0], err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill9() })
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill9 kills the process group (the process and its plugin processes,
// as systemd does once the main process died) and waits for the process.
func (p *proc) kill9() {
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
}

// terminate sends SIGTERM and waits up to timeout.
func (p *proc) terminate(t *testing.T, timeout time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Errorf("%s still running %v after SIGTERM", p.cmd.Args[1], timeout)
		p.kill9()
	}
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// poll calls cond every interval until it holds (true) or timeout passes.
func poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// ---------------------------------------------------------------------------
// sim serve

// simServe is a `sim serve` process.
type simServe struct {
	*proc
	url, githubURL, myshoesURL, appID, keyPath string
	http                                       *http.Client
}

// startSim starts `sim serve` with args and reads the flags it prints.
func startSim(t *testing.T, dir string, args ...string) *simServe {
	t.Helper()
	pr, pw := io.Pipe()
	s := &simServe{http: &http.Client{Timeout: 30 * time.Second}}
	s.proc = start(t, filepath.Join(dir, "sim-serve.log"), childEnv(), pw,
		append([]string{"sim", "serve", "--listen", "127.0.0.1:0", "--log-level", "error"}, args...)...)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() { pw.Close() })
	deadline := time.After(30 * time.Second)
	for s.keyPath == "" || s.url == "" || s.githubURL == "" || s.myshoesURL == "" || s.appID == "" {
		select {
		case l := <-lines:
			switch {
			case strings.HasPrefix(l, "listening on "):
				s.url = "http://" + strings.TrimPrefix(l, "listening on ")
			case strings.HasPrefix(l, "--github-url="):
				s.githubURL = strings.TrimPrefix(l, "--github-url=")
			case strings.HasPrefix(l, "--myshoes-url="):
				s.myshoesURL = strings.TrimPrefix(l, "--myshoes-url=")
			case strings.HasPrefix(l, "--github-app-id="):
				s.appID = strings.TrimPrefix(l, "--github-app-id=")
			case strings.HasPrefix(l, "--github-private-key-path="):
				s.keyPath = strings.TrimPrefix(l, "--github-private-key-path=")
			}
		case <-s.done:
			t.Fatalf("sim serve exited:\n%s", tailFile(s.logPath, 20))
		case <-deadline:
			t.Fatalf("sim serve printed no address within 30s:\n%s", tailFile(s.logPath, 20))
		}
	}
	return s
}

func (s *simServe) queueJobs(t *testing.T, scope string, count int, duration time.Duration) {
	t.Helper()
	body, _ := json.Marshal(actionsfake.JobsRequest{Scope: scope, Count: count, DurationMS: int(duration.Milliseconds())})
	resp, err := s.http.Post(s.url+"/_sim/jobs", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("queue jobs: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("queue jobs: %s", resp.Status)
	}
}

func (s *simServe) state(t *testing.T) actionsfake.State {
	t.Helper()
	resp, err := s.http.Get(s.url + "/_sim/state")
	if err != nil {
		t.Fatalf("sim state: %v", err)
	}
	defer resp.Body.Close()
	var st actionsfake.State
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("sim state: %v", err)
	}
	return st
}

// pluginWrapper writes the two-line script that runs the binary's fake
// plugin, for run's --plugin.
func pluginWrapper(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "fake-plugin")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexec "+binary+" sim plugin \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// runArgs are the flags of a `run` against s.
func (s *simServe) runArgs(plugin, stateFile, listen string, extra ...string) []string {
	return append([]string{"run",
		"--myshoes-url", s.myshoesURL, "--github-url", s.githubURL,
		"--github-app-id", s.appID, "--github-private-key-path", s.keyPath,
		"--plugin", plugin, "--state-file", stateFile, "--listen", listen,
	}, extra...)
}

// pluginEnv is the environment of run for the fake plugin in dir.
func pluginEnv(dir string, knobs ...string) []string {
	return childEnv(append([]string{
		shoesfake.EnvCallLog + "=" + filepath.Join(dir, "calls.jsonl"),
		shoesfake.EnvStateDir + "=" + filepath.Join(dir, "instances"),
	}, knobs...)...)
}

func jobCounts(st actionsfake.State) map[string]int {
	out := map[string]int{}
	for _, j := range st.Jobs {
		out[j.State]++
	}
	return out
}

func scopes(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i+1)
	}
	return out
}

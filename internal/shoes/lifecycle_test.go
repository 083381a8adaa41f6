package shoes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// These tests cover plugin processes that misbehave around their start and
// their end: a wrapper script that does not exec and leaves a child holding
// the plugin's stdout, a plugin that never completes its handshake, a host
// killed with SIGKILL. Whatever the plugin does, starting and stopping it
// is bounded in time and leaves no process behind.

// writeScript writes an executable shell script into dir and returns its path.
func writeScript(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// readPIDs reads the pids a script wrote, one per line; it waits until
// want of them are there.
func readPIDs(t testing.TB, path string, want int) []int {
	t.Helper()
	var pids []int
	testkit.Eventually(t, 10*time.Second, fmt.Sprintf("%d pids in %s", want, path), func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pids = pids[:0]
		for f := range strings.FieldsSeq(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return len(pids) >= want
	})
	return pids
}

// within runs f and fails the test if it has not returned after d. A
// function that hangs is left running: the test reports it instead of
// hanging with it.
func within(t testing.TB, d time.Duration, what string, f func()) time.Duration {
	t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("%s still blocked after %s", what, d)
		return 0
	}
}

// TestStuckStartIsBounded: a plugin that never completes its handshake,
// and whose child holds its stdout open, fails its start after
// StartTimeout; the start ends in time and no process of it is left.
func TestStuckStartIsBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	script := writeScript(t, dir, "stuck-plugin", fmt.Sprintf("echo $$ >> %s\nsleep 1000 &\necho $! >> %s\nexec sleep 1000\n", pidFile, pidFile))
	rec := &recorder{}
	h, err := New(context.Background(), Config{Path: script, Logger: testLogger(t), StartTimeout: time.Second, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeWithin(t, h, 20*time.Second) })

	var callErr error
	took := within(t, 15*time.Second, "AddInstance on a plugin stuck in its handshake", func() {
		_, callErr = h.AddInstance(context.Background(), addReq())
	})
	t.Logf("the stuck start failed after %s (start timeout 1s)", took)
	if !errors.Is(callErr, ErrRetryable) || Code(callErr) != CodeStartFailed || errors.Is(callErr, ErrNotSent) {
		t.Fatalf("got %v (code %s), want a retryable StartFailed", callErr, Code(callErr))
	}
	if !strings.Contains(callErr.Error(), "no handshake within 1s") || !strings.Contains(callErr.Error(), script) {
		t.Errorf("error %q should name the plugin and the start timeout", callErr)
	}
	if got := rec.startFailures(); !slices.Equal(got, []string{StartFailureTimeout}) {
		t.Errorf("recorded start failures %v, want [%s]", got, StartFailureTimeout)
	}
	for _, pid := range readPIDs(t, pidFile, 2) {
		testkit.Eventually(t, 2*time.Second, fmt.Sprintf("pid %d of the stuck plugin to die", pid), func() bool { return !testkit.Alive(pid) })
	}
	within(t, 10*time.Second, "Close", func() { _ = h.Close() })
}

// TestNoExecWrapperClose: a wrapper script that starts the plugin without
// exec and leaves a background child holding its stdout. The plugin works;
// Close ends in time and kills the wrapper, the plugin and the child.
func TestNoExecWrapperClose(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	script := writeScript(t, dir, "wrapper", fmt.Sprintf("echo $$ >> %s\nsleep 1000 &\necho $! >> %s\n'%s' \"$@\"\n", pidFile, pidFile, fakeshoesBin))
	f := newFixture(t, nil, func(c *Config) { c.Path = script; c.PoolSize = 1 })
	if _, err := f.host.AddInstance(context.Background(), addReq()); err != nil {
		t.Fatalf("AddInstance through the wrapper: %v", err)
	}
	pids := append(readPIDs(t, pidFile, 2), f.calls(t)[0].PID)
	took := within(t, 15*time.Second, "Close of a wrapper whose child holds stdout", func() { _ = f.host.Close() })
	t.Logf("Close took %s", took)
	for _, pid := range pids {
		testkit.Eventually(t, 2*time.Second, fmt.Sprintf("pid %d of the wrapper's group to die", pid), func() bool { return !testkit.Alive(pid) })
	}
}

// TestNoExecWrapperDiscard: the same wrapper, and a call that hangs past
// its deadline: the process is discarded (killed at once), the call
// returns in time and the next call gets a new process.
func TestNoExecWrapperDiscard(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	script := writeScript(t, dir, "wrapper", fmt.Sprintf("sleep 1000 &\necho $! >> %s\n'%s' \"$@\"\n", pidFile, fakeshoesBin))
	f := newFixture(t, map[string]string{shoesfake.EnvHang: "AddInstance"}, func(c *Config) {
		c.Path = script
		c.PoolSize = 1
		c.AddTimeout = time.Second
	})
	var err error
	within(t, 15*time.Second, "a hung call on a wrapper whose child holds stdout", func() {
		_, err = f.host.AddInstance(context.Background(), addReq())
	})
	if Code(err) != "DeadlineExceeded" {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	child := readPIDs(t, pidFile, 1)[0]
	testkit.Eventually(t, 2*time.Second, "the wrapper's child to die with the discarded process", func() bool { return !testkit.Alive(child) })
	within(t, 15*time.Second, "a delete on a new process", func() {
		err = f.host.DeleteInstance(context.Background(), "fake-00000000-0000-0000-0000-000000000000", nil)
	})
	if err != nil {
		t.Fatalf("call after the discard: %v", err)
	}
}

// TestStartCanceled: a call whose context ends while its plugin process
// is still starting returns at once, unsent, and the process is killed;
// so does a call in a start when the host closes.
func TestStartCanceled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	script := writeScript(t, dir, "stuck-plugin", fmt.Sprintf("echo $$ >> %s\nexec sleep 1000\n", pidFile))
	rec := &recorder{}
	h, err := New(context.Background(), Config{Path: script, Logger: testLogger(t), StartTimeout: time.Hour, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeWithin(t, h, 20*time.Second) })

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var callErr error
	took := within(t, 10*time.Second, "AddInstance whose context ends during the start", func() {
		_, callErr = h.AddInstance(ctx, addReq())
	})
	t.Logf("returned %s after the call started", took)
	if Code(callErr) != "DeadlineExceeded" {
		t.Errorf("got %v (code %s), want DeadlineExceeded", callErr, Code(callErr))
	}
	first := readPIDs(t, pidFile, 1)[0]
	testkit.Eventually(t, 2*time.Second, "the abandoned start's process to die", func() bool { return !testkit.Alive(first) })

	errc := make(chan error, 1)
	go func() {
		_, err := h.AddInstance(context.Background(), addReq())
		errc <- err
	}()
	second := readPIDs(t, pidFile, 2)[1]
	within(t, 10*time.Second, "Close during a start", func() { _ = h.Close() })
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("call in a start when the host closed: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call in a start did not return after Close")
	}
	testkit.Eventually(t, 2*time.Second, "the process started when the host closed to die", func() bool { return !testkit.Alive(second) })
	want := []string{StartFailureCanceled, StartFailureCanceled}
	if got := rec.startFailures(); !slices.Equal(got, want) {
		t.Errorf("recorded start failures %v, want %v", got, want)
	}
}

// envHostHelper makes the test binary run hostHelper instead of the
// tests: a host with busy plugin processes, to be killed with SIGKILL.
const envHostHelper = "SHOES_TEST_HOST_HELPER"

// hostHelper starts two AddInstance calls that take an hour on the plugin
// named by envHostHelper, prints the pids of their processes and waits
// to be killed.
func hostHelper() int {
	h, err := New(context.Background(), Config{Path: os.Getenv(envHostHelper), PoolSize: 2})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for range 2 {
		go func() { _, _ = h.AddInstance(context.Background(), addReq()) }()
	}
	var pids []string
	if !testkit.Poll(time.Minute, func() (bool, string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		pids = pids[:0]
		for p := range h.live {
			pids = append(pids, strconv.Itoa(p.pid))
		}
		return len(pids) == 2, ""
	}) {
		fmt.Fprintln(os.Stderr, "the two plugin processes did not start")
		return 1
	}
	fmt.Println(strings.Join(pids, " "))
	select {}
}

// TestPluginsDieWithHost: the host process is killed with SIGKILL (its
// group is not): its plugin processes die with it.
func TestPluginsDieWithHost(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(),
		envHostHelper+"="+fakeshoesBin,
		shoesfake.EnvLatency+"=1h",
		shoesfake.EnvNoRunner+"=true",
		shoesfake.EnvStateDir+"="+filepath.Join(dir, "state"),
	)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	var pids []int
	select {
	case l := <-line:
		for f := range strings.FieldsSeq(l) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("helper printed %q", l)
			}
			pids = append(pids, n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the helper printed no plugin pids")
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if len(pids) != 2 || slices.ContainsFunc(pids, func(p int) bool { return !testkit.Alive(p) }) {
		t.Fatalf("want 2 live plugin pids, got %v", pids)
	}
	// The host only, not its group.
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for _, pid := range pids {
		testkit.Eventually(t, 2*time.Second, fmt.Sprintf("plugin pid %d to die with its host", pid), func() bool { return !testkit.Alive(pid) })
	}
}

// TestStartFailureReasons: each way a start fails is counted with its
// reason, and the call fails StartFailed, retryable.
func TestStartFailureReasons(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, want string
	}{
		{"not a plugin", "echo hello\n", StartFailureHandshake},
		{"exits at once", "exit 3\n", StartFailureHandshake},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			script := writeScript(t, t.TempDir(), "plugin", tt.body)
			rec := &recorder{}
			h, err := New(context.Background(), Config{Path: script, Logger: testLogger(t), StartTimeout: 10 * time.Second, Recorder: rec})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { closeWithin(t, h, 20*time.Second) })
			_, err = h.AddInstance(context.Background(), addReq())
			if !errors.Is(err, ErrRetryable) || Code(err) != CodeStartFailed {
				t.Errorf("got %v (code %s), want a retryable StartFailed", err, Code(err))
			}
			if got := rec.startFailures(); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("recorded start failures %v, want [%s]", got, tt.want)
			}
		})
	}
	t.Run("bad interpreter", func(t *testing.T) {
		t.Parallel()
		p := filepath.Join(t.TempDir(), "plugin")
		if err := os.WriteFile(p, []byte("#!/no/such/interpreter\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		h, err := New(context.Background(), Config{Path: p, Logger: testLogger(t), Recorder: rec})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeWithin(t, h, 20*time.Second) })
		if _, err := h.AddInstance(context.Background(), addReq()); Code(err) != CodeStartFailed {
			t.Errorf("got %v, want StartFailed", err)
		}
		if got := rec.startFailures(); !slices.Equal(got, []string{StartFailureExec}) {
			t.Errorf("recorded start failures %v, want [%s]", got, StartFailureExec)
		}
	})
}

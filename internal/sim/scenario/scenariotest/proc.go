// Package scenariotest drives whole-loop scenarios from tests with real
// processes: `shoes-scaleset sim serve` (StartSim) and `shoes-scaleset
// run` (StartRun) in their own process groups, terminated or killed with
// SIGKILL and started again, one-shot commands (Exec, RunnersLs), and
// the inputs of scenario.Check gathered from a stopped daemon's files
// (Gather). The reliability suite, the benchmarks and the cli tests use
// it; the binary comes from internal/testbin.
package scenariotest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// PollEvery is the pace of the waits of this package (WaitFor): each
// check costs the peers under test a state fetch or a command.
const PollEvery = 50 * time.Millisecond

// WaitFor checks cond every PollEvery until it holds, or fails the test
// after timeout with what cond last saw.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	testkit.WaitForEvery(t, what, timeout, PollEvery, cond)
}

// reapTimeout bounds the wait for a process killed with SIGKILL.
const reapTimeout = 10 * time.Second

// Proc is a process of the binary under test in its own process group,
// its stdout and stderr in a log file.
type Proc struct {
	t   testing.TB
	cmd *exec.Cmd
	// LogPath is the file that has its output.
	LogPath string
	// Started is when it was started.
	Started time.Time
	done    chan struct{}
	err     error // the Wait error, set before done closes
}

// Start starts bin with args and env in its own process group, its
// output to logPath. The test's cleanup kills the group (the process and
// whatever it started: plugin processes) and reaps the process.
func Start(t testing.TB, bin, logPath string, env []string, args ...string) *Proc {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{t: t, LogPath: logPath, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.Started = time.Now()
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(reapTimeout):
			t.Errorf("%s %d not reaped after SIGKILL", p.name(), p.cmd.Process.Pid)
		}
	})
	return p
}

func (p *Proc) name() string { return strings.Join(p.cmd.Args[1:min(3, len(p.cmd.Args))], " ") }

// Pid is the process's ID, also its process group's.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process was reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process was reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode waits for the process and returns its exit code: -1 when a
// signal ended it, -2 when it could not be waited for.
func (p *Proc) ExitCode() int {
	<-p.done
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	default:
		return -2
	}
}

// Signal sends sig to the process alone, not to its group: what systemd's
// KillMode=mixed does with SIGTERM.
func (p *Proc) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !p.Exited() {
		p.t.Fatalf("%s: %v", sig, err)
	}
}

// Kill9 kills the process group with SIGKILL, as systemd does with the
// rest of a unit's processes once the main process died, and waits until
// the process is reaped.
func (p *Proc) Kill9() {
	p.t.Helper()
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(reapTimeout):
		p.t.Fatalf("%s %d not reaped %v after SIGKILL", p.name(), p.Pid(), reapTimeout)
	}
}

// Terminate sends SIGTERM to the process (not to its group) and waits up
// to timeout for it to exit; it returns the exit code and how long the
// exit took.
func (p *Proc) Terminate(timeout time.Duration) (int, time.Duration) {
	p.t.Helper()
	start := time.Now()
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s still running %v after SIGTERM\n%s", p.name(), timeout, p.Tail(40))
	}
	return p.ExitCode(), time.Since(start)
}

// Log returns the process's output so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Tail returns the last n lines of the process's output.
func (p *Proc) Tail(n int) string { return testkit.ReadTail(p.LogPath, n) }

// Result is the outcome of a command run to completion.
type Result struct {
	Code           int
	Stdout, Stderr string
	// Took is its wall time; CPU the user and system time of the process
	// and of the children it waited for.
	Took, CPU time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d after %v\n--- stdout:\n%s--- stderr:\n%s", r.Code, r.Took.Round(time.Millisecond), r.Stdout, r.Stderr)
}

// Exec runs bin with args and env to completion in its own process
// group, bounded by timeout: past it the group is killed and the test
// fails.
func Exec(t testing.TB, bin string, timeout time.Duration, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String(), Took: time.Since(start)}
	if cmd.ProcessState != nil {
		res.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if ctx.Err() != nil {
		t.Fatalf("shoes-scaleset %s: still running after %v\n%s", strings.Join(args, " "), timeout, res)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("shoes-scaleset %s: %v", strings.Join(args, " "), err)
	}
	return res
}

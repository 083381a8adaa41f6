package shoesfake_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

const runnerURL = "https://github.com/actions/runner/releases/download/v2.330.0/actions-runner-linux-x64-2.330.0.tar.gz"

func TestSetupScriptRunsRunner(t *testing.T) {
	t.Parallel()
	downloads := []struct{ name, fetch string }{
		{"-fsSL -o", `curl -fsSL -o runner.tar.gz ` + runnerURL + ` && tar xzf runner.tar.gz`},
		{"--output", `curl -L --output runner.tar.gz ` + runnerURL + ` && tar xzf runner.tar.gz`},
		{"-fsSLo", `curl -fsSLo runner.tar.gz ` + runnerURL + ` && tar xzf runner.tar.gz`},
		{"stdout pipe", `curl -sL ` + runnerURL + ` | tar xz`},
		{"redirect", `curl -fsSL ` + runnerURL + ` > runner.tar.gz && tar xzf runner.tar.gz`},
		{"-O", `curl -L -O ` + runnerURL + ` && tar xzf actions-runner-linux-x64-2.330.0.tar.gz`},
	}
	e := newEnv(t, nil)
	h := e.host(t, 2)
	for i, d := range downloads {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			stub := newActionsStub(t, "idle", "busy", "done")
			token := stub.token
			agentID := int64(100 + i)
			name := runnerName()
			script := "#!/bin/bash\nset -euo pipefail\n" +
				"id -u runner >/dev/null || useradd runner\n" +
				"mkdir -p actions-runner && cd actions-runner\n" +
				d.fetch + "\n" +
				"chown -R runner: .\n" +
				"sudo -u runner -E -- ./config.sh --version\n" +
				"sudo -u runner -E ./run.sh --jitconfig '" + stub.jit(t, agentID, name) + "'\n"
			inst := add(t, h, script)

			ev := e.scriptExit(t, inst.CloudID)
			if ev.ExitCode != 0 {
				t.Fatalf("script exited %d:\n%s", ev.ExitCode, ev.StderrTail)
			}
			connects := stub.connectsSeen()
			if len(connects) != 1 {
				t.Fatalf("stub saw %d connects, want 1", len(connects))
			}
			if c := connects[0]; c.Auth != "Bearer "+token || c.AgentID != agentID || c.AgentName != name {
				t.Errorf("connect %+v, want token %s, agent %d %s", c, token, agentID, name)
			}
			if strings.Contains(ev.StderrTail, token) {
				t.Errorf("the runner logged its token: %s", ev.StderrTail)
			}
		})
	}
}

func TestSetupScriptBadRunnerURL(t *testing.T) {
	t.Parallel()
	urls := map[string]string{
		"vlatest":          "https://github.com/actions/runner/releases/download/vlatest/actions-runner-linux-x64-latest.tar.gz",
		"latest":           "https://github.com/actions/runner/releases/latest/download/actions-runner-linux-x64.tar.gz",
		"version mismatch": "https://github.com/actions/runner/releases/download/v2.330.0/actions-runner-linux-x64-2.329.0.tar.gz",
		"other host":       "https://example.com/actions-runner-linux-x64-2.330.0.tar.gz",
		"empty version":    "https://github.com/actions/runner/releases/download/v/actions-runner-linux-x64-.tar.gz",
	}
	e := newEnv(t, nil)
	h := e.host(t, 2)
	for name, u := range urls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			stub := newActionsStub(t, "done")
			script := "#!/bin/bash\nset -euo pipefail\n" +
				"curl -fsSL -o runner.tar.gz '" + u + "'\n" +
				"tar xzf runner.tar.gz\n" +
				"./run.sh --jitconfig '" + stub.jit(t, 1, "myshoes-x") + "'\n"
			inst := add(t, h, script)
			ev := e.scriptExit(t, inst.CloudID)
			if ev.ExitCode != 22 {
				t.Errorf("exit code %d, want 22 (curl -f)", ev.ExitCode)
			}
			want := "curl shim: not a concrete actions-runner tarball URL: " + u
			if !strings.Contains(ev.StderrTail, want) {
				t.Errorf("stderr tail %q lacks %q", ev.StderrTail, want)
			}
			b, err := os.ReadFile(filepath.Join(e.instanceDir(inst.CloudID), "errors.log"))
			if err != nil || !strings.Contains(string(b), u) {
				t.Errorf("errors.log = %q (%v), want a line naming the URL", b, err)
			}
			if n := len(stub.connectsSeen()); n != 0 {
				t.Errorf("stub saw %d connects, want none", n)
			}
		})
	}
}

func TestSetupScriptFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		wantCode   int
		wantTail   string
	}{
		{"syntax error", "if then fi\n", 2, "syntax error"},
		{"missing command", "set -e\nno-such-command-shoesfake\necho unreachable\n", 127, "command not found"},
		{"exit code", "echo about to fail >&2\nexit 3\n", 3, "about to fail"},
		{"run.sh without jitconfig", "set -e\n" +
			"curl -fsSL -o r.tgz " + runnerURL + "\ntar xzf r.tgz\n./run.sh\n", 2, "--jitconfig is required"},
	}
	e := newEnv(t, nil)
	h := e.host(t, 2)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inst := add(t, h, "#!/bin/bash\n"+tt.body)
			ev := e.scriptExit(t, inst.CloudID)
			if ev.ExitCode != tt.wantCode || !strings.Contains(ev.StderrTail, tt.wantTail) {
				t.Errorf("exit %d with tail %q; want %d and %q", ev.ExitCode, ev.StderrTail, tt.wantCode, tt.wantTail)
			}
			if strings.Contains(ev.StderrTail, "unreachable") {
				t.Errorf("script went on after a failure: %q", ev.StderrTail)
			}
		})
	}
}

func TestShims(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	h := e.host(t, 1)
	inst := add(t, h, `#!/bin/bash
set -euo pipefail
[ "$HOME" = "$PWD" ] || { echo "HOME=$HOME PWD=$PWD"; exit 10; }
[ "$(id -u runner)" = "$(id -u)" ] || exit 11
useradd -m runner
chown -R runner:runner .
sudo -u runner -E -H -- bash -c 'echo hi > sudo.out'
sudo FOO=bar bash -c 'echo "$FOO" > env.out'
sudo -D /tmp bash -c 'pwd > '"$PWD"'/pwd.out'
[ "$(cat sudo.out)" = hi ] || exit 12
[ "$(cat env.out)" = bar ] || exit 13
[ "$(cat pwd.out)" = /tmp ] || exit 14
[ -z "${SHOES_PLUGIN_MAGIC_COOKIE:-}" ] || exit 15
`)
	ev := e.scriptExit(t, inst.CloudID)
	if ev.ExitCode != 0 {
		t.Fatalf("exit %d:\n%s", ev.ExitCode, ev.StderrTail)
	}
	if !strings.Contains(ev.StderrTail, "chown shim: skipped") || !strings.Contains(ev.StderrTail, "useradd shim: skipped") {
		t.Errorf("shims did not log what they skipped: %q", ev.StderrTail)
	}
}

// sleeper is a setup script that keeps a process group busy.
const sleeper = `#!/bin/bash
sleep 300 &
echo $! > bg.pid
echo $$ > main.pid
wait
`

// addSleeper adds an instance running sleeper on h and waits for the
// pids of its main and background processes.
func (e *env) addSleeper(t *testing.T, h *shoes.Host) (inst shoes.Instance, dir string, mainPID, bgPID int) {
	t.Helper()
	inst = add(t, h, sleeper)
	dir = e.instanceDir(inst.CloudID)
	return inst, dir, readPID(t, filepath.Join(dir, "main.pid")), readPID(t, filepath.Join(dir, "bg.pid"))
}

func TestDeleteInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("same process", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		h := e.host(t, 1)
		inst, dir, mainPID, bgPID := e.addSleeper(t, h)
		if err := h.DeleteInstance(ctx, inst.CloudID, nil); err != nil {
			t.Fatal(err)
		}
		assertDeleted(t, dir, mainPID, bgPID)
	})

	t.Run("other process after the creator was killed", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		creator := e.host(t, 1)
		inst, dir, mainPID, bgPID := e.addSleeper(t, creator)
		if err := creator.Close(); err != nil {
			t.Fatal(err)
		}
		addPID := e.calls(t)[0].PID
		if testkit.Alive(addPID) {
			t.Fatalf("creator pid %d alive after Close", addPID)
		}
		if !testkit.Alive(mainPID) || !testkit.Alive(bgPID) {
			t.Fatal("the instance died with the plugin process that created it")
		}

		deleter := e.host(t, 1)
		if err := deleter.DeleteInstance(ctx, inst.CloudID, nil); err != nil {
			t.Fatal(err)
		}
		assertDeleted(t, dir, mainPID, bgPID)
		calls := e.calls(t)
		if len(calls) != 2 || calls[1].Method != shoesfake.MethodDeleteInstance || calls[1].Code != "OK" {
			t.Fatalf("calls %+v, want Add then a successful Delete", calls)
		}
		if calls[1].PID == addPID {
			t.Errorf("delete ran on the creator's pid %d", addPID)
		}

		// Deleting again is NotFound at the plugin, success for the host.
		if err := deleter.DeleteInstance(ctx, inst.CloudID, nil); err != nil {
			t.Fatalf("second delete: %v", err)
		}
		if c := e.calls(t); c[len(c)-1].Code != "NotFound" {
			t.Errorf("second delete answered %s, want NotFound", c[len(c)-1].Code)
		}
	})

	t.Run("unknown ids", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		h := e.host(t, 1)
		// A directory outside the state dir must not be touched.
		outside := filepath.Join(e.dir, "outside")
		if err := os.Mkdir(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{opaqueID(), "../outside", "fake-../../outside"} {
			if err := h.DeleteInstance(ctx, id, nil); err != nil {
				t.Errorf("DeleteInstance(%q) = %v, want nil (NotFound)", id, err)
			}
		}
		for _, c := range e.calls(t) {
			if c.Code != "NotFound" {
				t.Errorf("delete of %q answered %s, want NotFound", c.CloudID, c.Code)
			}
		}
		if _, err := os.Stat(outside); err != nil {
			t.Errorf("outside dir: %v", err)
		}
	})
}

// TestDeleteInstanceRemovesRunnerDir runs the real default setup script
// and deletes its instance, in both cloud-ID modes: the runner directory
// the script used goes with the instance, as a VM's disk does, and nothing
// else in the base directory is touched.
func TestDeleteInstanceRemovesRunnerDir(t *testing.T) {
	t.Parallel()
	for _, mode := range cloudIDModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testDeleteInstanceRemovesRunnerDir(t, mode)
		})
	}
}

func testDeleteInstanceRemovesRunnerDir(t *testing.T, cloudIDs string) {
	e := cloudIDsEnv(t, cloudIDs, nil)
	h := e.host(t, 2)
	stub := newActionsStub(t, "idle") // never gets a job: the runner stays up
	tests := []struct {
		name string
		base func(instanceDir string) string // the base directory as the script gets it
		abs  func(instanceDir string) string // where it ends up
	}{
		{"absolute base directory",
			func(string) string { return filepath.Join(e.dir, "runners") },
			func(string) string { return filepath.Join(e.dir, "runners") }},
		{"relative base directory inside the instance",
			func(string) string { return "runners" },
			func(dir string) string { return filepath.Join(dir, "runners") }},
		{"relative base directory outside the instance",
			func(string) string { return "../../runners-rel" },
			func(dir string) string { return filepath.Join(dir, "..", "..", "runners-rel") }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name := runnerName()
			// The cloud ID, and so the instance directory, is known only
			// after AddInstance; the bases above do not depend on it.
			inst := addNamed(t, h, name, renderScript(t, "", name, stub.jit(t, int64(i+1), name), tt.base("")))
			dir := e.instanceDir(inst.CloudID)
			testkit.Eventually(t, 30*time.Second, "the runner to connect", func() bool {
				for _, c := range stub.connectsSeen() {
					if c.AgentName == name {
						return true
					}
				}
				return false
			})
			base := tt.abs(dir)
			runnerDir := filepath.Join(base, name)
			if _, err := os.Stat(filepath.Join(runnerDir, "run.sh")); err != nil {
				t.Fatalf("the script did not install the runner in %s: %v", runnerDir, err)
			}
			neighbour := filepath.Join(base, "not-the-instance's")
			if err := os.WriteFile(neighbour, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}

			if err := h.DeleteInstance(context.Background(), inst.CloudID, nil); err != nil {
				t.Fatal(err)
			}
			assertDeleted(t, dir)
			if exists(runnerDir) {
				t.Errorf("runner dir %s still there after DeleteInstance", runnerDir)
			}
			if !strings.HasPrefix(base, dir+string(filepath.Separator)) {
				if _, err := os.Stat(neighbour); err != nil {
					t.Errorf("DeleteInstance removed more than its runner dir: %v", err)
				}
			}
		})
	}
}

func TestInvalidRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{shoesfake.EnvNoRunner: "true"})
	h := e.host(t, 1)
	tests := []struct {
		name, runner, script string
	}{
		{"runner name without prefix", uuid.NewString(), "#!/bin/bash\n"},
		{"runner name not a uuid", "myshoes-1234", "#!/bin/bash\n"},
		{"upper-case uuid", "myshoes-" + strings.ToUpper(uuid.NewString()), "#!/bin/bash\n"},
		{"no shebang", runnerName(), "echo hi\n"},
		{"empty script", runnerName(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.AddInstance(context.Background(), shoes.AddInstanceRequest{RunnerName: tt.runner, SetupScript: tt.script})
			if !errors.Is(err, shoes.ErrPermanent) || shoes.Code(err) != "InvalidArgument" {
				t.Fatalf("got %v, want a permanent InvalidArgument", err)
			}
		})
	}
	entries, _ := os.ReadDir(e.stateDir)
	for _, d := range entries {
		if d.IsDir() {
			t.Errorf("an invalid request created instance %s", d.Name())
		}
	}
}

func TestNoRunner(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{shoesfake.EnvNoRunner: "true"})
	h := e.host(t, 1)
	inst := add(t, h, "#!/bin/bash\necho should not run > ran.txt\n")
	dir := e.instanceDir(inst.CloudID)
	if b, err := os.ReadFile(filepath.Join(dir, "setup.sh")); err != nil || !strings.Contains(string(b), "should not run") {
		t.Fatalf("setup.sh = %q (%v)", b, err)
	}
	for _, f := range []string{"pgid", "ran.txt", "script.log"} {
		if exists(filepath.Join(dir, f)) {
			t.Errorf("%s exists: the script ran", f)
		}
	}
	if err := h.DeleteInstance(context.Background(), inst.CloudID, nil); err != nil {
		t.Fatal(err)
	}
	if exists(dir) {
		t.Errorf("instance dir still there")
	}
}

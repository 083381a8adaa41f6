package shoesfake_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

func inProcessEnv(t *testing.T) *env {
	return newEnv(t, map[string]string{shoesfake.EnvRunnerMode: shoesfake.RunnerModeInProcess})
}

// addCall returns the call log's AddInstance line of cloudID.
func (e *env) addCall(t *testing.T, cloudID string) shoesfake.Call {
	t.Helper()
	for _, c := range e.calls(t) {
		if c.Method == shoesfake.MethodAddInstance && c.CloudID == cloudID {
			return c
		}
	}
	t.Fatalf("no AddInstance of %s in the call log", cloudID)
	return shoesfake.Call{}
}

func TestInProcessRunsRunner(t *testing.T) {
	t.Parallel()
	e := inProcessEnv(t)
	h := e.host(t, 1)
	stub := newActionsStub(t, "idle", "busy", "done")
	name := runnerName()
	inst := addNamed(t, h, name, renderScript(t, "", name, stub.jit(t, 7, name), ""))

	ev := e.scriptExit(t, inst.CloudID)
	if ev.ExitCode != 0 {
		t.Fatalf("runner exited %d: %s", ev.ExitCode, ev.StderrTail)
	}
	if c := e.addCall(t, inst.CloudID); c.RunnerMode != shoesfake.RunnerModeInProcess {
		t.Errorf("runner_mode = %q, want %q", c.RunnerMode, shoesfake.RunnerModeInProcess)
	}
	connects := stub.connectsSeen()
	if len(connects) != 1 || connects[0].AgentID != 7 || connects[0].AgentName != name {
		t.Fatalf("connects %+v, want one of agent 7 %s", connects, name)
	}
	dir := e.instanceDir(inst.CloudID)
	if exists(filepath.Join(dir, "pgid")) {
		t.Errorf("pgid file exists: a script ran")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "script.log")); err != nil || !strings.Contains(string(b), "runner connected") {
		t.Errorf("script.log = %q (%v), want the runner's log", b, err)
	}
	if err := h.DeleteInstance(context.Background(), inst.CloudID, nil); err != nil {
		t.Fatal(err)
	}
	assertDeleted(t, dir)
}

func TestInProcessDeleteStopsRunner(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		pool int
	}{{"same process", 1}, {"any process of a pool", 3}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := inProcessEnv(t)
			h := e.host(t, tt.pool)
			stub := newActionsStub(t, "idle") // never gets a job
			var insts []shoes.Instance
			for i := range 3 {
				name := runnerName()
				insts = append(insts, addNamed(t, h, name, renderScript(t, "", name, stub.jit(t, int64(i+1), name), "")))
			}
			testkit.Eventually(t, 10*time.Second, "all runners to connect", func() bool { return len(stub.connectsSeen()) == 3 })
			for _, inst := range insts {
				if err := h.DeleteInstance(context.Background(), inst.CloudID, nil); err != nil {
					t.Fatal(err)
				}
				assertDeleted(t, e.instanceDir(inst.CloudID))
			}
			// Stopped runners stop polling: the wait count settles.
			last, since := stub.waitCount(), time.Now()
			testkit.Eventually(t, 10*time.Second, "the runners to stop polling", func() bool {
				if n := stub.waitCount(); n != last {
					last, since = n, time.Now()
				}
				return time.Since(since) >= 900*time.Millisecond
			})
			for _, c := range e.calls(t) {
				if c.Event == shoesfake.EventScriptExit {
					t.Errorf("a deleted runner recorded an exit: %+v", c)
				}
			}
		})
	}
}

func TestInProcessFallsBackToScript(t *testing.T) {
	t.Parallel()
	e := inProcessEnv(t)
	h := e.host(t, 1)
	inst := add(t, h, "#!/bin/bash\necho custom setup >&2\nexit 4\n")
	ev := e.scriptExit(t, inst.CloudID)
	if ev.ExitCode != 4 || !strings.Contains(ev.StderrTail, "custom setup") {
		t.Errorf("exit %d, tail %q; want the script's own exit 4", ev.ExitCode, ev.StderrTail)
	}
	if c := e.addCall(t, inst.CloudID); c.RunnerMode != shoesfake.RunnerModeScript {
		t.Errorf("runner_mode = %q, want %q", c.RunnerMode, shoesfake.RunnerModeScript)
	}
}

func TestExtractJITConfig(t *testing.T) {
	t.Parallel()
	stub := newActionsStub(t, "done")
	name := runnerName()
	jit := stub.jit(t, 1, name)
	tests := []struct {
		name, script, wantErr string
	}{
		{"default template", renderScript(t, "", name, jit, ""), ""},
		{"custom template, --jitconfig", renderScript(t, "#!/bin/bash\n./run.sh --jitconfig {{ shellQuote .JITConfig }}\n", name, jit, ""), ""},
		{"custom template, variable in double quotes", renderScript(t,
			"#!/bin/bash\nJIT=\"{{ .JITConfig }}\"\n./run.sh --jitconfig \"$JIT\"\n", name, jit, ""), ""},
		{"plain script", "#!/bin/bash\nRUNNER_JIT_CONFIG='" + jit + "'\n./run.sh --jitconfig \"$RUNNER_JIT_CONFIG\"\n", ""},
		// Other controllers' scripts: any quoting, any variable.
		{"unquoted value", "#!/bin/sh\ncd /opt/runner && ./run.sh --jitconfig " + jit + " &\n", ""},
		{"double-quoted value", "#!/bin/sh\nexec ./run.sh --jitconfig \"" + jit + "\"\n", ""},
		{"--jitconfig=value", "#!/bin/sh\n./run.sh --jitconfig=" + jit + "\n", ""},
		{"exported variable in braces", "#!/bin/bash\nexport JIT_CONFIG=\"" + jit + "\"\nsudo -u runner ./run.sh --jitconfig ${JIT_CONFIG}\n", ""},
		{"variable reassigned: the last literal", "#!/bin/bash\nJ=abc\nJ='" + jit + "'\n./run.sh --jitconfig \"$J\"\n", ""},
		{"the runner's own variable", "#!/bin/bash\nexport ACTIONS_RUNNER_INPUT_JITCONFIG=" + jit + "\n./run.sh\n", ""},
		{"declared, after a semicolon", "#!/bin/bash\ncd /opt; declare -x JIT='" + jit + "'\n./run.sh --jitconfig \"$JIT\"\n", ""},
		{"only a longer name assigned", "#!/bin/bash\nMY_JIT='" + jit + "'\n./run.sh --jitconfig \"$JIT\"\n", "no JIT config found"},
		{"a variable never assigned", "#!/bin/bash\n./run.sh --jitconfig \"$FROM_METADATA\"\n", "no JIT config found"},
		{"an expansion, not a literal", "#!/bin/bash\n./run.sh --jitconfig \"$(cat /jit)\"\n", "no JIT config found"},
		{"unterminated quote", "#!/bin/bash\n./run.sh --jitconfig '" + jit + "\n", "no JIT config found"},
		{"not a JIT config", "#!/bin/bash\nRUNNER_JIT_CONFIG='abc'\n", "no JIT config found"},
		{"unterminated here-document", "#!/bin/bash\nbase64 --decode <<'END' | gzip -dc\nAAAA\n", "not terminated"},
		{"bad payload", "#!/bin/bash\nbase64 --decode <<'END' | gzip -dc\n%%%%\nEND\n", "decode main script"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := shoesfake.ExtractJITConfig(tt.script)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), jit) {
					t.Errorf("the error quotes the JIT config")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != jit {
				t.Errorf("got a different config than the one rendered")
			}
		})
	}
}

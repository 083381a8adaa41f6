package shoesfake_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

var (
	opaqueCloudID = regexp.MustCompile(`^fake-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	cloudIDModes  = []string{shoesfake.CloudIDsOpaque, shoesfake.CloudIDsName}
)

func cloudIDsEnv(t *testing.T, mode string, knobs map[string]string) *env {
	t.Helper()
	e := newEnv(t, knobs)
	e.knobs[shoesfake.EnvCloudIDs] = mode
	return e
}

// rpcs is the call log without its events.
func (e *env) rpcs(t *testing.T) []shoesfake.Call {
	t.Helper()
	var out []shoesfake.Call
	for _, c := range e.calls(t) {
		if c.Event == "" {
			out = append(out, c)
		}
	}
	return out
}

// lastRPC is the call log's last RPC.
func (e *env) lastRPC(t *testing.T) shoesfake.Call {
	t.Helper()
	rpcs := e.rpcs(t)
	if len(rpcs) == 0 {
		t.Fatal("no RPC in the call log")
	}
	return rpcs[len(rpcs)-1]
}

// TestCloudIDs drives both cloud-ID modes through the real plugin: the
// shape of the ID, what a second AddInstance of the same runner does, and
// what DeleteInstance answers.
func TestCloudIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		mode string
		// shape checks a cloud ID answered for runner name.
		shape func(id, name string) bool
		// instances after two AddInstance calls of one runner name.
		instances int
		// unknown are IDs of no instance; all answer NotFound.
		unknown []string
	}{
		{
			mode:      shoesfake.CloudIDsOpaque,
			shape:     func(id, name string) bool { return opaqueCloudID.MatchString(id) },
			instances: 2,
			unknown:   []string{opaqueID(), runnerName(), "../outside", "fake-../../outside"},
		},
		{
			mode:      shoesfake.CloudIDsName,
			shape:     func(id, name string) bool { return id == name },
			instances: 1,
			unknown:   []string{runnerName(), opaqueID(), "../outside", "myshoes-../../outside"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			e := cloudIDsEnv(t, tt.mode, nil)
			h := e.host(t, 2)
			name := runnerName()

			first := addNamed(t, h, name, sleeper)
			if !tt.shape(first.CloudID, name) {
				t.Fatalf("cloud ID %q for runner %s: wrong shape for %s mode", first.CloudID, name, tt.mode)
			}
			dir := e.instanceDir(first.CloudID)
			mainPID := readPID(t, filepath.Join(dir, "main.pid"))
			pgid := readPID(t, filepath.Join(dir, "pgid"))

			second := addNamed(t, h, name, sleeper)
			if !tt.shape(second.CloudID, name) {
				t.Fatalf("second cloud ID %q: wrong shape for %s mode", second.CloudID, tt.mode)
			}
			add := e.lastRPC(t)
			if add.Method != shoesfake.MethodAddInstance || add.Code != "OK" || add.CloudID != second.CloudID {
				t.Fatalf("last call %+v, want the second AddInstance", add)
			}
			switch tt.mode {
			case shoesfake.CloudIDsName:
				if second.CloudID != first.CloudID {
					t.Fatalf("second AddInstance of %s answered %q, want the first's %q", name, second.CloudID, first.CloudID)
				}
				if !add.Existing || add.RunnerMode != "" {
					t.Errorf("second AddInstance logged existing=%v runner_mode=%q; want an existing instance, not started again", add.Existing, add.RunnerMode)
				}
				if got := readPID(t, filepath.Join(dir, "pgid")); got != pgid {
					t.Errorf("pgid %d after the second AddInstance, want %d: its setup script ran again", got, pgid)
				}
			case shoesfake.CloudIDsOpaque:
				if second.CloudID == first.CloudID {
					t.Fatalf("second AddInstance answered the first's cloud ID %q", first.CloudID)
				}
				if add.Existing || add.RunnerMode != shoesfake.RunnerModeScript {
					t.Errorf("second AddInstance logged existing=%v runner_mode=%q; want a new instance", add.Existing, add.RunnerMode)
				}
			}

			// A reader of the state directory gets each instance's cloud
			// ID and runner name.
			insts := e.instances(t)
			if len(insts) != tt.instances {
				t.Fatalf("%d instances %+v, want %d", len(insts), insts, tt.instances)
			}
			var ids []string
			for _, in := range insts {
				if in.RunnerName != name || in.Dir != e.instanceDir(in.CloudID) || in.RunnerMode != shoesfake.RunnerModeScript {
					t.Errorf("instance %+v: want runner %s, its own directory, script mode", in, name)
				}
				ids = append(ids, in.CloudID)
			}
			want := []string{first.CloudID, second.CloudID}
			slices.Sort(want)
			if want = slices.Compact(want); !slices.Equal(ids, want) {
				t.Errorf("listed cloud IDs %v, want %v", ids, want)
			}

			// Delete: OK, then NotFound; the instance's processes die.
			for _, id := range want {
				if err := h.DeleteInstance(ctx, id, nil); err != nil {
					t.Fatalf("DeleteInstance(%s): %v", id, err)
				}
				if c := e.lastRPC(t); c.Method != shoesfake.MethodDeleteInstance || c.CloudID != id || c.Code != "OK" {
					t.Errorf("delete of %s logged %+v, want OK", id, c)
				}
				if id == first.CloudID {
					assertDeleted(t, e.instanceDir(id), mainPID, pgid)
				} else {
					assertDeleted(t, e.instanceDir(id))
				}
				if err := h.DeleteInstance(ctx, id, nil); err != nil {
					t.Fatalf("second DeleteInstance(%s): %v", id, err)
				}
				if c := e.lastRPC(t); c.Code != "NotFound" {
					t.Errorf("second delete of %s answered %s, want NotFound", id, c.Code)
				}
			}
			if insts := e.instances(t); len(insts) != 0 {
				t.Errorf("instances left after deleting all: %+v", insts)
			}

			outside := filepath.Join(e.dir, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, id := range tt.unknown {
				if err := h.DeleteInstance(ctx, id, nil); err != nil {
					t.Fatalf("DeleteInstance(%q): %v", id, err)
				}
				if c := e.lastRPC(t); c.CloudID != id || c.Code != "NotFound" {
					t.Errorf("delete of unknown %q logged %+v, want NotFound", id, c)
				}
			}
			if _, err := os.Stat(outside); err != nil {
				t.Errorf("outside dir: %v", err)
			}
		})
	}
}

// TestNameModeDeleteOfOtherModesID: in name mode an existing opaque-mode
// instance in the same state directory is not this plugin's to delete.
func TestNameModeDeleteOfOtherModesID(t *testing.T) {
	t.Parallel()
	e := cloudIDsEnv(t, shoesfake.CloudIDsOpaque, map[string]string{shoesfake.EnvNoRunner: "true"})
	inst := add(t, e.host(t, 1), "#!/bin/bash\n")
	e.knobs[shoesfake.EnvCloudIDs] = shoesfake.CloudIDsName
	if err := e.host(t, 1).DeleteInstance(context.Background(), inst.CloudID, nil); err != nil {
		t.Fatal(err)
	}
	if c := e.lastRPC(t); c.Code != "NotFound" {
		t.Errorf("name-mode delete of %s answered %s, want NotFound", inst.CloudID, c.Code)
	}
	if _, err := os.Stat(e.instanceDir(inst.CloudID)); err != nil {
		t.Errorf("the opaque instance went: %v", err)
	}
}

// TestNameModeConcurrentAdds: AddInstance calls of one name served at once
// by several plugin processes create one instance and start it once.
func TestNameModeConcurrentAdds(t *testing.T) {
	t.Parallel()
	const n = 3
	e := cloudIDsEnv(t, shoesfake.CloudIDsName, nil)
	h := e.host(t, n)
	name := runnerName()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ids  []string
		errs []error
	)
	for range n {
		wg.Go(func() {
			inst, err := h.AddInstance(context.Background(), shoes.AddInstanceRequest{
				RunnerName: name, SetupScript: sleeper, ResourceType: shoes.ResourceSmall,
			})
			mu.Lock()
			defer mu.Unlock()
			ids, errs = append(ids, inst.CloudID), append(errs, err)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if id != name {
			t.Errorf("cloud IDs %v, want %s each time", ids, name)
			break
		}
	}
	if insts := e.instances(t); len(insts) != 1 {
		t.Errorf("instances %+v, want one", insts)
	}
	var pids []int
	created, started := 0, 0
	for _, c := range e.rpcs(t) {
		pids = append(pids, c.PID)
		if !c.Existing {
			created++
		}
		if c.RunnerMode != "" {
			started++
		}
	}
	if created != 1 || started != 1 {
		t.Errorf("calls created %d and started %d instances, want 1 and 1", created, started)
	}
	if slices.Sort(pids); len(slices.Compact(pids)) < 2 {
		t.Logf("the calls were served by processes %v: not concurrent across processes", pids)
	}
	if err := h.DeleteInstance(context.Background(), name, nil); err != nil {
		t.Fatal(err)
	}
	assertDeleted(t, e.instanceDir(name))
}

// TestNameModeRunner: in name mode the real default setup script's runner
// comes online and completes a job; an AddInstance of its name after the
// instance stopped boots it again, its runner comes online again; then it
// is deleted with its runner directory.
func TestNameModeRunner(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{shoesfake.RunnerModeScript, shoesfake.RunnerModeInProcess} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := cloudIDsEnv(t, shoesfake.CloudIDsName, map[string]string{shoesfake.EnvRunnerMode: mode})
			h := e.host(t, 2)
			stub := newActionsStub(t, "idle", "busy", "done")
			name := runnerName()
			base := t.TempDir()
			script := renderScript(t, "", name, stub.jit(t, 9, name), base)

			inst := addNamed(t, h, name, script)
			if inst.CloudID != name {
				t.Fatalf("cloud ID %q, want the runner name %s", inst.CloudID, name)
			}
			if ev := e.scriptExit(t, name); ev.ExitCode != 0 {
				t.Fatalf("runner exited %d: %s", ev.ExitCode, ev.StderrTail)
			}
			if c := e.addCall(t, name); c.RunnerMode != mode || c.Existing {
				t.Errorf("AddInstance logged runner_mode=%q existing=%v, want %s and a new instance", c.RunnerMode, c.Existing, mode)
			}
			connects := stub.connectsSeen()
			if len(connects) != 1 || connects[0].AgentID != 9 || connects[0].AgentName != name {
				t.Fatalf("connects %+v, want one of agent 9 %s", connects, name)
			}
			if waits := stub.waitCount(); waits < 3 {
				t.Fatalf("the runner waited %d times, want it to see idle, busy and done", waits)
			}

			// The instance has stopped (in script mode, once its process
			// group is gone): the same name boots it again.
			if mode == shoesfake.RunnerModeScript {
				pgid := readPID(t, filepath.Join(e.instanceDir(name), "pgid"))
				testkit.Eventually(t, 10*time.Second, "the setup script's process to end", func() bool { return !testkit.Alive(pgid) })
			}
			again := addNamed(t, h, name, script)
			if again.CloudID != name {
				t.Fatalf("second cloud ID %q, want %s", again.CloudID, name)
			}
			if c := e.lastRPC(t); !c.Existing || c.RunnerMode != mode {
				t.Errorf("second AddInstance logged existing=%v runner_mode=%q, want an existing instance booted in %s mode", c.Existing, c.RunnerMode, mode)
			}
			testkit.Eventually(t, 30*time.Second, "the runner to run again", func() bool {
				exits := 0
				for _, c := range e.calls(t) {
					if c.Event == shoesfake.EventScriptExit && c.CloudID == name {
						exits++
					}
				}
				return exits == 2 && len(stub.connectsSeen()) == 2
			})
			if insts := e.instances(t); len(insts) != 1 || insts[0].CloudID != name || insts[0].RunnerName != name {
				t.Errorf("instances %+v, want one, %s", insts, name)
			}

			if err := h.DeleteInstance(context.Background(), name, nil); err != nil {
				t.Fatal(err)
			}
			assertDeleted(t, e.instanceDir(name))
			if mode == shoesfake.RunnerModeScript {
				if exists(filepath.Join(base, name)) {
					t.Errorf("runner dir still there after DeleteInstance")
				}
			}
		})
	}
}

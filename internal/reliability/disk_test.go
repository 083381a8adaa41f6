package reliability

// The state file on a full disk (issue 11).

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// smallDisk mounts a tmpfs of size bytes at dir for the test, or skips the
// test where that is not allowed (it needs root).
func smallDisk(t *testing.T, dir string, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a %d-byte tmpfs for a full disk (%v): needs root", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// fillDisk writes a file in dir until the file system is full; removing
// the file frees the space.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	out, err := exec.Command("dd", "if=/dev/zero", "of="+path, "bs=64k").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "No space left") {
		t.Fatalf("fill %s: %v\n%s", dir, err, out)
	}
	return path
}

// TestFullDisk: the state file's disk fills up while jobs arrive. run
// keeps its sessions (no churn), says so in /readyz and the metric, and
// once space is back everything recovers without a restart: every job
// completes, no record is left pending, no runner stays registered, no
// instance leaks.
func TestFullDisk(t *testing.T) {
	res := newResult(t, 39, "full disk (issue 11)",
		"the state file's disk fills up with jobs running and AddInstance calls in flight: no session churn, /readyz and store_writes_failing report it; space freed: every job completes, no pending or configured record, no runner left registered, no leak, no restart")
	scopes := []string{"org-a", "org-b"}
	s := newScenario(t, res, scenariotest.SimOptions{Targets: scopes})
	disk := filepath.Join(s.dir, "disk")
	smallDisk(t, disk, 8<<20)
	s.stateFile = filepath.Join(disk, "state.db")
	// AddInstance takes 2s, so calls are in flight when the disk fills.
	s.pluginEnv = []string{"SIM_PLUGIN_LATENCY=2s"}
	d := s.startListening(scopes)
	// Jobs running when the disk fills: their JobCompleted must be stored.
	for _, sc := range scopes {
		s.sim.QueueJobs(sc, 1, 5*time.Second)
	}
	d.WaitRunners("a busy runner per scale set", time.Minute, func(c map[store.RunnerState]int) bool { return c[store.StateBusy] == len(scopes) })
	// More jobs, whose runners are being provisioned when the disk fills.
	for _, sc := range scopes {
		s.sim.QueueJobs(sc, 3, time.Second)
	}
	d.WaitRunners("AddInstance calls in flight", time.Minute, func(c map[store.RunnerState]int) bool { return c[store.StateConfigured] > 0 })
	filler := fillDisk(t, disk)
	full := time.Now()
	scenariotest.WaitFor(t, "/readyz and the metric reporting failing writes", time.Minute, func() (bool, string) {
		d.Alive()
		code, body, err := d.Get("/readyz")
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(string(body), "state file writes failing") {
			return false, fmt.Sprint(code, err, string(body))
		}
		return d.metricSum("shoes_scaleset_store_writes_failing", nil) > 0, "metric still 0"
	})
	// Ten seconds of a full disk: the sessions stay.
	sessions := func() int {
		n := 0
		for _, ss := range s.sim.State().ScaleSets {
			n += ss.SessionsCreated
		}
		return n
	}
	before := sessions()
	for time.Since(full) < 10*time.Second {
		d.Alive()
		if n := sessions(); n > before+len(scopes) {
			t.Fatalf("%d sessions created while the disk is full (%d before): churn", n, before)
		}
		time.Sleep(250 * time.Millisecond)
	}
	note(t, res, "failed writes after 10s of a full disk: %v; sessions created meanwhile: %d", d.metricSum("shoes_scaleset_store_write_failures_total", nil), sessions()-before)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	s.waitJobsDone(d, 2*time.Minute)
	note(t, res, "every job completed %.1fs after the space came back", time.Since(freed).Seconds())
	d.WaitDrained(time.Minute)
	rs, err := d.Runners()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.State == store.StatePending || r.State == store.StateConfigured {
			t.Errorf("runner %s still %s after recovery", r.Name, r.State)
		}
	}
	scenariotest.WaitFor(t, "/readyz ready again", time.Minute, func() (bool, string) {
		code, body, err := d.Get("/readyz")
		return err == nil && code == http.StatusOK, string(body)
	})
	d.Stop()
	iv := s.checkInvariants(scenario.Options{})
	// No runner left registered on GitHub without a record.
	for _, r := range s.sim.State().Runners {
		if r.State != "done" && r.State != "removed" {
			t.Errorf("runner %s (%s) still registered on GitHub", r.Name, r.State)
		}
	}
	_ = iv
}

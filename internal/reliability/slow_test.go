//go:build reliability

package reliability

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// The scenarios of the fast subset's areas that take longest (15 to 30 s
// each): they run in the tagged suite (make reliability), which
// docs/reliability.md reports, so that make test stays short.

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
	// bbolt writes into the free pages its file has before it must grow
	// it: the first writes after the fill may succeed. A job per scope
	// every 2s makes it grow, and fail.
	nextJob := time.Now()
	scenariotest.WaitFor(t, "/readyz and the metric reporting failing writes", time.Minute, func() (bool, string) {
		d.Alive()
		if time.Now().After(nextJob) {
			for _, sc := range scopes {
				s.sim.QueueJobs(sc, 1, time.Second)
			}
			nextJob = time.Now().Add(2 * time.Second)
		}
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

// TestKillDuringAddInstance: SIGKILL while an AddInstance is in flight,
// then a restart: every job completes, the cut record is unknown-instance
// or finished, and the restart listens again at once, with no 409 wait.
func TestKillDuringAddInstance(t *testing.T) {
	res := newResult(t, 4, "kill -9 during AddInstance",
		"SIGKILL while AddInstance is in flight (plugin latency 2s), restart: all jobs complete, listening again with no 409; with opaque cloud IDs the cut record is unknown-instance or finished, with a name-keyed plugin (like shoes-lxd) it is resolved by name: 0 unknown-instance, 0 leaked")
	forEachPluginKind(t, res, killDuringAddInstance)
}

// TestAcquireFailingForThirtySeconds: GHES, acquirejobs failing for 30 s.
// The acquisition is retried on the same session (at most 2 sessions are
// created, here 1), the target is not ready and the failures are counted
// meanwhile, and the job runs once acquisition works again.
func TestAcquireFailingForThirtySeconds(t *testing.T) {
	res := newResult(t, 23, "GHES: acquirejobs failing for 30s (issue 10)",
		"--acquire, POST acquirejobs answering 500 for 30s: ≤ 2 sessions created, /readyz not ready and acquire_failures_total counting meanwhile, the job runs afterwards")
	scopes := []string{"org-a"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes, Acquire: true})
	s.sim.AddFault(actionsfake.Fault{Match: "POST .*/acquirejobs$", Status: http.StatusInternalServerError})
	start := time.Now()
	s.sim.QueueJobs("org-a", 1, time.Second)

	sessions := func(st actionsfake.State) int {
		n := 0
		for _, ss := range st.ScaleSets {
			n += ss.SessionsCreated
		}
		return n
	}
	notReady := false
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for range tick.C { // sample the 30 s of failure
		d.Alive()
		if code, body, err := d.Get("/readyz"); err == nil && code == http.StatusServiceUnavailable && strings.Contains(string(body), "acquiring jobs failed") {
			notReady = true
		}
		if st := s.sim.State(); sessions(st) > 2 {
			t.Fatalf("%d sessions created while acquirejobs fails, want at most 2\n%s", sessions(st), scenario.SummarizeScaleSets(st))
		}
		if time.Since(start) >= 30*time.Second {
			break
		}
	}
	st := s.sim.State()
	hits := st.Faults[0].Hits
	if hits < 2 {
		t.Errorf("acquirejobs was tried %d times in 30s, want retries", hits)
	}
	if !notReady {
		t.Error("/readyz never said the acquisition was failing")
	}
	if n := d.metricSum("shoes_scaleset_acquire_failures_total", map[string]string{"scope": "org-a"}); n < 1 {
		t.Errorf("acquire_failures_total = %v, want ≥ 1", n)
	}
	if c := scenario.JobCounts(st); c["completed"]+c["running"] != 0 {
		t.Fatalf("a job ran without being acquired: %v", c)
	}
	s.sim.ClearFaults()
	iv := s.settle(d, 3*time.Minute, scenario.Options{})
	st = s.sim.State()
	note(t, res, "30s of failure: %d acquire attempts, %d session(s) created; the job completed %.1fs after the failure ended",
		hits, sessions(st), completedAfter(st, start.Add(30*time.Second)).Seconds())
	if sessions(st) > 2 || iv.Completed != 1 {
		t.Errorf("%d sessions created, %d jobs completed; want ≤ 2 and 1", sessions(st), iv.Completed)
	}
}

// TestHungBackendDoesNotStarveOthers: AddInstance hangs for one resource
// type, served by two targets, with 4 provisioning slots. A third target
// of another resource type still gets its jobs run, while the hung calls
// still hang; the hung targets show as stuck in /readyz and the metric.
func TestHungBackendDoesNotStarveOthers(t *testing.T) {
	res := newResult(t, 38, "one hanging backend, three targets (issue 11)",
		"AddInstance hangs for resource type large (2 targets), --provision-concurrency 4: the small target's 3 jobs complete while the hung calls hang; /readyz and provisions_stuck name the hung targets")
	s := newScenario(t, res, scenariotest.SimOptions{Targets: []string{"org-z"}})
	s.sim.SetTargets([]scenario.Target{{Scope: "org-hung1", ResourceType: "large"}, {Scope: "org-hung2", ResourceType: "large"}, {Scope: "org-ok", ResourceType: "small"}})
	addTimeout := 30 * time.Second
	s.flags = []string{"--provision-concurrency", "4", "--plugin-add-timeout", addTimeout.String()}
	s.pluginEnv = []string{"SIM_PLUGIN_HANG=AddInstance", "SIM_PLUGIN_HANG_RESOURCE_TYPE=Large"}
	scopes := []string{"org-hung1", "org-hung2", "org-ok"}
	d := s.startListening(scopes)

	s.sim.QueueJobs("org-hung1", 4, time.Second)
	s.sim.QueueJobs("org-hung2", 4, time.Second)
	var firstHang time.Time
	scenariotest.WaitFor(t, "the large AddInstance calls hanging", time.Minute, func() (bool, string) {
		d.Alive()
		hung := 0
		for _, c := range rpcCalls(s.calls()) {
			if c.Code == "Hang" {
				if hung == 0 {
					firstHang = c.Start
				}
				hung++
			}
		}
		return hung >= 3, fmt.Sprintf("%d hanging", hung)
	})
	queued := time.Now()
	s.sim.QueueJobs("org-ok", 3, time.Second)
	scenariotest.WaitFor(t, "the small target's 3 jobs completed", addTimeout/2, func() (bool, string) {
		d.Alive()
		done := 0
		for _, j := range s.sim.State().Jobs {
			if j.Scope == "org-ok" && j.State == "completed" {
				done++
			}
		}
		return done == 3, fmt.Sprintf("%d completed", done)
	})
	took := time.Since(queued)
	note(t, res, "the small target's 3 jobs completed %.1fs after queueing, with the large AddInstance calls hanging (add timeout %v)", took.Seconds(), addTimeout)
	if !time.Now().Before(firstHang.Add(addTimeout)) {
		t.Errorf("the jobs completed only after the hung calls timed out")
	}

	// Stuck after half the add timeout: readiness and the metric say so.
	scenariotest.WaitFor(t, "the hung targets not ready: provisioning stuck", addTimeout, func() (bool, string) {
		code, body, err := d.Get("/readyz")
		var rr httpapi.ReadyResponse
		if err != nil || code != http.StatusServiceUnavailable || json.Unmarshal(body, &rr) != nil {
			return false, fmt.Sprint(code, err, string(body))
		}
		stuck := map[string]bool{}
		for _, n := range rr.NotReady {
			stuck[n.Scope] = strings.HasPrefix(n.Reason, "provisioning stuck")
		}
		_, okListed := stuck["org-ok"]
		return stuck["org-hung1"] && stuck["org-hung2"] && !okListed, string(body)
	})
	scenariotest.WaitFor(t, "shoes_scaleset_provisions_stuck for the hung targets", 10*time.Second, func() (bool, string) {
		h1 := d.metricSum("shoes_scaleset_provisions_stuck", map[string]string{"scope": "org-hung1"})
		h2 := d.metricSum("shoes_scaleset_provisions_stuck", map[string]string{"scope": "org-hung2"})
		ok := d.metricSum("shoes_scaleset_provisions_stuck", map[string]string{"scope": "org-ok"})
		return h1 > 0 && h2 > 0 && ok == 0, fmt.Sprintf("hung1 %v hung2 %v ok %v", h1, h2, ok)
	})
	d.Kill9()
}

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

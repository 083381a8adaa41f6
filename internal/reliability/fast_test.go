package reliability

// The fast subset: it runs without build tags, so `make test` runs it.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// TestShutdown: SIGTERM with busy and idle runners exits 0 within
// --shutdown-timeout, deletes every session, and keeps the runner records
// and their instances; a second SIGTERM during a shutdown exits at once,
// non-zero, and the state file still opens.
func TestShutdown(t *testing.T) {
	res := newResult(t, 1, "shutdown (issue 5)",
		"SIGTERM with busy and idle runners: exit 0 within --shutdown-timeout, 0 sessions, records and instances kept; a second SIGTERM exits at once (non-zero) and the state file opens")
	scopes := []string{"org-a", "org-b"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes}, runFlags("--min-runners", "1", "--max-runners", "5"))
	s.sim.QueueJobs("org-a", 2, 12*time.Second) // busy through the first shutdown
	before := d.WaitRecords("2 busy and 2 idle runners", 90*time.Second, func(rs []store.Runner) bool {
		c := scenario.CountStates(rs)
		return c[store.StateBusy] == 2 && c[store.StateIdle] == 2
	})

	code, took := d.Terminate(40 * time.Second)
	if code != 0 {
		t.Fatalf("run exited %d after SIGTERM, want 0\n%s", code, d.Tail(30))
	}
	if took > 20*time.Second {
		t.Errorf("run took %v to exit after SIGTERM, more than --shutdown-timeout 20s", took)
	}
	res.figure("clean shutdown with 2 busy and 2 idle runners took %.2fs", took.Seconds())
	for _, ss := range s.sim.State().ScaleSets {
		if ss.Session != nil {
			t.Errorf("scale set %s still has session %s after the clean shutdown", ss.Name, ss.Session.ID)
		}
	}
	after := s.runnersLs()
	dirs := s.instanceDirs()
	for _, r := range before {
		i := slices.IndexFunc(after, func(a store.Runner) bool { return a.Name == r.Name })
		if i < 0 {
			t.Errorf("runner %s (%s) is no longer in the state file after the shutdown", r.Name, r.State)
			continue
		}
		if after[i].State != r.State || after[i].CloudID != r.CloudID {
			t.Errorf("runner %s: %s/%s before the shutdown, %s/%s after", r.Name, r.State, r.CloudID, after[i].State, after[i].CloudID)
		}
		if _, ok := dirs[r.CloudID]; !ok {
			t.Errorf("instance %s of runner %s was deleted by the shutdown", r.CloudID, r.Name)
		}
	}

	// A second SIGTERM while the shutdown waits for an AddInstance.
	s.pluginEnv = []string{"SIM_PLUGIN_LATENCY=6s"}
	d = s.startListening(scopes)
	s.sim.QueueJobs("org-b", 1, time.Second)
	d.WaitRunners("an AddInstance in flight (a configured runner)", time.Minute, func(c map[store.RunnerState]int) bool { return c[store.StateConfigured] > 0 })
	d.Signal(syscall.SIGTERM)
	// The shutdown has closed the sessions and now waits for the AddInstance.
	scenariotest.WaitFor(t, "the shutdown waiting for in-flight work", 20*time.Second, func() (bool, string) {
		d.Alive()
		return strings.Count(d.Log(), "message session closed") >= len(scopes), testkit.Tail(d.Log(), 5)
	})
	start := time.Now()
	d.Signal(syscall.SIGTERM)
	select {
	case <-d.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("run still running 10s after the second SIGTERM")
	}
	took = time.Since(start)
	if code := d.ExitCode(); code == 0 {
		t.Errorf("run exited 0 after a second SIGTERM, want non-zero")
	}
	if took > 5*time.Second {
		t.Errorf("run took %v to exit after the second SIGTERM; want at once", took)
	}
	res.figure("second SIGTERM: exit code %d after %.2fs", d.ExitCode(), took.Seconds())
	d.Kill9() // what systemd does to the plugin processes left
	rs := s.runnersLs()
	if c := scenario.CountStates(rs); c[store.StateConfigured] != 1 {
		t.Errorf("after the second SIGTERM the state file holds %v, want the configured runner whose AddInstance was cut", c)
	}

	// Start again: the cut AddInstance becomes unknown-instance, the
	// running jobs finish, and nothing is lost.
	s.pluginEnv = nil
	d = s.startRun()
	d.WaitUp()
	res.addRecovery(s.waitListening(d, d.Started, scopes, time.Minute))
	iv := s.settle(d, 3*time.Minute, scenario.Options{})
	if iv.Completed != 3 {
		t.Errorf("%d jobs completed, want 3", iv.Completed)
	}
	if iv.UnknownRecords != 1 {
		t.Errorf("%d unknown-instance records, want 1 (the AddInstance cut by the second SIGTERM)", iv.UnknownRecords)
	}
}

// TestMetrics: after a demo-sized run, /metrics has every metric the
// metrics package defines, with sensible values.
func TestMetrics(t *testing.T) {
	res := newResult(t, 2, "metrics (issue 5)",
		"3 targets, 20 jobs: /metrics has every shoes_scaleset_* metric; jobs started and succeeded sum to 20, 1 listener per scale set, ≥ 20 provisions, a recent sync, runners{state}, go_ and process_ metrics")
	scopes := []string{"org-a", "org-b", "owner-c/repo-c"}
	s := newScenario(t, res, scenariotest.SimOptions{Targets: scopes})
	s.flags = []string{"--min-runners", "1", "--max-runners", "10"}
	// One injected AddInstance failure (retried), for the plugin error counter.
	s.pluginEnv = []string{"SIM_PLUGIN_LATENCY=200ms", "SIM_PLUGIN_FAIL_CODE=Internal", "SIM_PLUGIN_FAIL_METHOD=AddInstance", "SIM_PLUGIN_FAIL_TIMES=1"}
	// A session held by someone else on org-a's scale set, for the conflict counter.
	other := s.holdSession("org-a", "another-host")

	d := s.startRun()
	d.WaitUp()
	scenariotest.WaitFor(t, "a 409 on org-a's session", 30*time.Second, func() (bool, string) {
		d.Alive()
		st := s.sim.State()
		return scenario.Conflicts(st) > 0, scenario.SummarizeScaleSets(st)
	})
	other.release()
	s.waitListening(d, d.Started, scopes, time.Minute)
	// One rate-limited JIT config, for the rate-limit counter.
	s.sim.AddFault(actionsfake.Fault{Match: "POST .*/generatejitconfig$", Status: http.StatusTooManyRequests, Times: 1, Headers: map[string]string{"Retry-After": "1"}})

	for i := range 20 {
		s.sim.QueueJobs(scopes[i%len(scopes)], 1, time.Second)
	}
	s.waitJobsDone(d, 3*time.Minute)
	d.WaitDrained(time.Minute)
	// A runner removed by hand, for the reaped counter.
	rs, err := d.Runners()
	if err != nil {
		t.Fatal(err)
	}
	idle := slices.IndexFunc(rs, func(r store.Runner) bool { return r.State == store.StateIdle })
	if idle < 0 {
		t.Fatalf("no idle runner to remove (min runners 1): %v", scenario.CountStates(rs))
	}
	if r := runBinary(t, 30*time.Second, testkit.ChildEnv(), "runners", "rm", rs[idle].Name, "--listen", d.Addr, "--state-file", s.stateFile); r.Code != 0 {
		t.Fatalf("runners rm %s:\n%s", rs[idle].Name, r)
	}
	scenariotest.WaitFor(t, "the removed runner gone", time.Minute, func() (bool, string) {
		h, err := d.History()
		if err != nil {
			return false, err.Error()
		}
		return slices.ContainsFunc(h, func(r store.HistoryRecord) bool { return r.Runner.Name == rs[idle].Name }), ""
	})
	d.WaitDrained(time.Minute)
	// Runners provisioned for jobs other runners took are scaled down
	// (--scale-down-grace 5s): what stays is the min runner of each set.
	d.WaitRecords("one idle runner per scale set", time.Minute, func(rs []store.Runner) bool {
		return len(rs) == len(scopes) && len(namesIn(rs, store.StateIdle)) == len(scopes)
	})

	code, body, err := d.Get("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	samples := parseMetrics(t, string(body))
	names := map[string]bool{}
	for _, sm := range samples {
		base := sm.name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suf)
		}
		names[base] = true
		names[sm.name] = true
	}
	want := metricNames(t)
	// Metrics of events this scenario cannot have, each checked elsewhere.
	elsewhere := map[string]string{
		"shoes_scaleset_acquire_failures_total":      "GHES mode only: TestAcquireFailingForThirtySeconds",
		"shoes_scaleset_plugin_start_failures_total": "a plugin that does not start: TestPluginStartAndDownloadGiveUp (make reliability)",
		"shoes_scaleset_replica_owned_targets":       "--store etcd only: TestReplicasKill9Failover",
		"shoes_scaleset_replica_leader":              "--store etcd only: TestReplicasKill9Failover",
		"shoes_scaleset_replica_safe_seconds":        "--store etcd only: TestReplicasKill9Failover",
	}
	for _, n := range want {
		if !names[n] && elsewhere[n] == "" {
			t.Errorf("metric %s is missing from /metrics", n)
		}
	}
	res.figure("/metrics exposed %d of the %d shoes_scaleset_* metrics defined in internal/metrics; the other %d are checked by their own scenarios", len(want)-len(elsewhere), len(want), len(elsewhere))
	check := func(what string, ok bool, got any) {
		t.Helper()
		if !ok {
			t.Errorf("metrics: %s; got %v", what, got)
		}
	}
	started, _ := sum(samples, "shoes_scaleset_jobs_started_total", nil)
	check("jobs_started_total sums to 20", started == 20, started)
	succeeded, _ := sum(samples, "shoes_scaleset_jobs_completed_total", map[string]string{"result": "succeeded"})
	check(`jobs_completed_total{result="succeeded"} sums to 20`, succeeded == 20, succeeded)
	for _, sc := range scopes {
		v, n := sum(samples, "shoes_scaleset_listeners", map[string]string{"scope": sc})
		check("listeners is 1 for "+sc, v == 1 && n == 1, fmt.Sprintf("%v over %d series", v, n))
	}
	provisions, _ := sum(samples, "shoes_scaleset_provision_duration_seconds_count", nil)
	check("provision_duration count ≥ 20", provisions >= 20, provisions)
	lastSync, _ := sum(samples, "shoes_scaleset_last_target_sync_timestamp_seconds", nil)
	age := time.Since(time.Unix(int64(lastSync), 0))
	check("last_target_sync_timestamp within 10s", age < 10*time.Second && age > -time.Second, age)
	for _, state := range []string{"pending", "configured", "idle", "busy", "deleting", "unknown-instance"} {
		_, n := sum(samples, "shoes_scaleset_runners", map[string]string{"state": state})
		check(fmt.Sprintf("runners{state=%q} for each scale set", state), n == len(scopes), n)
	}
	idleRunners, _ := sum(samples, "shoes_scaleset_runners", map[string]string{"state": "idle"})
	check("runners{state=idle} is the min runners of each scale set", idleRunners == float64(len(scopes)), idleRunners)
	busyRunners, _ := sum(samples, "shoes_scaleset_runners", map[string]string{"state": "busy"})
	check("runners{state=busy} is 0 once every job completed", busyRunners == 0, busyRunners)
	conflicts, _ := sum(samples, "shoes_scaleset_session_conflicts_total", map[string]string{"scope": "org-a"})
	check("session_conflicts_total ≥ 1 on org-a", conflicts >= 1, conflicts)
	pluginErrs, _ := sum(samples, "shoes_scaleset_plugin_errors_total", map[string]string{"method": "AddInstance", "code": "Internal"})
	check("plugin_errors_total{AddInstance,Internal} is 1", pluginErrs == 1, pluginErrs)
	limited, _ := sum(samples, "shoes_scaleset_github_rate_limited_total", nil)
	check("github_rate_limited_total is 1 (one 429)", limited == 1, limited)
	remaining, n := sum(samples, "shoes_scaleset_github_rate_limit_remaining", nil)
	check("github_rate_limit_remaining reported from the REST answers", n > 0 && remaining > 0, fmt.Sprintf("%v over %d series", remaining, n))
	reaped, _ := sum(samples, "shoes_scaleset_reaped_runners_total", map[string]string{"reason": "removed"})
	check(`reaped_runners_total{reason="removed"} is 1`, reaped == 1, reaped)
	pluginOK, _ := sum(samples, "shoes_scaleset_plugin_call_duration_seconds_count", map[string]string{"method": "AddInstance", "code": "OK"})
	check("plugin_call_duration count of AddInstance OK ≥ 20", pluginOK >= 20, pluginOK)
	for _, n := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		_, k := sum(samples, n, nil)
		check(n+" present", k > 0, k)
	}
	res.figure("jobs_started_total %v, succeeded %v, provision_duration count %v, last sync %.1fs ago", started, succeeded, provisions, age.Seconds())

	d.Stop()
	s.checkInvariants(scenario.Options{})
}

// TestReadiness: /readyz answers 200 while every listener polls, 503 with
// the not-ready targets named while the broker fails, and 200 again once
// it recovers.
func TestReadiness(t *testing.T) {
	res := newResult(t, 3, "readiness (issue 5)",
		"/readyz 200; broker answering 503 → /readyz 503 naming each target; faults cleared → 200 again")
	scopes := []string{"org-a", "org-b"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes})
	scenariotest.WaitFor(t, "/readyz 200", 30*time.Second, func() (bool, string) {
		code, r := d.Ready()
		return code == http.StatusOK && r.Status == "ready", fmt.Sprintf("%d %+v", code, r)
	})

	s.sim.AddFault(actionsfake.Fault{Match: "GET /_broker/", Status: 503})
	start := time.Now()
	var notReady httpapi.ReadyResponse
	scenariotest.WaitFor(t, "/readyz 503 naming both targets", 30*time.Second, func() (bool, string) {
		code, r := d.Ready()
		notReady = r
		named := map[string]bool{}
		for _, n := range r.NotReady {
			if n.Target != "" && n.Reason != "" {
				named[n.Scope] = true
			}
		}
		return code == http.StatusServiceUnavailable && r.Status == "not ready" && named["org-a"] && named["org-b"], fmt.Sprintf("%d %+v", code, r)
	})
	toNotReady := time.Since(start)
	s.sim.ClearFaults()
	start = time.Now()
	scenariotest.WaitFor(t, "/readyz 200 again", time.Minute, func() (bool, string) {
		code, r := d.Ready()
		return code == http.StatusOK, fmt.Sprintf("%d %+v", code, r)
	})
	toReady := time.Since(start)
	res.figure("not ready %.1fs after the broker failed (poll hold 500ms); ready %.1fs after it recovered; reasons: %q",
		toNotReady.Seconds(), toReady.Seconds(), notReady.NotReady[0].Reason)

	// Jobs still run after the recovery.
	s.sim.QueueJobs("org-a", 2, 500*time.Millisecond)
	s.sim.QueueJobs("org-b", 2, 500*time.Millisecond)
	s.settle(d, 2*time.Minute, scenario.Options{})
}

func killDuringAddInstance(t *testing.T, res *Result, cloudIDs string) {
	scopes := []string{"org-a", "org-b"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes}, pluginKind(cloudIDs), pluginKnobs("SIM_PLUGIN_LATENCY=2s"))
	s.sim.QueueJobs("org-a", 3, time.Second)
	s.sim.QueueJobs("org-b", 3, time.Second)

	cut := namesIn(d.WaitRecords("an AddInstance in flight", time.Minute, func(rs []store.Runner) bool {
		return len(namesIn(rs, store.StateConfigured)) > 0
	}), store.StateConfigured)
	d.Kill9()
	// The point was reached: the plugin never answered for these runners.
	for _, c := range s.calls() {
		if c.Method == "AddInstance" && slices.Contains(cut, c.RunnerName) && c.Code == "OK" {
			t.Logf("runner %s: AddInstance answered before the kill landed", c.RunnerName)
		}
	}
	conflictsBefore := scenario.Conflicts(s.sim.State())

	d = s.startRun()
	recovery := s.waitListening(d, d.Started, scopes, time.Minute)
	res.addRecovery(recovery)
	if c := scenario.Conflicts(s.sim.State()); c != conflictsBefore {
		t.Errorf("the restart hit %d session conflicts (409); the stale sessions should have been deleted first", c-conflictsBefore)
	}
	iv := s.settle(d, 3*time.Minute, s.invariantOptions())
	if iv.Completed != 6 {
		t.Errorf("%d jobs completed, want 6", iv.Completed)
	}
	live := s.runnersLs()
	hist := s.history()
	for _, name := range cut {
		inHistory := slices.ContainsFunc(hist, func(h store.HistoryRecord) bool { return h.Runner.Name == name })
		unknown := slices.ContainsFunc(live, func(r store.Runner) bool { return r.Name == name && r.State == store.StateUnknownInstance })
		switch {
		case cloudIDs == "name" && !inHistory:
			t.Errorf("runner %s, cut during AddInstance, is not finished: a name-keyed plugin's instance is deleted by name", name)
		case !unknown && !inHistory:
			t.Errorf("runner %s, cut during AddInstance, is neither unknown-instance nor finished", name)
		}
	}
	res.figure("%s cloud IDs: %d AddInstance calls cut by the kill; restart to listening again: %.2fs; unknown-instance records left %d, instances leaked %d",
		cloudIDs, len(cut), recovery.Seconds(), iv.UnknownRecords, iv.Leaked)
}

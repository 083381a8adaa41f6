package metrics_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shoes-scaleset/shoes-scaleset/internal/buildinfo"
	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/metrics"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
)

// TestRateLimitRemainingIsTheLowestBudget: one series per resource, the
// lowest budget of the scopes whose reset has not passed; a forgotten
// scope's report goes with it.
func TestRateLimitRemainingIsTheLowestBudget(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := metrics.New(reg, nil)
	later, past := time.Now().Add(time.Hour), time.Now().Add(-time.Second)
	rec.RateLimitRemaining("org/a", github.RateBudget{Resource: "core", Remaining: 300, Reset: later})
	rec.RateLimitRemaining("org/b", github.RateBudget{Resource: "core", Remaining: 4000, Reset: later})
	rec.RateLimitRemaining("org/c", github.RateBudget{Resource: "core", Remaining: 2, Reset: past}) // full again
	rec.RateLimitRemaining("org/a", github.RateBudget{Resource: "made_up", Remaining: 7, Reset: later})
	rec.RateLimitRemaining("org/b", github.RateBudget{Remaining: 8}) // no resource, no reset: counts an hour
	rec.RateLimitRemaining("org/c", github.RateBudget{Resource: "graphql", Remaining: 1, Reset: past})
	want := `
# HELP shoes_scaleset_github_rate_limit_remaining The lowest request budget (X-RateLimit-Remaining) a GitHub answer reported among the scopes, until its reset, by resource (X-RateLimit-Resource).
# TYPE shoes_scaleset_github_rate_limit_remaining gauge
shoes_scaleset_github_rate_limit_remaining{resource="core"} 300
shoes_scaleset_github_rate_limit_remaining{resource="other"} 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "shoes_scaleset_github_rate_limit_remaining"); err != nil {
		t.Fatal(err)
	}
	rec.Forget("org/a", "x")
	want = `
# HELP shoes_scaleset_github_rate_limit_remaining The lowest request budget (X-RateLimit-Remaining) a GitHub answer reported among the scopes, until its reset, by resource (X-RateLimit-Resource).
# TYPE shoes_scaleset_github_rate_limit_remaining gauge
shoes_scaleset_github_rate_limit_remaining{resource="core"} 4000
shoes_scaleset_github_rate_limit_remaining{resource="other"} 8
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "shoes_scaleset_github_rate_limit_remaining"); err != nil {
		t.Fatalf("after forgetting org/a: %v", err)
	}
}

type fakePool shoes.PoolStats

func (p fakePool) PoolStats() shoes.PoolStats { return shoes.PoolStats(p) }

func TestPoolCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewPoolCollector(fakePool{Size: 8, Processes: 3, Busy: 2}))
	want := `
# HELP shoes_scaleset_plugin_pool_size The most plugin processes that may run at once (--plugin-pool-size).
# TYPE shoes_scaleset_plugin_pool_size gauge
shoes_scaleset_plugin_pool_size 8
# HELP shoes_scaleset_plugin_processes Plugin processes started and alive, idle or in a call.
# TYPE shoes_scaleset_plugin_processes gauge
shoes_scaleset_plugin_processes 3
# HELP shoes_scaleset_plugin_processes_busy Plugin processes in a call (AddInstance or DeleteInstance); at the pool size, further calls wait.
# TYPE shoes_scaleset_plugin_processes_busy gauge
shoes_scaleset_plugin_processes_busy 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics.New(reg, nil)
	mf := gather(t, reg)["shoes_scaleset_build_info"]
	if len(mf.GetMetric()) != 1 {
		t.Fatalf("build_info has %d series, want 1", len(mf.GetMetric()))
	}
	m := mf.GetMetric()[0]
	labels := map[string]string{}
	for _, lp := range m.GetLabel() {
		labels[lp.GetName()] = lp.GetValue()
	}
	if value(m) != 1 || labels["version"] != buildinfo.Version() || labels["goversion"] != runtime.Version() || labels["revision"] == "" {
		t.Errorf("build_info = %v %v; want 1 with version %s, goversion %s and a revision", value(m), labels, buildinfo.Version(), runtime.Version())
	}
}

// TestPolicyReloadSeriesExistFromStart: before any policy read (and
// without a policy file) both results are there at 0, so that an alert
// on the errors sees the first one.
func TestPolicyReloadSeriesExistFromStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics.New(reg, nil)
	want := `
# HELP shoes_scaleset_policy_last_reload_success_timestamp_seconds Unix time of the last successful read of the policy file (0 before the first, and without a policy file).
# TYPE shoes_scaleset_policy_last_reload_success_timestamp_seconds gauge
shoes_scaleset_policy_last_reload_success_timestamp_seconds 0
# HELP shoes_scaleset_policy_last_reload_successful 0 while the last read of the policy file failed (the previous policy stays in force), else 1.
# TYPE shoes_scaleset_policy_last_reload_successful gauge
shoes_scaleset_policy_last_reload_successful 1
# HELP shoes_scaleset_policy_reloads_total Reads of the policy file, by result (ok, error: the previous policy stays in force).
# TYPE shoes_scaleset_policy_reloads_total counter
shoes_scaleset_policy_reloads_total{result="error"} 0
shoes_scaleset_policy_reloads_total{result="ok"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"shoes_scaleset_policy_reloads_total", "shoes_scaleset_policy_last_reload_success_timestamp_seconds", "shoes_scaleset_policy_last_reload_successful"); err != nil {
		t.Fatal(err)
	}
}

// TestPolicyReloadSuccessful: a failed reload sets the gauge to 0 until a
// reload succeeds.
func TestPolicyReloadSuccessful(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := metrics.New(reg, nil)
	for i, step := range []struct {
		err  error
		want float64
	}{{errors.New("bad rule"), 0}, {errors.New("bad rule"), 0}, {nil, 1}, {errors.New("gone"), 0}} {
		rec.PolicyReload(time.Now(), step.err)
		if got := value(series(t, gather(t, reg), "shoes_scaleset_policy_last_reload_successful", map[string]string{})); got != step.want {
			t.Fatalf("after reload %d (err %v): %v, want %v", i+1, step.err, got, step.want)
		}
	}
}

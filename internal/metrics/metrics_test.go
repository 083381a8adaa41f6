package metrics_test

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/metrics"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// fakeSource is a StoreSource with fixed answers.
type fakeSource struct {
	sets   []store.ScaleSet
	counts map[int]map[store.RunnerState]int
	err    error
	health store.WriteHealth
}

func (f *fakeSource) WriteHealth() store.WriteHealth { return f.health }

func (f *fakeSource) CountRunners() (map[int]map[store.RunnerState]int, error) {
	return f.counts, f.err
}

func (f *fakeSource) ListScaleSets() ([]store.ScaleSet, error) {
	return f.sets, f.err
}

var _ metrics.StoreSource = (*fakeSource)(nil)

const (
	scope = "org/acme"
	set   = "linux-x64"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// family is what a gathered metric family must look like.
type family struct {
	typ    dto.MetricType
	labels []string // exactly these label names, sorted
}

// wantFamilies is every shoes_scaleset_ metric and its labels.
var wantFamilies = map[string]family{
	"shoes_scaleset_listeners":                                    {dto.MetricType_GAUGE, []string{"scale_set", "scope"}},
	"shoes_scaleset_desired_runners":                              {dto.MetricType_GAUGE, []string{"scale_set", "scope"}},
	"shoes_scaleset_assigned_jobs":                                {dto.MetricType_GAUGE, []string{"scale_set", "scope"}},
	"shoes_scaleset_running_jobs":                                 {dto.MetricType_GAUGE, []string{"scale_set", "scope"}},
	"shoes_scaleset_registered_runners":                           {dto.MetricType_GAUGE, []string{"scale_set", "scope"}},
	"shoes_scaleset_busy_runners":                                 {dto.MetricType_GAUGE, []string{"scale_set", "scope"}},
	"shoes_scaleset_idle_runners":                                 {dto.MetricType_GAUGE, []string{"scale_set", "scope"}},
	"shoes_scaleset_runners":                                      {dto.MetricType_GAUGE, []string{"scale_set", "scope", "state"}},
	"shoes_scaleset_unknown_instances":                            {dto.MetricType_GAUGE, []string{"scale_set", "scope"}},
	"shoes_scaleset_jobs_started_total":                           {dto.MetricType_COUNTER, []string{"scale_set", "scope"}},
	"shoes_scaleset_jobs_completed_total":                         {dto.MetricType_COUNTER, []string{"result", "scale_set", "scope"}},
	"shoes_scaleset_job_startup_duration_seconds":                 {dto.MetricType_HISTOGRAM, []string{"scale_set", "scope"}},
	"shoes_scaleset_job_execution_duration_seconds":               {dto.MetricType_HISTOGRAM, []string{"scale_set", "scope"}},
	"shoes_scaleset_provision_duration_seconds":                   {dto.MetricType_HISTOGRAM, []string{"scale_set", "scope"}},
	"shoes_scaleset_plugin_call_duration_seconds":                 {dto.MetricType_HISTOGRAM, []string{"code", "method"}},
	"shoes_scaleset_plugin_errors_total":                          {dto.MetricType_COUNTER, []string{"code", "method"}},
	"shoes_scaleset_plugin_start_failures_total":                  {dto.MetricType_COUNTER, []string{"reason"}},
	"shoes_scaleset_session_conflicts_total":                      {dto.MetricType_COUNTER, []string{"scale_set", "scope"}},
	"shoes_scaleset_acquire_failures_total":                       {dto.MetricType_COUNTER, []string{"scale_set", "scope"}},
	"shoes_scaleset_provisions_stuck":                             {dto.MetricType_GAUGE, []string{"scale_set", "scope"}},
	"shoes_scaleset_store_write_failures_total":                   {dto.MetricType_COUNTER, nil},
	"shoes_scaleset_store_writes_failing":                         {dto.MetricType_GAUGE, nil},
	"shoes_scaleset_github_rate_limited_total":                    {dto.MetricType_COUNTER, []string{"scope"}},
	"shoes_scaleset_github_rate_limit_remaining":                  {dto.MetricType_GAUGE, []string{"resource"}},
	"shoes_scaleset_github_requests_total":                        {dto.MetricType_COUNTER, []string{"code", "operation"}},
	"shoes_scaleset_github_request_duration_seconds":              {dto.MetricType_HISTOGRAM, []string{"operation"}},
	"shoes_scaleset_listener_last_poll_timestamp_seconds":         {dto.MetricType_GAUGE, []string{"scale_set", "scope"}},
	"shoes_scaleset_min_runners":                                  {dto.MetricType_GAUGE, []string{"scale_set", "scope"}},
	"shoes_scaleset_max_runners":                                  {dto.MetricType_GAUGE, []string{"scale_set", "scope"}},
	"shoes_scaleset_policy_reloads_total":                         {dto.MetricType_COUNTER, []string{"result"}},
	"shoes_scaleset_policy_last_reload_success_timestamp_seconds": {dto.MetricType_GAUGE, nil},
	"shoes_scaleset_policy_last_reload_successful":                {dto.MetricType_GAUGE, nil},
	"shoes_scaleset_build_info":                                   {dto.MetricType_GAUGE, []string{"goversion", "revision", "version"}},
	"shoes_scaleset_reaped_runners_total":                         {dto.MetricType_COUNTER, []string{"reason", "scale_set", "scope"}},
	"shoes_scaleset_target_sync_errors_total":                     {dto.MetricType_COUNTER, nil},
	"shoes_scaleset_last_target_sync_timestamp_seconds":           {dto.MetricType_GAUGE, nil},
}

// sampleStatistics are the statistics the tests record: 3 assigned jobs,
// 2 running, 4 registered runners, 2 busy, 1 idle.
var sampleStatistics = github.Statistics{
	TotalAssignedJobs:      3,
	TotalRunningJobs:       2,
	TotalRegisteredRunners: 4,
	TotalBusyRunners:       2,
	TotalIdleRunners:       1,
}

// recordAll calls every Recorder method with sample data.
func recordAll(r *metrics.Recorder) {
	r.Listener(scope, set, true)
	r.Listener(scope, "arm64", false)
	r.Statistics(scope, set, sampleStatistics, 5)

	started := func(queue, assign time.Time) *scaleset.JobStarted {
		m := &scaleset.JobStarted{}
		m.QueueTime, m.RunnerAssignTime = queue, assign
		return m
	}
	r.JobStarted(scope, set, started(t0, t0.Add(30*time.Second))) // observed: 30s
	r.JobStarted(scope, set, started(time.Time{}, t0))            // no queue time: counted, not observed
	r.JobStarted(scope, set, started(t0.Add(time.Minute), t0))    // negative: counted, not observed
	r.JobStarted(scope, set, started(t0, t0.Add(90*time.Second))) // observed: 90s
	r.JobStarted(scope, set, nil)                                 // counted, not observed
	completed := func(result string, assign, finish time.Time) *scaleset.JobCompleted {
		m := &scaleset.JobCompleted{Result: result}
		m.RunnerAssignTime, m.FinishTime = assign, finish
		return m
	}
	r.JobCompleted(scope, set, completed("succeeded", t0, t0.Add(10*time.Minute))) // observed: 600s
	r.JobCompleted(scope, set, completed("failed", t0, time.Time{}))               // no finish time
	r.JobCompleted(scope, set, completed("", t0, t0.Add(time.Minute)))             // result unknown, 60s
	r.RunnerProvisioned(scope, set, 45*time.Second)
	r.SessionConflict(scope, set)
	r.SessionConflict(scope, set)
	r.AcquireFailed(scope, set)
	r.ProvisionsStuck(scope, set, 2)
	r.RateLimited(scope, 2*time.Second)
	r.RateLimited("app", time.Minute)
	r.RateLimitRemaining(scope, github.RateBudget{Resource: "core", Remaining: 4321, Limit: 5000, Reset: time.Now().Add(time.Hour)})
	r.RateLimitRemaining("org/other", github.RateBudget{Resource: "core", Remaining: 4500, Reset: time.Now().Add(time.Hour)})
	r.RateLimitRemaining(scope, github.RateBudget{Resource: "actions_runner_registration", Remaining: 9})
	r.Limits(scope, set, 1, 10)
	r.Polled(scope, set, t0)
	r.GitHubRequest(github.OpGetMessage, "202", 50*time.Second)
	r.GitHubRequest(github.OpGetMessage, "200", 10*time.Second)
	r.GitHubRequest(github.OpGenerateJITConfig, "429", 100*time.Millisecond)
	r.GitHubRequest(github.OpGenerateJITConfig, github.CodeTransportError, 5*time.Second)
	r.PolicyReload(t0.Add(-time.Hour), nil)
	r.PolicyReload(t0, nil)
	r.PolicyReload(t0.Add(time.Minute), errors.New("bad rule")) // keeps the last success
	r.RunnerReaped(scope, set, "idle-ttl")
	r.TargetSync(t0.Add(-time.Minute), nil)
	r.TargetSync(t0.Add(time.Minute), errors.New("myshoes down")) // keeps the last success
	r.TargetSync(t0, nil)
	r.TargetSync(t0.Add(2*time.Minute), errors.New("myshoes down"))
	r.ObservePluginCall("AddInstance", "OK", 20*time.Second)
	r.ObservePluginCall("AddInstance", "OK", 40*time.Second)
	r.ObservePluginCall("DeleteInstance", "Unavailable", 2*time.Second)
	r.PluginStartFailed("timeout")
	r.PluginStartFailed("timeout")
	r.PluginStartFailed("canceled")
}

// sampleSource knows one scale set with runners in some states.
func sampleSource() *fakeSource {
	return &fakeSource{
		health: store.WriteHealth{Failing: 2, Failures: 5},
		sets:   []store.ScaleSet{{TargetID: "t1", Scope: scope, Name: set, ScaleSetID: 7}},
		counts: map[int]map[store.RunnerState]int{
			7: {store.StateIdle: 2, store.StateBusy: 1, store.StateUnknownInstance: 3},
		},
	}
}

func gather(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// metric returns the metric of mf with exactly these labels, or nil.
func metric(mf *dto.MetricFamily, labels map[string]string) *dto.Metric {
	for _, m := range mf.GetMetric() {
		got := make(map[string]string, len(m.GetLabel()))
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if maps.Equal(got, labels) {
			return m
		}
	}
	return nil
}

// series returns the series of family name with labels, failing the test
// if there is none.
func series(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mf := mfs[name]
	if mf == nil {
		t.Fatalf("no family %s", name)
	}
	m := metric(mf, labels)
	if m == nil {
		t.Fatalf("no series %s with labels %v", name, labels)
	}
	return m
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}

func TestRecorderRecordsEveryMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := metrics.New(reg, sampleSource())
	recordAll(rec)
	mfs := gather(t, reg)

	t.Run("families, types and labels", func(t *testing.T) {
		var got []string
		for name, mf := range mfs {
			if !strings.HasPrefix(name, "shoes_scaleset_") {
				continue
			}
			got = append(got, name)
			want, ok := wantFamilies[name]
			if !ok {
				t.Errorf("unexpected family %s", name)
				continue
			}
			if mf.GetType() != want.typ {
				t.Errorf("%s: type %s, want %s", name, mf.GetType(), want.typ)
			}
			if mf.GetHelp() == "" {
				t.Errorf("%s: no HELP", name)
			}
			for _, m := range mf.GetMetric() {
				var labels []string
				for _, lp := range m.GetLabel() {
					labels = append(labels, lp.GetName())
				}
				sort.Strings(labels)
				if !slices.Equal(labels, want.labels) {
					t.Errorf("%s: labels %v, want %v", name, labels, want.labels)
				}
			}
		}
		sort.Strings(got)
		want := slices.Sorted(maps.Keys(wantFamilies))
		if !slices.Equal(got, want) {
			t.Errorf("families:\n got %v\nwant %v", got, want)
		}
	})

	ss := map[string]string{"scale_set": set, "scope": scope}
	with := func(k, v string) map[string]string {
		m := maps.Clone(ss)
		m[k] = v
		return m
	}
	values := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"shoes_scaleset_listeners", ss, 1},
		{"shoes_scaleset_listeners", map[string]string{"scale_set": "arm64", "scope": scope}, 0},
		{"shoes_scaleset_desired_runners", ss, 5},
		{"shoes_scaleset_assigned_jobs", ss, 3},
		{"shoes_scaleset_running_jobs", ss, 2},
		{"shoes_scaleset_registered_runners", ss, 4},
		{"shoes_scaleset_busy_runners", ss, 2},
		{"shoes_scaleset_idle_runners", ss, 1},
		{"shoes_scaleset_runners", with("state", "pending"), 0},
		{"shoes_scaleset_runners", with("state", "configured"), 0},
		{"shoes_scaleset_runners", with("state", "idle"), 2},
		{"shoes_scaleset_runners", with("state", "busy"), 1},
		{"shoes_scaleset_runners", with("state", "deleting"), 0},
		{"shoes_scaleset_runners", with("state", "unknown-instance"), 3},
		{"shoes_scaleset_unknown_instances", ss, 3},
		{"shoes_scaleset_jobs_started_total", ss, 5},
		{"shoes_scaleset_jobs_completed_total", with("result", "succeeded"), 1},
		{"shoes_scaleset_jobs_completed_total", with("result", "failed"), 1},
		{"shoes_scaleset_jobs_completed_total", with("result", "unknown"), 1},
		{"shoes_scaleset_session_conflicts_total", ss, 2},
		{"shoes_scaleset_acquire_failures_total", ss, 1},
		{"shoes_scaleset_provisions_stuck", ss, 2},
		{"shoes_scaleset_store_write_failures_total", map[string]string{}, 5},
		{"shoes_scaleset_store_writes_failing", map[string]string{}, 2},
		{"shoes_scaleset_github_rate_limited_total", map[string]string{"scope": scope}, 1},
		{"shoes_scaleset_github_rate_limited_total", map[string]string{"scope": "app"}, 1},
		{"shoes_scaleset_github_rate_limit_remaining", map[string]string{"resource": "core"}, 4321},
		{"shoes_scaleset_github_rate_limit_remaining", map[string]string{"resource": "actions_runner_registration"}, 9},
		{"shoes_scaleset_github_requests_total", map[string]string{"operation": "get_message", "code": "202"}, 1},
		{"shoes_scaleset_github_requests_total", map[string]string{"operation": "generate_jit_config", "code": "429"}, 1},
		{"shoes_scaleset_github_requests_total", map[string]string{"operation": "generate_jit_config", "code": "error"}, 1},
		{"shoes_scaleset_listener_last_poll_timestamp_seconds", ss, float64(t0.Unix())},
		{"shoes_scaleset_min_runners", ss, 1},
		{"shoes_scaleset_max_runners", ss, 10},
		{"shoes_scaleset_policy_reloads_total", map[string]string{"result": "ok"}, 2},
		{"shoes_scaleset_policy_reloads_total", map[string]string{"result": "error"}, 1},
		{"shoes_scaleset_policy_last_reload_success_timestamp_seconds", map[string]string{}, float64(t0.Unix())},
		{"shoes_scaleset_policy_last_reload_successful", map[string]string{}, 0},
		{"shoes_scaleset_reaped_runners_total", with("reason", "idle-ttl"), 1},
		{"shoes_scaleset_plugin_errors_total", map[string]string{"method": "DeleteInstance", "code": "Unavailable"}, 1},
		{"shoes_scaleset_plugin_start_failures_total", map[string]string{"reason": "timeout"}, 2},
		{"shoes_scaleset_plugin_start_failures_total", map[string]string{"reason": "canceled"}, 1},
		{"shoes_scaleset_target_sync_errors_total", map[string]string{}, 2},
		{"shoes_scaleset_last_target_sync_timestamp_seconds", map[string]string{}, float64(t0.Unix())},
	}
	for _, tc := range values {
		t.Run(fmt.Sprintf("%s%v", tc.name, tc.labels), func(t *testing.T) {
			if got := value(series(t, mfs, tc.name, tc.labels)); got != tc.want {
				t.Errorf("value %v, want %v", got, tc.want)
			}
		})
	}

	histograms := []struct {
		name   string
		labels map[string]string
		count  uint64
		sum    float64
	}{
		{"shoes_scaleset_job_startup_duration_seconds", ss, 2, 120},
		{"shoes_scaleset_job_execution_duration_seconds", ss, 2, 660},
		{"shoes_scaleset_provision_duration_seconds", ss, 1, 45},
		{"shoes_scaleset_plugin_call_duration_seconds", map[string]string{"method": "AddInstance", "code": "OK"}, 2, 60},
		{"shoes_scaleset_plugin_call_duration_seconds", map[string]string{"method": "DeleteInstance", "code": "Unavailable"}, 1, 2},
		{"shoes_scaleset_github_request_duration_seconds", map[string]string{"operation": "get_message"}, 2, 60},
		{"shoes_scaleset_github_request_duration_seconds", map[string]string{"operation": "generate_jit_config"}, 2, 5.1},
	}
	for _, tc := range histograms {
		t.Run(fmt.Sprintf("%s%v", tc.name, tc.labels), func(t *testing.T) {
			h := series(t, mfs, tc.name, tc.labels).GetHistogram()
			if h.GetSampleCount() != tc.count || h.GetSampleSum() != tc.sum {
				t.Errorf("count %d sum %v, want count %d sum %v", h.GetSampleCount(), h.GetSampleSum(), tc.count, tc.sum)
			}
			if len(h.GetBucket()) < 5 {
				t.Errorf("%d buckets, want seconds-to-minutes buckets", len(h.GetBucket()))
			}
		})
	}

	t.Run("no plugin error for OK calls", func(t *testing.T) {
		if m := metric(mfs["shoes_scaleset_plugin_errors_total"], map[string]string{"method": "AddInstance", "code": "OK"}); m != nil {
			t.Errorf("plugin_errors_total has an OK series: %v", m)
		}
	})
}

func TestForgetDeletesScaleSetSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := metrics.New(reg, nil)
	recordAll(rec)
	const other = "kept"
	rec.Listener(scope, other, true)
	rec.SessionConflict(scope, other)
	rec.RunnerReaped(scope, other, "scale-down")

	rec.Forget(scope, set)
	rec.Forget(scope, "arm64")

	for name, mf := range gather(t, reg) {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "scale_set" && lp.GetValue() != other {
					t.Errorf("%s still has series %v", name, m.GetLabel())
				}
			}
		}
	}
	for _, name := range []string{"shoes_scaleset_listeners", "shoes_scaleset_session_conflicts_total", "shoes_scaleset_reaped_runners_total"} {
		if n := testutil.CollectAndCount(reg, name); n != 1 {
			t.Errorf("%s: %d series after Forget, want the other scale set's 1", name, n)
		}
	}
	// The scope's rate-limit series go with it; the app's stay.
	if n := testutil.CollectAndCount(reg, "shoes_scaleset_github_rate_limited_total"); n != 1 {
		t.Errorf("github_rate_limited_total: %d series after Forget, want the app's 1", n)
	}
	// Series not labelled by scale set survive.
	for _, name := range []string{"shoes_scaleset_plugin_call_duration_seconds", "shoes_scaleset_target_sync_errors_total"} {
		if n := testutil.CollectAndCount(reg, name); n == 0 {
			t.Errorf("%s: forgotten, want kept", name)
		}
	}
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(store.Options{Path: filepath.Join(t.TempDir(), "state.db")})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestStoreCollectorCountsRunnersByState(t *testing.T) {
	st := openStore(t)
	for _, ss := range []store.ScaleSet{
		{TargetID: "t1", Scope: "org/a", Name: "linux", ScaleSetID: 1},
		{TargetID: "t2", Scope: "org/b", Name: "arm", ScaleSetID: 2},
		{TargetID: "t3", Scope: "org/c", Name: "fresh"}, // not yet created on GitHub
	} {
		if err := st.PutScaleSet(ss); err != nil {
			t.Fatal(err)
		}
	}
	runners := []struct {
		setID int
		state store.RunnerState
	}{
		{1, store.StatePending},
		{1, store.StateIdle},
		{1, store.StateIdle},
		{1, store.StateBusy},
		{1, store.StateUnknownInstance},
		{2, store.StateConfigured},
		{2, store.StateDeleting},
		{2, store.StateUnknownInstance},
		{2, store.StateUnknownInstance},
		{99, store.StateIdle}, // a scale set the store has no record of
	}
	for i, r := range runners {
		if err := st.CreateRunner(store.Runner{Name: fmt.Sprintf("r%d", i), ScaleSetID: r.setID, State: r.state}); err != nil {
			t.Fatal(err)
		}
	}

	reg := prometheus.NewRegistry()
	metrics.New(reg, st)

	want := `
# HELP shoes_scaleset_runners Runner records in the state file, by scale set and state.
# TYPE shoes_scaleset_runners gauge
shoes_scaleset_runners{scale_set="arm",scope="org/b",state="busy"} 0
shoes_scaleset_runners{scale_set="arm",scope="org/b",state="configured"} 1
shoes_scaleset_runners{scale_set="arm",scope="org/b",state="deleting"} 1
shoes_scaleset_runners{scale_set="arm",scope="org/b",state="idle"} 0
shoes_scaleset_runners{scale_set="arm",scope="org/b",state="pending"} 0
shoes_scaleset_runners{scale_set="arm",scope="org/b",state="unknown-instance"} 2
shoes_scaleset_runners{scale_set="fresh",scope="org/c",state="busy"} 0
shoes_scaleset_runners{scale_set="fresh",scope="org/c",state="configured"} 0
shoes_scaleset_runners{scale_set="fresh",scope="org/c",state="deleting"} 0
shoes_scaleset_runners{scale_set="fresh",scope="org/c",state="idle"} 0
shoes_scaleset_runners{scale_set="fresh",scope="org/c",state="pending"} 0
shoes_scaleset_runners{scale_set="fresh",scope="org/c",state="unknown-instance"} 0
shoes_scaleset_runners{scale_set="linux",scope="org/a",state="busy"} 1
shoes_scaleset_runners{scale_set="linux",scope="org/a",state="configured"} 0
shoes_scaleset_runners{scale_set="linux",scope="org/a",state="deleting"} 0
shoes_scaleset_runners{scale_set="linux",scope="org/a",state="idle"} 2
shoes_scaleset_runners{scale_set="linux",scope="org/a",state="pending"} 1
shoes_scaleset_runners{scale_set="linux",scope="org/a",state="unknown-instance"} 1
# HELP shoes_scaleset_unknown_instances Runner records whose instance the runner service does not know (state unknown-instance).
# TYPE shoes_scaleset_unknown_instances gauge
shoes_scaleset_unknown_instances{scale_set="arm",scope="org/b"} 2
shoes_scaleset_unknown_instances{scale_set="fresh",scope="org/c"} 0
shoes_scaleset_unknown_instances{scale_set="linux",scope="org/a"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "shoes_scaleset_runners", "shoes_scaleset_unknown_instances"); err != nil {
		t.Fatal(err)
	}

	// Counted at scrape time: a state change shows on the next scrape.
	if _, err := st.SetRunnerState("r4", store.StateDeleting, nil); err != nil {
		t.Fatal(err)
	}
	mfs := gather(t, reg)
	if got := value(metric(mfs["shoes_scaleset_unknown_instances"], map[string]string{"scale_set": "linux", "scope": "org/a"})); got != 0 {
		t.Errorf("unknown_instances after the change = %v, want 0", got)
	}
	if got := value(metric(mfs["shoes_scaleset_runners"], map[string]string{"scale_set": "linux", "scope": "org/a", "state": "deleting"})); got != 1 {
		t.Errorf("runners{deleting} after the change = %v, want 1", got)
	}
}

func TestStoreCollectorMergesRecordsWithTheSameLabels(t *testing.T) {
	src := &fakeSource{
		sets: []store.ScaleSet{
			{TargetID: "old", Scope: scope, Name: set, ScaleSetID: 1},
			{TargetID: "new", Scope: scope, Name: set, ScaleSetID: 2},
		},
		counts: map[int]map[store.RunnerState]int{1: {store.StateDeleting: 1}, 2: {store.StateDeleting: 2, store.StateIdle: 1}},
	}
	reg := prometheus.NewRegistry()
	metrics.New(reg, src)
	mfs := gather(t, reg) // fails on duplicate series
	if got := value(metric(mfs["shoes_scaleset_runners"], map[string]string{"scale_set": set, "scope": scope, "state": "deleting"})); got != 3 {
		t.Errorf("runners{deleting} = %v, want 3", got)
	}
}

func TestStoreCollectorErrorFailsTheScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics.New(reg, &fakeSource{err: store.ErrCorrupt})
	_, err := reg.Gather()
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Gather error = %v, want one wrapping store.ErrCorrupt", err)
	}
}

func TestMetricsEndpointServesEveryMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	recordAll(metrics.New(reg, sampleSource()))
	srv := httptest.NewServer(httpapi.New(httpapi.Deps{Gatherer: reg}, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)

	resp, body := testkit.Fetch(t, "GET", srv.URL+"/metrics", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	text := string(body)
	names := append(slices.Sorted(maps.Keys(wantFamilies)), "go_goroutines", "process_cpu_seconds_total", "process_resident_memory_bytes")
	for _, name := range names {
		if !strings.Contains(text, "\n# TYPE "+name+" ") {
			t.Errorf("/metrics has no %s", name)
		}
	}
}

func TestRecorderIsSafeForConcurrentUse(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := metrics.New(reg, sampleSource())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { recordAll(rec) })
		wg.Go(func() { _, _ = reg.Gather() })
	}
	wg.Wait()
	ss := map[string]string{"scale_set": set, "scope": scope}
	if got := value(metric(gather(t, reg)["shoes_scaleset_session_conflicts_total"], ss)); got != 16 {
		t.Errorf("session conflicts = %v, want 16", got)
	}
}

// TestStoreCollectorReportsOnlyOwnedScaleSets: with replicas sharing the
// state, each reports the scale sets of the targets it owns, so that a sum
// over the replicas counts each once.
func TestStoreCollectorReportsOnlyOwnedScaleSets(t *testing.T) {
	src := &fakeSource{
		sets: []store.ScaleSet{
			{TargetID: "mine", Scope: "org/a", Name: "a", ScaleSetID: 1},
			{TargetID: "theirs", Scope: "org/b", Name: "b", ScaleSetID: 2},
		},
		counts: map[int]map[store.RunnerState]int{1: {store.StateIdle: 1}, 2: {store.StateIdle: 5}},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewStoreCollector(src, func(id string) bool { return id == "mine" }))
	mfs := gather(t, reg)
	if got := value(metric(mfs["shoes_scaleset_runners"], map[string]string{"scale_set": "a", "scope": "org/a", "state": "idle"})); got != 1 {
		t.Errorf("runners{idle} of the owned scale set = %v, want 1", got)
	}
	for _, m := range mfs["shoes_scaleset_runners"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "scope" && l.GetValue() == "org/b" {
				t.Fatalf("a scale set another replica owns is reported: %v", m)
			}
		}
	}
}

type fakeReplica struct {
	owned  []string
	leader bool
	safe   time.Time
}

func (r fakeReplica) Owned() []string      { return r.owned }
func (r fakeReplica) Leader() bool         { return r.leader }
func (r fakeReplica) SafeUntil() time.Time { return r.safe }

// TestReplicaCollector: the ownership gauges of a replica.
func TestReplicaCollector(t *testing.T) {
	now := time.Unix(1000, 0)
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewReplicaCollector(fakeReplica{owned: []string{"a", "b", "c"}, leader: true, safe: now.Add(7 * time.Second)}, func() time.Time { return now }))
	want := `
# HELP shoes_scaleset_replica_leader 1 while this replica is the leader, which does the chores of removed targets and the history, else 0.
# TYPE shoes_scaleset_replica_leader gauge
shoes_scaleset_replica_leader 1
# HELP shoes_scaleset_replica_owned_targets Targets this replica owns (--store etcd); the sum over the replicas is the number of targets served.
# TYPE shoes_scaleset_replica_owned_targets gauge
shoes_scaleset_replica_owned_targets 3
# HELP shoes_scaleset_replica_safe_seconds Seconds until this replica's safe deadline (its last acknowledged lease renewal plus the TTL); at 0 or below it has stopped acting on its targets.
# TYPE shoes_scaleset_replica_safe_seconds gauge
shoes_scaleset_replica_safe_seconds 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

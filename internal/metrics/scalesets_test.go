package metrics_test

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/metrics"
)

// scaleSetGauges are the gauges each scale set has, sorted.
var scaleSetGauges = []string{
	"shoes_scaleset_assigned_jobs",
	"shoes_scaleset_busy_runners",
	"shoes_scaleset_desired_runners",
	"shoes_scaleset_idle_runners",
	"shoes_scaleset_listener_last_poll_timestamp_seconds",
	"shoes_scaleset_listeners",
	"shoes_scaleset_max_runners",
	"shoes_scaleset_min_runners",
	"shoes_scaleset_provisions_stuck",
	"shoes_scaleset_registered_runners",
	"shoes_scaleset_running_jobs",
}

// TestScaleSetGaugeExistsOnceSet: a scale set's gauge has a series once a
// Recorder method has set it, and not before; a value of 0 counts as set.
func TestScaleSetGaugeExistsOnceSet(t *testing.T) {
	tests := []struct {
		name string
		call func(*metrics.Recorder)
		want []string
	}{
		{"Limits", func(r *metrics.Recorder) { r.Limits(scope, set, 0, 0) },
			[]string{"shoes_scaleset_max_runners", "shoes_scaleset_min_runners"}},
		{"Polled", func(r *metrics.Recorder) { r.Polled(scope, set, t0) },
			[]string{"shoes_scaleset_listener_last_poll_timestamp_seconds"}},
		{"Statistics", func(r *metrics.Recorder) { r.Statistics(scope, set, github.Statistics{}, 0) },
			[]string{"shoes_scaleset_assigned_jobs", "shoes_scaleset_busy_runners", "shoes_scaleset_desired_runners",
				"shoes_scaleset_idle_runners", "shoes_scaleset_registered_runners", "shoes_scaleset_running_jobs"}},
		{"Listener", func(r *metrics.Recorder) { r.Listener(scope, set, false) },
			[]string{"shoes_scaleset_listeners"}},
		{"ProvisionsStuck", func(r *metrics.Recorder) { r.ProvisionsStuck(scope, set, 0) },
			[]string{"shoes_scaleset_provisions_stuck"}},
		{"events set no gauge", func(r *metrics.Recorder) {
			r.JobStarted(scope, set, nil)
			r.JobCompleted(scope, set, nil)
			r.RunnerProvisioned(scope, set, time.Second)
			r.SessionConflict(scope, set)
			r.AcquireFailed(scope, set)
			r.RunnerReaped(scope, set, "idle-ttl")
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			rec := metrics.New(reg, nil)
			tc.call(rec)
			mfs := gather(t, reg)
			var got []string
			for _, name := range scaleSetGauges {
				if n := len(mfs[name].GetMetric()); n > 0 {
					got = append(got, name)
					if n != 1 {
						t.Errorf("%s: %d series, want 1", name, n)
					}
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("gauges with a series:\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestScaleSetGaugesExposition: the exposition of the scale set gauges
// for a fixed sequence of calls; Forget removes one scale set's series and
// keeps the other's, and a gauge set after Forget comes back alone.
func TestScaleSetGaugesExposition(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := metrics.New(reg, nil)
	rec.Limits("org/a", "linux", 1, 10)
	rec.Statistics("org/a", "linux", sampleStatistics, 5)
	rec.Listener("org/a", "linux", true)
	rec.Polled("org/a", "linux", t0.Add(250*time.Millisecond)) // float64(UnixNano)/1e9, not 1772366400.25
	rec.ProvisionsStuck("org/a", "linux", 2)
	rec.Listener("org/b", "arm", true)
	rec.Listener("org/b", "arm", false)
	rec.Limits("org/b", "arm", 0, 3)
	rec.Limits("org/b", "arm", 2, 4)
	rec.ProvisionsStuck("org/b", "arm", 0)

	const (
		helpAssigned    = "# HELP shoes_scaleset_assigned_jobs Jobs assigned to the scale set, from the latest statistics.\n# TYPE shoes_scaleset_assigned_jobs gauge\n"
		helpBusy        = "# HELP shoes_scaleset_busy_runners Busy runners of the scale set, from the latest statistics.\n# TYPE shoes_scaleset_busy_runners gauge\n"
		helpDesired     = "# HELP shoes_scaleset_desired_runners Number of runners the scale set wants, from the latest statistics.\n# TYPE shoes_scaleset_desired_runners gauge\n"
		helpIdle        = "# HELP shoes_scaleset_idle_runners Idle runners of the scale set, from the latest statistics.\n# TYPE shoes_scaleset_idle_runners gauge\n"
		helpLastPoll    = "# HELP shoes_scaleset_listener_last_poll_timestamp_seconds Unix time of the scale set listener's last successful poll of its message queue (an empty long-poll included).\n# TYPE shoes_scaleset_listener_last_poll_timestamp_seconds gauge\n"
		helpListeners   = "# HELP shoes_scaleset_listeners 1 while the scale set's listener holds a message session, else 0.\n# TYPE shoes_scaleset_listeners gauge\n"
		helpMax         = "# HELP shoes_scaleset_max_runners The scale set's effective max runners (flags, or the matching rule of the policy file).\n# TYPE shoes_scaleset_max_runners gauge\n"
		helpMin         = "# HELP shoes_scaleset_min_runners The scale set's effective min runners (flags, or the matching rule of the policy file).\n# TYPE shoes_scaleset_min_runners gauge\n"
		helpStuck       = "# HELP shoes_scaleset_provisions_stuck AddInstance calls of the scale set running for longer than half the plugin's AddInstance timeout.\n# TYPE shoes_scaleset_provisions_stuck gauge\n"
		helpRegistered  = "# HELP shoes_scaleset_registered_runners Runners registered with the scale set, from the latest statistics.\n# TYPE shoes_scaleset_registered_runners gauge\n"
		helpRunningJobs = "# HELP shoes_scaleset_running_jobs Jobs running on the scale set, from the latest statistics.\n# TYPE shoes_scaleset_running_jobs gauge\n"
	)
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"recorded", func() {}, helpAssigned + `shoes_scaleset_assigned_jobs{scale_set="linux",scope="org/a"} 3
` + helpBusy + `shoes_scaleset_busy_runners{scale_set="linux",scope="org/a"} 2
` + helpDesired + `shoes_scaleset_desired_runners{scale_set="linux",scope="org/a"} 5
` + helpIdle + `shoes_scaleset_idle_runners{scale_set="linux",scope="org/a"} 1
` + helpLastPoll + `shoes_scaleset_listener_last_poll_timestamp_seconds{scale_set="linux",scope="org/a"} 1.7723664002499998e+09
` + helpListeners + `shoes_scaleset_listeners{scale_set="arm",scope="org/b"} 0
shoes_scaleset_listeners{scale_set="linux",scope="org/a"} 1
` + helpMax + `shoes_scaleset_max_runners{scale_set="arm",scope="org/b"} 4
shoes_scaleset_max_runners{scale_set="linux",scope="org/a"} 10
` + helpMin + `shoes_scaleset_min_runners{scale_set="arm",scope="org/b"} 2
shoes_scaleset_min_runners{scale_set="linux",scope="org/a"} 1
` + helpStuck + `shoes_scaleset_provisions_stuck{scale_set="arm",scope="org/b"} 0
shoes_scaleset_provisions_stuck{scale_set="linux",scope="org/a"} 2
` + helpRegistered + `shoes_scaleset_registered_runners{scale_set="linux",scope="org/a"} 4
` + helpRunningJobs + `shoes_scaleset_running_jobs{scale_set="linux",scope="org/a"} 2
`},
		{"forgotten", func() { rec.Forget("org/a", "linux") }, helpListeners + `shoes_scaleset_listeners{scale_set="arm",scope="org/b"} 0
` + helpMax + `shoes_scaleset_max_runners{scale_set="arm",scope="org/b"} 4
` + helpMin + `shoes_scaleset_min_runners{scale_set="arm",scope="org/b"} 2
` + helpStuck + `shoes_scaleset_provisions_stuck{scale_set="arm",scope="org/b"} 0
`},
		{"polled after Forget", func() { rec.Polled("org/a", "linux", t0) }, helpLastPoll + `shoes_scaleset_listener_last_poll_timestamp_seconds{scale_set="linux",scope="org/a"} 1.7723664e+09
` + helpListeners + `shoes_scaleset_listeners{scale_set="arm",scope="org/b"} 0
` + helpMax + `shoes_scaleset_max_runners{scale_set="arm",scope="org/b"} 4
` + helpMin + `shoes_scaleset_min_runners{scale_set="arm",scope="org/b"} 2
` + helpStuck + `shoes_scaleset_provisions_stuck{scale_set="arm",scope="org/b"} 0
`},
	}
	for _, step := range steps {
		step.do()
		if err := testutil.GatherAndCompare(reg, strings.NewReader(step.want), scaleSetGauges...); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
	}
}

// BenchmarkScaleSetGauges1000 reports the live heap the gauges of 1,000
// idle scale sets hold (Limits, Statistics, Listener and Polled each
// called once), in bytes per scale set.
func BenchmarkScaleSetGauges1000(b *testing.B) {
	const n = 1000
	scopes := make([]string, n)
	for i := range scopes {
		scopes[i] = fmt.Sprintf("org/owner-%04d", i)
	}
	var total float64
	iterations := 0
	for b.Loop() {
		rec := metrics.New(prometheus.NewRegistry(), nil)
		before := liveHeap()
		for _, s := range scopes {
			rec.Limits(s, set, 0, 10)
			rec.Statistics(s, set, github.Statistics{TotalRegisteredRunners: 1, TotalIdleRunners: 1}, 0)
			rec.Listener(s, set, true)
			rec.Polled(s, set, t0)
		}
		after := liveHeap()
		runtime.KeepAlive(rec)
		total += float64(int64(after)-int64(before)) / n
		iterations++
	}
	b.ReportMetric(total/float64(iterations), "B/scaleset")
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

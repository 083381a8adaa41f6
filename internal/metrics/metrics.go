// Package metrics records what the controller and the plugin host observe
// as Prometheus metrics, on a registry the caller creates and serves.
// Nothing is registered on the default registry.
package metrics

import (
	"time"

	"github.com/actions/scaleset"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
)

// Label names. Every per-scale-set metric carries exactly scale_set and
// scope; a few carry one more, bounded, label.
const (
	labelScaleSet = "scale_set"
	labelScope    = "scope"
	labelState    = "state"
	labelResult   = "result"
	labelReason   = "reason"
	labelMethod   = "method"
	labelCode     = "code"
)

// scaleSetLabels are the labels of every per-scale-set series.
var scaleSetLabels = []string{labelScaleSet, labelScope}

// DurationBuckets are the buckets, in seconds, of the startup, provision
// and plugin call histograms: from a fraction of a second to 30 minutes.
var DurationBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800}

// ExecutionBuckets are the buckets, in seconds, of the job execution
// histogram: jobs run from seconds to hours, so they extend to 6 hours.
var ExecutionBuckets = []float64{1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600}

// Recorder records metrics. It implements controller.Recorder and
// shoes.Recorder, and its methods are safe for concurrent use.
type Recorder struct {
	listeners  *prometheus.GaugeVec
	desired    *prometheus.GaugeVec
	assigned   *prometheus.GaugeVec
	running    *prometheus.GaugeVec
	registered *prometheus.GaugeVec
	busy       *prometheus.GaugeVec
	idle       *prometheus.GaugeVec

	jobsStarted   *prometheus.CounterVec
	jobsCompleted *prometheus.CounterVec
	jobStartup    *prometheus.HistogramVec
	jobExecution  *prometheus.HistogramVec
	provision     *prometheus.HistogramVec

	sessionConflicts *prometheus.CounterVec
	acquireFailures  *prometheus.CounterVec
	provisionsStuck  *prometheus.GaugeVec
	reaped           *prometheus.CounterVec

	rateLimited   *prometheus.CounterVec
	rateRemaining *prometheus.GaugeVec

	pluginCalls         *prometheus.HistogramVec
	pluginErrors        *prometheus.CounterVec
	pluginStartFailures *prometheus.CounterVec

	syncErrors prometheus.Counter
	lastSync   prometheus.Gauge

	// perScaleSet are the vectors labelled by scale set, for Forget.
	perScaleSet []interface {
		DeletePartialMatch(prometheus.Labels) int
	}
}

var (
	_ controller.Recorder = (*Recorder)(nil)
	_ shoes.Recorder      = (*Recorder)(nil)
	_ github.Recorder     = (*Recorder)(nil)
)

// New creates a Recorder and registers on reg the Go and process
// collectors, the Recorder's metrics and, if src is not nil, a collector
// that counts the runners in src at scrape time. It panics if any of them
// is already registered on reg, which is a programming error.
func New(reg *prometheus.Registry, src StoreSource) *Recorder {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, scaleSetLabels)
	}
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(append([]string(nil), scaleSetLabels...), extra...))
	}
	histogram := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, scaleSetLabels)
	}

	r := &Recorder{
		listeners:  gauge("shoes_scaleset_listeners", "1 while the scale set's listener holds a message session, else 0."),
		desired:    gauge("shoes_scaleset_desired_runners", "Number of runners the scale set wants, from the latest statistics."),
		assigned:   gauge("shoes_scaleset_assigned_jobs", "Jobs assigned to the scale set, from the latest statistics."),
		running:    gauge("shoes_scaleset_running_jobs", "Jobs running on the scale set, from the latest statistics."),
		registered: gauge("shoes_scaleset_registered_runners", "Runners registered with the scale set, from the latest statistics."),
		busy:       gauge("shoes_scaleset_busy_runners", "Busy runners of the scale set, from the latest statistics."),
		idle:       gauge("shoes_scaleset_idle_runners", "Idle runners of the scale set, from the latest statistics."),

		jobsStarted:   counter("shoes_scaleset_jobs_started_total", "Jobs started on the scale set's runners."),
		jobsCompleted: counter("shoes_scaleset_jobs_completed_total", "Jobs completed on the scale set's runners, by result.", labelResult),
		jobStartup: histogram("shoes_scaleset_job_startup_duration_seconds",
			"Time from a job being queued to it being assigned a runner.", DurationBuckets),
		jobExecution: histogram("shoes_scaleset_job_execution_duration_seconds",
			"Time from a job being assigned a runner to it finishing.", ExecutionBuckets),
		provision: histogram("shoes_scaleset_provision_duration_seconds",
			"Time from the decision to provision a runner to its instance being up.", DurationBuckets),

		sessionConflicts: counter("shoes_scaleset_session_conflicts_total", "Message session creations refused with a conflict (409)."),
		acquireFailures:  counter("shoes_scaleset_acquire_failures_total", "Failed acquisitions of available jobs (GHES), each retried on the same session."),
		provisionsStuck:  gauge("shoes_scaleset_provisions_stuck", "AddInstance calls of the scale set running for longer than half the plugin's AddInstance timeout."),
		reaped:           counter("shoes_scaleset_reaped_runners_total", "Runners removed by the reaper, by reason.", labelReason),

		pluginCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shoes_scaleset_plugin_call_duration_seconds",
			Help:    "Duration of shoes plugin calls, by method and gRPC status code.",
			Buckets: DurationBuckets,
		}, []string{labelMethod, labelCode}),
		pluginErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoes_scaleset_plugin_errors_total",
			Help: "Shoes plugin calls that failed, by method and gRPC status code.",
		}, []string{labelMethod, labelCode}),
		pluginStartFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoes_scaleset_plugin_start_failures_total",
			Help: "Shoes plugin processes that did not complete their start, by reason (timeout, handshake, exec, canceled).",
		}, []string{labelReason}),

		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoes_scaleset_github_rate_limited_total",
			Help: "Rate-limited answers from GitHub (429, or 403 with no budget left), by scope (\"app\" for the app's own calls).",
		}, []string{labelScope}),
		rateRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shoes_scaleset_github_rate_limit_remaining",
			Help: "The request budget GitHub last reported (X-RateLimit-Remaining), by scope (\"app\" for the app's own calls).",
		}, []string{labelScope}),

		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoes_scaleset_target_sync_errors_total",
			Help: "Failed reads of the myshoes target list.",
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoes_scaleset_last_target_sync_timestamp_seconds",
			Help: "Unix time of the last successful read of the myshoes target list.",
		}),
	}
	r.perScaleSet = []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{
		r.listeners, r.desired, r.assigned, r.running, r.registered, r.busy, r.idle,
		r.jobsStarted, r.jobsCompleted, r.jobStartup, r.jobExecution, r.provision,
		r.sessionConflicts, r.acquireFailures, r.provisionsStuck, r.reaped,
	}

	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.listeners, r.desired, r.assigned, r.running, r.registered, r.busy, r.idle,
		r.jobsStarted, r.jobsCompleted, r.jobStartup, r.jobExecution, r.provision,
		r.sessionConflicts, r.acquireFailures, r.provisionsStuck, r.reaped,
		r.rateLimited, r.rateRemaining,
		r.pluginCalls, r.pluginErrors, r.pluginStartFailures,
		r.syncErrors, r.lastSync,
	)
	if src != nil {
		reg.MustRegister(NewStoreCollector(src, nil))
	}
	return r
}

// Listener sets shoes_scaleset_listeners to 1 while up, else 0.
func (r *Recorder) Listener(scope, scaleSet string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	r.listeners.WithLabelValues(scaleSet, scope).Set(v)
}

// Statistics records the latest statistics and the desired runner count.
func (r *Recorder) Statistics(scope, scaleSet string, st github.Statistics, desired int) {
	r.desired.WithLabelValues(scaleSet, scope).Set(float64(desired))
	r.assigned.WithLabelValues(scaleSet, scope).Set(float64(st.TotalAssignedJobs))
	r.running.WithLabelValues(scaleSet, scope).Set(float64(st.TotalRunningJobs))
	r.registered.WithLabelValues(scaleSet, scope).Set(float64(st.TotalRegisteredRunners))
	r.busy.WithLabelValues(scaleSet, scope).Set(float64(st.TotalBusyRunners))
	r.idle.WithLabelValues(scaleSet, scope).Set(float64(st.TotalIdleRunners))
}

// JobStarted counts a started job and observes its startup time, from
// queueing to runner assignment, when both times are known.
func (r *Recorder) JobStarted(scope, scaleSet string, m *scaleset.JobStarted) {
	r.jobsStarted.WithLabelValues(scaleSet, scope).Inc()
	if m == nil {
		return
	}
	if d, ok := between(m.QueueTime, m.RunnerAssignTime); ok {
		r.jobStartup.WithLabelValues(scaleSet, scope).Observe(d.Seconds())
	}
}

// JobCompleted counts a completed job by result and observes its
// execution time, from runner assignment to finish, when both are known.
func (r *Recorder) JobCompleted(scope, scaleSet string, m *scaleset.JobCompleted) {
	result := "unknown"
	if m != nil && m.Result != "" {
		result = m.Result
	}
	r.jobsCompleted.WithLabelValues(scaleSet, scope, result).Inc()
	if m == nil {
		return
	}
	if d, ok := between(m.RunnerAssignTime, m.FinishTime); ok {
		r.jobExecution.WithLabelValues(scaleSet, scope).Observe(d.Seconds())
	}
}

// between returns to − from, and false if either time is unset or the
// difference is negative.
func between(from, to time.Time) (time.Duration, bool) {
	if from.IsZero() || to.IsZero() {
		return 0, false
	}
	d := to.Sub(from)
	return d, d >= 0
}

// RunnerProvisioned observes a runner's provisioning time.
func (r *Recorder) RunnerProvisioned(scope, scaleSet string, d time.Duration) {
	r.provision.WithLabelValues(scaleSet, scope).Observe(d.Seconds())
}

// SessionConflict counts a 409 on message session creation.
func (r *Recorder) SessionConflict(scope, scaleSet string) {
	r.sessionConflicts.WithLabelValues(scaleSet, scope).Inc()
}

// AcquireFailed counts a failed acquisition of available jobs.
func (r *Recorder) AcquireFailed(scope, scaleSet string) {
	r.acquireFailures.WithLabelValues(scaleSet, scope).Inc()
}

// ProvisionsStuck records the AddInstance calls running for too long.
func (r *Recorder) ProvisionsStuck(scope, scaleSet string, n int) {
	r.provisionsStuck.WithLabelValues(scaleSet, scope).Set(float64(n))
}

// RateLimited counts a rate-limited answer from GitHub.
func (r *Recorder) RateLimited(scope string, _ time.Duration) {
	r.rateLimited.WithLabelValues(scope).Inc()
}

// RateLimitRemaining records the budget GitHub reported.
func (r *Recorder) RateLimitRemaining(scope string, remaining int) {
	r.rateRemaining.WithLabelValues(scope).Set(float64(remaining))
}

// RunnerReaped counts a runner removed by the reaper, by reason.
func (r *Recorder) RunnerReaped(scope, scaleSet, reason string) {
	r.reaped.WithLabelValues(scaleSet, scope, reason).Inc()
}

// TargetSync counts a failed read of the myshoes target list, or records
// the time of a successful one.
func (r *Recorder) TargetSync(at time.Time, err error) {
	if err != nil {
		r.syncErrors.Inc()
		return
	}
	r.lastSync.Set(float64(at.UnixNano()) / 1e9)
}

// ObservePluginCall observes one plugin call, and counts it as an error
// unless code is shoes.CodeOK.
func (r *Recorder) ObservePluginCall(method, code string, d time.Duration) {
	r.pluginCalls.WithLabelValues(method, code).Observe(d.Seconds())
	if code != shoes.CodeOK {
		r.pluginErrors.WithLabelValues(method, code).Inc()
	}
}

// PluginStartFailed counts a plugin process that did not complete its
// start, by reason.
func (r *Recorder) PluginStartFailed(reason string) {
	r.pluginStartFailures.WithLabelValues(reason).Inc()
}

// Forget deletes every series of a removed scale set. The per-state runner
// gauges need no forgetting: they are read from the store at scrape time.
func (r *Recorder) Forget(scope, scaleSet string) {
	match := prometheus.Labels{labelScaleSet: scaleSet, labelScope: scope}
	for _, v := range r.perScaleSet {
		v.DeletePartialMatch(match)
	}
	r.rateLimited.DeleteLabelValues(scope)
	r.rateRemaining.DeleteLabelValues(scope)
}

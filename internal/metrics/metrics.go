// Package metrics records what the controller and the plugin host observe
// as Prometheus metrics, on a registry the caller creates and serves.
// Nothing is registered on the default registry.
package metrics

import (
	"time"

	"github.com/actions/scaleset"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shoes-scaleset/shoes-scaleset/internal/buildinfo"
	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
)

// Label names. Every per-scale-set metric carries exactly scale_set and
// scope; a few carry one more, bounded, label. The metrics that are not
// per scale set carry no scope or scale set: their series stay a handful
// whatever the number of targets.
const (
	labelScaleSet  = "scale_set"
	labelScope     = "scope"
	labelState     = "state"
	labelResult    = "result"
	labelReason    = "reason"
	labelMethod    = "method"
	labelCode      = "code"
	labelOperation = "operation"
	labelResource  = "resource"
)

// Values of the result label of shoes_scaleset_policy_reloads_total.
const (
	resultOK    = "ok"
	resultError = "error"
)

// scaleSetLabels are the labels of every per-scale-set series.
var scaleSetLabels = []string{labelScaleSet, labelScope}

// DurationBuckets are the buckets, in seconds, of the startup, provision
// and plugin call histograms: from a fraction of a second to 30 minutes.
var DurationBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800}

// ExecutionBuckets are the buckets, in seconds, of the job execution
// histogram: jobs run from seconds to hours, so they extend to 6 hours.
var ExecutionBuckets = []float64{1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600}

// GitHubBuckets are the buckets, in seconds, of the GitHub request
// histogram: REST and Actions service calls take a fraction of a second,
// the message long-poll is held about 50 seconds (at most
// github.DefaultPollTimeout, 70 s).
var GitHubBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 90}

// Recorder records metrics. It implements controller.Recorder,
// shoes.Recorder and github.Recorder, and records the policy reloads; its
// methods are safe for concurrent use.
type Recorder struct {
	// gauges are the gauges of every scale set.
	gauges *scaleSetGauges

	jobsStarted   *prometheus.CounterVec
	jobsCompleted *prometheus.CounterVec
	jobStartup    *prometheus.HistogramVec
	jobExecution  *prometheus.HistogramVec
	provision     *prometheus.HistogramVec

	sessionConflicts *prometheus.CounterVec
	acquireFailures  *prometheus.CounterVec
	reaped           *prometheus.CounterVec

	rateLimited    *prometheus.CounterVec
	rateRemaining  *rateBudgets
	githubRequests *prometheus.CounterVec
	githubDuration *prometheus.HistogramVec

	pluginCalls         *prometheus.HistogramVec
	pluginErrors        *prometheus.CounterVec
	pluginStartFailures *prometheus.CounterVec

	syncErrors prometheus.Counter
	lastSync   prometheus.Gauge

	policyReloads    *prometheus.CounterVec
	lastPolicyReload prometheus.Gauge
	policyReloadOK   prometheus.Gauge

	// perScaleSet are the vectors labelled by scale set, for Forget,
	// which drops the gauges from r.gauges.
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
// collectors, shoes_scaleset_build_info, the Recorder's metrics and, if
// src is not nil, a collector that counts the runners in src at scrape
// time. It panics if any of them is already registered on reg, which is a
// programming error.
func New(reg *prometheus.Registry, src StoreSource) *Recorder {
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(append([]string(nil), scaleSetLabels...), extra...))
	}
	histogram := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, scaleSetLabels)
	}

	r := &Recorder{
		gauges: newScaleSetGauges(),

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
		rateRemaining: newRateBudgets(time.Now),
		// operation is one of github's fixed Op* names and code an HTTP
		// status or "error": a few dozen series at most.
		githubRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoes_scaleset_github_requests_total",
			Help: "HTTP exchanges with GitHub (REST API, Actions service, broker), each retry included, by operation and HTTP status code (\"error\": no answer).",
		}, []string{labelOperation, labelCode}),
		githubDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shoes_scaleset_github_request_duration_seconds",
			Help:    "Time from sending a request to GitHub to its answer's headers (or its failure), by operation; the message long-poll is held about 50 s.",
			Buckets: GitHubBuckets,
		}, []string{labelOperation}),

		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoes_scaleset_target_sync_errors_total",
			Help: "Failed reads of the myshoes target list.",
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoes_scaleset_last_target_sync_timestamp_seconds",
			Help: "Unix time of the last successful read of the myshoes target list.",
		}),

		policyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoes_scaleset_policy_reloads_total",
			Help: "Reads of the policy file, by result (ok, error: the previous policy stays in force).",
		}, []string{labelResult}),
		lastPolicyReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoes_scaleset_policy_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful read of the policy file (0 before the first, and without a policy file).",
		}),
		policyReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoes_scaleset_policy_last_reload_successful",
			Help: "0 while the last read of the policy file failed (the previous policy stays in force), else 1.",
		}),
	}
	// run does not start with a policy file that does not load: until a
	// reload fails, the policy in force is the one read at start, or none.
	r.policyReloadOK.Set(1)
	// Both results exist from the start, at 0, so that an alert on the
	// errors sees the first one.
	r.policyReloads.WithLabelValues(resultOK)
	r.policyReloads.WithLabelValues(resultError)
	r.perScaleSet = []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{
		r.jobsStarted, r.jobsCompleted, r.jobStartup, r.jobExecution, r.provision,
		r.sessionConflicts, r.acquireFailures, r.reaped,
	}

	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBuildInfo(buildinfo.Read()),
		r.gauges,
		r.jobsStarted, r.jobsCompleted, r.jobStartup, r.jobExecution, r.provision,
		r.sessionConflicts, r.acquireFailures, r.reaped,
		r.rateLimited, r.rateRemaining, r.githubRequests, r.githubDuration,
		r.pluginCalls, r.pluginErrors, r.pluginStartFailures,
		r.syncErrors, r.lastSync,
		r.policyReloads, r.lastPolicyReload, r.policyReloadOK,
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
	r.gauges.set(scope, scaleSet, gaugeValue{gaugeListeners, v})
}

// Limits records the scale set's effective min and max runners.
func (r *Recorder) Limits(scope, scaleSet string, minRunners, maxRunners int) {
	r.gauges.set(scope, scaleSet,
		gaugeValue{gaugeMinRunners, float64(minRunners)},
		gaugeValue{gaugeMaxRunners, float64(maxRunners)})
}

// Polled records the time of a successful poll.
func (r *Recorder) Polled(scope, scaleSet string, at time.Time) {
	r.gauges.set(scope, scaleSet, gaugeValue{gaugeLastPoll, unixSeconds(at)})
}

// unixSeconds is t as Unix seconds, with the fraction.
func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Statistics records the latest statistics and the desired runner count.
func (r *Recorder) Statistics(scope, scaleSet string, st github.Statistics, desired int) {
	r.gauges.set(scope, scaleSet,
		gaugeValue{gaugeDesired, float64(desired)},
		gaugeValue{gaugeAssigned, float64(st.TotalAssignedJobs)},
		gaugeValue{gaugeRunning, float64(st.TotalRunningJobs)},
		gaugeValue{gaugeRegistered, float64(st.TotalRegisteredRunners)},
		gaugeValue{gaugeBusy, float64(st.TotalBusyRunners)},
		gaugeValue{gaugeIdle, float64(st.TotalIdleRunners)})
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
	r.gauges.set(scope, scaleSet, gaugeValue{gaugeProvisionsStuck, float64(n)})
}

// RateLimited counts a rate-limited answer from GitHub.
func (r *Recorder) RateLimited(scope string, _ time.Duration) {
	r.rateLimited.WithLabelValues(scope).Inc()
}

// RateLimitRemaining records the budget an answer for scope reported;
// shoes_scaleset_github_rate_limit_remaining reports the lowest budget of
// the scopes, by resource.
func (r *Recorder) RateLimitRemaining(scope string, b github.RateBudget) {
	r.rateRemaining.record(scope, b)
}

// GitHubRequest counts one HTTP exchange with GitHub and observes its
// duration.
func (r *Recorder) GitHubRequest(operation, code string, d time.Duration) {
	r.githubRequests.WithLabelValues(operation, code).Inc()
	r.githubDuration.WithLabelValues(operation).Observe(d.Seconds())
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
	r.lastSync.Set(unixSeconds(at))
}

// PolicyReload counts a reload of the policy file by result, and records
// the time of a successful one. A failed reload keeps the previous policy,
// so the time of the last success says how old the policy in force may
// be.
func (r *Recorder) PolicyReload(at time.Time, err error) {
	if err != nil {
		r.policyReloads.WithLabelValues(resultError).Inc()
		r.policyReloadOK.Set(0)
		return
	}
	r.policyReloads.WithLabelValues(resultOK).Inc()
	r.lastPolicyReload.Set(unixSeconds(at))
	r.policyReloadOK.Set(1)
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
	r.gauges.forget(scope, scaleSet)
	r.rateLimited.DeleteLabelValues(scope)
	r.rateRemaining.forget(scope)
}

// newBuildInfo returns shoes_scaleset_build_info: 1, with the version,
// the Go version and the VCS revision of the binary as labels (one series).
func newBuildInfo(bi buildinfo.Info) prometheus.Collector {
	revision := bi.Revision
	if revision == "" {
		revision = "unknown"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "shoes_scaleset_build_info",
		Help:        "Always 1; the labels say which build of shoes-scaleset runs: its version, Go version and VCS revision.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "goversion": bi.GoVersion, "revision": revision},
	})
	g.Set(1)
	return g
}

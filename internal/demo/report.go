package demo

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// Report is the outcome of a demo run. Its JSON form is what `demo --json`
// prints.
type Report struct {
	Jobs               int     `json:"jobs"`
	JobsCompleted      int     `json:"jobs_completed"`
	InstancesCreated   int     `json:"instances_created"`
	InstancesDeleted   int     `json:"instances_deleted"`
	LeakedInstances    int     `json:"leaked_instances"`
	DuplicateRunners   int     `json:"duplicate_runners"`
	ProtocolViolations int     `json:"protocol_violations"`
	WallSeconds        float64 `json:"wall_seconds"`
	ProvisionP50MS     int64   `json:"provision_p50_ms"`
	ProvisionP99MS     int64   `json:"provision_p99_ms"`
	JobStartP50MS      int64   `json:"job_start_p50_ms"`
	JobStartP99MS      int64   `json:"job_start_p99_ms"`
	// AllUpSeconds is the time from the first job queued until the N-th
	// instance was up (N = Jobs; up = the end of its OK AddInstance in the
	// plugin's call log); 0 if fewer than N instances were created.
	AllUpSeconds float64 `json:"all_up_seconds"`
	// AllIdleSeconds is the same until the N-th runner was stored idle
	// (or busy, when its job started first): AllUpSeconds plus the
	// controller's work after AddInstance returned.
	AllIdleSeconds float64 `json:"all_idle_seconds"`
	// BoundSeconds is ceil(N/C)·L for N jobs, provisioning concurrency C
	// and plugin latency L: no controller can have all N instances up
	// sooner. RatioToBound is AllUpSeconds / BoundSeconds (0 when either
	// is 0).
	BoundSeconds float64 `json:"bound_seconds"`
	RatioToBound float64 `json:"ratio_to_bound"`
	// PluginMode is how the fake plugin ran the runners: "script" or
	// "inprocess".
	PluginMode string `json:"plugin_mode"`
	// StateFile is set when the state file outlives the demo (--state-file).
	StateFile string `json:"state_file,omitempty"`
	// StateIn says where the state was kept when it was not a file (etcd).
	StateIn string `json:"-"`
	// LogFile is set when the controller log outlives the demo
	// (--work-dir); a temporary work directory is deleted with it.
	LogFile string `json:"log_file,omitempty"`

	// Details for the human summary.
	Leaked          []string `json:"-"` // cloud IDs
	Duplicates      []string `json:"-"` // runner names
	ViolationKinds  []string `json:"-"`
	JobsCanceled    int      `json:"-"`
	KeptIdle        int      `json:"-"` // instances of idle runners kept for --min-runners
	SessionsLeft    int      `json:"-"` // sessions still open on the fake after shutdown
	CallLog         string   `json:"-"`
	ControllerError string   `json:"-"`
	Interrupted     string   `json:"-"` // why the demo stopped waiting early, if it did
}

// Inputs is everything a Report is computed from, gathered after the
// controller stopped.
type Inputs struct {
	// Jobs is the number of jobs the demo queued.
	Jobs int
	// State is the fake Actions service's final state.
	State actionsfake.State
	// Calls is the fake plugin's call log.
	Calls []shoesfake.Call
	// History is the store's runner history; Runners are the records left.
	History []store.HistoryRecord
	Runners []store.Runner
	// KeepIdle says that idle runners left in the store are expected
	// (--min-runners): their instances are not leaks.
	KeepIdle bool
	// ProvisionConcurrency and PluginLatency give the bound; PluginMode is
	// reported as is.
	ProvisionConcurrency int
	PluginLatency        time.Duration
	PluginMode           string
}

// Summarize computes the report. It sets no file paths.
func Summarize(in Inputs) Report {
	r := Report{Jobs: in.Jobs}
	var first, last time.Time
	var starts []time.Duration
	for _, j := range in.State.Jobs {
		if first.IsZero() || j.QueuedAt.Before(first) {
			first = j.QueuedAt
		}
		if j.State == "completed" && j.CompletedAt.After(last) {
			last = j.CompletedAt
		}
		if !j.StartedAt.IsZero() && !j.QueuedAt.IsZero() {
			starts = append(starts, j.StartedAt.Sub(j.QueuedAt))
		}
	}
	// The invariants, by the one checker: the demo's run is over, so a
	// stored record owns its instance only if it is an idle runner kept
	// for --min-runners.
	var owners []store.RunnerState
	if in.KeepIdle {
		owners = []store.RunnerState{store.StateIdle}
	}
	iv := scenario.Check(scenario.Inputs{State: in.State, Calls: in.Calls, Runners: in.Runners, History: in.History}, scenario.Options{Owners: owners})
	r.JobsCompleted, r.JobsCanceled = iv.Completed, iv.Canceled
	r.InstancesCreated, r.InstancesDeleted = countOK(in.Calls, shoesfake.MethodAddInstance), countOK(in.Calls, shoesfake.MethodDeleteInstance)
	r.Leaked, r.LeakedInstances, r.KeptIdle = iv.LeakedIDs, iv.Leaked, iv.LiveOwned
	r.Duplicates, r.DuplicateRunners = iv.ProvisionedTwice, len(iv.ProvisionedTwice)
	r.ProtocolViolations, r.ViolationKinds = iv.Violations, iv.ViolationKinds
	r.SessionsLeft = iv.OpenSessions
	if r.JobsCompleted > 0 && !first.IsZero() {
		r.WallSeconds = math.Round(last.Sub(first).Seconds()*1000) / 1000
	}

	// Provision time of every runner that reached idle: those in the
	// history and those still stored (kept idle, or left by a stopped run).
	var provisions []time.Duration
	var idles []time.Time
	runners := make([]store.Runner, 0, len(in.History)+len(in.Runners))
	for _, h := range in.History {
		runners = append(runners, h.Runner)
	}
	runners = append(runners, in.Runners...)
	for _, rn := range runners {
		pending := rn.StateSince[store.StatePending]
		idle := upAt(rn)
		if !pending.IsZero() && !idle.IsZero() {
			provisions = append(provisions, idle.Sub(pending))
		}
		if !idle.IsZero() {
			idles = append(idles, idle)
		}
	}
	r.ProvisionP50MS, r.ProvisionP99MS = millis(Percentile(provisions, 50)), millis(Percentile(provisions, 99))
	r.JobStartP50MS, r.JobStartP99MS = millis(Percentile(starts, 50)), millis(Percentile(starts, 99))

	r.PluginMode = in.PluginMode
	var ups []time.Time
	for _, c := range in.Calls {
		if c.Method == shoesfake.MethodAddInstance && c.Code == scenario.CodeOK && !c.End.IsZero() {
			ups = append(ups, c.End)
		}
	}
	r.AllUpSeconds, r.AllIdleSeconds = nthAfter(ups, in.Jobs, first), nthAfter(idles, in.Jobs, first)
	r.BoundSeconds = Bound(in.Jobs, in.ProvisionConcurrency, in.PluginLatency).Seconds()
	if r.BoundSeconds > 0 && r.AllUpSeconds > 0 {
		r.RatioToBound = math.Round(r.AllUpSeconds/r.BoundSeconds*1000) / 1000
	}
	return r
}

// upAt is when a runner's instance was stored as up: when it became idle,
// or busy for a runner whose job started (its runner came online) before
// the provisioner stored the end of its AddInstance. Zero if neither.
func upAt(rn store.Runner) time.Time {
	if t := rn.StateSince[store.StateIdle]; !t.IsZero() {
		return t
	}
	if _, ok := rn.StateSince[store.StateConfigured]; ok {
		return rn.StateSince[store.StateBusy]
	}
	return time.Time{}
}

// Bound is ceil(n/c)·latency: with at most c AddInstance calls at once,
// each taking latency, n instances cannot all be up sooner. 0 if c < 1.
func Bound(n, c int, latency time.Duration) time.Duration {
	if n < 1 || c < 1 {
		return 0
	}
	return time.Duration((n+c-1)/c) * latency
}

// nthAfter returns the seconds from start to the n-th earliest time (0 if
// there are fewer than n, or start is zero; never negative).
func nthAfter(times []time.Time, n int, start time.Time) float64 {
	if n < 1 || len(times) < n || start.IsZero() {
		return 0
	}
	sorted := slices.Clone(times)
	slices.SortFunc(sorted, func(a, b time.Time) int { return a.Compare(b) })
	d := max(sorted[n-1].Sub(start), 0)
	return math.Round(d.Seconds()*1000) / 1000
}

// Percentile returns the p-th percentile (0 < p <= 100) of values by the
// nearest-rank method: the smallest value such that at least p% of the
// values are less than or equal to it. No values give 0.
func Percentile(values []time.Duration, p float64) time.Duration {
	if len(values) == 0 {
		return 0
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func countOK(calls []shoesfake.Call, method string) int {
	n := 0
	for _, c := range calls {
		if c.Method == method && c.Code == scenario.CodeOK {
			n++
		}
	}
	return n
}

func millis(d time.Duration) int64 {
	return int64(math.Round(float64(d) / float64(time.Millisecond)))
}

// Problems lists why the run failed; none means every job completed and
// nothing leaked: no leaked instance, no runner provisioned twice, no
// protocol violation, and a clean controller exit.
func (r Report) Problems() []string {
	var out []string
	if r.Interrupted != "" {
		out = append(out, r.Interrupted)
	}
	if r.JobsCompleted < r.Jobs {
		msg := fmt.Sprintf("%d of %d jobs completed", r.JobsCompleted, r.Jobs)
		if r.JobsCanceled > 0 {
			msg += fmt.Sprintf(" (%d canceled by the fake GitHub: no runner took them)", r.JobsCanceled)
		}
		out = append(out, msg)
	}
	if r.LeakedInstances > 0 {
		out = append(out, fmt.Sprintf("%d instances leaked (created, never deleted): %s", r.LeakedInstances, abbreviate(r.Leaked, 3)))
	}
	if r.DuplicateRunners > 0 {
		out = append(out, fmt.Sprintf("%d runner names provisioned more than once: %s", r.DuplicateRunners, abbreviate(r.Duplicates, 3)))
	}
	if r.ProtocolViolations > 0 {
		out = append(out, fmt.Sprintf("%d protocol violations seen by the fake GitHub: %s", r.ProtocolViolations, strings.Join(r.ViolationKinds, ", ")))
	}
	if r.ControllerError != "" {
		out = append(out, "controller: "+r.ControllerError)
	}
	return out
}

func abbreviate(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(", ... (%d more)", len(items)-n)
}

// WriteText writes the human summary.
func (r Report) WriteText(w io.Writer) error {
	problems := r.Problems()
	var b strings.Builder
	if len(problems) == 0 {
		fmt.Fprintf(&b, "demo passed: all %d jobs completed, nothing leaked\n", r.Jobs)
	} else {
		fmt.Fprintf(&b, "demo FAILED: %s\n", strings.Join(problems, "; "))
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, args...)) }
	row("jobs completed", "%d/%d", r.JobsCompleted, r.Jobs)
	row("instances created", "%d", r.InstancesCreated)
	row("instances deleted", "%d", r.InstancesDeleted)
	row("leaked instances", "%d", r.LeakedInstances)
	if r.KeptIdle > 0 {
		row("idle runners kept", "%d (--min-runners; their instances stop with the demo)", r.KeptIdle)
	}
	row("duplicate runners", "%d", r.DuplicateRunners)
	row("protocol violations", "%d", r.ProtocolViolations)
	row("sessions left open", "%d (a clean shutdown deletes them)", r.SessionsLeft)
	row("wall time", "%.2fs (first job queued to last job completed)", r.WallSeconds)
	row("provision p50/p99", "%s / %s (runner pending to idle: JIT config and AddInstance)", fmtMS(r.ProvisionP50MS), fmtMS(r.ProvisionP99MS))
	row("job start p50/p99", "%s / %s (job queued to started on its runner)", fmtMS(r.JobStartP50MS), fmtMS(r.JobStartP99MS))
	if r.AllUpSeconds > 0 {
		row("all instances up", "%.2fs (first job queued to the %d-th AddInstance done; all idle in the store after %.2fs)", r.AllUpSeconds, r.Jobs, r.AllIdleSeconds)
	}
	if r.BoundSeconds > 0 {
		row("bound", "%.2fs (ceil(jobs/provision concurrency) x plugin latency); ratio %.2f", r.BoundSeconds, r.RatioToBound)
	}
	row("plugin mode", "%s", r.PluginMode)
	switch {
	case r.StateIn != "":
		row("state", "%s", r.StateIn)
	case r.StateFile != "":
		row("state file", "%s (kept: shoes-scaleset runners ls --state-file %s)", r.StateFile, r.StateFile)
	default:
		row("state file", "a temporary file, deleted (keep it with --state-file)")
	}
	if r.LogFile == "" {
		row("logs", "deleted with the temporary work directory (keep them with --work-dir DIR)")
	} else {
		row("controller log", "%s", r.LogFile)
		row("plugin call log", "%s", r.CallLog)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtMS(ms int64) string {
	return (time.Duration(ms) * time.Millisecond).String()
}

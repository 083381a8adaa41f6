package reliability

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
)

// Result is one scenario's line in the report.
type Result struct {
	Order  int // place in the report
	Name   string
	Checks string

	mu       sync.Mutex
	status   string // pass, fail, known-failing, skipped
	reason   string // why known-failing or skipped
	worlds   map[*world]scenario.Invariants
	order    []*world
	recovery []time.Duration
	figures  []string
	duration time.Duration
}

var (
	resultsMu sync.Mutex
	results   []*Result
)

// newResult registers a scenario for the report. Its status and duration
// are set when the test ends. It is each scenario's first call, so it also
// marks the test parallel where parallelScenarios says so.
func newResult(t *testing.T, order int, name, checks string) *Result {
	if parallelScenarios {
		t.Parallel()
	}
	r := &Result{Order: order, Name: name, Checks: checks, worlds: map[*world]scenario.Invariants{}}
	resultsMu.Lock()
	results = append(results, r)
	resultsMu.Unlock()
	start := time.Now()
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.duration = time.Since(start)
		switch {
		case r.status == "known-failing":
		case t.Failed():
			r.status = "fail"
		case t.Skipped():
			r.status = "skipped"
		default:
			r.status = "pass"
		}
	})
	return r
}

// knownFailing marks the scenario known-failing with the reason, and
// skips the test.
func knownFailing(t *testing.T, r *Result, reason string) {
	t.Helper()
	r.mu.Lock()
	r.status, r.reason = "known-failing", reason
	r.mu.Unlock()
	t.Skip("known failing: " + reason)
}

func (r *Result) addInvariants(s *world, iv scenario.Invariants) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.worlds[s]; !ok {
		r.order = append(r.order, s)
	}
	r.worlds[s] = iv
}

// addRecovery records one "listening again" time after a restart.
func (r *Result) addRecovery(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recovery = append(r.recovery, d)
}

// figure records a measured figure for the notes of the report.
func (r *Result) figure(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.figures = append(r.figures, fmt.Sprintf(format, args...))
}

// total sums the invariants of the scenario's worlds (the latest check of each).
func (r *Result) total() (iv scenario.Invariants, checked bool) {
	for _, s := range r.order {
		w := r.worlds[s]
		checked = true
		iv.Jobs += w.Jobs
		iv.Completed += w.Completed
		iv.Canceled += w.Canceled
		iv.Leaked += w.Leaked
		iv.UnknownOwned += w.UnknownOwned
		iv.UnknownRecords += w.UnknownRecords
		iv.Lost += w.Lost
		iv.DuplicateNames += w.DuplicateNames
		iv.DuplicateJobs += w.DuplicateJobs
		iv.Violations += w.Violations
		iv.Created += w.Created
	}
	return iv, checked
}

// findings are the defects the suite found, and how they were fixed; the
// report lists them. Keep in step with the fixes.
var findings = []string{
	"**False `unknown-instance` records after a crash.** A runner was marked `configured` (\"AddInstance in flight\") " +
		"before its call waited for a free plugin process, so every provisioning queued behind the pool " +
		"(`--provision-concurrency` > `--plugin-pool-size`) became `unknown-instance` at the next start, though no " +
		"AddInstance had been sent: 42 records after the 6 kills of the burst, none with an instance behind it, each " +
		"needing `runners rm`. The same happened to a queued call cancelled by `--shutdown-timeout`. Fixed: the plugin " +
		"host calls a hook once a process is ready, right before it sends the call, and the controller writes " +
		"`configured` there (`internal/shoes/host.go`, `internal/controller/provision.go`); a call that was never sent " +
		"is a plain provisioning failure, and a crash before it leaves a `pending` record, which the next start undoes. " +
		"What is left is the protocol's own window: calls the plugin had received when the process died.",
	"**An instance leaked silently when its runner ran a job across a crash.** When `run` died after the plugin " +
		"had created an instance but before its answer was stored, the instance's runner could take a job while `run` " +
		"was down (systemd restarts it after 5 s). At the next start the record was still `configured` while its " +
		"removal from GitHub waited for the job; the job's messages moved it to `busy`, then to `deleting`, and with no " +
		"cloud ID to delete it went to history as `completed`: the instance was left running with no record of it. " +
		"Fixed: a record found `configured` at start becomes `unknown-instance` before any job message is handled " +
		"(`internal/controller/recover.go`), and a record about to be deleted without a cloud ID after an AddInstance " +
		"becomes `unknown-instance` instead of being finished (`internal/controller/delete.go`).",
	"**The cause of a target error was cut from `scalesets ls`.** The STATUS column kept the first 120 characters of " +
		"the error, which were wrapping (the scale set name twice: the controller wrapped the GitHub layer's message " +
		"again), so a key of another app showed no `401`. Fixed: long messages keep their start and their end " +
		"(`internal/cli/inspect.go`), and the controller no longer wraps twice (`internal/controller/worker.go`).",
	"**Hung plugin calls could not be bounded below 5 minutes.** `run` had no flag for the plugin call deadlines; " +
		"added `--plugin-add-timeout` (5m) and `--plugin-delete-timeout` (3m) (`internal/cli/run.go`, " +
		"docs/configuration.md).",
	"**A failed provisioning cut by the shutdown timeout left its JIT runner registered on GitHub.** The removal " +
		"used the cancelled work context; it now gets its own 30 s deadline, as the unknown-outcome path had " +
		"(`internal/controller/provision.go`).",
	"**An expired or evicted session took its target out of service for good (issue 10).** GitHub answers the " +
		"DELETE of such a session with 400 `RunnerScaleSetSessionExpiredException`; the client accepted only 2xx and " +
		"404, so the stale-session step failed on every retry and the stored ID was never forgotten, at start after a " +
		"long stop and at runtime after an eviction. Fixed: 400-expired, 404 and 410 count as gone, any other failure " +
		"no longer blocks the new session, and an evicted session is replaced at once (`internal/github/session.go`, " +
		"`internal/controller/worker.go`). The sim now expires and evicts sessions as GitHub does.",
	"**A failing acquirejobs churned sessions (issue 10).** The message was left unacknowledged so that a new " +
		"session would bring it back: dozens of sessions in seconds. Now the runner requests are stored with the " +
		"message, the message is acknowledged, and the acquisition is retried on the same session " +
		"(`internal/controller/acquire.go`).",
	"**GitHub's rate limits were not obeyed (issue 10).** Retry-After was capped by our own retry wait and the " +
		"long poll ignored it; X-RateLimit-Reset was never read. Now a per-scope gate holds every call, the library's " +
		"and the poll included (`internal/github/ratelimit.go`).",
	"**A GHES that drops custom labels got a PATCH on every start of the worker (issue 10).** The scale set is now " +
		"read back after a write, the dropped labels are reported once and not asked for again " +
		"(`internal/github/scaleset.go`).",
	"**A scale set deleted on GitHub was never served again until a restart (issue 11).** The worker recreated it " +
		"and opened a session, but its reconcile loop ran only for the first scale set: jobs waited for ever. The " +
		"worker now adopts the new scale set and the reaper cleans up the old one's runners (`scale-set-deleted`).",
	"**Two targets of one scope deleted each other's sessions in a loop (issue 11).** One is served, the other " +
		"skipped with a warning naming both (`internal/controller/targets.go`).",
	"**One hanging backend starved every target (issue 11).** Its AddInstance calls held every provisioning slot " +
		"for the add timeout; the slots are now shared fairly, and stuck provisioning shows in /readyz and a metric " +
		"(`internal/controller/slots.go`).",
	"**A plugin that never finished its handshake hung provisioning and shutdown; kill -9 of run left plugin " +
		"processes (issue 11).** Plugins run in their own process group, killed as a whole, with a parent-death " +
		"signal (`internal/shoes/plugin.go`).",
	"**A full disk churned sessions or left pending records for good (issue 11).** A message whose effects cannot " +
		"be stored comes again with a growing wait, the session kept; unowned pending or configured records are " +
		"undone while the process runs (`internal/controller/worker.go`, `recover.go`).",
	"**With a name-keyed plugin, instances of interrupted AddInstance calls leaked (issue 11).** They are deleted " +
		"by the runner's name (`internal/controller/byname.go`). A race in that sweep, found by the soak, leaked " +
		"an instance whose provisioning finished while it was listed; the record is now read again once owned.",
	"**A replica cut off from etcd went on acting on its targets until etcd answered again (issue 13).** Its " +
		"target sync waited in an etcd call with no deadline, and its workers in store calls with a 10 s timeout, so " +
		"it stopped its workers only after the heal, 6 s past its safe deadline. Now those calls end by the safe " +
		"deadline (`internal/replica/ownership.go`, `internal/store/etcd.go`).",
	"**Jobs on a dead replica's targets waited minutes (issue 13).** The new owner counted the dead replica's " +
		"`pending` and `configured` records as runners to come, and they are undone only after " +
		"`--plugin-add-timeout` plus the TTL. They no longer count (`internal/controller/scale.go`).",
	"**An instance created by a replica that lost its target during AddInstance was known to nobody (issue " +
		"13).** Its fenced write was refused and retried for ever. The old owner now records the instance on the " +
		"record as it read it, without the ownership fence (`UpdateRunnerAfterHandOver`), and the new owner deletes " +
		"it if it had given the record up (`internal/controller/provision.go`).",
}

// limits are what the suite does not cover, and why.
var limits = []string{
	"A crash after GitHub created a message session but before its answer reached `run` leaves a session only " +
		"GitHub knows (the session API has no way to list sessions): the next start is refused with 409 until GitHub " +
		"expires it. The suite kills only while the creation request is held before the fake handles it.",
	"With opaque cloud IDs (the plugin kind of shoes-aws and shoes-openstack), `unknown-instance` records are the " +
		"shoes protocol's blind window (no \"list instances\"): a kill leaves one for every AddInstance call a plugin " +
		"process had received, whether or not the plugin got as far as creating the instance. The suite counts them " +
		"and the instances named after them; it does not delete them, as an operator would after checking the " +
		"provider. With a name-keyed plugin (shoes-lxd), they are deleted by the runner's name once " +
		"--plugin-add-timeout has passed, and the suite requires none to be left.",
	"A plugin answering AddInstance with an empty cloud ID has created an instance it never names; such instances " +
		"are counted as lost by the plugin, not as leaks of shoes-scaleset. A 1 MiB IP address is dropped with a " +
		"warning and the runner is used as usual.",
}

// writeReport writes the Markdown report of every scenario that ran.
func writeReport(path string, took time.Duration) error {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	sort.SliceStable(results, func(i, j int) bool { return results[i].Order < results[j].Order })
	var b strings.Builder
	goVersion := runtime.Version()
	if out, err := exec.Command("go", "version").Output(); err == nil {
		goVersion = strings.TrimSpace(string(out))
	}
	kernel := runtime.GOOS + "/" + runtime.GOARCH
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		kernel = strings.TrimSpace(string(out)) + " " + runtime.GOARCH
	}

	fmt.Fprintf(&b, `# Reliability

This file is written by the reliability suite (`+"`internal/reliability`"+`) when it runs
with `+"`%s=1`"+`, as `+"`make reliability`"+` does. Do not edit it by hand: change the suite and
run it again.

The suite runs the real binary as separate processes, as an operator would:
`+"`shoes-scaleset sim serve`"+` (the fake GitHub, Actions service and myshoes) in one process
that lives for the whole scenario, and `+"`shoes-scaleset run`"+` in another, with the fake
plugin (`+"`shoes-scaleset sim plugin`"+` behind a wrapper script given to `+"`--plugin`"+`, its knobs
set through `+"`SIM_PLUGIN_*`"+` variables). `+"`run`"+` is stopped with SIGTERM, or killed with
SIGKILL (with its plugin processes, as systemd does) at chosen points and
started again on the same state file. Kill points are verified before the
kill: for example "during AddInstance" waits until the daemon shows a runner
in `+"`configured`"+` (its AddInstance in flight).

After every scenario the suite checks invariants, not logs:

1. every queued job completed (or was canceled by the fake's own rule: no
   runner took it within the assign timeout, three times); none is stuck;
2. every instance the plugin created is deleted, or owned by a live runner
   record of the state file (`+"`runners ls -o json`"+` after the daemon stopped):
   created = deleted + live. An instance named after an `+"`unknown-instance`"+`
   record (a crash during AddInstance, the one window the shoes protocol
   cannot close) is reported in its own column, not hidden; anything else
   left is a leak;
3. no runner name provisioned twice, no job run by two runners;
4. after the clean shutdown no message session is left open, and the fake
   recorded no protocol violation;
5. the state file opens: `+"`runners ls`"+` and `+"`scalesets ls`"+` work on it.

## Run

| | |
|---|---|
| date | %s |
| machine | %d CPUs (nproc), %s |
| Go | %s |
| command | `+"`make reliability`"+`: `+"`%s=1 go test -tags reliability -race -p 1 -timeout 60m -count=1 ./internal/reliability/...`"+` |
| suite duration | %s |

Without the tag, `+"`go test ./internal/reliability/`"+` (and so `+"`make test`"+`) runs the fast
subset: shutdown, metrics, readiness, the scenarios of the real GitHub's
behaviour (issue 10) but the 30 s acquisition failure, and those of issue 11
but the hanging backend and the full disk. The kill during AddInstance and
those three, 15 to 30 s each, run with the tag only.

## Results

Columns: *jobs* queued, *completed* by a runner; *leaked* instances (left
with no owner); *unknown-instance* the records left in that state (reported by
`+"`runners ls`"+`, for the operator to check and remove) / the instances that
exist behind them; *dup* runner names provisioned twice or jobs run twice;
*viol* protocol violations seen by the fake; *recovery* the seconds from a
restart to every scale set listening again (a new session), one figure per
restart.

| scenario | what it checks | result | jobs | completed | leaked | unknown-instance | dup | viol | recovery (s) | duration |
|---|---|---|---|---|---|---|---|---|---|---|
`, envReport, time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), kernel, goVersion, envReport, took.Round(time.Second))

	for _, r := range results {
		r.mu.Lock()
		iv, checked := r.total()
		num := func(n int) string {
			if !checked {
				return "–"
			}
			return fmt.Sprint(n)
		}
		rec := "–"
		if len(r.recovery) > 0 {
			var parts []string
			for _, d := range r.recovery {
				parts = append(parts, fmt.Sprintf("%.1f", d.Seconds()))
			}
			rec = strings.Join(parts, ", ")
		}
		status := r.status
		if status == "" {
			status = "not finished"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Name, r.Checks, status, num(iv.Jobs), num(iv.Completed), num(iv.Leaked), num(iv.UnknownRecords)+" / "+num(iv.UnknownOwned),
			num(iv.DuplicateNames+iv.DuplicateJobs), num(iv.Violations), rec, r.duration.Round(100*time.Millisecond))
		r.mu.Unlock()
	}

	b.WriteString("\n## Figures\n\n")
	for _, r := range results {
		r.mu.Lock()
		iv, checked := r.total()
		var lines []string
		if checked && (iv.Canceled > 0 || iv.Lost > 0) {
			lines = append(lines, fmt.Sprintf("jobs canceled by the fake: %d; instances lost by the plugin (empty cloud ID): %d", iv.Canceled, iv.Lost))
		}
		lines = append(lines, r.figures...)
		if len(lines) > 0 {
			fmt.Fprintf(&b, "- **%s**\n", r.Name)
			for _, l := range lines {
				fmt.Fprintf(&b, "  - %s\n", l)
			}
		}
		r.mu.Unlock()
	}

	var known []*Result
	for _, r := range results {
		if r.status == "known-failing" {
			known = append(known, r)
		}
	}
	if len(known) > 0 {
		b.WriteString("\n## Known-failing scenarios\n\nThese are skipped by the suite until fixed.\n\n")
		for _, r := range known {
			fmt.Fprintf(&b, "- **%s**: %s\n", r.Name, r.reason)
		}
	}
	if len(limits) > 0 {
		b.WriteString("\n## Limits\n\n")
		for _, l := range limits {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	if len(findings) > 0 {
		b.WriteString("\n## Defects the suite found\n\nFixed in the code; the scenarios above keep them fixed.\n\n")
		for _, f := range findings {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

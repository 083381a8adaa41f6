//go:build bench

package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/demo"
	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// burst is one demo configuration.
type burst struct {
	jobs, targets, concurrency, maxRunners, minRunners int
	latency, jobDuration                               time.Duration
	mode                                               string
	// etcd is the etcd server the demo keeps its state in
	// (--etcd-endpoints, a new prefix per run); nil: a bbolt file.
	etcd *etcdtest.Server
}

func (b burst) args() []string {
	return []string{"demo", "--json",
		"--jobs", strconv.Itoa(b.jobs), "--targets", strconv.Itoa(b.targets),
		"--plugin-latency", b.latency.String(), "--job-duration", b.jobDuration.String(),
		"--provision-concurrency", strconv.Itoa(b.concurrency),
		"--max-runners", strconv.Itoa(b.maxRunners), "--min-runners", strconv.Itoa(b.minRunners),
		"--plugin-mode", b.mode, "--timeout", "15m",
	}
}

// argv is the demo's command line: args, and with etcd its endpoint.
func (b burst) argv() []string {
	if b.etcd == nil {
		return b.args()
	}
	return append(b.args(), "--etcd-endpoints", b.etcd.Endpoint())
}

// demoRun is the outcome of one demo process.
type demoRun struct {
	rep demo.Report
	// cpu is the CPU time of the demo process and its plugin processes;
	// etcd is the etcd server's, with etcd; others is what the rest of
	// the machine used meanwhile (noise).
	cpu, etcd, others float64
}

// runDemo runs the demo binary with b and returns its report. A demo that
// fails (a job not completed, an instance leaked) fails the test.
func runDemo(t *testing.T, b burst) demoRun {
	t.Helper()
	etcdCPU := func() float64 { return 0 }
	if b.etcd != nil {
		pid := (&cluster{t: t, etcd: b.etcd}).etcdPid()
		etcdCPU = func() float64 { return treeCPU(pid) }
	}
	before, etcdBefore := sampleCPU(), etcdCPU()
	res := scenariotest.Exec(t, binary, 20*time.Minute, testkit.ChildEnv("TMPDIR="+t.TempDir()), b.argv()...)
	after, etcdAfter := sampleCPU(), etcdCPU()
	var r demoRun
	if err := json.Unmarshal([]byte(res.Stdout), &r.rep); err != nil {
		t.Fatalf("demo %v: %v (exit %d)\nstderr:\n%s", b.argv(), err, res.Code, res.Stderr)
	}
	if res.Code != 0 {
		t.Errorf("demo %v failed: exit %d\n%s", b.argv(), res.Code, res.Stderr)
	}
	r.cpu, r.etcd = res.CPU.Seconds(), etcdAfter-etcdBefore
	r.others = max(0, busySeconds(before, after)-r.cpu-r.etcd)
	return r
}

// burstRow runs b runs() times and formats a table row of medians.
func burstRow(t *testing.T, label string, b burst, n int) string {
	t.Helper()
	var rs []demoRun
	for i := range n {
		rs = append(rs, runLogged(t, label, b, i, n))
	}
	return formatBurstRow(label, b, rs)
}

// runLogged runs the demo once, as run i of n of label, and logs it.
func runLogged(t *testing.T, label string, b burst, i, n int) demoRun {
	t.Helper()
	r := runDemo(t, b)
	etcd := ""
	if b.etcd != nil {
		etcd = fmt.Sprintf(", etcd cpu %.1fs", r.etcd)
	}
	t.Logf("%s run %d/%d: all up %.2fs (ratio %.3f), provision p50/p99 %d/%d ms, job start p50/p99 %d/%d ms, wall %.2fs, instances created %d, cpu %.1fs%s, others %.1fs",
		label, i+1, n, r.rep.AllUpSeconds, r.rep.RatioToBound, r.rep.ProvisionP50MS, r.rep.ProvisionP99MS,
		r.rep.JobStartP50MS, r.rep.JobStartP99MS, r.rep.WallSeconds, r.rep.InstancesCreated, r.cpu, etcd, r.others)
	return r
}

// formatBurstRow formats the medians of b's runs rs as a table row.
func formatBurstRow(label string, b burst, rs []demoRun) string {
	var allUp, ratio, provP50, provP99, startP50, startP99, wall, cpu, others []float64
	for _, r := range rs {
		allUp = append(allUp, r.rep.AllUpSeconds)
		ratio = append(ratio, r.rep.RatioToBound)
		provP50 = append(provP50, float64(r.rep.ProvisionP50MS)/1000)
		provP99 = append(provP99, float64(r.rep.ProvisionP99MS)/1000)
		startP50 = append(startP50, float64(r.rep.JobStartP50MS)/1000)
		startP99 = append(startP99, float64(r.rep.JobStartP99MS)/1000)
		wall = append(wall, r.rep.WallSeconds)
		cpu = append(cpu, r.cpu)
		others = append(others, r.others)
	}
	bound := demo.Bound(b.jobs, b.concurrency, b.latency).Seconds()
	up, r := spread(allUp, "%.2f"), spread(ratio, "%.3f")
	if median(allUp) == 0 { // a warm pool: the instances were up before the jobs
		up, r = "— (up before the jobs)", "—"
	}
	return fmt.Sprintf("| %s | %s | %d | %s | %.1f | %s | %.2f / %.2f | %.2f / %.2f | %.1f | %.1f | %.1f |\n",
		label, b.mode, len(rs), up, bound, r,
		median(provP50), median(provP99), median(startP50), median(startP99), median(wall), median(cpu), median(others))
}

const burstHeader = `| configuration | plugin mode | runs | all up (s), median (range) | bound (s) | ratio to bound | provision p50 / p99 (s) | job start p50 / p99 (s) | wall (s) | CPU, ours (s) | CPU, others (s) |
|---|---|---|---|---|---|---|---|---|---|---|
`

// P1: a burst of 500 jobs over 10 targets; all instances up against the
// bound ceil(N/C)·L, swept over the provisioning concurrency C and the
// plugin latency L. BENCH_P1_SWEEP=full runs every pair of the grid
// instead of the usual rows.
func TestP1Burst(t *testing.T) {
	base := burst{jobs: 500, targets: 10, concurrency: 64, maxRunners: 100,
		latency: time.Second, jobDuration: 2 * time.Second, mode: demo.PluginModeInProcess}
	type cfg struct {
		label string
		b     burst
		runs  int
	}
	with := func(f func(*burst)) burst { b := base; f(&b); return b }
	// The headline configuration gets more runs than the sweep, unless
	// BENCH_RUNS says otherwise.
	headline, sweep := runs(), runs()
	if os.Getenv("BENCH_RUNS") == "" && !quick() {
		headline, sweep = 5, 2
	}
	cfgs := []cfg{{"C=64 L=1s", base, headline}}
	switch {
	case os.Getenv("BENCH_P1_SWEEP") == "full":
		// Issue 15's whole grid: C in {8, 32, 64, 128} x L in {200ms, 1s,
		// 3s}, BENCH_RUNS each (3 by default); about 25 minutes here.
		cfgs = cfgs[:0]
		for _, l := range []time.Duration{200 * time.Millisecond, time.Second, 3 * time.Second} {
			for _, c := range []int{8, 32, 64, 128} {
				cfgs = append(cfgs, cfg{fmt.Sprintf("C=%d L=%s", c, l), with(func(b *burst) { b.concurrency, b.latency = c, l }), runs()})
			}
		}
	case !quick():
		for _, c := range []int{8, 32, 128} {
			cfgs = append(cfgs, cfg{fmt.Sprintf("C=%d L=1s", c), with(func(b *burst) { b.concurrency = c }), sweep})
		}
		for _, l := range []time.Duration{200 * time.Millisecond, 3 * time.Second} {
			cfgs = append(cfgs, cfg{fmt.Sprintf("C=64 L=%s", l), with(func(b *burst) { b.latency = l }), sweep})
		}
		// The whole path once: 500 setup scripts under bash, 500 runner
		// processes.
		cfgs = append(cfgs, cfg{"C=64 L=1s", with(func(b *burst) { b.mode = demo.PluginModeScript }), 1})
	}
	var rows strings.Builder
	for _, c := range cfgs {
		rows.WriteString(burstRow(t, c.label, c.b, c.runs))
	}
	report(t, "\n### P1 burst: %d jobs over %d targets, jobs of %s, --max-runners %d, --plugin-pool-size default (2 x C)\n\n%s%s",
		base.jobs, base.targets, base.jobDuration, base.maxRunners, burstHeader, rows.String())
}

// P1 on etcd (issue 15): the headline point, C=64 L=1s, with the demo's
// state in one real etcd server process on loopback (internal/etcdtest;
// each demo makes up a prefix of its own and deletes it after), next to
// the same point on a bbolt file. The runs alternate, bbolt then etcd, so
// that both rows see the same load on a shared machine. The etcd server's
// CPU is counted apart from ours and from the others'.
func TestP1BurstEtcd(t *testing.T) {
	bolt := burst{jobs: 500, targets: 10, concurrency: 64, maxRunners: 100,
		latency: time.Second, jobDuration: 2 * time.Second, mode: demo.PluginModeInProcess}
	onEtcd := bolt
	onEtcd.etcd = etcdtest.Start(t)
	n := runs()
	var rb, re []demoRun
	for i := range n {
		rb = append(rb, runLogged(t, "bbolt", bolt, i, n))
		re = append(re, runLogged(t, "etcd", onEtcd, i, n))
	}
	etcdCPU := make([]float64, len(re))
	for i, r := range re {
		etcdCPU[i] = r.etcd
	}
	report(t, "\n### P1 on etcd: %d jobs over %d targets, C=%d L=%s, jobs of %s, --max-runners %d; the state in a bbolt file or in etcd (one server on loopback)\n\n%s%s%s\nCPU of the etcd server during the etcd runs (s), median (range): %s\n",
		bolt.jobs, bolt.targets, bolt.concurrency, bolt.latency, bolt.jobDuration, bolt.maxRunners, burstHeader,
		formatBurstRow("C=64 L=1s, bbolt", bolt, rb), formatBurstRow("C=64 L=1s, etcd", onEtcd, re), spread(etcdCPU, "%.1f"))
}

// P2: a warm pool (--min-runners at least the burst per target): jobs
// start on idle runners, not after an AddInstance.
func TestP2WarmPool(t *testing.T) {
	warm := burst{jobs: 100, targets: 10, concurrency: 64, maxRunners: 20, minRunners: 10,
		latency: time.Second, jobDuration: 2 * time.Second, mode: demo.PluginModeInProcess}
	var rows strings.Builder
	rows.WriteString(burstRow(t, "warm: --min-runners 10", warm, runs()))
	if !quick() {
		cold := warm
		cold.minRunners = 0
		rows.WriteString(burstRow(t, "cold: --min-runners 0", cold, runs()))
	}
	report(t, "\n### P2 warm pool: %d jobs over %d targets (%d per target), --plugin-latency %s, --max-runners %d\n\n%s%s",
		warm.jobs, warm.targets, warm.jobs/warm.targets, warm.latency, warm.maxRunners, burstHeader, rows.String())
}

//go:build bench

package bench

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// P4: 200 targets (BENCH_P4_TARGETS), idle, their long-polls held open by
// the sim (50s, as GitHub does): the RSS and CPU of the run process, per
// target, the REST calls it makes, and the RSS of its warm plugin
// processes.
//
// Knobs: BENCH_P4_WINDOW, the measured window (a duration; 2m, 30s
// quick); BENCH_P4_BINARY, a binary to run in place of the one built
// from ./cmd/shoes-scaleset, such as internal/bench/cmd/profdemo (with
// BENCH_CPUPROFILE_DIR, its processes write their profiles there).
func TestP4Footprint(t *testing.T) {
	targets := 200
	if n, err := strconv.Atoi(os.Getenv("BENCH_P4_TARGETS")); err == nil && n > 0 {
		targets = n
	}
	window, sampleEvery := 2*time.Minute, 5*time.Second
	if quick() {
		window = 30 * time.Second
	}
	if w := os.Getenv("BENCH_P4_WINDOW"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d <= 0 {
			t.Fatalf("BENCH_P4_WINDOW=%q: want a positive duration", w)
		}
		window = d
	}
	binary := binary
	if b := os.Getenv("BENCH_P4_BINARY"); b != "" {
		binary = b
	}
	dir := t.TempDir()
	sim := scenariotest.StartSim(t, binary, dir, scenariotest.SimOptions{Targets: scenario.Scopes("idle-org-", targets), PollHold: 50 * time.Second, LogLevel: "error"})
	f := scenariotest.NewFiles(t, dir)
	plugin := scenariotest.PluginWrapper(t, binary, dir)
	started := time.Now()
	run := scenariotest.StartRun(t, binary, filepath.Join(dir, "run.log"), f.PluginEnv(), scenariotest.RunArgs{
		Peers: sim.Peers(), Plugin: plugin, StateFile: f.StateFile,
		Flags: []string{"--poll-hold", "50s", "--log-level", "warn", "--runner-base-directory", filepath.Join(dir, "runners")}})
	// Checked every 100ms: the state of 200 scale sets is not free, and
	// the sim shares the cores with run.
	if !testkit.PollEvery(3*time.Minute, 100*time.Millisecond, func() (bool, string) {
		return scenario.Sessions(sim.State()) == targets, ""
	}) {
		t.Fatalf("not listening on %d targets after 3m:\n%s", targets, run.Tail(30))
	}
	ready := time.Since(started)
	startupCPU, err := processCPU(run.Pid())
	if err != nil {
		t.Fatal(err)
	}
	// Let the start settle (first polls, GC) before the window.
	time.Sleep(5 * time.Second)

	cpu0, err := processCPU(run.Pid())
	if err != nil {
		t.Fatal(err)
	}
	calls0 := sim.State().Calls
	t0 := time.Now()
	var rss []float64
	rssAt1m := -1.0
	for time.Since(t0) < window {
		b, err := processRSS(run.Pid())
		if err != nil {
			t.Fatalf("run exited: %v\n%s", err, run.Tail(30))
		}
		rss = append(rss, float64(b)/(1<<20))
		if rssAt1m < 0 && time.Since(t0) >= time.Minute {
			rssAt1m = rss[len(rss)-1]
		}
		time.Sleep(min(sampleEvery, window-time.Since(t0)))
	}
	cpu1, err := processCPU(run.Pid())
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(t0).Seconds()
	cpu := cpu1 - cpu0
	last := rss[len(rss)-1]
	calls1 := sim.State().Calls
	polls := calls1["GET /_broker/{id}/{sid}/messages"]
	at1m := "— (window under 1 min)"
	if rssAt1m >= 0 {
		at1m = fmt.Sprintf("%.1f MiB", rssAt1m)
	}
	pluginRSS, plugins := childrenRSS(run.Pid())
	runtimeFigures := goRuntime(t, run, targets)
	run.Terminate(60 * time.Second)

	report(t, "\n### P4 footprint: %d idle targets, long-polls held 50s by the sim (sim serve + run, no jobs)\n\n"+
		"| figure | value |\n|---|---|\n"+
		"| start → listening on every target | %.1f s (CPU %.1f s) |\n"+
		"| window | %.0f s, RSS sampled every %s |\n"+
		"| RSS of run (VmRSS) 1 min into the window | %s |\n"+
		"| RSS of run (VmRSS), last / max | %.1f / %.1f MiB |\n"+
		"| RSS per target | %.0f KiB |\n"+
		"| CPU of run in the window (utime+stime) | %.2f s = %.2f%% of one core |\n"+
		"| CPU per target | %.2f ms/s |\n"+
		"| message polls received by the sim (whole run) | %d |\n"+
		"| warm plugin processes (children of run), RSS in all | %d, %.1f MiB |\n"+
		"| requests to the fake GitHub in the window, per target per minute | %s |\n"+
		"| Go runtime of run at the end (its /metrics) | %s |\n",
		targets, ready.Seconds(), startupCPU, elapsed, sampleEvery, at1m, last, maxOf(rss), last*1024/float64(targets),
		cpu, 100*cpu/elapsed, 1000*cpu/elapsed/float64(targets), polls, plugins, float64(pluginRSS)/(1<<20),
		callsPerTarget(calls0, calls1, targets, elapsed/60), runtimeFigures)
}

// goRuntime reads where run's memory goes from its /metrics: goroutines,
// their stacks, and the heap in use (live objects and the garbage not yet
// collected), with the stacks per target.
func goRuntime(t *testing.T, run *scenariotest.Run, targets int) string {
	t.Helper()
	code, body, err := run.Get("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	value := func(name string) float64 {
		for line := range strings.Lines(string(body)) {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					t.Fatalf("/metrics: %s: %v", name, err)
				}
				return f
			}
		}
		t.Fatalf("/metrics: no %s", name)
		return 0
	}
	stacks := value("go_memstats_stack_inuse_bytes")
	return fmt.Sprintf("%.0f goroutines, stacks %.1f MiB (%.1f KiB per target), heap in use %.1f MiB",
		value("go_goroutines"), stacks/(1<<20), stacks/1024/float64(targets), value("go_memstats_heap_inuse_bytes")/(1<<20))
}

// callsPerTarget formats the requests the fake GitHub received between
// two snapshots of its call counts, by route, per target per minute; the
// harness's own calls (/_sim/...) are left out.
func callsPerTarget(before, after map[string]int, targets int, minutes float64) string {
	var parts []string
	total := 0
	for _, route := range slices.Sorted(maps.Keys(after)) {
		n := after[route] - before[route]
		if n <= 0 || strings.Contains(route, " /_sim/") {
			continue
		}
		total += n
		parts = append(parts, fmt.Sprintf("`%s` %.2f", route, float64(n)/float64(targets)/minutes))
	}
	return fmt.Sprintf("%.2f in all: %s", float64(total)/float64(targets)/minutes, strings.Join(parts, ", "))
}

func maxOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

//go:build bench

package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// P4: 200 targets (BENCH_P4_TARGETS), idle, their long-polls held open by
// the sim (50s, as GitHub does): the RSS and CPU of the run process, per
// target, and the RSS of its warm plugin processes.
func TestP4Footprint(t *testing.T) {
	targets := 200
	if n, err := strconv.Atoi(os.Getenv("BENCH_P4_TARGETS")); err == nil && n > 0 {
		targets = n
	}
	window, sampleEvery := 2*time.Minute, 5*time.Second
	if quick() {
		window = 30 * time.Second
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
	t0 := time.Now()
	var rss []float64
	for time.Since(t0) < window {
		b, err := processRSS(run.Pid())
		if err != nil {
			t.Fatalf("run exited: %v\n%s", err, run.Tail(30))
		}
		rss = append(rss, float64(b)/(1<<20))
		time.Sleep(min(sampleEvery, window-time.Since(t0)))
	}
	cpu1, err := processCPU(run.Pid())
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(t0).Seconds()
	cpu := cpu1 - cpu0
	last := rss[len(rss)-1]
	polls := sim.State().Calls["GET /_broker/{id}/{sid}/messages"]
	pluginRSS, plugins := childrenRSS(run.Pid())
	run.Terminate(60 * time.Second)

	report(t, "\n### P4 footprint: %d idle targets, long-polls held 50s by the sim (sim serve + run, no jobs)\n\n"+
		"| figure | value |\n|---|---|\n"+
		"| start → listening on every target | %.1f s (CPU %.1f s) |\n"+
		"| window | %.0f s, RSS sampled every %s |\n"+
		"| RSS of run (VmRSS), last / max | %.1f / %.1f MiB |\n"+
		"| RSS per target | %.0f KiB |\n"+
		"| CPU of run in the window (utime+stime) | %.2f s = %.2f%% of one core |\n"+
		"| CPU per target | %.2f ms/s |\n"+
		"| message polls received by the sim (whole run) | %d |\n"+
		"| warm plugin processes (children of run), RSS in all | %d, %.1f MiB |\n",
		targets, ready.Seconds(), startupCPU, elapsed, sampleEvery, last, maxOf(rss), last*1024/float64(targets),
		cpu, 100*cpu/elapsed, 1000*cpu/elapsed/float64(targets), polls, plugins, float64(pluginRSS)/(1<<20))
}

func maxOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/demo"
	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// P1 floor (issue 15): how close to the bound the P1 burst can get on this
// machine with these fakes, whatever the controller. A minimal driver does
// only what every runner needs: a JIT config from the fake GitHub, a setup
// script, an AddInstance through the warm plugin pool. It has no store, no
// listener, no jobs and no scheduling. JIT configs are asked for ahead, C
// at a time, as our prepare stage does, and C AddInstance calls are in
// flight at once. The fakes are the demo's: the fake GitHub in this
// process, the fake plugin as C warm processes in inprocess mode, its
// instances on tmpfs when there is one. Its runners connect and wait; no
// job is queued, so they take none. The floor is a lower bound on all up:
// a controller does all of this and more.
func TestP1Floor(t *testing.T) {
	type point struct {
		c int
		l time.Duration
	}
	points := []point{{64, 200 * time.Millisecond}, {128, 200 * time.Millisecond}, {64, time.Second}}
	if quick() {
		points = points[:1]
	}
	const jobs, targets = 500, 10
	modes := []struct {
		label string
		ahead bool
	}{{"prepared during the burst", false}, {"prepared ahead", true}}
	var rows strings.Builder
	for _, p := range points {
		bound := demo.Bound(jobs, p.c, p.l).Seconds()
		ratios, ups, firsts := make([][]float64, len(modes)), make([][]float64, len(modes)), make([][]float64, len(modes))
		// The two modes alternate, so that both see the same load.
		for i := range runs() {
			for m, mode := range modes {
				f := runFloor(t, jobs, targets, p.c, p.l, mode.ahead)
				up := f.allUp.Seconds()
				ratios[m], ups[m], firsts[m] = append(ratios[m], up/bound), append(ups[m], up), append(firsts[m], f.firstAdd.Seconds()*1000)
				t.Logf("floor C=%d L=%s, %s, run %d/%d: all up %.3fs, ratio %.3f, first AddInstance sent after %.0f ms",
					p.c, p.l, mode.label, i+1, runs(), up, up/bound, f.firstAdd.Seconds()*1000)
			}
		}
		for m, mode := range modes {
			rows.WriteString(fmt.Sprintf("| C=%d L=%s | %s | %d | %s | %.1f | %s | %s |\n", p.c, p.l, mode.label, len(ratios[m]),
				spread(ups[m], "%.3f"), bound, spread(ratios[m], "%.3f"), spread(firsts[m], "%.0f")))
		}
	}
	report(t, "\n### P1 floor: %d runners over %d scale sets, JIT config and AddInstance only (no store, no listener, no jobs)\n\n"+
		"| configuration | JIT configs and scripts | runs | all up (s), median (range) | bound (s) | ratio to bound | first AddInstance sent (ms) |\n|---|---|---|---|---|---|---|\n%s",
		jobs, targets, rows.String())
}

type floorRun struct {
	allUp, firstAdd time.Duration
}

// runFloor provisions n runners over targets fake scale sets with the
// minimal driver and returns the time until the n-th AddInstance returned.
// With ahead, every JIT config and script is ready before the clock
// starts: only the AddInstance calls are timed.
func runFloor(t *testing.T, n, targets, c int, latency time.Duration, ahead bool) floorRun {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	scopes := make([]string, targets)
	for i := range scopes {
		scopes[i] = fmt.Sprintf("floor-org-%02d/repo", i)
	}
	const token = "ghp_floor"
	w, err := sim.Start(sim.Config{Listen: "127.0.0.1:0", Targets: scopes, Tokens: []string{token}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	gh, err := github.New(github.Config{URL: w.GitHubURL(), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, targets)
	for i, scope := range scopes {
		set, _, err := gh.GetOrCreateScaleSet(ctx, scope, "Default", "floor", []string{"floor"})
		if err != nil {
			t.Fatalf("scale set of %s: %v", scope, err)
		}
		ids[i] = set.ID
	}

	instances := t.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "shoes-scaleset-floor-"); err == nil {
			instances = d
			defer os.RemoveAll(d)
		}
	}
	host, err := shoes.New(ctx, shoes.Config{Path: binary, Args: []string{"sim", "plugin"}, PoolSize: 2 * c, WarmProcesses: c,
		Env: []string{
			shoesfake.EnvLatency + "=" + latency.String(),
			shoesfake.EnvRunnerMode + "=" + shoesfake.RunnerModeInProcess,
			shoesfake.EnvStateDir + "=" + instances,
			shoesfake.EnvCallLog + "=" + filepath.Join(t.TempDir(), "calls.jsonl"),
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	host.Warm()
	testkit.WaitFor(t, "the warm plugin pool", 2*time.Minute, func() (bool, string) {
		n := host.PoolStats().Processes
		return n >= c, fmt.Sprintf("%d of %d plugin processes warm", n, c)
	})
	script, err := runnerscript.New("")
	if err != nil {
		t.Fatal(err)
	}

	type ready struct{ name, script string }
	// Prepared during the burst, a runner waits with its prepare slot
	// until an AddInstance takes it, as in the controller; prepared
	// ahead, every runner is ready before the clock starts.
	queue := make(chan ready, c)
	if ahead {
		queue = make(chan ready, n)
	}
	errs := make(chan error, 2*n)
	var firstAdd sync.Once
	var first time.Duration
	var prep, add sync.WaitGroup
	prepSlots := make(chan struct{}, c)
	start := time.Now()
	for i := range n {
		prep.Go(func() {
			prepSlots <- struct{}{}
			defer func() { <-prepSlots }()
			k := i % targets
			name := fmt.Sprintf("myshoes-%08d-0000-4000-8000-000000000000", i) // the fake plugin wants myshoes-<uuid>
			jit, err := gh.GenerateJITConfig(ctx, scopes[k], ids[k], name, "_work")
			if err != nil {
				errs <- err
				return
			}
			s, err := script.Render(runnerscript.Values{RunnerName: name, JITConfig: jit.EncodedJITConfig, RunnerVersion: "2.330.0", Scope: scopes[k], Labels: []string{"floor"}})
			if err != nil {
				errs <- err
				return
			}
			queue <- ready{name, s}
		})
	}
	if ahead {
		prep.Wait()
		start = time.Now()
	}
	var last time.Time
	var mu sync.Mutex
	for range c {
		add.Go(func() {
			for r := range queue {
				_, err := host.AddInstance(ctx, shoes.AddInstanceRequest{RunnerName: r.name, SetupScript: r.script, Labels: []string{"floor"},
					BeforeSend: func() error {
						firstAdd.Do(func() { first = time.Since(start) })
						return nil
					}})
				if err != nil {
					errs <- fmt.Errorf("AddInstance %s: %w", r.name, err)
					continue
				}
				mu.Lock()
				last = time.Now()
				mu.Unlock()
			}
		})
	}
	prep.Wait()
	close(queue)
	add.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) > 0 {
		t.Fatalf("%d of %d runners failed; first: %v", len(all), n, all[0])
	}
	up := last.Sub(start)
	// Leave nothing running: the runners wait on the fake GitHub, which
	// stops with the World.
	list, err := shoesfake.ListInstances(instances)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Errorf("%d instances, want %d", len(list), n)
	}
	shoesfake.KillAll(instances)
	return floorRun{allUp: up, firstAdd: first}
}

//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// P1 floor (issue 15): how close to the bound the P1 burst can get on this
// machine with these fakes. A minimal driver takes the controller's place
// and does only what every runner needs: a JIT config from the fake GitHub,
// a setup script, an AddInstance through the warm plugin pool. It has no
// listener, no jobs and no scheduling. JIT configs are asked for C at a
// time, ahead of the calls, as our prepare stage does, and C AddInstance
// calls are in flight at once. The fakes are the demo's: the fake GitHub
// in this process, the fake plugin as C warm processes in inprocess mode,
// its instances on tmpfs when there is one. Its runners connect and wait;
// no job is queued, so they take none.
//
// Three modes, run in turn:
//   - prepared during the burst: as above, with no store;
//   - prepared ahead: every JIT config and script is ready before the
//     clock starts, so only the AddInstance calls are timed;
//   - during the burst, stored: as the first, plus the writes our
//     crash-safety rule asks for, in a bbolt file next to the test's
//     other files as the demo's state file is (floorOptions).
//
// The first two are a lower bound for any controller on this machine; the
// third for any that writes its state before each call.
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
		opts  floorOptions
	}{
		{"prepared during the burst", floorOptions{}},
		{"prepared ahead", floorOptions{ahead: true}},
		{"during the burst, stored", floorOptions{stored: true}},
	}
	var rows strings.Builder
	for _, p := range points {
		bound := demo.Bound(jobs, p.c, p.l).Seconds()
		results := make([][]floorRun, len(modes))
		// The modes alternate, so that all see the same load.
		for i := range runs() {
			for m, mode := range modes {
				f := runFloor(t, jobs, targets, p.c, p.l, mode.opts)
				results[m] = append(results[m], f)
				t.Logf("floor C=%d L=%s, %s, run %d/%d: all up %.3fs, ratio %.3f, first AddInstance sent after %.0f ms%s",
					p.c, p.l, mode.label, i+1, runs(), f.allUp.Seconds(), f.allUp.Seconds()/bound, f.firstAdd.Seconds()*1000, f.writes())
			}
		}
		for m, mode := range modes {
			rows.WriteString(floorRow(fmt.Sprintf("C=%d L=%s", p.c, p.l), mode.label, bound, results[m]))
		}
	}
	report(t, "\n### P1 floor: %d runners over %d scale sets, JIT config and AddInstance only (no listener, no jobs)\n\n"+
		"| configuration | mode | runs | all up (s), median (range) | bound (s) | ratio to bound | first AddInstance sent (ms) | configured write p50 / p90 (ms), median |\n|---|---|---|---|---|---|---|---|\n%s",
		jobs, targets, rows.String())
}

// floorRow formats the medians of one mode's runs as a table row.
func floorRow(config, mode string, bound float64, rs []floorRun) string {
	var ups, ratios, firsts, p50s, p90s []float64
	for _, f := range rs {
		up := f.allUp.Seconds()
		ups, ratios, firsts = append(ups, up), append(ratios, up/bound), append(firsts, f.firstAdd.Seconds()*1000)
		if len(f.configured) > 0 {
			p50, p90 := f.writeQuantiles()
			p50s, p90s = append(p50s, p50), append(p90s, p90)
		}
	}
	writes := "—"
	if len(p50s) > 0 {
		writes = fmt.Sprintf("%.1f / %.1f", median(p50s), median(p90s))
	}
	return fmt.Sprintf("| %s | %s | %d | %s | %.1f | %s | %s | %s |\n", config, mode, len(rs),
		spread(ups, "%.3f"), bound, spread(ratios, "%.3f"), spread(firsts, "%.0f"), writes)
}

type floorRun struct {
	allUp, firstAdd time.Duration
	// configured are the durations of the configured writes, with stored.
	configured []time.Duration
}

// writeQuantiles returns the p50 and p90 of the configured writes, in ms.
func (f floorRun) writeQuantiles() (p50, p90 float64) {
	d := slices.Sorted(slices.Values(f.configured))
	ms := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))].Microseconds()) / 1000 }
	return ms(0.5), ms(0.9)
}

// writes describes the configured writes for a log line ("" without).
func (f floorRun) writes() string {
	if len(f.configured) == 0 {
		return ""
	}
	p50, p90 := f.writeQuantiles()
	return fmt.Sprintf(", configured write p50 %.1f ms, p90 %.1f ms", p50, p90)
}

// floorOptions are runFloor's modes. With ahead, every JIT config and
// script is ready before the clock starts: only the AddInstance calls are
// timed. With stored, the driver keeps the records our crash-safety rule
// asks for in a bbolt state file: the runners pending, in one commit, when
// the clock starts; each configured before its AddInstance is sent, and
// idle, with its cloud ID, once it returns.
type floorOptions struct {
	ahead, stored bool
}

// runFloor provisions n runners over targets fake scale sets with the
// minimal driver and returns the time until the n-th AddInstance returned.
func runFloor(t *testing.T, n, targets, c int, latency time.Duration, o floorOptions) floorRun {
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

	instances := demo.MemoryDir() // the demo's place for the fake's instances
	if instances == "" {
		instances = t.TempDir()
	} else {
		defer os.RemoveAll(instances)
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

	var st *store.Store
	if o.stored {
		if st, err = store.Open(store.Options{Path: filepath.Join(t.TempDir(), "state.db")}); err != nil {
			t.Fatal(err)
		}
		defer st.Close()
	}
	runnerName := func(i int) string {
		return fmt.Sprintf("myshoes-%08d-0000-4000-8000-000000000000", i) // the fake plugin wants myshoes-<uuid>
	}

	type ready struct{ name, script string }
	// Prepared during the burst, a runner holds its prepare slot until an
	// AddInstance takes it, as in the controller: at most C are ready
	// ahead. Prepared ahead, every runner is ready before the clock starts.
	queue := make(chan ready)
	if o.ahead {
		queue = make(chan ready, n)
	}
	errs := make(chan error, 2*n)
	var firstAdd sync.Once
	var first time.Duration
	var prep, add, idle sync.WaitGroup
	prepSlots := make(chan struct{}, c)
	start := time.Now()
	if st != nil {
		rs := make([]store.Runner, n)
		for i := range rs {
			k := i % targets
			rs[i] = store.Runner{Name: runnerName(i), TargetID: scopes[k], Scope: scopes[k], ScaleSetID: ids[k]}
		}
		if err := st.CreateRunners(rs); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		prep.Go(func() {
			prepSlots <- struct{}{}
			defer func() { <-prepSlots }()
			k := i % targets
			name := runnerName(i)
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
	if o.ahead {
		prep.Wait()
		start = time.Now()
	}
	var last time.Time
	var configured []time.Duration
	var mu sync.Mutex
	for range c {
		add.Go(func() {
			for r := range queue {
				inst, err := host.AddInstance(ctx, shoes.AddInstanceRequest{RunnerName: r.name, SetupScript: r.script, Labels: []string{"floor"},
					BeforeSend: func() error {
						firstAdd.Do(func() { first = time.Since(start) })
						if st == nil {
							return nil
						}
						t0 := time.Now()
						_, err := st.SetRunnerState(r.name, store.StateConfigured, nil)
						mu.Lock()
						configured = append(configured, time.Since(t0))
						mu.Unlock()
						return err
					}})
				if err != nil {
					errs <- fmt.Errorf("AddInstance %s: %w", r.name, err)
					continue
				}
				mu.Lock()
				last = time.Now()
				mu.Unlock()
				if st != nil {
					// Off the refill's path, as in the controller: the
					// next AddInstance does not wait for this write.
					idle.Go(func() {
						if _, err := st.SetRunnerState(r.name, store.StateIdle, func(rr *store.Runner) { rr.CloudID = inst.CloudID }); err != nil {
							errs <- fmt.Errorf("store %s idle: %w", r.name, err)
						}
					})
				}
			}
		})
	}
	prep.Wait()
	close(queue)
	add.Wait()
	idle.Wait()
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
	return floorRun{allUp: up, firstAdd: first, configured: configured}
}

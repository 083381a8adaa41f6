//go:build reliability

package reliability

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
)

// TestSoak: 1,000 jobs over 10 targets with faults at a low rate (503s on
// generatejitconfig and the broker, 2 % of plugin calls failing) and
// three SIGKILLs at random points; every invariant holds at the end.
func TestSoak(t *testing.T) {
	res := newResult(t, 17, "soak: 1,000 jobs, 10 targets, faults, 3 kills",
		"1,000 jobs over 10 targets; a few % of generatejitconfig and broker calls answer 5xx, 2 % of plugin calls fail; 3 SIGKILLs at random points: all invariants; once with opaque cloud IDs, once with a name-keyed plugin (0 unknown-instance left)")
	forEachPluginKind(t, res, soak)
}

func soak(t *testing.T, res *Result, cloudIDs string) {
	var scopes []string
	for i := range 8 {
		scopes = append(scopes, fmt.Sprintf("org-%02d", i+1))
	}
	scopes = append(scopes, "owner-x/repo-1", "owner-y/repo-2")
	s := newScenario(t, res, scenariotest.SimOptions{Targets: scopes})
	s.usePlugin(cloudIDs)
	s.pluginEnv = append(s.pluginEnv, "SIM_PLUGIN_LATENCY=200ms", "SIM_PLUGIN_FAIL_RATE=0.02")
	s.flags = append(s.flags, "--max-runners", "20", "--provision-concurrency", "16", "--plugin-pool-size", "16")
	start := time.Now()
	d := s.startListening(scopes)

	// Faults at a low rate: a driver adds one-shot faults at random.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(7, 11))
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var f actionsfake.Fault
			switch r := rng.IntN(100); {
			case r < 12:
				f = actionsfake.Fault{Match: "POST .*/generatejitconfig$", Status: 503, Times: 1}
			case r < 24:
				f = actionsfake.Fault{Match: "GET /_broker/", Status: 502, Times: 1}
			default:
				continue
			}
			_ = s.sim.Client.AddFault(f) // a miss only lowers the rate, which is reported
		}
	})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	const total = 1000
	for i := range total / 50 {
		for j := range 50 {
			s.sim.QueueJobs(scopes[(i*50+j)%len(scopes)], 1, 500*time.Millisecond)
		}
	}
	rng := rand.New(rand.NewPCG(3, 5))
	for k, frac := range []float64{0.2 + rng.Float64()*0.1, 0.45 + rng.Float64()*0.1, 0.7 + rng.Float64()*0.1} {
		want := int(frac * total)
		scenariotest.WaitFor(t, fmt.Sprintf("%d jobs completed", want), 10*time.Minute, func() (bool, string) {
			d.Alive()
			c := scenario.JobCounts(s.sim.State())
			return c["completed"] >= want, fmt.Sprint(c)
		})
		d.Kill9()
		d = s.restartAfterKill(fmt.Sprintf("%d (after %d jobs)", k+1, want), scopes)
	}
	s.waitJobsDone(d, 10*time.Minute)
	close(stop)
	wg.Wait()
	iv := s.settle(d, 5*time.Minute, s.invariantOptions())
	res.figure("%s cloud IDs: %d unknown-instance records left, %d instances behind them, %d leaked", cloudIDs, iv.UnknownRecords, iv.UnknownOwned, iv.Leaked)
	if iv.Completed != total {
		t.Errorf("%d of %d jobs completed", iv.Completed, total)
	}

	st := s.sim.State()
	hits := map[string]int{}
	for _, f := range st.Faults {
		hits[f.Match] += f.Hits
	}
	jitCalls := st.Calls["POST /_actions/_apis/runtime/runnerscalesets/{id}/generatejitconfig"]
	polls := st.Calls["GET /_broker/{id}/{sid}/messages"]
	calls := s.calls()
	pluginFails := 0
	for _, c := range calls {
		if c.Code == "Internal" {
			pluginFails++
		}
	}
	pct := func(a, b int) float64 {
		if b == 0 {
			return 0
		}
		return 100 * float64(a) / float64(b)
	}
	res.figure("%s cloud IDs: %d jobs in %s; 503 on generatejitconfig: %d of %d calls (%.1f %%); 502 on the broker: %d of %d polls (%.1f %%); plugin failures: %d of %d calls (%.1f %%)",
		cloudIDs, total, time.Since(start).Round(time.Second),
		hits["POST .*/generatejitconfig$"], jitCalls, pct(hits["POST .*/generatejitconfig$"], jitCalls),
		hits["GET /_broker/"], polls, pct(hits["GET /_broker/"], polls),
		pluginFails, len(calls), pct(pluginFails, len(calls)))
	if hits["POST .*/generatejitconfig$"] == 0 || hits["GET /_broker/"] == 0 || pluginFails == 0 {
		t.Errorf("a fault never hit: %v, plugin failures %d", hits, pluginFails)
	}
}

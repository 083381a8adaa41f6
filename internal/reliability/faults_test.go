//go:build reliability

package reliability

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/myshoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
)

// TestGitHubFaults: 5xx bursts on generatejitconfig, the sessions
// endpoint and the broker; a 401 storm from short-lived queue tokens;
// acquirejobs failing in GHES mode. Every job completes.
func TestGitHubFaults(t *testing.T) {
	res := newResult(t, 9, "GitHub 5xx bursts and 401 storm",
		"bursts of 503 on generatejitconfig, session creation and the broker; queue tokens living 2s (--token-ttl 2s): every job completes, no violation")
	t.Run("5xx bursts", func(t *testing.T) {
		scopes := []string{"org-a", "org-b"}
		s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes}, pluginKnobs("SIM_PLUGIN_LATENCY=200ms"))
		bursts := []actionsfake.Fault{
			{Match: "POST .*/generatejitconfig$", Status: 503, Times: 12},
			{Match: "GET /_broker/", Status: 502, Times: 8},
		}
		for i, f := range bursts {
			s.sim.AddFault(f)
			for _, sc := range scopes {
				s.sim.QueueJobs(sc, 4, 500*time.Millisecond)
			}
			s.waitJobsDone(d, 3*time.Minute)
			hits := 0
			for _, fs := range s.sim.State().Faults {
				if fs.Match == f.Match {
					hits = fs.Hits
				}
			}
			if hits == 0 {
				t.Errorf("burst %d (%s) never hit", i, f.Match)
			}
			res.figure("%d × %d on %s: all jobs completed", hits, f.Status, f.Match)
			s.sim.ClearFaults()
		}
		// A session burst needs a new session: make one by failing polls
		// past the retries (a 404 ends the session at once).
		s.sim.AddFault(actionsfake.Fault{Match: "GET /_broker/", Status: 404, Times: 2})
		sessions := "POST .*/runnerscalesets/[0-9]+/sessions$"
		s.sim.AddFault(actionsfake.Fault{Match: sessions, Status: 500, Times: 6})
		before := time.Now()
		s.waitListening(d, before, scopes, time.Minute)
		for _, fs := range s.sim.State().Faults {
			if fs.Match == sessions {
				if fs.Hits != 6 {
					t.Errorf("the session creation burst hit %d times, want 6", fs.Hits)
				}
				res.figure("%d × 500 on %s: new sessions opened", fs.Hits, sessions)
			}
		}
		for _, sc := range scopes {
			s.sim.QueueJobs(sc, 4, 500*time.Millisecond)
		}
		s.settle(d, 3*time.Minute, scenario.Options{})
	})
	t.Run("401 storm", func(t *testing.T) {
		scopes := []string{"org-a", "org-b"}
		s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes, TokenTTL: 2 * time.Second}, pluginKnobs("SIM_PLUGIN_LATENCY=200ms"))
		for range 5 {
			for _, sc := range scopes {
				s.sim.QueueJobs(sc, 3, 2*time.Second)
			}
			s.waitJobsDone(d, 3*time.Minute)
		}
		st := s.sim.State()
		refreshes := 0
		for k, v := range st.Calls {
			if k == "PATCH /_actions/_apis/runtime/runnerscalesets/{id}/sessions/{sid}" {
				refreshes += v
			}
		}
		if refreshes == 0 {
			t.Errorf("no session refresh: the 401 storm did not happen")
		}
		res.figure("401 storm: %d session refreshes over %d jobs", refreshes, len(st.Jobs))
		s.settle(d, 3*time.Minute, scenario.Options{})
	})
}

// TestSessionConflict: a session held by another owner for 30s: the
// daemon keeps retrying with capped backoff, does not exit, and takes
// over once the session is released.
func TestSessionConflict(t *testing.T) {
	res := newResult(t, 10, "409: session held by another owner for 30s",
		"another owner holds org-a's session for 30s: run keeps retrying with capped backoff (no storm, no exit), serves org-b meanwhile, and takes over when released")
	scopes := []string{"org-a", "org-b"}
	s := newScenario(t, res, scenariotest.SimOptions{Targets: scopes})
	other := s.holdSession("org-a", "another-host")
	d := s.startListening([]string{"org-b"})
	s.sim.QueueJobs("org-a", 3, time.Second)
	s.sim.QueueJobs("org-b", 3, time.Second)
	held := 30 * time.Second
	time.Sleep(held - time.Since(d.Started)) // the other owner holds the session this long
	d.Alive()
	c := scenario.Conflicts(s.sim.State())
	if c < 3 || c > 12 {
		t.Errorf("%d session conflicts (409) in %v, want between 3 and 12 (capped exponential backoff from 200ms)", c, held)
	}
	other.release()
	released := time.Now()
	took := s.waitListening(d, released, []string{"org-a"}, 2*time.Minute)
	res.figure("%d 409s while held for %v; took over %.1fs after the release (retries back off from --retry-backoff 200ms, doubling)", c, held, took.Seconds())
	s.settle(d, 3*time.Minute, scenario.Options{})
}

// TestAcquireJobsFailing: GHES mode, acquirejobs failing for a while:
// the message is not acknowledged, the session is replaced, and the jobs
// are acquired once the endpoint answers again.
func TestAcquireJobsFailing(t *testing.T) {
	res := newResult(t, 11, "GHES: acquirejobs failing",
		"--acquire (GHES mode), POST acquirejobs answering 503 (10 times): jobs acquired once it recovers, all complete, no violation")
	scopes := []string{"org-a", "org-b"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes, Acquire: true})
	s.sim.AddFault(actionsfake.Fault{Match: "POST .*/acquirejobs$", Status: 503, Times: 10})
	for _, sc := range scopes {
		s.sim.QueueJobs(sc, 5, time.Second)
	}
	iv := s.settle(d, 3*time.Minute, scenario.Options{})
	hits := 0
	for _, f := range s.sim.State().Faults {
		hits += f.Hits
	}
	if hits != 10 {
		t.Errorf("the acquirejobs fault hit %d times, want 10", hits)
	}
	res.figure("10 × 503 on acquirejobs; %d of %d jobs completed", iv.Completed, iv.Jobs)
}

// TestMyshoesFaults: myshoes down for 2 minutes, answering 500, a
// truncated body, and null: the listeners keep working (jobs queued
// meanwhile complete); null means no targets, so the listeners stop, and
// come back with the list.
func TestMyshoesFaults(t *testing.T) {
	res := newResult(t, 12, "myshoes down, 500, truncated, null",
		"myshoes down 2 min, then 500, a truncated body: listeners keep working and jobs complete; null (no targets): listeners stop, and come back with the list")
	scopes := []string{"org-a", "org-b"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes}, pluginKnobs("SIM_PLUGIN_LATENCY=200ms"))
	sessionsOf := func() map[string]string {
		out := map[string]string{}
		for _, ss := range s.sim.State().ScaleSets {
			if ss.Session != nil {
				out[ss.Scope] = ss.Session.ID
			}
		}
		return out
	}
	for _, f := range []struct {
		name  string
		fault myshoesfake.Fault
		hold  time.Duration
	}{
		{"down", myshoesfake.Fault{Down: true}, 2 * time.Minute},
		{"500", myshoesfake.Fault{Status: 500}, 15 * time.Second},
		{"truncated", myshoesfake.Fault{Truncate: true}, 15 * time.Second},
	} {
		before := sessionsOf()
		s.sim.MyshoesFault(f.fault)
		start := time.Now()
		// Jobs queued while myshoes misbehaves complete.
		for _, sc := range scopes {
			s.sim.QueueJobs(sc, 3, time.Second)
		}
		s.waitJobsDone(d, 2*time.Minute)
		time.Sleep(f.hold - time.Since(start)) // myshoes stays broken this long
		d.Alive()
		if after := sessionsOf(); !maps.Equal(before, after) {
			t.Errorf("myshoes %s: the sessions changed from %v to %v; the listeners should have kept running", f.name, before, after)
		}
		for _, sc := range scopes {
			s.sim.QueueJobs(sc, 2, 500*time.Millisecond)
		}
		s.waitJobsDone(d, 2*time.Minute)
		_, body, _ := d.Get("/metrics")
		syncErrors, _ := sum(parseMetrics(t, string(body)), "shoes_scaleset_target_sync_errors_total", nil)
		s.sim.MyshoesFault(myshoesfake.Fault{})
		res.figure("myshoes %s for %v: listeners kept their sessions, all jobs completed; target_sync_errors_total %v", f.name, f.hold, syncErrors)
	}

	// null: no targets. The listeners stop; jobs wait; the list comes back.
	s.sim.MyshoesFault(myshoesfake.Fault{Null: true})
	scenariotest.WaitFor(t, "every session closed (no targets)", time.Minute, func() (bool, string) {
		d.Alive()
		return len(sessionsOf()) == 0, fmt.Sprint(sessionsOf())
	})
	for _, sc := range scopes {
		s.sim.QueueJobs(sc, 2, time.Second)
	}
	s.sim.MyshoesFault(myshoesfake.Fault{})
	back := time.Now()
	took := s.waitListening(d, back, scopes, time.Minute)
	res.figure("myshoes null: listeners stopped; back %.1fs after the list returned", took.Seconds())
	s.settle(d, 3*time.Minute, scenario.Options{})
}

// TestTargetChurn: targets added and removed every few seconds during a
// burst. Jobs of a target that is listed at the end complete; runners of
// removed targets are cleaned up; nothing leaks.
func TestTargetChurn(t *testing.T) {
	res := newResult(t, 13, "target churn",
		"5 scopes, targets added and removed every 2-4s for 60s during a 60-job burst; all listed at the end: every job completes, nothing leaks")
	all := []string{"org-a", "org-b", "org-c", "org-d", "owner-e/repo-e"}
	s := newScenario(t, res, scenariotest.SimOptions{Targets: all})
	s.pluginEnv = []string{"SIM_PLUGIN_LATENCY=300ms"}
	ids := map[string]string{}
	for _, tg := range s.sim.Targets() {
		ids[tg.Scope] = tg.ID
	}
	d := s.startListening(all)
	for i := range 60 {
		s.sim.QueueJobs(all[i%len(all)], 1, 2*time.Second)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	end := time.Now().Add(60 * time.Second)
	changes := 0
	for time.Now().Before(end) {
		var listed []scenario.Target
		for _, sc := range all {
			if rng.IntN(3) > 0 { // each listed with probability 2/3
				listed = append(listed, scenario.Target{ID: ids[sc], Scope: sc, ResourceType: "small", Status: "active"})
			}
		}
		s.sim.SetTargets(listed)
		changes++
		time.Sleep(time.Duration(2000+rng.IntN(2000)) * time.Millisecond) // the churn period
		d.Alive()
		if changes%5 == 0 {
			s.sim.QueueJobs(all[rng.IntN(len(all))], 2, time.Second)
		}
	}
	var listed []scenario.Target
	for _, sc := range all {
		listed = append(listed, scenario.Target{ID: ids[sc], Scope: sc, ResourceType: "small", Status: "active"})
	}
	s.sim.SetTargets(listed)
	s.waitListening(d, d.Started, all, time.Minute)
	iv := s.settle(d, 5*time.Minute, scenario.Options{})
	res.figure("%d target list changes; %d jobs, %d completed, %d canceled by the fake", changes, iv.Jobs, iv.Completed, iv.Canceled)
}

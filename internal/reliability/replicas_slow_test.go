//go:build reliability

package reliability

// The slower scenarios of replicas sharing the targets through etcd
// (issue 13): a partition of one replica and its heal, etcd down for less
// and for more than the TTL, a start race and churn, and a lease expiring
// while an AddInstance is in flight. They use the cluster harness of
// replicas_test.go.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// sessionIDs returns the IDs of the sim sessions replica id holds, by scope.
func (c *cluster) sessionIDs(id string) map[string]string {
	out := map[string]string{}
	for _, ss := range c.sim.State().ScaleSets {
		if ss.Session != nil && ss.Session.Owner == id {
			out[ss.Scope] = ss.Session.ID
		}
	}
	return out
}

// conflictsBySet returns the sim's 409 session conflicts by scope.
func (c *cluster) conflictsBySet() map[string]int {
	out := map[string]int{}
	for _, ss := range c.sim.State().ScaleSets {
		out[ss.Scope] += ss.Conflicts
	}
	return out
}

// sessionsCreated sums the sessions the sim ever created.
func sessionsCreated(st actionsfake.State) int {
	n := 0
	for _, ss := range st.ScaleSets {
		n += ss.SessionsCreated
	}
	return n
}

// countLog counts the lines of a replica's log containing s.
func countLog(d *daemon, s string) int {
	return strings.Count(d.Log(), s)
}

// logLine is a line of a replica's log and its time.
type logLine struct {
	at   time.Time
	line string
}

// logLines returns the lines of a replica's log containing s, with their
// time (the text handler's time= field).
func logLines(d *daemon, s string) []logLine {
	var out []logLine
	for line := range strings.Lines(d.Log()) {
		if !strings.Contains(line, s) {
			continue
		}
		f, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if at, err := time.Parse(time.RFC3339Nano, f); err == nil {
			out = append(out, logLine{at: at, line: strings.TrimSpace(line)})
		}
	}
	return out
}

// moves counts the changes of owner in a sequence of samples of one
// scope's owner; an empty sample (no session for a moment) is no owner,
// not a move.
func moves(samples []string) int {
	n, last := 0, ""
	for _, o := range samples {
		if o == "" {
			continue
		}
		if last != "" && o != last {
			n++
		}
		last = o
	}
	return n
}

// waitJobDone waits until a job of scopes queued after since has
// completed.
func (c *cluster) waitJobDone(what string, scopes []string, since time.Time, timeout time.Duration) {
	c.t.Helper()
	scenariotest.WaitFor(c.t, what, timeout, func() (bool, string) {
		st := c.sim.State()
		for _, j := range st.Jobs {
			if slices.Contains(scopes, j.Scope) && j.QueuedAt.After(since) && j.State == "completed" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("jobs %v\n%s", scenario.JobCounts(st), scenario.SummarizeScaleSets(st))
	})
}

// noUnknownInstance fails the test for unknown-instance records, or
// instances behind them, left by a scenario in which no process was
// killed: every AddInstance's outcome reached the replica that made it.
func noUnknownInstance(t *testing.T, iv scenario.Invariants) {
	t.Helper()
	if iv.UnknownRecords > 0 || iv.UnknownOwned > 0 {
		t.Errorf("%d unknown-instance records and %d instances behind them left, with no process killed: the instances of AddInstance calls whose target moved were not recorded for their new owner", iv.UnknownRecords, iv.UnknownOwned)
	}
}

// queueInBackground queues one job of duration every interval,
// round-robin over scopes, until the returned stop is called; stop
// returns how many were queued and fails the test on a queueing error.
func (c *cluster) queueInBackground(scopes []string, interval, duration time.Duration) (stop func() int) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var n int
	var qerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if err := scenario.QueueRoundRobin(c.sim.Client, scopes[i%len(scopes):i%len(scopes)+1], 1, duration); err != nil {
				qerr = err
				return
			}
			n++
		}
	}()
	return func() int {
		close(done)
		wg.Wait()
		if qerr != nil {
			c.t.Fatalf("queue jobs: %v", qerr)
		}
		return n
	}
}

// TestReplicasPartitionHeal: one of 3 replicas is cut off from etcd
// while jobs run. Its targets move to the others within TTL + 2s; it
// stops acting on them by its safe deadline (no session of it is left,
// none of its old sessions is polled past cut + TTL); after the heal it
// joins again with a new lease and, once the join delay has passed, gets
// its share back: each target moves back once, no flapping.
func TestReplicasPartitionHeal(t *testing.T) {
	res := newResult(t, 42, "replicas: partition of one replica from etcd, then heal (issue 13)",
		"3 replicas on etcd (TTL 3s, join delay 3s), 6 targets, jobs running; one replica's etcd proxy cut: its targets on the others within TTL + 2s, none of its sessions polled past cut + TTL; heal: it joins again with a new lease and gets its share back after the join delay, each target moving back once; all jobs complete, 0 duplicates, 0 leaks")
	const joinDelay = 3 * time.Second
	scopes := []string{"org-a", "org-b", "org-c", "org-d", "org-e", "org-f"}
	c := newCluster(t, res, scopes)
	ids := []string{"r1", "r2", "r3"}
	// Every replica gets the same join delay: each judges the members'
	// eligibility with its own flag, so a delay on the cut replica alone
	// would leave its targets unserved (released by the others, not yet
	// claimed by it) for the delay.
	for _, id := range ids {
		c.startWith(id, "--replica-join-delay", joinDelay.String())
	}
	for _, id := range ids {
		c.replicas[id].d.WaitUp()
	}
	want := c.assignment(ids)
	c.waitOwners("the rendezvous assignment among "+strings.Join(ids, ", "), want, ids, time.Minute)

	victim := c.busiest(ids)
	moved := c.scopesOf(victim)
	rest := others(ids, victim)
	oldSessions := c.sessionIDs(victim)
	c.queueUntilBusyOn(24, 4*time.Second, moved)

	// The partition.
	cutAt := time.Now()
	c.replicas[victim].proxy.Cut()
	took := c.waitServed(moved, rest, time.Minute).Sub(cutAt)
	res.addRecovery(took)
	t.Logf("%s cut off from etcd; its targets %v on %v %v after the cut", victim, moved, rest, took)
	if took > replicaTTL+2*time.Second {
		t.Errorf("the cut replica's targets were served again %v after the cut, want within TTL + 2s = %v", took, replicaTTL+2*time.Second)
	}
	// When each new owner opened its session: a DELETE of an old session
	// until then is the new owner's (it deletes the dead owner's session).
	taken := map[string]time.Time{}
	for _, ss := range c.sim.State().ScaleSets {
		if slices.Contains(moved, ss.Scope) && ss.Session != nil {
			taken[ss.Scope] = ss.Session.CreatedAt
		}
	}
	// Hold the partition past two TTLs: the cut replica holds no session
	// once its safe deadline (at most cut + TTL) has passed, and stays up.
	deadline := cutAt.Add(replicaTTL)
	holdUntil := cutAt.Add(2*replicaTTL + time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	for now := time.Now(); now.Before(holdUntil); now = <-tick.C {
		c.replicas[victim].d.Alive()
		if held := c.sessionIDs(victim); now.After(deadline) && len(held) > 0 {
			t.Errorf("%v after the cut (TTL %v), the cut replica %s still holds sessions %v", now.Sub(cutAt), replicaTTL, victim, held)
			break
		}
	}
	tick.Stop()
	if st := c.sim.State(); len(st.Violations) > 0 {
		t.Errorf("protocol violations during the partition: %+v", st.Violations)
	}
	// /readyz is per replica: the cut one says why it serves nothing.
	if code, body, err := c.replicas[victim].d.Get("/readyz"); err != nil || code != http.StatusServiceUnavailable || !strings.Contains(string(body), "safe deadline") {
		t.Errorf("/readyz of the cut replica: %d %v %q, want 503 naming its safe deadline", code, err, body)
	}
	for _, id := range rest {
		if code, body, err := c.replicas[id].d.Get("/readyz"); err != nil || code != http.StatusOK {
			t.Errorf("/readyz of %s, which reaches etcd: %d %v %q, want 200", id, code, err, body)
		}
	}

	// The heal: it joins again with a new lease, and gets its share back
	// only after the join delay. Each target moves back once.
	healAt := time.Now()
	c.replicas[victim].proxy.Heal()
	samples := map[string][]string{}
	firstBack := time.Time{}
	tick = time.NewTicker(200 * time.Millisecond)
	for now := time.Now(); now.Before(healAt.Add(10 * time.Second)); now = <-tick.C {
		for _, id := range ids {
			c.replicas[id].d.Alive()
		}
		st := c.sim.State()
		for _, sc := range scopes {
			owner := ""
			for _, ss := range st.ScaleSets {
				if ss.Scope == sc && ss.Session != nil {
					owner = ss.Session.Owner
					if owner == victim && (firstBack.IsZero() || ss.Session.CreatedAt.Before(firstBack)) {
						firstBack = ss.Session.CreatedAt
					}
				}
			}
			samples[sc] = append(samples[sc], owner)
		}
	}
	tick.Stop()
	if n := countLog(c.replicas[victim].d, "joined again with a new lease"); n != 1 {
		t.Errorf("the healed replica logged %q %d times, want 1\n%s", "joined again with a new lease", n, c.replicas[victim].d.Tail(40))
	}
	flapping := map[string]int{}
	for _, sc := range scopes {
		if n := moves(samples[sc]); n > 1 || (n == 1 && !slices.Contains(moved, sc)) {
			flapping[sc] = n
		}
	}
	if len(flapping) > 0 {
		t.Errorf("targets moved after the heal, by scope: %v; want one move back for each of %v and none else\nsamples: %v", flapping, moved, samples)
	}
	switch {
	case firstBack.IsZero():
		t.Errorf("the healed replica %s serves nothing 10s after the heal (join delay %v)", victim, joinDelay)
	case firstBack.Before(healAt.Add(joinDelay)):
		t.Errorf("the healed replica got a target back %v after the heal, before its join delay %v", firstBack.Sub(healAt), joinDelay)
	}
	c.waitOwners("the rendezvous assignment again", want, ids, 30*time.Second)
	back := firstBack.Sub(healAt)

	// The cut replica stopped acting on its targets by its safe deadline
	// (at most cut + TTL; 1s of slack for the stop to go round): its
	// workers stopped (its log), and no request on its old sessions
	// started past it, during the partition or after the heal (the sim's
	// journal), but the new owner's delete of the old session.
	slack := deadline.Add(time.Second)
	stops := map[string]time.Duration{}
	for _, l := range logLines(c.replicas[victim].d, `msg="stop target"`) {
		for _, sc := range moved {
			if _, seen := stops[sc]; !seen && l.at.After(cutAt) && strings.Contains(l.line+" ", " scope="+sc+" ") {
				stops[sc] = l.at.Sub(cutAt)
			}
		}
	}
	for _, sc := range moved {
		at, ok := stops[sc]
		switch {
		case !ok:
			t.Errorf("the cut replica %s never logged the stop of its worker of %s", victim, sc)
		case cutAt.Add(at).After(slack):
			t.Errorf("the cut replica %s stopped its worker of %s at cut+%v, past its safe deadline (at most cut + TTL = cut+%v; heal at cut+%v)",
				victim, sc, at.Round(time.Millisecond), replicaTTL, healAt.Sub(cutAt).Round(time.Millisecond))
		}
	}
	var late []string
	var lastReq time.Duration // the start of the last request on an old session, from the cut
	for _, q := range c.sim.Requests("") {
		for scope, sid := range oldSessions {
			if !strings.Contains(q.Path, sid) {
				continue
			}
			if q.Method == "DELETE" && strings.HasSuffix(q.Path, "/sessions/"+sid) && !q.Start.After(taken[scope]) {
				continue // the new owner deleting the dead owner's session
			}
			lastReq = max(lastReq, q.Start.Sub(cutAt))
			if q.Start.After(slack) {
				late = append(late, fmt.Sprintf("%s %s (%s) at cut+%v: %d", q.Method, q.Path, scope, q.Start.Sub(cutAt).Round(time.Millisecond), q.Status))
			}
		}
	}
	if len(late) > 0 {
		t.Errorf("the cut replica %s called GitHub on its old sessions past its safe deadline (cut + TTL = cut+%v; heal at cut+%v):\n%s",
			victim, replicaTTL, healAt.Sub(cutAt).Round(time.Millisecond), strings.Join(late, "\n"))
	}
	var stopTimes []string
	for _, sc := range moved {
		stopTimes = append(stopTimes, fmt.Sprintf("%s %.2fs", sc, stops[sc].Seconds()))
	}
	t.Logf("healed: %s serves %v again, first %v after the heal (join delay %v); its workers stopped at cut+ %v; its last request on its old sessions at cut+%v", victim, moved, back, joinDelay, stopTimes, lastReq)
	res.figure("%s cut off from etcd with %d of 6 targets (%s): polling on %v %.2fs after the cut (TTL %s); its workers stopped %s after the cut, its last request on its old sessions %.2fs after it; no session of it left",
		victim, len(moved), strings.Join(moved, ", "), rest, took.Seconds(), replicaTTL, strings.Join(stopTimes, ", "), lastReq.Seconds())
	res.figure("healed after %.1fs: joined again with a new lease, its targets back %.2fs after the heal (join delay %s), one move per target, none before", healAt.Sub(cutAt).Seconds(), back.Seconds(), joinDelay)

	if err := scenario.QueueRoundRobin(c.sim.Client, scopes, 6, time.Second); err != nil {
		t.Fatal(err)
	}
	noUnknownInstance(t, c.settle(victim, 3*time.Minute))
}

// TestReplicasEtcdDown: etcd is killed with SIGKILL and started again,
// once for less than the TTL and once for longer, while jobs longer than
// the outage run. No replica exits, every job completes, and after each
// restart every target is served again without restarting a replica.
func TestReplicasEtcdDown(t *testing.T) {
	res := newResult(t, 43, "replicas: etcd killed (kill -9) for 1s and for 8s (issue 13)",
		"3 replicas on etcd (TTL 3s), 6 targets, jobs longer than the outage; etcd killed with SIGKILL for ~1s, then for ~8s, and started again on its data: no replica exits, every target served again after each restart without restarting a replica, all jobs complete, 0 duplicates, 0 leaks")
	scopes := []string{"org-a", "org-b", "org-c", "org-d", "org-e", "org-f"}
	// Settled first: no target moves between the replicas while jobs run,
	// but for the outages.
	c, ids := startThree(t, res, scopes)

	for _, o := range []struct {
		name            string
		outage, jobLong time.Duration
	}{
		{"short", time.Second, 4 * time.Second},
		{"long", 8 * time.Second, 12 * time.Second},
	} {
		rejoinedBefore := 0
		for _, id := range ids {
			rejoinedBefore += countLog(c.replicas[id].d, "joined again with a new lease")
		}
		if err := scenario.QueueRoundRobin(c.sim.Client, scopes, 12, o.jobLong); err != nil {
			t.Fatal(err)
		}
		scenariotest.WaitFor(t, "busy runners on every target", time.Minute, func() (bool, string) {
			st := c.sim.State()
			for _, ss := range st.ScaleSets {
				if ss.Runners.Busy == 0 {
					return false, scenario.SummarizeScaleSets(st)
				}
			}
			return true, ""
		})
		opened := sessionsCreated(c.sim.State())
		killed := time.Now()
		c.etcd.Kill9()
		// Hold the outage (a fixed duration, not a wait for a condition),
		// checking the replicas stay up.
		tick := time.NewTicker(100 * time.Millisecond)
		for now := time.Now(); now.Before(killed.Add(o.outage)); now = <-tick.C {
			for _, id := range ids {
				c.replicas[id].d.Alive()
			}
		}
		tick.Stop()
		during := scenario.Sessions(c.sim.State())
		c.etcd.Restart()
		restarted := time.Now()
		down := restarted.Sub(killed)
		// Served again: every scope has a session of a live replica, with
		// no replica restarted (waitServed fails if one exited).
		last := c.waitServed(scopes, ids, time.Minute)
		served := max(last.Sub(restarted), 0)
		res.addRecovery(served)
		if o.outage > replicaTTL && during > 0 {
			t.Errorf("%d sessions still open at the end of an etcd outage of %v, longer than the TTL %v: the replicas should have stopped acting on their targets by their safe deadline", during, o.outage, replicaTTL)
		}
		c.sim.WaitJobsDone(nil, 3*time.Minute)
		// Still served once the jobs are done: a target dropped after the
		// restart would show here.
		c.waitServed(scopes, ids, 30*time.Second)
		reopened := sessionsCreated(c.sim.State()) - opened
		rejoined := -rejoinedBefore
		for _, id := range ids {
			rejoined += countLog(c.replicas[id].d, "joined again with a new lease")
		}
		t.Logf("%s outage: etcd down %v (killed, restarted); sessions open at its end %d; every target served %v after the restart; %d sessions opened again over the phase; %d replica(s) joined again with a new lease",
			o.name, down.Round(time.Millisecond), during, served.Round(time.Millisecond), reopened, rejoined)
		res.figure("etcd down %.1fs (%s outage, TTL %s): %d of 6 sessions open at the end of the outage; every target served %.2fs after the restart; %d sessions opened again; %d replica(s) joined again with a new lease; no replica exited",
			down.Seconds(), o.name, replicaTTL, during, served.Seconds(), reopened, rejoined)
	}
	c.replicas[ids[0]].d.WaitDrained(time.Minute)
	c.stopAll()
	noUnknownInstance(t, c.checkInvariants(scenario.Options{}))
}

// TestReplicasStartRaceAndChurn: 3 replicas started at once share the
// targets with no 409 loop; one is stopped with SIGTERM (its targets
// handed over) and started again with the same ID (its targets back at
// once with a join delay of 0s), jobs queued throughout; all complete.
func TestReplicasStartRaceAndChurn(t *testing.T) {
	res := newResult(t, 44, "replicas: start race of 3, then SIGTERM and restart of one (issue 13)",
		"3 replicas started at once on etcd, 6 targets: every target served, at most 1 session conflict (409) per target; SIGTERM of one (exit 0, hand-over) and start again with the same ID: its share back; jobs queued throughout, all complete, 0 duplicates, 0 leaks")
	scopes := []string{"org-a", "org-b", "org-c", "org-d", "org-e", "org-f"}
	c := newCluster(t, res, scopes)
	ids := []string{"r1", "r2", "r3"}
	startAt := time.Now()
	for _, id := range ids {
		c.start(id)
	}
	for _, id := range ids {
		c.replicas[id].d.WaitUp()
	}
	want := c.assignment(ids)
	c.waitOwners("the rendezvous assignment among "+strings.Join(ids, ", "), want, ids, time.Minute)
	settled := time.Since(startAt)
	st := c.sim.State()
	created := sessionsCreated(st)
	startConflicts := c.conflictsBySet()
	t.Logf("3 replicas started at once: settled on the rendezvous assignment %v after the start; %d sessions created for 6 targets; 409s by scope %v", settled, created, startConflicts)
	res.figure("3 replicas started at once: every target on its rendezvous owner %.2fs after the start, %d sessions created for 6 targets, %d session conflicts (409)", settled.Seconds(), created, scenario.Conflicts(st))

	// The replica to churn: the owner of the most targets.
	victim := c.busiest(ids)
	moved := c.scopesOf(victim)
	rest := others(ids, victim)

	stop := c.queueInBackground(scopes, 400*time.Millisecond, 2*time.Second)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	c.waitBusyOn("busy runners on the targets of "+victim, moved, 2)

	c.replicas[victim].d.Signal(syscall.SIGTERM)
	<-c.replicas[victim].d.Done()
	exited := time.Now()
	if code := c.replicas[victim].d.ExitCode(); code != 0 {
		t.Fatalf("replica %s exited %d after SIGTERM, want 0\n%s", victim, code, c.replicas[victim].d.Tail(30))
	}
	handOver := max(c.waitServed(moved, rest, 30*time.Second).Sub(exited), 0)
	res.addRecovery(handOver)
	c.waitJobDone("a job queued after the exit of "+victim+" done on its targets", moved, exited, time.Minute)

	restarted := time.Now()
	c.start(victim).d.WaitUp()
	c.waitOwners("the restarted replica's share back", want, ids, time.Minute)
	var back time.Duration
	for _, ss := range c.sim.State().ScaleSets {
		if ss.Session != nil && ss.Session.Owner == victim {
			back = max(back, ss.Session.CreatedAt.Sub(restarted))
		}
	}
	c.waitJobDone("a job queued after "+victim+" got its share back done on its targets", moved, time.Now(), time.Minute)
	t.Logf("%s stopped: %v handed over %v after its exit; started again: its share back %v after the start", victim, moved, handOver, back)

	queued := stop()
	stopped = true
	c.sim.WaitJobsDone(nil, 3*time.Minute)
	conflicts := c.conflictsBySet()
	var loops []string
	for sc, n := range conflicts {
		if n > 1 {
			loops = append(loops, fmt.Sprintf("%s: %d", sc, n))
		}
	}
	if len(loops) > 0 {
		t.Errorf("session conflicts (409) by scope over the start race and the churn, want at most 1 each: %s", strings.Join(loops, ", "))
	}
	res.figure("SIGTERM of %s (%s): served on %v %.2fs after its exit; started again with the same ID: its share back %.2fs after the start (join delay 0s); %d jobs queued throughout; %d session conflicts (409) in all",
		victim, strings.Join(moved, ", "), rest, handOver.Seconds(), back.Seconds(), queued, scenario.Conflicts(c.sim.State()))
	c.replicas[victim].d.WaitDrained(time.Minute)
	c.stopAll()
	noUnknownInstance(t, c.checkInvariants(scenario.Options{}))
}

// TestReplicasLeaseExpiryDuringAddInstance: a replica's AddInstance
// takes 6s (longer than the TTL); while it is in flight the replica is cut
// off from etcd, its lease expires and the other replica takes the
// target. The instance the slow AddInstance created must end up recorded
// (a record with its cloud ID) or deleted: not leaked, and not left
// behind an unknown-instance record.
func TestReplicasLeaseExpiryDuringAddInstance(t *testing.T) {
	res := newResult(t, 45, "replicas: lease expiry during an in-flight AddInstance (issue 13)",
		"2 replicas on etcd (TTL 3s), AddInstance taking 6s; the provisioning replica cut off from etcd while its AddInstance is in flight, so its lease expires and the other takes the target: the instance it created is recorded with its cloud ID or deleted, all jobs complete, 0 duplicates, 0 leaks")
	scopes := []string{"org-a", "org-b", "org-c", "org-d"}
	c := newCluster(t, res, scopes)
	c.pluginEnv = append(c.pluginEnv, "SIM_PLUGIN_LATENCY=6s")
	// A 6s AddInstance fits the add timeout; the other replica may treat
	// a configured record of the cut one as abandoned after this timeout
	// plus the TTL.
	c.flags = append(c.flags, "--plugin-add-timeout", "10s")
	ids := []string{"r1", "r2"}
	// A join delay of 2 minutes: the cut replica, joining again after the
	// heal, should not get the target back. (Every member of a cluster
	// younger than the delay is eligible, so it may; then it records the
	// instance as the owner again, and a record given up meanwhile goes to
	// deleting. Either way the instance is recorded or deleted.)
	for _, id := range ids {
		c.startWith(id, "--replica-join-delay", "2m")
	}
	for _, id := range ids {
		c.replicas[id].d.WaitUp()
	}
	c.waitOwners("the rendezvous assignment among "+strings.Join(ids, ", "), c.assignment(ids), ids, time.Minute)
	victim := c.busiest(ids)
	other := others(ids, victim)[0]
	moved := c.scopesOf(victim)
	scope := moved[0]
	c.sim.QueueJobs(scope, 1, 2*time.Second)

	// The AddInstance in flight: the record is configured (written right
	// before the call is sent) and the fake plugin made the instance's
	// directory (its work comes first, the latency after).
	var name string
	c.replicas[victim].d.WaitRecords("a configured runner of "+scope, time.Minute, func(rs []store.Runner) bool {
		for _, r := range rs {
			if r.Scope == scope && r.State == store.StateConfigured {
				name = r.Name
				return true
			}
		}
		return false
	})
	cutAt := time.Now()
	c.replicas[victim].proxy.Cut()
	took := c.waitServed(moved, []string{other}, time.Minute).Sub(cutAt)
	t.Logf("%s cut off with the AddInstance of %s in flight; %v served by %s %v after the cut", victim, name, moved, other, took)

	// The instance exists from the start of the call (the fake plugin's
	// work comes first, its latency after); the call answers 6s after it
	// was sent.
	var cloudID string
	scenariotest.WaitFor(t, "the instance of "+name, 30*time.Second, func() (bool, string) {
		for id, in := range c.instanceDirs() {
			if in.RunnerName == name {
				cloudID = id
				return true, ""
			}
		}
		return false, fmt.Sprint(c.instanceDirs())
	})
	code := ""
	scenariotest.WaitFor(t, "the AddInstance of "+name+" to answer", 30*time.Second, func() (bool, string) {
		for _, call := range c.calls() {
			if call.Method == "AddInstance" && call.RunnerName == name && !call.End.IsZero() {
				code = call.Code
				return true, ""
			}
		}
		return false, fmt.Sprint(c.instanceDirs())
	})
	answeredAfter := time.Since(cutAt)
	if took >= answeredAfter {
		t.Errorf("the target moved %v after the cut, after the AddInstance answered (%v): the scenario did not hold a lease expiry during the call", took, answeredAfter)
	}
	// Keep the partition past the answer, so the old owner's write of the
	// cloud ID cannot land while it is cut off, then heal: it is fenced.
	holdUntil := time.Now().Add(2 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	for now := time.Now(); now.Before(holdUntil); now = <-tick.C {
		c.replicas[victim].d.Alive()
	}
	tick.Stop()
	c.replicas[victim].proxy.Heal()

	c.sim.WaitJobsDone(nil, 2*time.Minute)
	c.replicas[other].d.WaitDrained(time.Minute)
	// Give the replicas time to resolve the slow runner's record: the
	// add timeout plus the TTL (the new owner's grace for a record another
	// replica may still be provisioning), and a DeleteInstance (6s). It
	// is resolved when the instance is deleted, or a live record (idle or
	// busy) holds its cloud ID; what is left after a minute is judged
	// below, once the replicas stopped.
	var seen []string // the record's states, as they changed
	testkit.PollEvery(time.Minute, 200*time.Millisecond, func() (bool, string) {
		rs, err := c.replicas[other].d.Runners()
		if err != nil {
			return false, err.Error()
		}
		state := "gone"
		var rec store.Runner
		for _, r := range rs {
			if r.Name == name {
				rec, state = r, string(r.State)
				if r.CloudID != "" {
					state += " with its cloud ID"
				}
			}
		}
		if len(seen) == 0 || seen[len(seen)-1] != state {
			seen = append(seen, state)
		}
		_, exists := c.instanceDirs()[cloudID]
		return !exists || (rec.CloudID == cloudID && (rec.State == store.StateIdle || rec.State == store.StateBusy)), ""
	})
	t.Logf("the record of %s after the AddInstance answered: %s", name, strings.Join(seen, " → "))
	// The old owner stops first: stopping the other first would hand the
	// target back to it.
	c.replicas[victim].d.Stop()
	c.stopAll()

	var recs []store.Runner
	out := runBinary(t, 30*time.Second, testkit.ChildEnv(), append([]string{"runners", "ls", "-o", "json", "--listen", "127.0.0.1:1"}, c.files().StoreFlags()...)...)
	if out.Code != 0 {
		t.Fatalf("runners ls:\n%s", out)
	}
	if err := json.Unmarshal([]byte(out.Stdout), &recs); err != nil {
		t.Fatalf("runners ls -o json: %v\n%s", err, out.Stdout)
	}
	_, exists := c.instanceDirs()[cloudID]
	var record *store.Runner
	for i := range recs {
		if recs[i].Name == name {
			record = &recs[i]
		}
	}
	outcome := ""
	switch {
	case !exists:
		outcome = "deleted"
	case record != nil && record.CloudID == cloudID:
		outcome = "recorded (" + string(record.State) + ")"
	case record != nil:
		b, _ := json.Marshal(record)
		t.Errorf("the instance %s of the slow AddInstance of %s exists, and its record does not hold its cloud ID: %s", cloudID, name, b)
		outcome = "left behind a " + string(record.State) + " record without its cloud ID"
	default:
		t.Errorf("the instance %s of the slow AddInstance of %s exists with no record of it", cloudID, name)
		outcome = "left with no record"
	}
	t.Logf("the slow AddInstance of %s (cloud ID %s) answered %s %v after the cut; its target moved %v after the cut; the instance: %s", name, cloudID, code, answeredAfter, took, outcome)
	res.figure("AddInstance of %s in flight on %s when cut off: %s served by %s %.2fs after the cut, the call answered %.2fs after it; its record then: %s; its instance %s",
		name, victim, scope, other, took.Seconds(), answeredAfter.Seconds(), strings.Join(seen, " → "), outcome)
	noUnknownInstance(t, c.checkInvariants(scenario.Options{}))
}

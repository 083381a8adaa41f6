package reliability

// Replicas sharing the targets through etcd (issue 13): run processes with
// --store etcd against one real etcd server, each through a TCP proxy that
// a scenario can cut.

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
)

// replicaTTL is the lease TTL of the replicas in these scenarios.
const replicaTTL = 3 * time.Second

// cluster is a world whose runs are replicas on one etcd.
type cluster struct {
	*world
	etcd     *etcdtest.Server
	replicas map[string]*replicaProc
	scopes   []string // every target of the sim
}

// replicaProc is one replica: its run process and its etcd proxy.
type replicaProc struct {
	id    string
	d     *daemon
	proxy *etcdtest.Proxy
}

// newCluster starts sim serve with scopes and a real etcd; no replica yet.
func newCluster(t *testing.T, res *Result, scopes []string) *cluster {
	t.Helper()
	w := newScenario(t, res, scenariotest.SimOptions{Targets: scopes})
	c := &cluster{world: w, etcd: etcdtest.Start(t), replicas: map[string]*replicaProc{}, scopes: scopes}
	w.etcdEndpoint, w.etcdPrefix = c.etcd.Endpoint(), "/cluster/"
	// A dead replica's unfinished records are undone after the add
	// timeout plus the TTL: short, so that a scenario sees them go (a
	// scenario's own c.flags come after, and win).
	w.flags = append(w.flags, "--plugin-add-timeout", "5s")
	return c
}

// start starts replica id (again), through a new proxy to etcd.
func (c *cluster) start(id string) *replicaProc { return c.startWith(id) }

// owners returns the replica whose session is open on each scope's scale
// set, by the sim.
func (c *cluster) owners() map[string]string { return c.sim.SessionOwners() }

// waitServed waits until every scope has a session owned by one of ids,
// every replica of ids alive, and returns when the last of those sessions
// was created.
func (c *cluster) waitServed(scopes, ids []string, timeout time.Duration) time.Time {
	c.t.Helper()
	return c.sim.WaitServed(scopes, ids, timeout, func() {
		for _, id := range ids {
			c.replicas[id].d.Alive()
		}
	})
}

// waitBalanced waits until every target is served by the replica of ids
// that rendezvous hashing gives it: the hand-overs after the starts are
// done.
func (c *cluster) waitBalanced(ids []string, timeout time.Duration) {
	c.t.Helper()
	c.waitOwners("every target on its replica among "+strings.Join(ids, ", "), c.assignment(ids), ids, timeout)
}

// startWith starts replica id (again) as start does, with extra run flags
// after the harness's (a flag given again wins: --replica-join-delay).
func (c *cluster) startWith(id string, extra ...string) *replicaProc {
	c.t.Helper()
	p := etcdtest.NewProxy(c.t, strings.TrimPrefix(c.etcd.Endpoint(), "http://"))
	args := append([]string{"--store", "etcd", "--etcd-endpoints", "http://" + p.Addr(), "--etcd-prefix", c.etcdPrefix,
		"--replica-id", id, "--replica-ttl", replicaTTL.String(), "--replica-join-delay", "0s",
		"--state-file", filepath.Join(c.dir, id, "state.db")}, extra...)
	r := &replicaProc{id: id, d: c.startRun(args...), proxy: p}
	c.replicas[id] = r
	return r
}

// assignment is where rendezvous hashing puts each scope among ids.
func (c *cluster) assignment(ids []string) map[string]string { return c.sim.Assignment(ids) }

// waitOwners waits until the sim's session owners are want, every
// replica of ids alive.
func (c *cluster) waitOwners(what string, want map[string]string, ids []string, timeout time.Duration) {
	c.t.Helper()
	scenariotest.WaitFor(c.t, what, timeout, func() (bool, string) {
		for _, id := range ids {
			c.replicas[id].d.Alive()
		}
		got := c.owners()
		return maps.Equal(got, want), fmt.Sprintf("owners %v, want %v\n%s", got, want, scenario.SummarizeScaleSets(c.sim.State()))
	})
}

// busyOn counts the busy runners of scopes, by the sim.
func (c *cluster) busyOn(scopes []string) int {
	n := 0
	for _, ss := range c.sim.State().ScaleSets {
		if slices.Contains(scopes, ss.Scope) {
			n += ss.Runners.Busy
		}
	}
	return n
}

// waitBusyOn waits until at least n runners are busy on scopes.
func (c *cluster) waitBusyOn(what string, scopes []string, n int) {
	c.t.Helper()
	scenariotest.WaitFor(c.t, what, time.Minute, func() (bool, string) {
		return c.busyOn(scopes) >= n, scenario.SummarizeScaleSets(c.sim.State())
	})
}

// queueUntilBusyOn queues jobs round robin over every scope, each lasting
// d, and waits until a runner is busy on one of scopes.
func (c *cluster) queueUntilBusyOn(jobs int, d time.Duration, scopes []string) {
	c.t.Helper()
	if err := scenario.QueueRoundRobin(c.sim.Client, c.scopes, jobs, d); err != nil {
		c.t.Fatal(err)
	}
	c.waitBusyOn("a busy runner on "+strings.Join(scopes, ", "), scopes, 1)
}

// others returns ids without id.
func others(ids []string, id string) []string {
	return slices.DeleteFunc(slices.Clone(ids), func(x string) bool { return x == id })
}

// scopesOf returns the scopes replica id serves.
func (c *cluster) scopesOf(id string) []string {
	var out []string
	for sc, owner := range c.owners() {
		if owner == id {
			out = append(out, sc)
		}
	}
	slices.Sort(out)
	return out
}

// checkReplicaMetrics checks the replicas' ownership gauges: the owned
// targets sum to targets and each replica's matches the sessions it
// holds, exactly one is the leader, and every one is inside its safe
// deadline; and each reports the runner counts of its own scale sets only.
func (c *cluster) checkReplicaMetrics(ids []string, targets int) {
	c.t.Helper()
	owned, leaders := 0.0, 0.0
	for _, id := range ids {
		code, body, err := c.replicas[id].d.Get("/metrics")
		if err != nil || code != 200 {
			c.t.Fatalf("GET /metrics of %s: %d %v", id, code, err)
		}
		sets := map[string]bool{}
		for _, sm := range parseMetrics(c.t, string(body)) {
			switch sm.name {
			case "shoes_scaleset_replica_owned_targets":
				owned += sm.value
				if n := len(c.scopesOf(id)); int(sm.value) != n {
					c.t.Errorf("%s reports %v owned targets, and holds the sessions of %d", id, sm.value, n)
				}
			case "shoes_scaleset_replica_leader":
				leaders += sm.value
			case "shoes_scaleset_replica_safe_seconds":
				if sm.value <= 0 || sm.value > replicaTTL.Seconds() {
					c.t.Errorf("%s: safe_seconds %v, want in (0, %v]", id, sm.value, replicaTTL.Seconds())
				}
			case "shoes_scaleset_runners":
				sets[sm.labels["scope"]] = true
			}
		}
		for sc := range sets {
			if !slices.Contains(c.scopesOf(id), sc) {
				c.t.Errorf("%s reports the runners of %s, which another replica owns", id, sc)
			}
		}
	}
	if int(owned) != targets || leaders != 1 {
		c.t.Errorf("over the replicas: %v owned targets (want %d), %v leaders (want 1)", owned, targets, leaders)
	}
}

// busiest returns the replica of ids that owns the most targets.
func (c *cluster) busiest(ids []string) string {
	victim, most := "", 0
	for _, id := range ids {
		if n := len(c.scopesOf(id)); n > most {
			victim, most = id, n
		}
	}
	return victim
}

// startThree starts the usual cluster for scopes: replicas r1, r2 and r3,
// one after the other, and waits until every target is served by the
// replica rendezvous hashing gives it.
func startThree(t *testing.T, res *Result, scopes []string) (*cluster, []string) {
	t.Helper()
	c := newCluster(t, res, scopes)
	ids := []string{"r1", "r2", "r3"}
	for _, id := range ids {
		c.start(id).d.WaitUp()
	}
	c.waitServed(scopes, ids, time.Minute)
	c.waitBalanced(ids, 30*time.Second)
	return c, ids
}

// settle waits until every job completed and every runner finished (read
// through replica via: the state is shared), stops every replica and
// checks the invariants.
func (c *cluster) settle(via string, timeout time.Duration) scenario.Invariants {
	c.t.Helper()
	c.sim.WaitJobsDone(nil, timeout)
	c.replicas[via].d.WaitDrained(time.Minute)
	c.stopAll()
	return c.checkInvariants(scenario.Options{})
}

// stopAll stops every live replica with SIGTERM (exit 0 required).
func (c *cluster) stopAll() {
	c.t.Helper()
	for _, r := range c.replicas {
		if !r.d.Exited() {
			r.d.Stop()
		}
	}
}

// TestReplicasKill9Failover: 3 replicas share 6 targets; the owner of the
// most targets is killed with SIGKILL mid-burst. Its targets are polling
// again on the other replicas within TTL + 2s, every job completes, and
// the invariants hold: nothing provisioned twice, nothing leaked.
func TestReplicasKill9Failover(t *testing.T) {
	res := newResult(t, 40, "replicas: kill -9 of an owner mid-burst (issue 13)",
		"3 replicas on etcd (TTL 3s), 6 targets, 30 jobs; SIGKILL of the replica owning the most targets with busy runners: its targets polling again on the others within TTL + 2s, all jobs complete, 0 duplicates, 0 leaks")
	scopes := []string{"org-a", "org-b", "org-c", "org-d", "org-e", "org-f"}
	c, ids := startThree(t, res, scopes)
	victim := c.busiest(ids)
	moved := c.scopesOf(victim)
	c.checkReplicaMetrics(ids, len(scopes))
	// scalesets ls on etcd shows every replica's targets with their owner.
	owners := c.owners()
	for _, ss := range scenariotest.ScaleSetsLsEtcd(t, binary, c.files()) {
		if ss.Owner != owners[ss.Scope] {
			t.Errorf("scalesets ls --store etcd: %s owned by %q, the sim's session is %q's", ss.Scope, ss.Owner, owners[ss.Scope])
		}
	}
	c.queueUntilBusyOn(30, 3*time.Second, moved)
	killed := time.Now()
	c.replicas[victim].d.Kill9()
	rest := others(ids, victim)
	took := c.waitServed(moved, rest, time.Minute).Sub(killed)
	res.addRecovery(took)
	t.Logf("%s owned %d targets; moved in %v", victim, len(moved), took)
	res.figure("%s owned %d of 6 targets (%s); polling again on %v %.2fs after its SIGKILL (TTL %s)", victim, len(moved), strings.Join(moved, ", "), rest, took.Seconds(), replicaTTL)
	if took > replicaTTL+2*time.Second {
		t.Errorf("the dead replica's targets were polling again %v after the kill, want within TTL + 2s = %v", took, replicaTTL+2*time.Second)
	}
	c.settle(rest[0], 3*time.Minute)
}

// TestReplicasSIGTERMHandOver: SIGTERM of an owner hands its targets over:
// it closes its sessions and leaves (revoking its lease), and another
// replica takes each target over in under 1s, with no 409.
func TestReplicasSIGTERMHandOver(t *testing.T) {
	res := newResult(t, 41, "replicas: SIGTERM of an owner (issue 13)",
		"3 replicas on etcd, 6 targets; SIGTERM of one: exit 0, its targets polling on the others in under 1s after it exited, no 409, jobs complete")
	scopes := []string{"org-a", "org-b", "org-c", "org-d", "org-e", "org-f"}
	c, ids := startThree(t, res, scopes)
	victim := ""
	for _, id := range ids {
		if len(c.scopesOf(id)) > 0 {
			victim = id
			break
		}
	}
	moved := c.scopesOf(victim)
	conflicts := scenario.Conflicts(c.sim.State())
	c.replicas[victim].d.Signal(syscall.SIGTERM)
	<-c.replicas[victim].d.Done()
	exited := time.Now()
	if code := c.replicas[victim].d.ExitCode(); code != 0 {
		t.Fatalf("replica %s exited %d after SIGTERM, want 0\n%s", victim, code, c.replicas[victim].d.Tail(30))
	}
	rest := others(ids, victim)
	took := c.waitServed(moved, rest, 30*time.Second).Sub(exited)
	res.addRecovery(max(took, 0))
	t.Logf("%s served %v; handed over in %v", victim, moved, took)
	res.figure("%s served %s; after its SIGTERM exit, polling on %v %.2fs later", victim, strings.Join(moved, ", "), rest, took.Seconds())
	if took > time.Second {
		t.Errorf("hand-over took %v after the exit, want under 1s", took)
	}
	if n := scenario.Conflicts(c.sim.State()) - conflicts; n != 0 {
		t.Errorf("%d session conflicts (409) during the hand-over, want 0", n)
	}
	if err := scenario.QueueRoundRobin(c.sim.Client, scopes, 6, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c.settle(rest[0], 2*time.Minute)
}

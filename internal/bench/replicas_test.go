//go:build bench

package bench

// The figures of replicas on etcd (issue 13): `run --store etcd`
// processes sharing the targets of one `sim serve` through one real etcd
// server (internal/etcdtest). Each replica connects to etcd directly (no
// proxy: nothing here cuts a replica off, and a proxy would take CPU from
// the two cores the figures measure).

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/demo"
	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// clusterPrefix is the replicas' --etcd-prefix.
const clusterPrefix = "/bench/"

// cluster is one `sim serve`, and `run` processes against it: replicas
// on one etcd server, or one run on a state file (etcd nil).
type cluster struct {
	t      *testing.T
	dir    string
	sim    *scenariotest.Sim
	etcd   *etcdtest.Server
	files  scenariotest.Files
	plugin string
	env    []string
	flags  []string
	runs   map[string]*scenariotest.Run
	order  []string // the IDs, in start order
}

// clusterOptions configure a cluster.
type clusterOptions struct {
	sim scenariotest.SimOptions
	// etcd: the runs are replicas with --store etcd.
	etcd bool
	// pluginEnv are SIM_PLUGIN_* knobs; flags are every run's flags.
	pluginEnv, flags []string
}

// newCluster starts sim serve (and etcd); no run yet. Everything is
// stopped when the test ends.
func newCluster(t *testing.T, o clusterOptions) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, runs: map[string]*scenariotest.Run{}}
	c.sim = scenariotest.StartSim(t, binary, dir, o.sim)
	c.files = scenariotest.NewFiles(t, dir)
	c.plugin = scenariotest.PluginWrapper(t, binary, dir)
	c.env = c.files.PluginEnv(o.pluginEnv...)
	c.flags = o.flags
	if o.etcd {
		c.etcd = etcdtest.Start(t)
		c.files.EtcdEndpoint, c.files.EtcdPrefix = c.etcd.Endpoint(), clusterPrefix
	}
	return c
}

// start starts run id: a replica with --store etcd, or the one run on
// the state file. Each replica has its own directory (its API token file
// is next to its --state-file, which holds no state with etcd).
func (c *cluster) start(id string, extra ...string) *scenariotest.Run {
	c.t.Helper()
	own := filepath.Join(c.dir, id)
	flags := append(slices.Clone(c.flags), "--runner-base-directory", filepath.Join(own, "runners"))
	stateFile := c.files.StateFile
	if c.etcd != nil {
		stateFile = filepath.Join(own, "state.db")
		flags = append(flags, "--store", "etcd", "--etcd-endpoints", c.etcd.Endpoint(), "--etcd-prefix", clusterPrefix,
			"--replica-id", id, "--replica-join-delay", "0s")
	}
	r := scenariotest.StartRun(c.t, binary, filepath.Join(c.dir, "run-"+id+".log"), c.env, scenariotest.RunArgs{
		Peers: c.sim.Peers(), Plugin: c.plugin, StateFile: stateFile, Flags: append(flags, extra...)})
	c.runs[id] = r
	c.order = append(c.order, id)
	return r
}

// startAll starts the runs ids and waits until each one's API answers.
func (c *cluster) startAll(ids []string, extra ...string) {
	c.t.Helper()
	for _, id := range ids {
		c.start(id, extra...)
	}
	for _, id := range ids {
		c.runs[id].WaitUp()
	}
}

// waitServed waits until every scope has an open session owned by one of
// ids (nil: by anyone), and returns when the last of those sessions was
// created. It fails the test if one of ids exited.
func (c *cluster) waitServed(scopes, ids []string, timeout time.Duration) time.Time {
	c.t.Helper()
	return c.sim.WaitServed(scopes, ids, timeout, func() {
		for _, id := range ids {
			c.runs[id].Alive()
		}
	})
}

// waitBalanced waits until every target is served by the replica of ids
// that rendezvous hashing gives it, so the hand-overs after the starts
// are over, and returns the scopes of each replica.
func (c *cluster) waitBalanced(ids []string, timeout time.Duration) map[string][]string {
	c.t.Helper()
	want := c.sim.Assignment(ids)
	testkit.WaitForEvery(c.t, fmt.Sprintf("every target on its replica among %v", ids), timeout, 100*time.Millisecond, func() (bool, string) {
		got, wrong := c.sim.SessionOwners(), 0
		for sc, id := range want {
			if got[sc] != id {
				wrong++
			}
		}
		return wrong == 0, fmt.Sprintf("%d of %d targets not (yet) on their replica", wrong, len(want))
	})
	by := map[string][]string{}
	for sc, id := range want {
		by[id] = append(by[id], sc)
	}
	for _, scs := range by {
		slices.Sort(scs)
	}
	return by
}

// stopAll sends SIGTERM to every live run at once and requires exit 0.
func (c *cluster) stopAll() {
	c.t.Helper()
	var live []*scenariotest.Run
	for _, id := range c.order {
		if r := c.runs[id]; !r.Exited() {
			r.Signal(syscall.SIGTERM)
			live = append(live, r)
		}
	}
	for _, r := range live {
		select {
		case <-r.Done():
		case <-time.After(45 * time.Second):
			c.t.Fatalf("run still running 45s after SIGTERM\n%s", r.Tail(40))
		}
		if code := r.ExitCode(); code != 0 {
			c.t.Errorf("run exited %d after SIGTERM\n%s", code, r.Tail(40))
		}
	}
}

// reader opens the state in etcd as a reader (no fencer, no writes).
func (c *cluster) reader() *store.Store {
	c.t.Helper()
	st, err := store.OpenEtcd(store.EtcdOptions{Client: c.etcd.Client(), Prefix: clusterPrefix + "state/", OwnerID: "bench-reader"})
	if err != nil {
		c.t.Fatal(err)
	}
	return st
}

// etcdPid is the pid of the cluster's etcd server: the testetcd process
// this test process started (one at a time: each run is a subtest, whose
// cleanup kills its server).
func (c *cluster) etcdPid() int {
	c.t.Helper()
	if c.etcd == nil {
		return 0
	}
	me := os.Getpid()
	var found []int
	forEachProc(func(pid int, comm string, ppid, _ int, _ []string) {
		if ppid == me && comm == "testetcd" {
			found = append(found, pid)
		}
	})
	if len(found) != 1 {
		c.t.Fatalf("want one testetcd child of the test, found %v", found)
	}
	return found[0]
}

// cpuOf is the CPU of the cluster's processes so far, in seconds: sim
// serve, each run with its plugin processes, and etcd.
func (c *cluster) cpuOf() (runs, sim, etcd float64) {
	c.t.Helper()
	var pids []int
	for _, id := range c.order {
		if r := c.runs[id]; !r.Exited() {
			pids = append(pids, r.Pid())
		}
	}
	runs = treeCPU(pids...)
	sim = treeCPU(c.sim.Pid())
	if pid := c.etcdPid(); pid != 0 {
		etcd = treeCPU(pid)
	}
	return runs, sim, etcd
}

// forEachProc calls fn with every process's pid, command name, parent,
// process group and the fields of /proc/<pid>/stat after the command
// (state first).
func forEachProc(fn func(pid int, comm string, ppid, pgrp int, fields []string)) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgrp, _ := strconv.Atoi(f[2])
		fn(pid, s[open+1:end], ppid, pgrp, f)
	}
}

// treeCPU is the user+system CPU of the processes roots and their
// descendants, with the children they reaped (cutime+cstime), in
// seconds. Descendants, not process groups: the plugin processes of run
// have process groups of their own.
func treeCPU(roots ...int) float64 {
	children := map[int][]int{}
	cpu := map[int]float64{}
	forEachProc(func(pid int, _ string, ppid, _ int, f []string) {
		children[ppid] = append(children[ppid], pid)
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseFloat(f[i], 64)
			cpu[pid] += v
		}
	})
	total := 0.0
	seen := map[int]bool{}
	todo := slices.Clone(roots)
	for len(todo) > 0 {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		total += cpu[pid]
		todo = append(todo, children[pid]...)
	}
	return total / clockTick
}

// watchDelete watches key and returns a channel that receives the time
// the test saw it deleted (a lease's keys go when it expires). The watch
// is in place when it returns.
func watchDelete(t *testing.T, c *clientv3.Client, key string) <-chan time.Time {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	wc := c.Watch(ctx, key, clientv3.WithCreatedNotify())
	select {
	case resp := <-wc:
		if !resp.Created {
			t.Fatalf("watch %s: %v", key, resp.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("watch %s: not created within 10s", key)
	}
	out := make(chan time.Time, 1)
	go func() {
		for resp := range wc {
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					out <- time.Now()
					return
				}
			}
		}
	}()
	return out
}

// etcdCounters reads the etcd server's request counters from its
// /metrics: ranges, txns, puts and deletes seen by the store
// (etcd_mvcc_*_total), and the gRPC calls handled by method
// ("grpc Range", "grpc Txn", "grpc LeaseKeepAlive", ...).
func (c *cluster) etcdCounters() map[string]float64 {
	c.t.Helper()
	resp, err := http.Get(c.etcd.Endpoint() + "/metrics")
	if err != nil {
		c.t.Fatalf("etcd metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("etcd metrics: %v", err)
	}
	out := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name, labels, _ := strings.Cut(series, "{"); name {
		case "etcd_mvcc_range_total", "etcd_mvcc_txn_total", "etcd_mvcc_put_total", "etcd_mvcc_delete_total":
			out[strings.TrimSuffix(strings.TrimPrefix(name, "etcd_mvcc_"), "_total")] += v
		case "grpc_server_handled_total", "grpc_server_msg_received_total":
			if name == "grpc_server_msg_received_total" && !strings.Contains(labels, `grpc_type="bidi_stream"`) {
				continue // streams (keep-alives, watches) count their messages; unary calls their answers
			}
			if name == "grpc_server_handled_total" && strings.Contains(labels, `grpc_type="bidi_stream"`) {
				continue
			}
			if _, m, ok := strings.Cut(labels, `grpc_method="`); ok {
				m, _, _ = strings.Cut(m, `"`)
				out["grpc "+m] += v
			}
		}
	}
	return out
}

// rates formats the counters that grew between a and b, per second of
// elapsed, the largest first.
func rates(a, b map[string]float64, elapsed float64) string {
	type kv struct {
		k string
		v float64
	}
	var d []kv
	for k, v := range b {
		if v > a[k] {
			d = append(d, kv{k, (v - a[k]) / elapsed})
		}
	}
	slices.SortFunc(d, func(x, y kv) int {
		if x.v != y.v {
			if x.v > y.v {
				return -1
			}
			return 1
		}
		return strings.Compare(x.k, y.k)
	})
	parts := make([]string, len(d))
	for i, e := range d {
		parts[i] = fmt.Sprintf("%s %.1f", e.k, e.v)
	}
	return strings.Join(parts, ", ")
}

// ---------------------------------------------------------------------------
// R1: failover after kill -9

// failoverTTL is the replicas' --replica-ttl in the failover figure.
const failoverTTL = 3 * time.Second

// failover is the outcome of one failover run.
type failover struct {
	victim          string
	moved           []string
	leaseGone, took time.Duration // from the kill
}

// runFailover: 3 replicas share 6 idle targets; the replica owning the
// most targets gets SIGKILL (its process group, as systemd does); the
// time until each of its targets has a session opened by another
// replica.
func runFailover(t *testing.T) failover {
	scopes := scenario.Scopes("fo-org-", 6)
	ids := []string{"r1", "r2", "r3"}
	c := newCluster(t, clusterOptions{
		sim:  scenariotest.SimOptions{Targets: scopes, PollHold: 50 * time.Second, LogLevel: "error"},
		etcd: true,
		// run's defaults otherwise (--sync-interval 30s): the others
		// learn of the death from etcd, not from a sync.
		flags: []string{"--poll-hold", "50s", "--log-level", "info", "--replica-ttl", failoverTTL.String()},
	})
	c.startAll(ids)
	c.waitServed(scopes, ids, time.Minute)
	by := c.waitBalanced(ids, time.Minute)
	var f failover
	for _, id := range ids {
		if len(by[id]) > len(f.moved) {
			f.victim, f.moved = id, by[id]
		}
	}
	rest := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == f.victim })
	gone := watchDelete(t, c.etcd.Client(), clusterPrefix+"members/"+f.victim)
	killed := time.Now()
	c.runs[f.victim].Kill9()
	f.took = c.waitServed(f.moved, rest, time.Minute).Sub(killed)
	select {
	case at := <-gone:
		f.leaseGone = at.Sub(killed)
	case <-time.After(10 * time.Second):
		t.Errorf("the victim's member key was not deleted 10s after its targets moved")
	}
	c.stopAll()
	return f
}

// TestReplicaFailover (R1): the time from a replica's SIGKILL until every
// target it owned has a new message session opened by another replica,
// against the bound TTL + 2s.
func TestReplicaFailover(t *testing.T) {
	n := runs()
	var took, gone, after []float64
	var raw []string
	for i := range n {
		t.Run(fmt.Sprintf("run-%d", i+1), func(t *testing.T) {
			f := runFailover(t)
			t.Logf("run %d/%d: %s owned %v; lease gone %.2fs after the kill, every target on another replica %.2fs after it",
				i+1, n, f.victim, f.moved, f.leaseGone.Seconds(), f.took.Seconds())
			took = append(took, f.took.Seconds())
			gone = append(gone, f.leaseGone.Seconds())
			after = append(after, (f.took - f.leaseGone).Seconds())
			raw = append(raw, fmt.Sprintf("%.2f (%d targets)", f.took.Seconds(), len(f.moved)))
		})
	}
	if len(took) == 0 {
		return
	}
	bound := failoverTTL + 2*time.Second
	verdict := "within the bound"
	if median(took) > bound.Seconds() {
		verdict = "**over the bound**"
	}
	over := 0
	for _, x := range took {
		if x > bound.Seconds() {
			over++
		}
	}
	verdict += fmt.Sprintf(", %d of %d runs over it", over, len(took))
	report(t, "\n### R1 failover: 3 replicas on etcd, 6 idle targets, --replica-ttl %s, --poll-hold 50s; SIGKILL of the replica owning the most targets\n\n"+
		"| figure | runs | median (range) |\n|---|---|---|\n"+
		"| kill → every target of the killed replica has a new session on another replica (s) | %d | **%s** |\n"+
		"| kill → its lease gone (its member key deleted, seen by a watch) (s) | %d | %s |\n"+
		"| lease gone → the last new session (s) | %d | %s |\n\n"+
		"Bound: TTL + 2 s = %.1f s; the median is %s. Each run (s): %s.\n",
		failoverTTL, len(took), spread(took, "%.2f"), len(gone), spread(gone, "%.2f"), len(after), spread(after, "%.2f"),
		bound.Seconds(), verdict, strings.Join(raw, ", "))
}

// ---------------------------------------------------------------------------
// R2: the P1 burst on etcd

// storeMode is where a burst's state is, and how many runs share it.
type storeMode struct {
	label    string
	etcd     bool
	replicas int
}

// burstProcs is one P1 burst with `sim serve` and `run` processes.
type burstProcs struct {
	rep demo.Report
	// cpu: sim serve, the runs and their plugin processes, and etcd, from
	// the jobs' queuing until every instance was deleted; etcdCPU is
	// etcd's part; others is what the rest of the machine used meanwhile.
	cpu, etcdCPU, others float64
	// splitBound is the bound of the replicas' split of the targets:
	// max over replicas of ceil(N_r/C)·L.
	splitBound float64
	// split is how many targets each replica served, largest first.
	split string
	// ranges and txns are the etcd server's range and transaction
	// requests (etcd_mvcc_*_total) in the same span as cpu.
	ranges, txns float64
}

// demoRunFlags are the flags the demo gives its controller
// (internal/cli demoRunOptions) for b, so that a run process does what
// P1's in-process controller does.
func demoRunFlags(b burst) []string {
	return []string{
		"--provision-concurrency", strconv.Itoa(b.concurrency), "--max-runners", strconv.Itoa(b.maxRunners),
		"--min-runners", strconv.Itoa(b.minRunners), "--plugin-pool-size", "0",
		"--poll-hold", demo.PollHold.String(), "--history-max-count", strconv.Itoa(max(10000, 2*b.jobs)),
		"--sync-interval", "1s", "--shutdown-timeout", "10s", "--log-level", "debug", "--github-retry-wait-max", "2s",
		"--janitor-interval", "1s", "--retry-backoff", "200ms", "--scale-down-grace", "5s", "--reaper-interval", "1s",
	}
}

// runBurstProcs runs burst b against `sim serve` with m's runs: it waits
// until every target is served (by its rendezvous replica), queues the
// jobs at once (50 per target, one request per target), waits until
// every job completed and every instance was deleted, stops the runs and
// computes the demo's report from the sim's state, the call log and the
// stored history.
func runBurstProcs(t *testing.T, b burst, m storeMode) burstProcs {
	scopes := demo.Targets(b.targets)
	c := newCluster(t, clusterOptions{
		sim:       scenariotest.SimOptions{Targets: scopes, PollHold: demo.PollHold, LogLevel: "error"},
		etcd:      m.etcd,
		pluginEnv: []string{shoesfake.EnvLatency + "=" + b.latency.String(), shoesfake.EnvRunnerMode + "=" + b.mode},
		flags:     demoRunFlags(b),
	})
	ids := []string{"r1"}
	for i := 2; i <= m.replicas; i++ {
		ids = append(ids, "r"+strconv.Itoa(i))
	}
	c.startAll(ids)
	owners := ids
	if !m.etcd {
		owners = nil // a run on a file names its sessions after the host
	}
	c.waitServed(scopes, owners, time.Minute)
	var out burstProcs
	perTarget := b.jobs / b.targets
	out.splitBound = demo.Bound(b.jobs, b.concurrency, b.latency).Seconds()
	if m.etcd && m.replicas > 1 {
		out.splitBound = 0
		by := c.waitBalanced(ids, time.Minute)
		var sizes []int
		for _, id := range ids {
			out.splitBound = max(out.splitBound, demo.Bound(perTarget*len(by[id]), b.concurrency, b.latency).Seconds())
			sizes = append(sizes, len(by[id]))
		}
		slices.SortFunc(sizes, func(x, y int) int { return y - x })
		parts := make([]string, len(sizes))
		for i, n := range sizes {
			parts[i] = strconv.Itoa(n)
		}
		out.split = strings.Join(parts, "/")
	}

	var st *store.Store
	if m.etcd {
		st = c.reader()
	}
	runners := func() ([]store.Runner, error) {
		if st != nil {
			return st.ListRunners(store.RunnerFilter{})
		}
		return c.runs["r1"].Runners()
	}
	var ec0 map[string]float64
	if m.etcd {
		ec0 = c.etcdCounters()
	}
	runs0, sim0, etcd0 := c.cpuOf()
	m0 := sampleCPU()
	for _, sc := range scopes {
		c.sim.QueueJobs(sc, perTarget, b.jobDuration)
	}
	total := perTarget * b.targets
	if !testkit.PollEvery(10*time.Minute, 100*time.Millisecond, func() (bool, string) {
		for _, id := range ids {
			c.runs[id].Alive()
		}
		s := c.sim.State()
		return len(s.Jobs) == total && scenario.JobsFinal(s), ""
	}) {
		t.Fatalf("jobs not final 10m after the burst: %v", scenario.JobCounts(c.sim.State()))
	}
	tail := shoesfake.CallLogTail{Path: c.files.CallLog}
	if !testkit.PollEvery(demo.DefaultSettleTimeout, 100*time.Millisecond, func() (bool, string) {
		calls, err := tail.Read()
		if err != nil {
			return false, ""
		}
		rs, err := runners()
		return err == nil && demo.Settled(calls, rs, 0), ""
	}) {
		t.Errorf("the burst did not settle within %s after the jobs completed (instances or runner records left)", demo.DefaultSettleTimeout)
	}
	runs1, sim1, etcd1 := c.cpuOf()
	m1 := sampleCPU()
	if m.etcd {
		ec1 := c.etcdCounters()
		out.ranges, out.txns = ec1["range"]-ec0["range"], ec1["txn"]-ec0["txn"]
	}
	c.stopAll()

	var history []store.HistoryRecord
	var left []store.Runner
	var err error
	if st == nil {
		st, err = store.Open(store.Options{Path: c.files.StateFile, ReadOnly: true})
		if err != nil {
			t.Fatalf("open the state file: %v", err)
		}
		defer st.Close()
	}
	if history, err = st.ListHistory(store.HistoryFilter{}); err != nil {
		t.Fatal(err)
	}
	if left, err = st.ListRunners(store.RunnerFilter{}); err != nil {
		t.Fatal(err)
	}
	out.rep = demo.Summarize(demo.Inputs{
		Jobs: total, State: c.sim.State(), Calls: scenariotest.Calls(t, c.files.CallLog), History: history, Runners: left,
		ProvisionConcurrency: b.concurrency, PluginLatency: b.latency, PluginMode: b.mode,
	})
	for _, p := range out.rep.Problems() {
		t.Errorf("burst %s: %s", m.label, p)
	}
	out.cpu = (runs1 - runs0) + (sim1 - sim0) + (etcd1 - etcd0)
	out.etcdCPU = etcd1 - etcd0
	out.others = max(0, busySeconds(m0, m1)-out.cpu)
	return out
}

// TestReplicaP1Burst (R2): P1's headline burst (500 jobs over 10 targets,
// C=64, L=1s, inprocess) with sim serve and run processes: one run on the
// state file, one replica on etcd, and 3 replicas on etcd sharing the
// targets. The runs of the modes are interleaved, so that a disturbance
// of the machine hits every mode alike.
func TestReplicaP1Burst(t *testing.T) {
	b := burst{jobs: 500, targets: 10, concurrency: 64, maxRunners: 100,
		latency: time.Second, jobDuration: 2 * time.Second, mode: demo.PluginModeInProcess}
	modes := []storeMode{
		{"bbolt, 1 run", false, 1},
		{"etcd, 1 replica", true, 1},
		{"etcd, 3 replicas", true, 3},
	}
	n := runs()
	if os.Getenv("BENCH_RUNS") == "" && !quick() {
		n = 2
	}
	if quick() {
		modes = modes[2:]
	}
	type acc struct {
		allUp, ratio, splitRatio, provP50, provP99, startP50, startP99, wall, cpu, etcdCPU, others, split []float64
		ranges, txns                                                                                      []float64
		splits                                                                                            []string
	}
	res := make([]acc, len(modes))
	for i := range n {
		for j, m := range modes {
			name := fmt.Sprintf("%s/run-%d", strings.NewReplacer(",", "", " ", "-").Replace(m.label), i+1)
			t.Run(name, func(t *testing.T) {
				r := runBurstProcs(t, b, m)
				t.Logf("%s run %d/%d: all up %.2fs (ratio %.3f; targets per replica %s, bound %.1fs), provision p50/p99 %d/%d ms, job start p50/p99 %d/%d ms, wall %.2fs, cpu %.1fs (etcd %.1fs; %.0f ranges, %.0f txns), others %.1fs",
					m.label, i+1, n, r.rep.AllUpSeconds, r.rep.RatioToBound, cmp.Or(r.split, "all"), r.splitBound, r.rep.ProvisionP50MS, r.rep.ProvisionP99MS,
					r.rep.JobStartP50MS, r.rep.JobStartP99MS, r.rep.WallSeconds, r.cpu, r.etcdCPU, r.ranges, r.txns, r.others)
				a := &res[j]
				a.allUp = append(a.allUp, r.rep.AllUpSeconds)
				a.ratio = append(a.ratio, r.rep.RatioToBound)
				if r.splitBound > 0 {
					a.splitRatio = append(a.splitRatio, r.rep.AllUpSeconds/r.splitBound)
				}
				a.split = append(a.split, r.splitBound)
				a.splits = append(a.splits, r.split)
				a.ranges = append(a.ranges, r.ranges)
				a.txns = append(a.txns, r.txns)
				a.provP50 = append(a.provP50, float64(r.rep.ProvisionP50MS)/1000)
				a.provP99 = append(a.provP99, float64(r.rep.ProvisionP99MS)/1000)
				a.startP50 = append(a.startP50, float64(r.rep.JobStartP50MS)/1000)
				a.startP99 = append(a.startP99, float64(r.rep.JobStartP99MS)/1000)
				a.wall = append(a.wall, r.rep.WallSeconds)
				a.cpu = append(a.cpu, r.cpu)
				a.etcdCPU = append(a.etcdCPU, r.etcdCPU)
				a.others = append(a.others, r.others)
			})
		}
	}
	bound := demo.Bound(b.jobs, b.concurrency, b.latency).Seconds()
	var rows, notes strings.Builder
	for j, m := range modes {
		a := res[j]
		if len(a.allUp) == 0 {
			continue
		}
		fmt.Fprintf(&rows, "| C=64 L=1s | %s | %s | %d | %s | %.1f | %s | %.2f / %.2f | %.2f / %.2f | %.1f | %.1f | %.1f |\n",
			m.label, b.mode, len(a.allUp), spread(a.allUp, "%.2f"), bound, spread(a.ratio, "%.3f"),
			median(a.provP50), median(a.provP99), median(a.startP50), median(a.startP99), median(a.wall), median(a.cpu), median(a.others))
		fmt.Fprintf(&notes, "- %s: all up per run (s) %s", m.label, fmtList(a.allUp, "%.2f"))
		if m.etcd {
			fmt.Fprintf(&notes, "; etcd in the burst: CPU %s s, %s range and %s txn requests", spread(a.etcdCPU, "%.1f"), spread(a.ranges, "%.0f"), spread(a.txns, "%.0f"))
		}
		if m.replicas > 1 {
			fmt.Fprintf(&notes, "; targets per replica by run %s; bound of that split (max over replicas of ceil(N_r/C)·L) per run (s) %s, ratio to it %s",
				strings.Join(a.splits, ", "), fmtList(a.split, "%.0f"), spread(a.splitRatio, "%.3f"))
		}
		notes.WriteString("\n")
	}
	report(t, "\n### R2 P1 burst on etcd: %d jobs over %d targets, jobs of %s, --max-runners %d, sim serve and run processes, runs interleaved\n\n"+
		"| configuration | store | plugin mode | runs | all up (s), median (range) | bound (s) | ratio to bound | provision p50 / p99 (s) | job start p50 / p99 (s) | wall (s) | CPU, ours (s) | CPU, others (s) |\n"+
		"|---|---|---|---|---|---|---|---|---|---|---|---|\n%s\n%s",
		b.jobs, b.targets, b.jobDuration, b.maxRunners, rows.String(), notes.String())
}

// fmtList formats every value of xs.
func fmtList(xs []float64, format string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, ", ")
}

// ---------------------------------------------------------------------------
// R4: footprint of 3 replicas × 300 idle targets (R3 is the write cost, BenchmarkEtcdWriteCost in internal/store)

// TestReplicaFootprint (R4): 3 replicas on etcd share 300 idle targets,
// their long-polls held 50s by the sim: the RSS and CPU of each replica
// (and of etcd) once every target is on its rendezvous replica.
func TestReplicaFootprint(t *testing.T) {
	const targets = 300
	window, sampleEvery := time.Minute, 5*time.Second
	if quick() {
		window = 20 * time.Second
	}
	scopes := scenario.Scopes("idle-org-", targets)
	ids := []string{"r1", "r2", "r3"}
	c := newCluster(t, clusterOptions{
		sim:   scenariotest.SimOptions{Targets: scopes, PollHold: 50 * time.Second, LogLevel: "error"},
		etcd:  true,
		flags: []string{"--poll-hold", "50s", "--log-level", "warn"},
	})
	started := time.Now()
	c.startAll(ids)
	c.waitServed(scopes, ids, 3*time.Minute)
	by := c.waitBalanced(ids, 3*time.Minute)
	ready := time.Since(started)
	startup := map[string]float64{}
	for _, id := range ids {
		cpu, err := processCPU(c.runs[id].Pid())
		if err != nil {
			t.Fatal(err)
		}
		startup[id] = cpu
	}
	// Let the start settle (first polls, GC) before the window, as P4.
	time.Sleep(5 * time.Second)

	etcdPid := c.etcdPid()
	pids := map[string]int{"etcd": etcdPid}
	for _, id := range ids {
		pids[id] = c.runs[id].Pid()
	}
	cpu0 := map[string]float64{}
	for name, pid := range pids {
		v, err := processCPU(pid)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cpu0[name] = v
	}
	rss := map[string][]float64{}
	ec0 := c.etcdCounters()
	t0 := time.Now()
	for time.Since(t0) < window {
		for name, pid := range pids {
			b, err := processRSS(pid)
			if err != nil {
				t.Fatalf("%s exited: %v", name, err)
			}
			rss[name] = append(rss[name], float64(b)/(1<<20))
		}
		time.Sleep(min(sampleEvery, window-time.Since(t0)))
	}
	cpu := map[string]float64{}
	for name, pid := range pids {
		v, err := processCPU(pid)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cpu[name] = v - cpu0[name]
	}
	elapsed := time.Since(t0).Seconds()
	etcdRates := rates(ec0, c.etcdCounters(), elapsed)
	polls := c.sim.State().Calls["GET /_broker/{id}/{sid}/messages"]
	for _, id := range ids {
		c.runs[id].Alive()
	}
	c.stopAll()

	var rows strings.Builder
	sumRSS, sumCPU := 0.0, 0.0
	for _, id := range ids {
		n := len(by[id])
		last := rss[id][len(rss[id])-1]
		sumRSS += last
		sumCPU += cpu[id]
		fmt.Fprintf(&rows, "| replica %s | %d | %.1f / %.1f | %.0f | %.2f s = %.2f%% | %.3f | %.1f |\n",
			id, n, last, maxOf(rss[id]), last*1024/float64(n), cpu[id], 100*cpu[id]/elapsed, 1000*cpu[id]/elapsed/float64(n), startup[id])
	}
	fmt.Fprintf(&rows, "| the 3 replicas | %d | %.1f (sum of the last) | %.0f | %.2f s = %.2f%% | %.3f | — |\n",
		targets, sumRSS, sumRSS*1024/targets, sumCPU, 100*sumCPU/elapsed, 1000*sumCPU/elapsed/targets)
	er := rss["etcd"]
	fmt.Fprintf(&rows, "| etcd (testetcd, one member) | — | %.1f / %.1f | — | %.2f s = %.2f%% | — | — |\n",
		er[len(er)-1], maxOf(er), cpu["etcd"], 100*cpu["etcd"]/elapsed)
	report(t, "\n### R4 footprint: 3 replicas on etcd, %d idle targets, long-polls held 50s by the sim, --replica-ttl default (10s)\n\n"+
		"start of the replicas → every target on its rendezvous replica: %.1f s; window %.0f s from 5 s later, RSS sampled every %s; message polls received by the sim (whole run): %d\n\n"+
		"| process | targets | RSS (VmRSS), last / max (MiB) | RSS per target (KiB) | CPU in the window (utime+stime), %% of one core | CPU per target (ms/s) | CPU before the window (s) |\n"+
		"|---|---|---|---|---|---|---|\n%s\n"+
		"etcd requests in the window, per second (store operations, then gRPC calls, keep-alive and watch messages by method): %s\n",
		targets, ready.Seconds(), elapsed, sampleEvery, polls, rows.String(), etcdRates)
}

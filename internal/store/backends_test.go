package store

// The record logic on both backends: the file (bbolt) and etcd (a real
// etcd server process). Each case runs on each.

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/replica"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m)) }

// backends returns a fresh store of each backend.
func backends(t *testing.T, clock *testkit.Clock) map[string]*Store {
	t.Helper()
	file := openStore(t, Options{Now: clock.Now, HistoryMaxCount: 3})
	e, err := OpenEtcd(EtcdOptions{Client: etcdtest.Start(t).Client(), Prefix: "/test/", OwnerID: "replica-a", Now: clock.Now, HistoryMaxCount: 3})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*Store{"bbolt": file, "etcd": e}
}

func TestBackends(t *testing.T) {
	clock := newFakeClock()
	for name, s := range backends(t, clock) {
		t.Run(name, func(t *testing.T) {
			t.Run("runners", func(t *testing.T) { backendRunners(t, s, clock) })
			t.Run("concurrent updates", func(t *testing.T) { backendConcurrentUpdates(t, s) })
			t.Run("sessions", func(t *testing.T) { backendSessions(t, s) })
			t.Run("scale sets and meta", func(t *testing.T) { backendScaleSets(t, s) })
		})
	}
}

func runner(name string, scaleSet int, state RunnerState) Runner {
	return Runner{Name: name, TargetID: fmt.Sprint("t-", scaleSet), Scope: "org", ScaleSetID: scaleSet, State: state}
}

func backendRunners(t *testing.T, s *Store, clock *testkit.Clock) {
	if err := s.CreateRunners([]Runner{runner("r1", 1, StatePending), runner("r2", 1, StateIdle), runner("r3", 2, StateIdle)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRunners([]Runner{runner("r4", 1, StatePending), runner("r2", 1, StatePending)}); !errors.Is(err, ErrExists) {
		t.Fatalf("creating an existing runner: %v, want ErrExists", err)
	}
	if _, err := s.GetRunner("r4"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused create wrote r4: %v", err)
	}
	r, err := s.UpdateRunner("r1", func(r *Runner) error { r.CloudID = "c1"; return nil })
	if err != nil || r.CloudID != "c1" {
		t.Fatalf("update: %+v %v", r, err)
	}
	if got, _ := s.GetRunner("r1"); got.CloudID != "c1" {
		t.Fatalf("update not stored: %+v", got)
	}
	idle, err := s.ListRunners(RunnerFilter{States: []RunnerState{StateIdle}})
	if err != nil || len(idle) != 2 {
		t.Fatalf("idle runners: %v %v", idle, err)
	}
	counts, err := s.CountRunners()
	if err != nil || counts[1][StatePending] != 1 || counts[1][StateIdle] != 1 || counts[2][StateIdle] != 1 {
		t.Fatalf("counts %v %v", counts, err)
	}
	refuse := errors.New("refused")
	if _, err := s.FinishRunnerIf("r1", "failed", func(Runner) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("a refused finish: %v", err)
	}
	for _, n := range []string{"r1", "r2", "r3"} {
		clock.Advance(time.Second)
		if _, err := s.FinishRunner(n, "completed"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.GetRunner("r1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finished runner still there: %v", err)
	}
	hs, err := s.ListHistory(HistoryFilter{Limit: 2})
	if err != nil || len(hs) != 2 || hs[0].Runner.Name != "r3" || hs[1].Runner.Name != "r2" {
		t.Fatalf("history, newest first, 2: %+v %v", hs, err)
	}
	clock.Advance(time.Second)
	for _, n := range []string{"r5", "r6"} {
		if err := s.CreateRunners([]Runner{runner(n, 1, StateIdle)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishRunner(n, "completed"); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.PruneHistory(); err != nil || n != 2 { // 5 records, at most 3 kept
		t.Fatalf("pruned %d, %v; want 2", n, err)
	}
	hs, _ = s.ListHistory(HistoryFilter{})
	if len(hs) != 3 || slices.ContainsFunc(hs, func(h HistoryRecord) bool { return h.Runner.Name == "r1" || h.Runner.Name == "r2" }) {
		t.Fatalf("history after pruning: %+v; want the 3 newest", hs)
	}
}

// backendConcurrentUpdates: updates of one record from many goroutines
// are never lost (etcd: optimistic transactions retried on conflict).
func backendConcurrentUpdates(t *testing.T, s *Store) {
	if err := s.CreateRunners([]Runner{runner("counter", 9, StateIdle)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				if _, err := s.UpdateRunner("counter", func(r *Runner) error { r.Attempts++; return nil }); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if r, _ := s.GetRunner("counter"); r.Attempts != 40 {
		t.Fatalf("attempts %d after 40 increments", r.Attempts)
	}
}

func backendSessions(t *testing.T, s *Store) {
	if err := s.PutSession(Session{ScaleSetID: 5, TargetID: "t-5", Scope: "org", SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordMessage(5, 7, []int64{11, 12}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSession(Session{ScaleSetID: 5, TargetID: "t-5", Scope: "org", SessionID: "s2"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AcquireDone(5, []int64{11}); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetSession(5); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSession(5)
	if err != nil || got.SessionID != "" || len(got.PendingAcquire) != 1 || got.PendingAcquire[0].RequestID != 12 {
		t.Fatalf("session after forget: %+v %v; want no ID and request 12 pending", got, err)
	}
	if err := s.RecordMessage(6, 1, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("message of a scale set with no session: %v", err)
	}
	if all, _ := s.ListSessions(); len(all) != 1 {
		t.Fatalf("sessions %+v", all)
	}
	if err := s.DeleteSession(5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted session: %v", err)
	}
}

func backendScaleSets(t *testing.T, s *Store) {
	if err := s.PutScaleSet(ScaleSet{TargetID: "t-1", Scope: "org", Name: "myshoes-org", ScaleSetID: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateScaleSet("t-1", func(ss *ScaleSet) error { ss.LastError = "boom"; return nil }); err != nil {
		t.Fatal(err)
	}
	if ss, err := s.GetScaleSet("t-1"); err != nil || ss.LastError != "boom" || ss.ScaleSetID != 1 {
		t.Fatalf("scale set %+v %v", ss, err)
	}
	if all, _ := s.ListScaleSets(); len(all) != 1 {
		t.Fatalf("scale sets %+v", all)
	}
	if err := s.DeleteScaleSet("t-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetScaleSet("t-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted scale set: %v", err)
	}
	if err := s.SetCloudIDs(CloudIDs{Plugin: "p", NameKeyed: true}); err != nil {
		t.Fatal(err)
	}
	if c, found, err := s.CloudIDs(); err != nil || !found || !c.NameKeyed || c.Plugin != "p" {
		t.Fatalf("cloud IDs %+v %v %v", c, found, err)
	}
}

// TestEtcdUnreachable: a read that fails is an error, never "not found",
// and a write fails without a partial commit.
func TestEtcdUnreachable(t *testing.T) {
	srv := etcdtest.Start(t)
	s, err := OpenEtcd(EtcdOptions{Client: srv.Client(), Prefix: "/test/", OwnerID: "a", Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRunners([]Runner{runner("r1", 1, StateIdle)}); err != nil {
		t.Fatal(err)
	}
	srv.Kill9()
	if _, err := s.GetRunner("r1"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("get with etcd down: %v, want an error that is not ErrNotFound", err)
	}
	if _, err := s.UpdateRunner("r1", func(r *Runner) error { r.Attempts++; return nil }); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("update with etcd down: %v", err)
	}
	srv.Restart()
	testkit.WaitFor(t, "r1 readable again", 20*time.Second, func() (bool, string) {
		r, err := s.GetRunner("r1")
		return err == nil && r.Attempts == 0, fmt.Sprint(r.Attempts, err)
	})
}

// deadlineFencer lets every write through until its safe deadline.
type deadlineFencer struct{ until time.Time }

func (f deadlineFencer) Fence(string) ([]clientv3.Cmp, bool) { return nil, true }
func (f deadlineFencer) SafeUntil() time.Time                { return f.until }

// TestEtcdCallsEndByTheSafeDeadline: with etcd out of reach, a replica's
// store call ends by its safe deadline, not at the store's timeout: the
// worker making it must stop acting on its target by then.
func TestEtcdCallsEndByTheSafeDeadline(t *testing.T) {
	srv := etcdtest.Start(t)
	p := etcdtest.NewProxy(t, strings.TrimPrefix(srv.Endpoint(), "http://"))
	until := time.Now().Add(2 * time.Second)
	s, err := OpenEtcd(EtcdOptions{Client: etcdtest.NewClient(t, "http://"+p.Addr()), Prefix: "/test/", OwnerID: "a",
		Timeout: time.Minute, Fencer: deadlineFencer{until: until}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRunners([]Runner{runner("r1", 1, StateIdle)}); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	if _, err := s.UpdateRunner("r1", func(r *Runner) error { r.Attempts++; return nil }); err == nil {
		t.Fatal("an update went through a cut connection")
	}
	if late := time.Since(until); late > time.Second {
		t.Fatalf("the update ended %v after the safe deadline, want by it (the store's timeout is 1m)", late)
	}
}

// TestEtcdFencedWrites: with replicas, a write for a target commits only
// while its replica owns the target; after another replica took it over,
// the old owner's write fails with ErrNotOwner and changes nothing, and
// the new owner's goes through.
func TestEtcdFencedWrites(t *testing.T) {
	c := etcdtest.Start(t).Client()
	ctx := t.Context()
	join := func(id string) (*replica.Replica, *Store) {
		r, err := replica.Join(ctx, replica.Config{Client: c, Prefix: "/cluster/", ID: id, TTL: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		s, err := OpenEtcd(EtcdOptions{Client: c, Prefix: "/cluster/state/", OwnerID: id, Fencer: r})
		if err != nil {
			t.Fatal(err)
		}
		return r, s
	}
	ra, sa := join("a")
	rb, sb := join("b")
	if _, err := ra.Claim(ctx, "t-1"); err != nil {
		t.Fatal(err)
	}
	if err := sa.CreateRunners([]Runner{runner("r1", 1, StateIdle)}); err != nil {
		t.Fatalf("the owner's create: %v", err)
	}
	if _, err := sb.UpdateRunner("r1", func(r *Runner) error { r.CloudID = "b"; return nil }); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("a write by a replica that never owned t-1: %v, want ErrNotOwner", err)
	}
	// a's key goes (its lease ran out while it was paused); b takes t-1.
	if _, err := c.Delete(ctx, "/cluster/owners/t-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := rb.Claim(ctx, "t-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.UpdateRunner("r1", func(r *Runner) error { r.CloudID = "b"; return nil }); err != nil {
		t.Fatalf("the new owner's write: %v", err)
	}
	if _, err := sa.UpdateRunner("r1", func(r *Runner) error { r.CloudID = "a-late"; return nil }); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("the old owner's late write: %v, want ErrNotOwner", err)
	}
	if _, err := sa.FinishRunner("r1", "completed"); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("the old owner's finish: %v, want ErrNotOwner", err)
	}
	if r, err := sb.GetRunner("r1"); err != nil || r.CloudID != "b" {
		t.Fatalf("r1 = %+v, %v: the old owner wrote after the new one", r, err)
	}
	// What only the old owner knows goes in unfenced, and only on the
	// record as it read it: a change in between makes it read again.
	if err := sb.CreateRunners([]Runner{runner("r2", 1, StateConfigured)}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	r2, err := sa.UpdateRunnerAfterHandOver("r2", func(r *Runner) error {
		calls++
		if calls == 1 { // the new owner writes between the read and the commit
			if _, err := sb.UpdateRunner("r2", func(r *Runner) error { r.LastError = "new owner"; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		r.CloudID = "learned-by-a"
		return nil
	})
	if err != nil || r2.CloudID != "learned-by-a" || r2.LastError != "new owner" || calls != 2 {
		t.Fatalf("unfenced update: %+v, %v after %d runs; want the cloud ID on the new owner's record, after a second run", r2, err, calls)
	}
	// Meta is no target's: any replica writes it.
	if err := sa.SetCloudIDs(CloudIDs{Plugin: "p"}); err != nil {
		t.Fatal(err)
	}
}

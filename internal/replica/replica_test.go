package replica

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m)) }

func join(t *testing.T, c *clientv3.Client, id string, ttl time.Duration) *Replica {
	t.Helper()
	r, err := Join(t.Context(), Config{Client: c, Prefix: "/test/", ID: id, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestFencedOwnership: one replica owns a target at a time; its fenced
// writes apply; once another replica owns the target, a write with the
// old ownership changes nothing, and the new token is larger.
func TestFencedOwnership(t *testing.T) {
	c := etcdtest.Start(t).Client()
	ctx := t.Context()
	a, b := join(t, c, "a", 5*time.Second), join(t, c, "b", 5*time.Second)
	tokA, err := a.Claim(ctx, "org-x")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := a.Claim(ctx, "org-x"); err != nil || again != tokA {
		t.Fatalf("claiming an owned target again: %d, %v; want %d", again, err, tokA)
	}
	if _, err := b.Claim(ctx, "org-x"); !errors.Is(err, ErrOwnedElsewhere) {
		t.Fatalf("b's claim of a's target: %v, want ErrOwnedElsewhere", err)
	}
	if ok, err := a.Write(ctx, "org-x", nil, clientv3.OpPut("/test/data/org-x", "a1")); !ok || err != nil {
		t.Fatalf("owner's write: %v %v", ok, err)
	}
	if owner, _ := a.Owner(ctx, "org-x"); owner != "a" {
		t.Fatalf("owner %q, want a", owner)
	}

	// a's key goes (as when its lease expires) and b takes the target.
	stale := tokA
	if _, err := c.Delete(ctx, "/test/owners/org-x"); err != nil {
		t.Fatal(err)
	}
	tokB, err := b.Claim(ctx, "org-x")
	if err != nil || tokB <= stale {
		t.Fatalf("b's claim: token %d, %v; want one above %d", tokB, err, stale)
	}
	if ok, err := a.Write(ctx, "org-x", nil, clientv3.OpPut("/test/data/org-x", "a2")); ok || !errors.Is(err, ErrNotOwned) {
		t.Fatalf("old owner's write: %v %v, want ErrNotOwned", ok, err)
	}
	if ok, err := b.Write(ctx, "org-x", nil, clientv3.OpPut("/test/data/org-x", "b1")); !ok || err != nil {
		t.Fatalf("new owner's write: %v %v", ok, err)
	}
	if v := get(t, c, "/test/data/org-x"); v != "b1" {
		t.Fatalf("value %q, want b1: the old owner wrote after the new one", v)
	}
	// A caller's own condition failing is not a lost ownership.
	cmp := clientv3.Compare(clientv3.Value("/test/data/org-x"), "=", "other")
	if ok, err := b.Write(ctx, "org-x", []clientv3.Cmp{cmp}, clientv3.OpPut("/test/data/org-x", "b2")); ok || err != nil {
		t.Fatalf("write with a failing condition: %v %v, want false, nil", ok, err)
	}
	if ok, err := b.Write(ctx, "org-x", nil, clientv3.OpPut("/test/data/org-x", "b3")); !ok || err != nil {
		t.Fatalf("b lost the target after its own condition failed: %v %v", ok, err)
	}
	// A clean release lets a claim at once.
	if err := b.Release(ctx, "org-x"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Claim(ctx, "org-x"); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
}

// TestLeaseExpiry: a replica that stops renewing loses its targets after
// the TTL; its safe deadline has passed before another replica can take
// them, and its writes are refused.
func TestLeaseExpiry(t *testing.T) {
	c := etcdtest.Start(t).Client()
	ctx := t.Context()
	ttl := 2 * time.Second
	a, b := join(t, c, "a", ttl), join(t, c, "b", ttl)
	runCtx, stopA := context.WithCancel(ctx)
	doneA := make(chan error, 1)
	go func() { doneA <- a.Run(runCtx) }()
	go func() { _ = b.Run(ctx) }()
	if _, err := a.Claim(ctx, "org-x"); err != nil {
		t.Fatal(err)
	}
	// While a renews, its deadline keeps moving and b cannot take over.
	first := a.SafeUntil()
	testkit.WaitFor(t, "a renewal", 3*ttl, func() (bool, string) { return a.SafeUntil().After(first), a.SafeUntil().String() })
	if _, err := b.Claim(ctx, "org-x"); !errors.Is(err, ErrOwnedElsewhere) {
		t.Fatalf("b took a live replica's target: %v", err)
	}

	stopA() // a is paused: no more renewals
	<-doneA
	var took time.Time
	testkit.WaitFor(t, "b owning org-x", 5*ttl, func() (bool, string) {
		_, err := b.Claim(ctx, "org-x")
		took = time.Now()
		return err == nil, fmt.Sprint(err)
	})
	if deadline := a.SafeUntil(); !deadline.Before(took) {
		t.Fatalf("a's safe deadline %s is not before b's takeover %s", deadline.Format(time.StampMilli), took.Format(time.StampMilli))
	}
	if a.Safe() {
		t.Fatal("a says it is safe after b took over")
	}
	if ok, err := a.Write(ctx, "org-x", nil, clientv3.OpPut("/test/data/org-x", "late")); ok || !errors.Is(err, ErrUnsafe) {
		t.Fatalf("a's late write: %v %v, want ErrUnsafe", ok, err)
	}
	if members, _ := b.Members(ctx); len(members) != 1 || members[0].ID != "b" {
		t.Fatalf("members %v, want [b]: a's membership should have gone with its lease", members)
	}
	if err := a.renew(ctx, time.Second); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renewing an expired lease: %v, want ErrLeaseLost", err)
	}
}

// TestLeaveHandsOverAtOnce: a replica that leaves revokes its lease, so
// its targets can be claimed without waiting for the TTL.
func TestLeaveHandsOverAtOnce(t *testing.T) {
	c := etcdtest.Start(t).Client()
	ctx := t.Context()
	a, b := join(t, c, "a", 30*time.Second), join(t, c, "b", 30*time.Second)
	if _, err := a.Claim(ctx, "org-x"); err != nil {
		t.Fatal(err)
	}
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx, "org-x"); err != nil {
		t.Fatalf("claim after the owner left: %v", err)
	}
	// A renewal that succeeds after the replica ended (one in flight when
	// Leave ran, before the revoke) cannot make it safe again.
	c2 := join(t, c, "c", 30*time.Second)
	c2.lose()
	if err := c2.renew(ctx, time.Second); err != nil {
		t.Fatalf("renew of a live lease: %v", err)
	}
	if c2.Safe() {
		t.Fatal("a replica that ended is safe again after a renewal")
	}
}

func get(t *testing.T, c *clientv3.Client, key string) string {
	t.Helper()
	r, err := c.Get(t.Context(), key)
	if err != nil || len(r.Kvs) == 0 {
		t.Fatalf("get %s: %v", key, err)
	}
	return string(r.Kvs[0].Value)
}

// TestAssign: rendezvous assignment is stable, balanced, and moves only
// the targets of a member that leaves.
func TestAssign(t *testing.T) {
	members := []string{"replica-a", "replica-b", "replica-c"}
	targets := make([]string, 3000)
	for i := range targets {
		targets[i] = fmt.Sprintf("org-%d", i)
	}
	count := map[string]int{}
	before := map[string]string{}
	for _, tg := range targets {
		m := Assign(tg, members)
		if m != Assign(tg, []string{members[2], members[0], members[1]}) {
			t.Fatalf("%s: the assignment depends on the members' order", tg)
		}
		before[tg] = m
		count[m]++
	}
	for _, m := range members {
		if dev := math.Abs(float64(count[m])-1000) / 1000; dev > 0.1 {
			t.Errorf("%s owns %d of 3000 targets: more than 10%% off an even share", m, count[m])
		}
	}
	moved := 0
	for _, tg := range targets {
		after := Assign(tg, members[:2]) // replica-c leaves
		if before[tg] != "replica-c" && after != before[tg] {
			t.Fatalf("%s moved from %s to %s though its owner stayed", tg, before[tg], after)
		}
		if after != before[tg] {
			moved++
		}
	}
	if moved != count["replica-c"] {
		t.Errorf("%d targets moved, want the %d of the member that left", moved, count["replica-c"])
	}
	if Assign("org-1", nil) != "" {
		t.Error("a target with no members was assigned")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{ID: "a"}, "Client"},
		{Config{Client: &clientv3.Client{}}, "ID"},
		{Config{Client: &clientv3.Client{}, ID: "a", TTL: 1500 * time.Millisecond}, "TTL"},
	} {
		if err := tc.cfg.Validate(); setting.FieldOf(err) != tc.field {
			t.Errorf("Validate(%+v) = %v, want an error about %s", tc.cfg, err, tc.field)
		}
	}
	c := Config{Client: &clientv3.Client{}, ID: "a"}
	if err := c.Validate(); err != nil || c.TTL != DefaultTTL {
		t.Errorf("defaults: TTL %s, %v", c.TTL, err)
	}
}

// TestJoinRefusesALiveID: a second replica with a live replica's ID is
// refused (ErrIDInUse); once the first leaves, the ID can join again.
func TestJoinRefusesALiveID(t *testing.T) {
	c := etcdtest.Start(t).Client()
	a := join(t, c, "a", 30*time.Second)
	if _, err := Join(t.Context(), Config{Client: c, Prefix: "/test/", ID: "a", TTL: 30 * time.Second}); !errors.Is(err, ErrIDInUse) {
		t.Fatalf("second join as a: %v, want ErrIDInUse", err)
	}
	if err := a.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	join(t, c, "a", 30*time.Second)
}

// TestRunJoinsAgainAfterLosingTheLease: when etcd no longer knows the
// lease, Run forgets every ownership, says so on Changed, joins again with
// a new lease and can claim again, without a restart.
func TestRunJoinsAgainAfterLosingTheLease(t *testing.T) {
	c := etcdtest.Start(t).Client()
	ctx := t.Context()
	a := join(t, c, "a", 3*time.Second)
	if _, err := a.Claim(ctx, "org-x"); err != nil {
		t.Fatal(err)
	}
	old := a.leaseID()
	go func() { _ = a.Run(ctx) }()
	// The lease goes behind the replica's back, as when it expired
	// during a partition.
	if _, err := c.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("no change announced after the lease was lost")
	}
	testkit.WaitFor(t, "a joined again with a new lease", 10*time.Second, func() (bool, string) {
		return a.leaseID() != old && a.Safe(), fmt.Sprintf("lease %x safe %v", a.leaseID(), a.Safe())
	})
	if a.owns("org-x") {
		t.Fatal("a still holds org-x from its lost lease")
	}
	if _, err := a.Claim(ctx, "org-x"); err != nil {
		t.Fatalf("claim after joining again: %v", err)
	}
	if members, err := a.Members(ctx); err != nil || len(members) != 1 {
		t.Fatalf("members %v %v, want a alone", members, err)
	}
}

// TestWatchAnnouncesChanges: Watch wakes Changed when another replica
// joins or leaves.
func TestWatchAnnouncesChanges(t *testing.T) {
	c := etcdtest.Start(t).Client()
	ctx := t.Context()
	a := join(t, c, "a", 30*time.Second)
	o := NewOwnership(a, 0)
	go func() { _ = o.Watch(ctx) }()
	drain := func() {
		for {
			select {
			case <-o.Changed():
			case <-time.After(300 * time.Millisecond):
				return
			}
		}
	}
	drain()
	b := join(t, c, "b", 30*time.Second)
	expectChange(t, o, "b joined")
	drain()
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	expectChange(t, o, "b left")
}

// TestWatchAnnouncesTheSafeDeadline: a replica whose lease is not renewed
// hears of it on Changed once its safe deadline has passed, not before.
func TestWatchAnnouncesTheSafeDeadline(t *testing.T) {
	c := etcdtest.Start(t).Client()
	a := join(t, c, "a", 2*time.Second) // not renewed: no Run
	o := NewOwnership(a, 0)
	go func() { _ = o.Watch(t.Context()) }()
	expectChange(t, o, "the safe deadline passed")
	if a.Safe() {
		t.Fatal("announced before the safe deadline passed")
	}
}

func expectChange(t *testing.T, o *Ownership, what string) {
	t.Helper()
	select {
	case <-o.Changed():
	case <-time.After(10 * time.Second):
		t.Fatalf("no change announced: %s", what)
	}
}

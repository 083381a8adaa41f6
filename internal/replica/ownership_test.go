package replica

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
)

var _ controller.Ownership = (*Ownership)(nil)

func listed(n int) []myshoes.Target {
	out := make([]myshoes.Target, n)
	for i := range out {
		out[i] = myshoes.Target{ID: fmt.Sprintf("t-%02d", i), Scope: fmt.Sprintf("org-%02d", i)}
	}
	return out
}

// rounds calls Mine on every ownership, n rounds (a sync each), and
// returns what each serves after the last.
func rounds(t *testing.T, n int, list []myshoes.Target, os ...*Ownership) [][]string {
	t.Helper()
	var out [][]string
	for range n {
		out = out[:0]
		for _, o := range os {
			mine, err := o.Mine(t.Context(), list)
			if err != nil {
				t.Fatal(err)
			}
			ids := []string{}
			for _, tg := range mine {
				ids = append(ids, tg.ID)
			}
			out = append(out, ids)
		}
	}
	return out
}

// cover checks that the served sets are disjoint and cover every target.
func cover(t *testing.T, list []myshoes.Target, served [][]string) {
	t.Helper()
	seen := map[string]int{}
	for _, ids := range served {
		for _, id := range ids {
			seen[id]++
		}
	}
	for _, tg := range list {
		if seen[tg.ID] != 1 {
			t.Errorf("target %s served by %d replicas, want 1 (%v)", tg.ID, seen[tg.ID], served)
		}
	}
}

// TestOwnershipSharesAndHandsOver: two replicas split 20 targets, each
// served once; a third, once past the join delay, gets its share through
// clean hand-overs (never two owners at once); when one leaves, the others
// take its targets at their next sync.
func TestOwnershipSharesAndHandsOver(t *testing.T) {
	c := etcdtest.Start(t).Client()
	list := listed(20)
	a, b := join(t, c, "a", 30*time.Second), join(t, c, "b", 30*time.Second)
	oa, ob := NewOwnership(a, 0), NewOwnership(b, 0)
	served := rounds(t, 2, list, oa, ob)
	cover(t, list, served)
	if len(served[0]) == 0 || len(served[1]) == 0 {
		t.Fatalf("one replica serves nothing: %v", served)
	}

	// c joins with a join delay of an hour: it gets nothing yet.
	cr := join(t, c, "c", 30*time.Second)
	oc := NewOwnership(cr, time.Hour)
	oa.joinDelay, ob.joinDelay = time.Hour, time.Hour
	if got := rounds(t, 1, list, oa, ob, oc); len(got[2]) != 0 {
		t.Fatalf("a member inside its join delay got targets: %v", got[2])
	}
	// Past the delay, c takes its share; during the hand-over no target is
	// served twice.
	oa.joinDelay, ob.joinDelay, oc.joinDelay = 0, 0, 0
	for range 3 {
		got := rounds(t, 1, list, oa, ob, oc)
		seen := map[string]bool{}
		for _, ids := range got {
			for _, id := range ids {
				if seen[id] {
					t.Fatalf("target %s served twice during a hand-over: %v", id, got)
				}
				seen[id] = true
			}
		}
	}
	served = rounds(t, 1, list, oa, ob, oc)
	cover(t, list, served)
	if len(served[2]) == 0 {
		t.Fatal("c got no targets past its join delay")
	}
	for _, id := range served[2] {
		if Assign(id, []string{"a", "b", "c"}) != "c" {
			t.Errorf("c serves %s, which rendezvous gives to another", id)
		}
	}

	// c leaves: a and b take its targets at once (its lease is revoked).
	if err := cr.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	served = rounds(t, 1, list, oa, ob)
	cover(t, list, served)
}

// TestOwnershipPastTheSafeDeadline: a replica whose lease it cannot renew
// serves nothing once its safe deadline has passed.
func TestOwnershipPastTheSafeDeadline(t *testing.T) {
	c := etcdtest.Start(t).Client()
	a := join(t, c, "a", 2*time.Second) // not renewed: no Run
	o := NewOwnership(a, 0)
	list := listed(3)
	if got := rounds(t, 1, list, o); len(got[0]) != 3 {
		t.Fatalf("a sole replica serves %v, want all 3", got[0])
	}
	a.mu.Lock()
	a.safeUntil = time.Now().Add(-time.Millisecond) // as if the TTL ran out unrenewed
	a.mu.Unlock()
	if got := rounds(t, 1, list, o); len(got[0]) != 0 {
		t.Fatalf("past its safe deadline a replica serves %v", got[0])
	}
}

// TestOneLeader: among the replicas exactly one is the leader, the one
// rendezvous picks; it may write the records of a target nobody owns,
// the others may not; when it leaves, another becomes the leader at its
// next sync.
func TestOneLeader(t *testing.T) {
	c := etcdtest.Start(t).Client()
	list := listed(4)
	a, b := join(t, c, "a", 30*time.Second), join(t, c, "b", 30*time.Second)
	oa, ob := NewOwnership(a, 0), NewOwnership(b, 0)
	rounds(t, 2, list, oa, ob)
	leaders := func() []string {
		var out []string
		for _, r := range []*Replica{a, b} {
			if r.Leader() {
				out = append(out, r.ID())
			}
		}
		return out
	}
	want := Assign(leaderName, []string{"a", "b"})
	if got := leaders(); len(got) != 1 || got[0] != want {
		t.Fatalf("leaders %v, want [%s]", got, want)
	}
	leader, other := a, b
	if want == "b" {
		leader, other = b, a
	}
	if cmps, ok := leader.Fence("removed-target"); !ok || len(cmps) != 2 {
		t.Fatalf("the leader's fence for a target nobody owns: %v %v, want 2 conditions", cmps, ok)
	}
	if _, ok := other.Fence("removed-target"); ok {
		t.Fatal("a replica that is not the leader may write a target nobody owns")
	}
	if _, ok := leader.Fence(list[0].ID); ok && !leader.owns(list[0].ID) {
		t.Fatal("the leader may write a target another replica owns")
	}
	if err := leader.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	rest := oa
	if other == b {
		rest = ob
	}
	rounds(t, 1, list, rest)
	if !other.Leader() {
		t.Fatalf("%s is not the leader after %s left", other.ID(), leader.ID())
	}
}

// TestGivingUpAsksForTheNextCall: a Mine call that gives targets up says
// so on Changed, so that the keys are released as soon as the controller
// has stopped those targets, not at the next periodic sync.
func TestGivingUpAsksForTheNextCall(t *testing.T) {
	c := etcdtest.Start(t).Client()
	list := listed(6)
	a := join(t, c, "a", 30*time.Second)
	oa := NewOwnership(a, 0)
	rounds(t, 1, list, oa) // a alone: all six
	for len(oa.Changed()) > 0 {
		<-oa.Changed()
	}
	b := join(t, c, "b", 30*time.Second)
	ob := NewOwnership(b, 0)
	got := rounds(t, 1, list, oa)
	if len(got[0]) == 6 {
		t.Fatal("a kept every target with b a member")
	}
	select {
	case <-oa.Changed():
	default:
		t.Fatal("giving targets up did not ask for the next call")
	}
	rounds(t, 1, list, oa) // releases
	cover(t, list, rounds(t, 1, list, ob, oa))
}

// TestMineEndsByTheSafeDeadline: with etcd out of reach, Mine does not wait
// for a connection past the safe deadline: it answers "none" by then, so
// the controller stops acting on the targets in time.
func TestMineEndsByTheSafeDeadline(t *testing.T) {
	srv := etcdtest.Start(t)
	p := etcdtest.NewProxy(t, strings.TrimPrefix(srv.Endpoint(), "http://"))
	a := join(t, etcdtest.NewClient(t, "http://"+p.Addr()), "a", 2*time.Second) // not renewed: no Run
	o := NewOwnership(a, 0)
	list := listed(3)
	if got := rounds(t, 1, list, o); len(got[0]) != 3 {
		t.Fatalf("a sole replica serves %v, want all 3", got[0])
	}
	p.Cut()
	deadline := a.SafeUntil()
	mine, err := o.Mine(t.Context(), list)
	returned := time.Now()
	if err != nil || len(mine) != 0 {
		t.Fatalf("Mine with etcd cut off: %v, %v; want none and no error", mine, err)
	}
	if late := returned.Sub(deadline); late > time.Second {
		t.Fatalf("Mine returned %v after the safe deadline, want by it", late)
	}
}

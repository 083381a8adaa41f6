package controller

import (
	"context"
	"testing"
	"time"
)

// grab takes n slots for key without waiting; it fails the test if the
// policy makes it wait.
func grab(t *testing.T, f *fairSlots, key, n int) {
	t.Helper()
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		err := f.acquire(ctx, key)
		cancel()
		if err != nil {
			t.Fatalf("key %d: slot %d of %d not granted at once (held %v, in use %d)", key, i+1, n, f.held, f.inUse)
		}
	}
}

// waiter asks for a slot in the background; the channel is closed once granted.
func waiter(t *testing.T, f *fairSlots, key int) <-chan struct{} {
	t.Helper()
	got := make(chan struct{})
	go func() {
		if err := f.acquire(t.Context(), key); err == nil {
			close(got)
		}
	}()
	return got
}

func granted(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(50 * time.Millisecond):
		return false
	}
}

// waitQueued waits until key has n waiters.
func waitQueued(t *testing.T, f *fairSlots, key, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		got := len(f.waiters[key])
		f.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %d: %d waiters, want %d", key, got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFairSlotsHungKeyDoesNotStarveOthers: two scale sets whose calls hang
// take what they can; a third one still gets slots at once, and while it
// waits the hung ones get none beyond their share.
func TestFairSlotsHungKeyDoesNotStarveOthers(t *testing.T) {
	f := newFairSlots(16)
	for _, k := range []int{1, 2, 3} {
		f.serve(k, true)
	}
	// Key 1 alone takes all but the reserve of the idle keys 2 and 3.
	grab(t, f, 1, 14)
	w1 := waiter(t, f, 1) // waits from now on
	if granted(w1) {
		t.Fatalf("key 1 took a 15th slot: the idle keys' reserve is gone")
	}
	// Key 2 takes its first slot at once; key 3 still has one.
	grab(t, f, 2, 1)
	grab(t, f, 3, 1)
	if f.inUse != 16 {
		t.Fatalf("in use %d, want 16", f.inUse)
	}
	// Everyone waits now. A slot freed by key 2 or 3 goes to them, never
	// to key 1, which is over its share (ceil(16/3) = 6).
	w2, w3 := waiter(t, f, 2), waiter(t, f, 3)
	waitQueued(t, f, 1, 1)
	waitQueued(t, f, 2, 1)
	waitQueued(t, f, 3, 1)
	f.release(2)
	f.release(3)
	if !granted(w2) || !granted(w3) {
		t.Fatalf("freed slots did not reach keys 2 and 3 (held %v)", f.held)
	}
	if granted(w1) || f.held[1] != 14 {
		t.Fatalf("key 1 holds %d: it got a slot while others waited", f.held[1])
	}
}

// TestFairSlotsWorkConserving: with one scale set wanting, it may use
// every slot but the reserve; with none served beside it, all of them.
func TestFairSlotsWorkConserving(t *testing.T) {
	f := newFairSlots(8)
	f.serve(1, true)
	grab(t, f, 1, 8)
	f2 := newFairSlots(8)
	for k := 1; k <= 20; k++ {
		f2.serve(k, true)
	}
	grab(t, f2, 1, 4) // 8 minus a reserve capped at half (4)
	if got := waiter(t, f2, 1); granted(got) {
		t.Fatal("key 1 ate the reserve of the idle keys")
	}
	for k := 2; k <= 5; k++ {
		grab(t, f2, k, 1)
	}
}

// TestFairSlotsSmallCapacity: 4 slots, two scale sets whose calls hang and
// one healthy: the healthy one always gets a slot back once its call
// ends, never the hung ones.
func TestFairSlotsSmallCapacity(t *testing.T) {
	f := newFairSlots(4)
	for k := 1; k <= 3; k++ {
		f.serve(k, true)
	}
	grab(t, f, 1, 2)
	if got := waiter(t, f, 1); granted(got) {
		t.Fatal("hung key 1 took a third slot")
	}
	grab(t, f, 2, 1)
	if got := waiter(t, f, 2); granted(got) {
		t.Fatal("hung key 2 took the healthy key's slot")
	}
	for range 5 { // the healthy key's calls end one after the other
		grab(t, f, 3, 1)
		f.release(3)
	}
	if f.held[1] != 2 || f.held[2] != 1 {
		t.Fatalf("held %v: a hung key got the healthy key's slot", f.held)
	}
}

// TestFairSlotsEveryoneBusy: ten scale sets all want more; one of them
// took most slots while it was alone. As its calls finish, the slots go
// to the others until each has its share (ceil(64/10) = 7), and every
// slot stays in use.
func TestFairSlotsEveryoneBusy(t *testing.T) {
	f := newFairSlots(64)
	for k := 1; k <= 10; k++ {
		f.serve(k, true)
	}
	grab(t, f, 1, 55) // all but the reserve of the 9 idle keys (under half)
	for k := 2; k <= 10; k++ {
		grab(t, f, k, 1)
	}
	for k := 1; k <= 10; k++ {
		for range 6 {
			waiter(t, f, k)
		}
		waitQueued(t, f, k, 6)
	}
	for range 54 {
		f.release(1)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inUse != 64 {
		t.Fatalf("in use %d, want 64 (held %v)", f.inUse, f.held)
	}
	for k := 1; k <= 10; k++ {
		if f.held[k] > 7 || (k > 1 && f.held[k] < 6) {
			t.Errorf("key %d holds %d slots; want at most its share 7, and 6 or more for keys 2-10 (held %v)", k, f.held[k], f.held)
		}
	}
}

// TestFairSlotsNoIdleSlotWhileKeysWait: keys 1 and 2 hold their share
// (ceil(8/3) = 3) and want more; key 3 ends one of its calls. The freed
// slot goes to key 1 or 2 rather than stand idle. At the end of a 500-job
// burst over 10 scale sets (C=128, L=3s) idle slots like it added a fifth
// round of AddInstance to the four of the bound (15.3 s against 12 s).
func TestFairSlotsNoIdleSlotWhileKeysWait(t *testing.T) {
	f := newFairSlots(8)
	for k := 1; k <= 3; k++ {
		f.serve(k, true)
	}
	grab(t, f, 1, 3)
	grab(t, f, 2, 3)
	grab(t, f, 3, 2)
	w1, w2 := waiter(t, f, 1), waiter(t, f, 2)
	waitQueued(t, f, 1, 1)
	waitQueued(t, f, 2, 1)
	f.release(3)
	select {
	case <-w1:
	case <-w2:
	case <-time.After(5 * time.Second):
		t.Fatalf("a slot stands free while keys 1 and 2 wait (held %v, in use %d)", f.held, f.inUse)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inUse != 8 || f.held[1]+f.held[2] != 7 {
		t.Fatalf("held %v, in use %d: want the freed slot with key 1 or 2", f.held, f.inUse)
	}
}

// TestFairSlotsCancel: a waiter that gives up leaves no trace; a slot
// granted as it gave up is given back.
func TestFairSlotsCancel(t *testing.T) {
	f := newFairSlots(1)
	f.serve(1, true)
	grab(t, f, 1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.acquire(ctx, 1) }()
	waitQueued(t, f, 1, 1)
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a cancelled acquire succeeded")
	}
	f.release(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inUse != 0 || len(f.queue) != 0 || len(f.waiters) != 0 {
		t.Fatalf("after cancel and release: in use %d, queue %v, waiters %v", f.inUse, f.queue, f.waiters)
	}
}

// waiting counts the acquires of key waiting for a slot.
func (f *fairSlots) waiting(key int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters[key])
}

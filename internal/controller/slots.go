package controller

import (
	"context"
	"slices"
	"sync"
)

// fairSlots bounds the provisioning work in flight over all scale sets
// (its capacity is ProvisionConcurrency) and shares it between them, so
// that one scale set whose backend hangs cannot starve the others:
//
//   - a served scale set that holds no slot can take one at once: the
//     others leave one free for each such scale set, up to half the
//     capacity;
//   - while scale sets wait, a freed slot goes first to a waiting scale
//     set below its fair share (the capacity divided by the scale sets
//     that hold or want slots), round-robin; only when every waiting
//     scale set has its share does one of them, round-robin, take more;
//   - otherwise a scale set may use what the others leave unused, so a
//     burst on one target is not held back by idle ones.
//
// Slots taken are not taken back: a scale set whose calls hang keeps them
// until they time out, and shows as stuck in readiness and metrics.
type fairSlots struct {
	mu       sync.Mutex
	capacity int
	inUse    int
	held     map[int]int
	waiters  map[int][]chan struct{} // FIFO per key
	queue    []int                   // keys with waiters, in round-robin order
	served   map[int]bool            // keys that may want a slot any time
}

func newFairSlots(capacity int) *fairSlots {
	return &fairSlots{
		capacity: capacity,
		held:     map[int]int{},
		waiters:  map[int][]chan struct{}{},
		served:   map[int]bool{},
	}
}

// serve registers (on) or unregisters a key whose demand the others must
// leave room for.
func (f *fairSlots) serve(key int, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		f.served[key] = true
	} else {
		delete(f.served, key)
	}
	f.grantLocked()
}

// acquire takes a slot for key, waiting until the policy allows it or ctx
// ends.
func (f *fairSlots) acquire(ctx context.Context, key int) error {
	f.mu.Lock()
	if len(f.waiters[key]) == 0 && f.allowedLocked(key) {
		f.takeLocked(key)
		f.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	if len(f.waiters[key]) == 0 {
		f.queue = append(f.queue, key)
	}
	f.waiters[key] = append(f.waiters[key], ch)
	f.mu.Unlock()

	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		f.mu.Lock()
		defer f.mu.Unlock()
		select {
		case <-ch: // granted meanwhile: give it back
			f.releaseLocked(key)
		default:
			f.dropWaiterLocked(key, ch)
		}
		return ctx.Err()
	}
}

// release gives back a slot of key.
func (f *fairSlots) release(key int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releaseLocked(key)
}

// holding returns the slots key holds, for status.
func (f *fairSlots) holding(key int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[key]
}

func (f *fairSlots) releaseLocked(key int) {
	f.held[key]--
	if f.held[key] <= 0 {
		delete(f.held, key)
	}
	f.inUse--
	f.grantLocked()
}

func (f *fairSlots) takeLocked(key int) {
	f.held[key]++
	f.inUse++
}

// allowedLocked reports whether key may take a slot now.
func (f *fairSlots) allowedLocked(key int) bool {
	free := f.capacity - f.inUse
	if free <= 0 {
		return false
	}
	// Keep one slot free for each other served key that holds none, up
	// to half the capacity.
	reserve := 0
	if f.held[key] > 0 { // a key's first slot is its reserved one
		for k := range f.served {
			if k != key && f.held[k] == 0 {
				reserve++
			}
		}
		reserve = min(reserve, f.capacity/2)
	}
	if free <= reserve {
		return false
	}
	// No slot beyond the fair share while another key below its share
	// waits: the slot is that key's. When every waiting key has its share,
	// a free slot still goes to one of them (round-robin), rather than
	// stand idle: capped at their shares, keys that started behind (a
	// burst reaches scale sets one after the other) needed one more round
	// of AddInstance at the end of a burst while slots stood free
	// (TestFairSlotsNoIdleSlotWhileKeysWait).
	if f.held[key] >= f.shareLocked() && f.othersBelowShareWaitLocked(key) {
		return false
	}
	return true
}

// othersBelowShareWaitLocked reports whether a key other than key waits
// while it holds less than its share.
func (f *fairSlots) othersBelowShareWaitLocked(key int) bool {
	share := f.shareLocked()
	for _, k := range f.queue {
		if k != key && f.held[k] < share {
			return true
		}
	}
	return false
}

// shareLocked is the capacity divided by the keys holding or wanting
// slots, rounded up so that together they can use every slot.
func (f *fairSlots) shareLocked() int {
	wanting := len(f.held)
	for _, k := range f.queue {
		if f.held[k] == 0 {
			wanting++
		}
	}
	wanting = max(1, wanting)
	return max(1, (f.capacity+wanting-1)/wanting)
}

// grantLocked hands free slots to waiters, round-robin, first to keys
// below their share.
func (f *fairSlots) grantLocked() {
	for f.inUse < f.capacity && len(f.queue) > 0 {
		i := slices.IndexFunc(f.queue, f.allowedLocked)
		if i < 0 {
			return
		}
		key := f.queue[i]
		ch := f.waiters[key][0]
		f.waiters[key] = f.waiters[key][1:]
		// Round-robin: the key goes to the back of the queue, or leaves it.
		f.queue = slices.Delete(f.queue, i, i+1)
		if len(f.waiters[key]) > 0 {
			f.queue = append(f.queue, key)
		} else {
			delete(f.waiters, key)
		}
		f.takeLocked(key)
		close(ch)
	}
}

func (f *fairSlots) dropWaiterLocked(key int, ch chan struct{}) {
	f.waiters[key] = slices.DeleteFunc(f.waiters[key], func(c chan struct{}) bool { return c == ch })
	if len(f.waiters[key]) == 0 {
		delete(f.waiters, key)
		f.queue = slices.DeleteFunc(f.queue, func(k int) bool { return k == key })
	}
	// Its departure may let others take a slot.
	f.grantLocked()
}

package shoes

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// TestWarmStartsProcessesAheadOfDemand: Warm starts the warm floor before
// any call, the calls then use those processes, and after a burst beyond
// the floor the pool shrinks once the processes have been idle for
// IdleTimeout. The pool never runs more than PoolSize processes.
func TestWarmStartsProcessesAheadOfDemand(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, func(c *Config) { c.PoolSize, c.WarmProcesses, c.IdleTimeout = 4, 2, 300*time.Millisecond })
	f.host.Warm()
	f.host.Warm() // a second call does nothing
	testkit.Eventually(t, 20*time.Second, "2 warm processes", func() bool {
		return f.host.PoolStats() == PoolStats{Size: 4, Processes: 2}
	})

	// A burst of 4: 2 warm processes and 2 started for it.
	release := f.holdCalls(t, 4)
	testkit.Eventually(t, 20*time.Second, "4 busy processes", func() bool {
		return f.host.PoolStats() == PoolStats{Size: 4, Processes: 4, Busy: 4}
	})
	release()
	// The extra two stop once idle long enough, and with no call for
	// IdleTimeout the pool keeps one process (TestWarmPoolShrinksWhenIdle).
	testkit.Eventually(t, 20*time.Second, "the pool back at 1", func() bool {
		st := f.host.PoolStats()
		if st.Processes > st.Size {
			t.Errorf("the pool runs %d processes, more than its size %d", st.Processes, st.Size)
		}
		return st == PoolStats{Size: 4, Processes: 1}
	})
	closeWithin(t, f.host, 20*time.Second)
	if got := f.host.PoolStats(); got.Processes != 0 {
		t.Fatalf("after Close: %+v, want no process", got)
	}
}

func TestWarmProcessesValidate(t *testing.T) {
	for _, c := range []Config{{Path: "/x", PoolSize: 2, WarmProcesses: 3}, {Path: "/x", WarmProcesses: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error about WarmProcesses", c)
		}
	}
}

// TestWarmPoolShrinksWhenIdle: with no call for IdleTimeout, the pool
// keeps one process, not the warm floor; a call makes it warm again.
func TestWarmPoolShrinksWhenIdle(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, func(c *Config) { c.PoolSize, c.WarmProcesses, c.IdleTimeout = 4, 3, 1500*time.Millisecond })
	f.host.Warm()
	testkit.Eventually(t, 20*time.Second, "3 warm processes", func() bool { return f.host.PoolStats().Processes == 3 })
	testkit.Eventually(t, 20*time.Second, "1 process once idle", func() bool { return f.host.PoolStats().Processes == 1 })
	if _, err := f.host.AddInstance(context.Background(), addReq()); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "3 warm processes again after a call", func() bool { return f.host.PoolStats().Processes == 3 })
	closeWithin(t, f.host, 20*time.Second)
}

// TestWarmStartsShareNoEnvironment: processes started at once each get
// their own copy of the environment. go-plugin appends to the command's
// Env, so a shared slice with spare capacity was written by concurrent
// starts (the race detector caught it in the warm pool's first burst).
func TestWarmStartsShareNoEnvironment(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, func(c *Config) { c.PoolSize, c.WarmProcesses = 4, 4 })
	f.host.launch.env = slices.Grow(f.host.launch.env, 64) // spare capacity, as slices.Concat may leave
	f.host.Warm()
	testkit.Eventually(t, 20*time.Second, "4 warm processes", func() bool {
		return f.host.PoolStats() == PoolStats{Size: 4, Processes: 4}
	})
	closeWithin(t, f.host, 20*time.Second)
}

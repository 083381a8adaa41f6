package controller

// Scaling a scale set to its desired count: min runners + assigned jobs,
// capped at max runners (desiredRunners). Up when a message or a
// finished runner changes the count, down in the reaper's passes.

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// The reconcile loop keeps the scale set's runner count at the desired
// count. It runs on demand: a wake (a new desired count, a finished
// runner) starts it, it passes again every JanitorInterval while runners
// are desired (to retry a scale-up after a provisioning pause or a failed
// write), and it ends once nothing is desired and no wake is pending. An
// idle scale set holds no goroutine for it: at 1,000 idle targets, one
// each waiting for nothing was a quarter of the goroutines (issue 15).

// serveReconcile lets wakes run the reconcile loop under ctx, counted in
// wg, until endReconcile, and runs a first pass.
func (set *scaleSet) serveReconcile(ctx context.Context, wg *sync.WaitGroup) {
	set.serveSlots(true)
	set.loopMu.Lock()
	set.loopCtx, set.loopWG = ctx, wg
	set.loopMu.Unlock()
	set.wake()
}

// endReconcile stops starting the reconcile loop; ctx must be cancelled
// already, which ends a loop that runs. A loop started before it is in
// wg, so a Wait after endReconcile waits for it.
func (set *scaleSet) endReconcile() {
	set.loopMu.Lock()
	set.loopCtx, set.loopWG = nil, nil
	set.loopMu.Unlock()
	set.serveSlots(false)
}

// serveSlots registers (on) or unregisters the scale set with both stages'
// slots, which leave room for a served scale set to start provisioning.
func (set *scaleSet) serveSlots(on bool) {
	for _, slots := range []*fairSlots{set.c.prepareSlots, set.c.provisionSlots} {
		slots.serve(set.id, on)
	}
}

// wake has the reconcile loop pass soon: it starts the loop if none runs.
func (set *scaleSet) wake() {
	select {
	case set.kick <- struct{}{}:
	default:
	}
	set.loopMu.Lock()
	defer set.loopMu.Unlock()
	ctx, wg := set.loopCtx, set.loopWG
	if ctx == nil || ctx.Err() != nil || set.running == ctx {
		return // not served, or its loop runs
	}
	set.running = ctx
	wg.Add(1)
	go func() {
		defer wg.Done()
		set.reconcileLoop(ctx)
	}()
}

// loopDone reports whether the loop of ctx ends: its context is done, or
// nothing is desired and no wake is pending. loopMu orders it with wake,
// which sends before it looks whether a loop runs: either the loop sees
// the wake's kick, or the wake sees no loop and starts one.
func (set *scaleSet) loopDone(ctx context.Context) bool {
	set.loopMu.Lock()
	defer set.loopMu.Unlock()
	if ctx.Err() == nil && len(set.kick) > 0 {
		return false
	}
	if set.running == ctx {
		set.running = nil
	}
	return true
}

func (set *scaleSet) reconcileLoop(ctx context.Context) {
	c := set.c
	t := time.NewTicker(c.cfg.JanitorInterval)
	defer t.Stop()
	for {
		var tick <-chan time.Time
		if set.desired.Load() > 0 && ctx.Err() == nil {
			tick = t.C
		} else if set.loopDone(ctx) {
			return
		}
		select {
		case <-ctx.Done():
			continue // loopDone ends it
		case <-set.kick:
		case <-tick:
		}
		if err := set.scaleUp(ctx); err != nil && !isCanceled(ctx, err) {
			set.log.Error("reconcile runners", "err", err)
		}
	}
}

// inheritedUnfinished counts, with replicas, the pending and configured
// records of the scale set that no provisioning of this process owns: a
// replica that died or lost the target left them, and they are undone
// only after the hand-over grace (sweepUnowned). They do not stand for
// runners to come, or the jobs of a dead replica's targets would wait for
// that grace; if the old owner's AddInstance does answer, the runner it
// records is one more idle runner, which a scale-down removes.
func (set *scaleSet) inheritedUnfinished() (int, error) {
	c := set.c
	if c.cfg.Ownership.HandOverGrace() == 0 {
		return 0, nil // one replica: every unfinished record is this process's
	}
	// What this process owns is read before the records: a provisioning
	// that ends between the two reads is still this process's, not one a
	// dead replica left (read after, it looked inherited, and one runner
	// too many was started).
	owned := c.ownedNames()
	rs, err := c.store.ListRunners(store.RunnerFilter{States: []store.RunnerState{store.StatePending, store.StateConfigured}})
	if err != nil {
		return 0, fmt.Errorf("list unfinished runners: %w", err)
	}
	n := 0
	for _, r := range rs {
		if r.ScaleSetID == set.id && !owned[r.Name] {
			n++
		}
	}
	return n, nil
}

// scaleUp creates a pending record for every missing runner and starts
// its provisioning in the background. It never waits for an instance.
func (set *scaleSet) scaleUp(ctx context.Context) error {
	c := set.c
	now := c.cfg.Now()
	if set.paused(now) {
		return nil
	}
	if set.desired.Load() <= 0 {
		return nil // nothing to create: spare the store read
	}
	set.countMu.Lock()
	defer set.countMu.Unlock()
	counts, err := c.store.CountRunners()
	if err != nil {
		return fmt.Errorf("count runners: %w", err)
	}
	count, runners := 0, 0
	for state, n := range counts[set.id] {
		runners += n
		if state.Counted() {
			count += n
		}
	}
	if count >= int(set.desired.Load()) && counts[set.id][store.StatePending]+counts[set.id][store.StateConfigured] > 0 {
		inherited, err := set.inheritedUnfinished()
		if err != nil {
			return err
		}
		count -= inherited
	}
	want := int(set.desired.Load())
	if count >= want {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	set.log.Debug("scaling up", "desired", want, "current", count, "runners", runners)
	// All missing runners are written in one transaction (one commit, not
	// one per runner), then their provisioning starts.
	missing := make([]store.Runner, 0, want-count)
	for range want - count {
		missing = append(missing, store.Runner{
			Name:         "myshoes-" + uuid.NewString(),
			TargetID:     set.targetID,
			Scope:        set.scope,
			ScaleSetID:   set.id,
			ResourceType: set.resourceType.String(),
			State:        store.StatePending,
			StateSince:   map[store.RunnerState]time.Time{store.StatePending: now},
			CreatedAt:    now,
			UpdatedAt:    now,
		})
	}
	if err := c.store.CreateRunners(missing); err != nil {
		// The state file fails (a full disk): try again later, and later.
		pause := set.provisionFailed(c)
		return fmt.Errorf("create runner records (provisioning paused for %s): %w", pause, err)
	}
	for _, r := range missing {
		c.startProvision(ctx, set, r.Name)
	}
	return nil
}

// scaleDown removes the idle runners beyond the desired count, oldest
// idle first, once idle for ScaleDownGrace; remove is the reaper pass's
// removal (GitHub first: a runner that took a job meanwhile stays), which
// marks what it removed in removed. runners is the pass's list of every
// runner. Nothing goes before the scale set's statistics are known: until
// the session answers after a start, the desired count is only the floor.
func (s *scaleSet) scaleDown(runners []store.Runner, now time.Time, removed map[string]bool, remove func(store.Runner, string)) {
	if !s.knowsDesired() {
		return
	}
	desired := int(s.desired.Load())
	var idle []store.Runner
	count := 0
	for _, r := range runners {
		if r.ScaleSetID != s.id || removed[r.Name] || !r.State.Counted() {
			continue
		}
		count++
		if r.State == store.StateIdle && now.Sub(idleSince(r)) > s.c.cfg.ScaleDownGrace {
			idle = append(idle, r)
		}
	}
	sort.Slice(idle, func(i, j int) bool { return idleSince(idle[i]).Before(idleSince(idle[j])) })
	for i := 0; i < len(idle) && count > desired; i++ {
		before := len(removed)
		remove(idle[i], reasonScaleDown)
		if len(removed) > before {
			count--
		}
	}
}

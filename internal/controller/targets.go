package controller

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/policy"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// syncStatus is what the last reads of myshoes's target list left.
type syncStatus struct {
	LastSuccess time.Time
	LastError   string
	Failures    int
}

// syncTargets reads the target list every SyncInterval and starts and
// stops target workers to match it. A failed read keeps the workers that
// run and retries with backoff: myshoes being down never stops a listener.
// When the ownership changes (another replica came or went, this one's
// lease is in doubt), the last list read is applied again at once, even
// while myshoes is down: a replica past its safe deadline must stop.
func (c *Controller) syncTargets(ctx context.Context) error {
	var last []myshoes.Target // the last list read; nil before the first
	for {
		wait := c.cfg.SyncInterval
		targets, err := c.listTargets(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			c.rec.TargetSync(c.cfg.Now(), err)
			c.mu.Lock()
			c.sync.Failures++
			c.sync.LastError = err.Error()
			n := c.sync.Failures
			c.mu.Unlock()
			wait = min(c.backoff(n), c.cfg.SyncInterval)
			if n == 1 || n%10 == 0 {
				c.log.Warn("read targets from myshoes; keeping the last good list", "err", err, "failures", n)
			}
		default:
			now := c.cfg.Now()
			c.rec.TargetSync(now, nil)
			c.mu.Lock()
			c.sync = syncStatus{LastSuccess: now}
			c.mu.Unlock()
			last = targets
			c.applyTargets(ctx, slices.Clone(last))
		}
		if err := c.waitForSync(ctx, wait, func() {
			if last != nil {
				c.applyTargets(ctx, slices.Clone(last))
			}
		}); err != nil {
			return err
		}
	}
}

// waitForSync waits until the next read of the target list is due, or
// wanted now (wakeSync); each ownership change meanwhile calls reapply.
func (c *Controller) waitForSync(ctx context.Context, wait time.Duration, reapply func()) error {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.syncNow:
			return nil
		case <-t.C:
			return nil
		case <-c.cfg.Ownership.Changed():
			reapply()
		case <-c.policyNow:
			reapply()
		}
	}
}

// wakeSync has the target list read now.
func (c *Controller) wakeSync() {
	select {
	case c.syncNow <- struct{}{}:
	default:
	}
}

func (c *Controller) listTargets(ctx context.Context) ([]myshoes.Target, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.SyncTimeout)
	defer cancel()
	return c.targets.ListTargets(ctx)
}

// applyTargets starts workers for the new targets this replica serves
// (Ownership), stops the workers of targets that left the list, went to
// another replica (a hand-over: their runners stay) or were disabled by
// the policy, restarts those whose scope, resource type or scale set
// (the policy's name, labels, runner group) changed, and gives the others
// the policy's min and max runners.
func (c *Controller) applyTargets(ctx context.Context, targets []myshoes.Target) {
	targets, effs := c.applyPolicy(targets)
	var valid []myshoes.Target
	for _, t := range targets {
		if err := myshoes.ValidScope(t.Scope); err != nil {
			c.log.Warn("skip target with an invalid scope", "target", t.ID, "scope", t.Scope, "err", err)
			continue
		}
		valid = append(valid, t)
	}
	listed := c.oneTargetPerScope(valid)
	mine, err := c.cfg.Ownership.Mine(ctx, slices.Collect(maps.Values(listed)))
	if err != nil {
		c.log.Warn("find the targets this replica serves; keeping the served ones", "err", err)
		return
	}
	want := make(map[string]myshoes.Target, len(mine))
	for _, t := range mine {
		want[t.ID] = t
	}
	elsewhere := make(map[string]bool)
	ids := make(map[string]bool, len(listed))
	for id := range listed {
		ids[id] = true
		if _, ok := want[id]; !ok {
			elsewhere[id] = true
		}
	}
	// First what the reaper judges by: a listed target's runners are
	// never "removed", whether its worker runs yet or not, and another
	// replica's are left to it from now on, before its worker here stops.
	leader := c.cfg.Ownership.Leader()
	c.mu.Lock()
	first := c.listed == nil
	c.listed, c.elsewhere, c.leader = ids, elsewhere, leader
	c.mu.Unlock()

	c.mu.Lock()
	var stop, keep []*targetWorker
	for id, w := range c.workers {
		t, ok := want[id]
		if !ok || t.Scope != w.target.Scope || t.ResourceType != w.target.ResourceType {
			stop = append(stop, w)
			delete(c.workers, id)
			continue
		}
		if old := w.policy(); !policy.SameScaleSet(old.Settings, effs[id].Settings) {
			c.log.Info("the policy changes the scale set; restarting the target", "target", id, "scope", t.Scope, "rule", effs[id].Rule)
			stop = append(stop, w)
			delete(c.workers, id)
			continue
		}
		keep = append(keep, w)
	}
	c.mu.Unlock()
	// Outside c.mu: setTarget and setPolicy write the state file.
	for _, w := range keep {
		w.setTarget(want[w.target.ID])
		w.setPolicy(effs[w.target.ID])
	}

	for _, w := range stop {
		c.log.Info("stop target", "target", w.target.ID, "scope", w.target.Scope)
		w.stop()
		// A target another replica serves now is handed over, not
		// removed: its runners are left to it. Either way its series
		// go from this replica's metrics, so sums over replicas count
		// each scale set once.
		if _, ok := listed[w.target.ID]; !ok {
			c.retireTarget(ctx, w.target.ID)
		}
		if set := w.scaleSet(); set != nil {
			c.rec.Forget(set.scope, set.name)
		}
	}

	c.mu.Lock()
	for id, t := range want {
		if _, ok := c.workers[id]; ok {
			continue
		}
		c.log.Info("start target", "target", id, "scope", t.Scope, "resource_type", t.ResourceType)
		w := c.newTargetWorker(ctx, t, effs[id])
		c.workers[id] = w
		w.start()
	}
	c.mu.Unlock()
	if first {
		c.wakeReaper() // a first pass now: unknown-instance records may be resolvable
	}
}

// oneTargetPerScope keeps one target of each scope, compared without case
// as GitHub compares owners and repositories: two workers on one scope
// would share one scale set and delete each other's sessions in a loop.
// The one served already is kept, else the oldest; the others are skipped
// with a warning naming both target IDs, once per set of duplicates.
func (c *Controller) oneTargetPerScope(targets []myshoes.Target) map[string]myshoes.Target {
	c.mu.Lock()
	served := make(map[string]bool, len(c.workers))
	for id := range c.workers {
		served[id] = true
	}
	c.mu.Unlock()
	slices.SortFunc(targets, func(a, b myshoes.Target) int {
		switch {
		case served[a.ID] != served[b.ID]:
			if served[a.ID] {
				return -1
			}
			return 1
		case !a.CreatedAt.Equal(b.CreatedAt):
			return a.CreatedAt.Compare(b.CreatedAt)
		}
		return strings.Compare(a.ID, b.ID)
	})
	want := make(map[string]myshoes.Target, len(targets))
	kept := make(map[string]myshoes.Target, len(targets)) // by lower-case scope
	var dups []string
	for _, t := range targets {
		key := strings.ToLower(t.Scope)
		if k, ok := kept[key]; ok {
			dups = append(dups, k.ID+"="+t.ID)
			if !c.warnedDuplicate[k.ID+"="+t.ID] {
				c.log.Warn("two myshoes targets for one scope: serving one, skipping the other",
					"scope", t.Scope, "served_target", k.ID, "served_scope", k.Scope, "skipped_target", t.ID)
			}
			continue
		}
		kept[key] = t
		want[t.ID] = t
	}
	c.warnedDuplicate = make(map[string]bool, len(dups))
	for _, d := range dups {
		c.warnedDuplicate[d] = true
	}
	return want
}

func (c *Controller) stopAllWorkers() {
	c.mu.Lock()
	workers := make([]*targetWorker, 0, len(c.workers))
	for id, w := range c.workers {
		workers = append(workers, w)
		delete(c.workers, id)
	}
	c.mu.Unlock()
	for _, w := range workers {
		w.cancel()
	}
	for _, w := range workers {
		<-w.done
	}
}

// isCanceled reports whether err only says that ctx ended.
func isCanceled(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

// retireTarget removes the idle runners of a target that left myshoes's
// list. Busy runners finish their jobs; the reaper deletes them, and the
// runners still being provisioned, afterwards.
func (c *Controller) retireTarget(ctx context.Context, targetID string) {
	runners, err := c.store.ListRunners(store.RunnerFilter{TargetID: targetID, States: []store.RunnerState{store.StateIdle}})
	if err != nil {
		c.log.Error("list runners of a removed target", "target", targetID, "err", err)
		return
	}
	for _, r := range runners {
		if _, err := c.removeRunner(ctx, r, reasonTargetRemoved, false); err != nil {
			c.runnerLog(r).Warn("remove runner of a removed target", "err", err)
		}
	}
}

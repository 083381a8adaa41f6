package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// Reasons a runner leaves, as recorded in its history record.
const (
	reasonCompleted        = "completed"
	reasonBootstrapTimeout = "bootstrap-timeout"
	reasonIdleTTL          = "idle-ttl"
	reasonScaleDown        = "scale-down"
	reasonDeleteFailed     = "delete-failed"
	reasonTargetRemoved    = "target-removed"
	reasonScaleSetDeleted  = "scale-set-deleted"
	reasonRemoved          = "removed"
)

// busyCheckAfter is how long a runner may be busy before the reaper asks
// GitHub whether it still exists.
const busyCheckAfter = 10 * time.Minute

// ErrRunnerBusy is returned when a busy runner is asked to be removed
// without force.
var ErrRunnerBusy = errors.New("runner is busy with a job")

// ErrRunnerProvisioning is returned when a runner still being provisioned
// is asked to be removed: its provisioning owns it until it is idle.
var ErrRunnerProvisioning = errors.New("runner is being provisioned; remove it once it is idle")

// ErrServedElsewhere is returned when a runner whose target another
// replica serves is asked to be removed here: that replica must do it.
var ErrServedElsewhere = errors.New("its target is served by another replica (scalesets ls --store etcd names it); send the request to that replica")

// reaper runs a reap pass every ReaperInterval, with up to 10% jitter.
func (c *Controller) reaper(ctx context.Context) error {
	for {
		jitter := time.Duration(rand.Int64N(int64(c.cfg.ReaperInterval)/10 + 1))
		t := time.NewTimer(c.cfg.ReaperInterval + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-c.reapNow:
			t.Stop()
		case <-t.C:
		}
		if err := c.reap(ctx); err != nil && !isCanceled(ctx, err) {
			c.log.Error("reap runners", "err", err)
		}
	}
}

// wakeReaper has the reaper make a pass now.
func (c *Controller) wakeReaper() {
	select {
	case c.reapNow <- struct{}{}:
	default:
	}
}

// reap removes the runners that hold a slot for nothing: those that never
// came online (bootstrap timeout), idle for too long (idle TTL), beyond
// the desired count (scale-down), of removed targets; it gives up deletes
// that failed for too long. At most ReaperMaxRemovals runners go per pass.
func (c *Controller) reap(ctx context.Context) error {
	if !c.knowsTargets() {
		// Until the first sync says which targets are this replica's,
		// no runner is known to be ours to reap (the sync wakes us).
		return nil
	}
	runners, err := c.store.ListRunners(store.RunnerFilter{})
	if err != nil {
		return fmt.Errorf("list runners: %w", err)
	}
	now := c.cfg.Now()
	budget := c.cfg.ReaperMaxRemovals
	served := c.servedScaleSets()
	removed := map[string]bool{}
	remove := func(r store.Runner, reason string) {
		if budget <= 0 || removed[r.Name] {
			return
		}
		ok, err := c.removeRunner(ctx, r, reason, false)
		switch {
		case err != nil:
			c.runnerLog(r).Warn("reap runner", "reason", reason, "err", err)
		case ok:
			budget--
			removed[r.Name] = true
		}
	}

	for _, r := range runners {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.isServedElsewhere(r.TargetID) {
			continue // another replica's runner: its rules are that replica's
		}
		// Unserved: its target is gone, or served by a new scale set.
		// Not while its target's scale set is still being ensured (at a
		// start, or while GitHub fails): that runner is not known to be
		// unserved.
		unserved := c.unserved(r, served)
		switch r.State {
		case store.StateUnknownInstance:
			c.resolveByName(r)
		case store.StateDeleting:
			since := r.StateSince[store.StateDeleting]
			// Given up once tried (a record found after a long stop
			// gets its tries first) for DeleteGiveUp.
			// A failed try moves NextAttemptAt past the state's start.
			tried := r.NextAttemptAt.After(since)
			if !since.IsZero() && now.Sub(since) > c.cfg.DeleteGiveUp && tried && !c.isDeleteRunning(r.Name) {
				c.giveUpDelete(r)
			}
		case store.StateIdle:
			if now.Sub(r.CreatedAt) > c.cfg.BootstrapTimeout {
				if online, err := c.cameOnline(ctx, r); err != nil {
					c.runnerLog(r).Warn("check runner status", "err", err)
				} else if !online {
					remove(r, reasonBootstrapTimeout)
					continue
				}
			}
			if c.cfg.IdleTTL > 0 && now.Sub(idleSince(r)) > c.cfg.IdleTTL {
				remove(r, reasonIdleTTL)
				continue
			}
			if unserved {
				remove(r, c.unservedReason(r))
			}
		case store.StateBusy:
			// A busy runner whose JobCompleted never reached us (its
			// target was removed, or the message was lost) would hold
			// its slot and instance forever: ask GitHub about runners of
			// removed targets, and about runners busy for long. An
			// ephemeral runner is gone once its job is done.
			switch {
			case unserved:
				c.finishOrphan(ctx, r, c.unservedReason(r))
			case now.Sub(r.StateSince[store.StateBusy]) > busyCheckAfter:
				c.finishOrphan(ctx, r, reasonCompleted)
			}
		}
	}

	for _, set := range served {
		if !c.isServedElsewhere(set.targetID) { // handed over, its worker stopping
			set.scaleDown(runners, now, removed, remove)
		}
	}

	c.retireScaleSets(ctx, served)
	return nil
}

func idleSince(r store.Runner) time.Time {
	if t := r.StateSince[store.StateIdle]; !t.IsZero() {
		return t
	}
	return r.CreatedAt
}

// cameOnline asks GitHub whether a runner ever connected. A runner GitHub
// does not know never registered, or is gone.
func (c *Controller) cameOnline(ctx context.Context, r store.Runner) (bool, error) {
	if r.RunnerID == 0 {
		return false, nil
	}
	st, found, err := c.gh.ScaleSet(r.Scope, r.ScaleSetID).RunnerStatus(ctx, r.RunnerID)
	if err != nil || !found {
		return false, err
	}
	return st.Online(), nil
}

// unservedReason says why a runner of a scale set no longer served
// leaves: its target left myshoes's list, or its scale set was deleted on
// GitHub and the target is served by a new one.
func (c *Controller) unservedReason(r store.Runner) string {
	if c.isServedTarget(r.TargetID) {
		return reasonScaleSetDeleted
	}
	return reasonTargetRemoved
}

// finishOrphan deletes a busy runner whose JobCompleted we did not get
// (its target was removed, its scale set deleted, or the message was lost)
// once GitHub no longer knows it: its job is done.
func (c *Controller) finishOrphan(ctx context.Context, r store.Runner, reason string) {
	_, found, err := c.gh.ScaleSet(r.Scope, r.ScaleSetID).RunnerStatus(ctx, r.RunnerID)
	switch {
	case err == nil && !found:
		if err := c.markDeleting(r.Name, reason); err == nil {
			c.startDelete(r.Name)
		}
	case err != nil:
		c.runnerLog(r).Warn("check whether a busy runner still exists", "err", err)
	}
}

// removeRunner removes a runner the way every removal goes: RemoveRunner
// on GitHub first, so it cannot take a job; if GitHub answers that a job
// is running, the runner is busy and stays (unless force). Then the
// instance is deleted and the record goes to history with reason. It
// reports whether the runner is on its way out.
func (c *Controller) removeRunner(ctx context.Context, r store.Runner, reason string, force bool) (bool, error) {
	if r.RunnerID != 0 {
		err := c.gh.ScaleSet(r.Scope, r.ScaleSetID).RemoveRunner(ctx, r.RunnerID)
		switch {
		case err == nil:
		case errors.Is(err, ErrJobRunning):
			if !force {
				return false, nil
			}
			c.runnerLog(r).Warn("removing a runner that runs a job (forced)")
		default:
			return false, err
		}
	}
	if err := c.markDeleting(r.Name, reason); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("mark runner deleting: %w", err)
	}
	c.rec.RunnerReaped(r.Scope, c.scaleSetName(r), reason)
	c.runnerLog(r).Info("removing runner", "reason", reason)
	c.startDelete(r.Name)
	return true, nil
}

// RemoveRunner removes one runner by name, as `runners rm` asks: a busy
// runner only with force.
func (c *Controller) RemoveRunner(ctx context.Context, name string, force bool) error {
	select {
	case <-c.started:
	case <-ctx.Done():
		return fmt.Errorf("runner %s: the controller has not started: %w", name, ctx.Err())
	}
	r, err := c.store.GetRunner(name)
	if err != nil {
		return fmt.Errorf("runner %s: %w", name, err)
	}
	if c.isServedElsewhere(r.TargetID) {
		// Before any GitHub call: the removal is the owner's to make.
		return fmt.Errorf("runner %s: %w", name, ErrServedElsewhere)
	}
	if r.State == store.StateDeleting {
		c.startDelete(name)
		return nil
	}
	if r.State == store.StateBusy && !force {
		return fmt.Errorf("runner %s: %w; use --force to remove it anyway", name, ErrRunnerBusy)
	}
	if r.State == store.StatePending || r.State == store.StateConfigured {
		return fmt.Errorf("runner %s: %w", name, ErrRunnerProvisioning)
	}
	if r.State == store.StateUnknownInstance {
		// Nothing to delete that we know of: the operator has checked.
		if _, err := c.finishRunner(name, reasonRemoved); err != nil {
			return fmt.Errorf("runner %s: %w", name, err)
		}
		return nil
	}
	ok, err := c.removeRunner(ctx, r, reasonRemoved, force)
	if err != nil {
		return fmt.Errorf("runner %s: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("runner %s: %w (GitHub says a job is running); use --force to remove it anyway", name, ErrRunnerBusy)
	}
	return nil
}

// giveUpDelete moves a record whose instance could not be deleted for
// DeleteGiveUp to history as delete-failed: never dropped silently.
func (c *Controller) giveUpDelete(r store.Runner) {
	if _, err := c.finishRunner(r.Name, reasonDeleteFailed); err != nil {
		c.runnerLog(r).Error("give up delete", "err", err)
		return
	}
	c.rec.RunnerReaped(r.Scope, c.scaleSetName(r), reasonDeleteFailed)
	c.runnerLog(r).Error("gave up deleting a runner instance; delete it by hand",
		"cloud_id", r.CloudID, "attempts", r.Attempts, "last_error", r.LastError)
}

// retireScaleSets marks the stored scale sets of removed targets, and
// deletes them on GitHub once they have no runner left, if configured.
func (c *Controller) retireScaleSets(ctx context.Context, served map[int]*scaleSet) {
	sets, err := c.store.ListScaleSets()
	if err != nil {
		c.log.Error("list scale sets", "err", err)
		return
	}
	counts, err := c.store.CountRunners()
	if err != nil {
		c.log.Error("count runners", "err", err)
		return
	}
	for _, ss := range sets {
		if _, ok := served[ss.ScaleSetID]; ok || c.isListed(ss.TargetID) || c.isServedElsewhere(ss.TargetID) {
			continue
		}
		if ss.TargetStatus != targetRemoved {
			_ = c.store.UpdateScaleSet(ss.TargetID, func(s *store.ScaleSet) error {
				s.TargetStatus, s.TargetStatusDescription = targetRemoved, "no longer listed by myshoes"
				return nil
			})
		}
		if !c.cfg.DeleteScaleSetsOnTargetRemoval || total(counts[ss.ScaleSetID]) > 0 {
			continue
		}
		if err := c.gh.DeleteScaleSet(ctx, ss.Scope, ss.ScaleSetID); err != nil {
			c.log.Warn("delete scale set of a removed target", "scope", ss.Scope, "scale_set", ss.Name, "err", err)
			continue
		}
		if err := c.store.DeleteScaleSet(ss.TargetID); err != nil {
			c.log.Warn("forget deleted scale set", "scale_set", ss.Name, "err", err)
		}
		c.log.Info("deleted the scale set of a removed target", "scope", ss.Scope, "scale_set", ss.Name)
	}
}

// targetRemoved is the target status of a scale set whose target myshoes
// no longer lists.
const targetRemoved = "removed"

func total(m map[store.RunnerState]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// servedScaleSets returns the live scale sets of the running workers.
func (c *Controller) servedScaleSets() map[int]*scaleSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[int]*scaleSet, len(c.workers))
	for _, w := range c.workers {
		if set := w.scaleSet(); set != nil {
			out[set.id] = set
		}
	}
	return out
}

// unserved reports whether a runner's scale set is no longer served: its
// target is not served, or is served by another scale set (the runner's
// was deleted on GitHub). A runner of a served target whose scale set is
// not ensured yet is not unserved.
func (c *Controller) unserved(r store.Runner, served map[int]*scaleSet) bool {
	if _, ok := served[r.ScaleSetID]; ok {
		return false
	}
	c.mu.Lock()
	w, ok := c.workers[r.TargetID]
	listed := c.listed[r.TargetID]
	c.mu.Unlock()
	switch {
	case !listed:
		return true // its target left myshoes's list
	case !ok:
		return false // its worker starts, or another replica serves it
	}
	set := w.scaleSet()
	return set != nil && set.id != r.ScaleSetID
}

// knowsTargets reports whether a sync has said which targets are listed,
// and which of them are this replica's.
func (c *Controller) knowsTargets() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.listed != nil
}

// isListed reports whether myshoes's last list has the target.
func (c *Controller) isListed(targetID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.listed[targetID]
}

// isServedElsewhere reports whether another replica acts on a target's
// records: the one that serves it (a listed target this replica does not
// serve), or the leader (a target no longer listed, when this replica is
// not the leader).
func (c *Controller) isServedElsewhere(targetID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.elsewhere[targetID] || (!c.listed[targetID] && !c.leader)
}

func (c *Controller) isServedTarget(targetID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.workers[targetID]
	return ok
}

func (c *Controller) isDeleteRunning(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deletes[name]
}

// runnerLog returns the logger for lines about one runner, with the scope
// and scale set every line about a target carries.
func (c *Controller) runnerLog(r store.Runner) *slog.Logger {
	return c.log.With("scope", r.Scope, "scale_set", c.scaleSetName(r), "runner", r.Name)
}

// scaleSetName returns the name of a runner's scale set, for metrics and logs.
func (c *Controller) scaleSetName(r store.Runner) string {
	c.mu.Lock()
	s, ok := c.sets[r.ScaleSetID]
	c.mu.Unlock()
	if ok {
		return s.name
	}
	if rec, err := c.store.GetScaleSet(r.TargetID); err == nil {
		return rec.Name
	}
	return ""
}

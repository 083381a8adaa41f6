package controller

import (
	"context"
	"errors"
	"fmt"

	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// markDeleting moves a runner to deleting, with the reason it leaves.
func (c *Controller) markDeleting(name, reason string) error {
	_, err := c.toDeleting(name, reason, nil)
	return err
}

// toDeleting moves a runner to deleting with the reason it leaves, if
// prepare (nil: always) accepts the record; prepare may also change it.
// It reports whether the record changed; one deleting already does not.
func (c *Controller) toDeleting(name, reason string, prepare func(*store.Runner) bool) (bool, error) {
	_, err := c.transition(name, store.StateDeleting, func(r *store.Runner) error {
		if prepare != nil && !prepare(r) {
			return errNoChange
		}
		r.DeleteReason = reason
		r.NextAttemptAt = c.cfg.Now()
		return nil
	})
	if errors.Is(err, errNoChange) {
		return false, nil
	}
	return err == nil, err
}

// startDelete deletes a deleting runner's instance in the background,
// unless a delete of it is already running.
func (c *Controller) startDelete(name string) {
	c.mu.Lock()
	if c.deletes[name] {
		c.mu.Unlock()
		return
	}
	c.deletes[name] = true
	c.mu.Unlock()

	c.work.Add(1)
	go func() {
		defer c.work.Done()
		defer func() {
			c.mu.Lock()
			delete(c.deletes, name)
			c.mu.Unlock()
		}()
		if err := c.deleteRunner(c.workCtx, name); err != nil && !isCanceled(c.workCtx, err) {
			c.log.Error("delete runner", "runner", name, "err", err)
		}
	}()
}

// deleteRunner deletes the instance of a deleting runner, then moves the
// record to history. A failure stays in deleting with a backoff.
func (c *Controller) deleteRunner(ctx context.Context, name string) error {
	// Check for an AddInstance in flight before reading the record: the
	// provisioner stores the cloud ID before it clears the flag.
	if c.isAdding(name) {
		return nil
	}
	r, err := c.store.GetRunner(name)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read runner: %w", err)
	}
	if r.State != store.StateDeleting {
		return nil
	}
	if r.CloudID == "" && !r.StateSince[store.StateConfigured].IsZero() {
		// AddInstance was sent and its answer never stored, yet the
		// runner ran a job: its instance exists, and we cannot name it.
		_, err := c.transition(name, store.StateUnknownInstance, func(r *store.Runner) error {
			r.LastError = "its AddInstance answer was never stored, but it ran a job: an instance exists that shoes-scaleset cannot delete"
			return nil
		})
		if err != nil {
			return fmt.Errorf("mark runner unknown-instance: %w", err)
		}
		c.runnerLog(r).Warn("runner instance unknown: its runner ran a job, but its cloud ID was never stored; check the provider for an instance named after the runner")
		return nil
	}
	reason := r.DeleteReason
	if reason == "" {
		reason = "completed"
	}
	if r.CloudID != "" {
		labels := c.labelsOf(r)
		// Deletes are bounded apart from provisioning, so that a wave of
		// completed jobs does not take every plugin process from the
		// provisioner (the pool defaults to room for both).
		select {
		case c.deleteSlots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		err := c.plugin.DeleteInstance(ctx, r.CloudID, labels)
		<-c.deleteSlots
		if err != nil {
			if ctx.Err() == nil {
				c.deleteFailed(name, err)
				c.runnerLog(r).Warn("delete instance; will retry", "cloud_id", r.CloudID, "attempt", r.Attempts+1, "err", err)
			}
			return nil
		}
	}
	if _, err := c.finishRunner(name, reason); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("move runner to history: %w", err)
	}
	c.runnerLog(r).Info("runner deleted", "cloud_id", r.CloudID, "reason", reason)
	c.wakeScaleSet(r.ScaleSetID)
	return nil
}

func (c *Controller) deleteFailed(name string, cause error) {
	_, err := c.editRunner(name, func(r *store.Runner) error {
		r.Attempts++
		r.LastError = cause.Error()
		r.NextAttemptAt = c.cfg.Now().Add(c.backoff(r.Attempts))
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.log.Error("record delete failure", "runner", name, "err", err)
	}
}

// labelsOf returns the labels of a runner's scale set, which plugins get
// with DeleteInstance.
func (c *Controller) labelsOf(r store.Runner) []string {
	c.mu.Lock()
	s, ok := c.sets[r.ScaleSetID]
	c.mu.Unlock()
	if ok {
		return s.labels
	}
	if rec, err := c.store.GetScaleSet(r.TargetID); err == nil {
		return rec.Labels
	}
	return nil
}

func (c *Controller) wakeScaleSet(scaleSetID int) {
	c.mu.Lock()
	s := c.sets[scaleSetID]
	c.mu.Unlock()
	if s != nil {
		s.wake()
	}
}

// janitor retries the deletes whose backoff has passed, reports the stuck
// provisioning of each scale set, and undoes the unfinished records no
// provisioning owns any more.
func (c *Controller) janitor(ctx context.Context) error {
	for {
		if !sleep(ctx, c.cfg.JanitorInterval) {
			return ctx.Err()
		}
		for _, set := range c.servedScaleSets() {
			n, _ := c.stuckAdds(set.id)
			c.rec.ProvisionsStuck(set.scope, set.name, n)
		}
		if !c.knowsTargets() {
			continue // whose records these are is known after the first sync
		}
		c.sweepUnowned(ctx)
		runners, err := c.store.ListRunners(store.RunnerFilter{States: []store.RunnerState{store.StateDeleting}})
		if err != nil {
			c.log.Error("list deleting runners", "err", err)
			continue
		}
		now := c.cfg.Now()
		for _, r := range runners {
			if !r.NextAttemptAt.After(now) && !c.isServedElsewhere(r.TargetID) {
				c.startDelete(r.Name)
			}
		}
	}
}

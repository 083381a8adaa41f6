package controller

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// recover finishes or undoes every record a previous run left in a
// non-final state, so that no runner is provisioned twice and no instance
// is forgotten:
//   - pending: the JIT config may exist on GitHub; the runner is removed
//     there and the record goes to history;
//   - configured: AddInstance was in flight, so an instance may exist
//     whose cloud ID we never learned; the runner is removed from GitHub
//     (it cannot take a job) and the record is kept as unknown-instance
//     for the operator;
//   - deleting: the delete is retried by the janitor;
//   - idle and busy: live runners, kept; their job messages arrive on the
//     new session.
func (c *Controller) recover(ctx context.Context) error {
	runners, err := c.store.ListRunners(store.RunnerFilter{
		States: []store.RunnerState{store.StatePending, store.StateConfigured, store.StateDeleting},
	})
	if err != nil {
		return fmt.Errorf("list runners: %w", err)
	}
	// The unfinished records are undone concurrently: marking a configured
	// one unknown-instance is a commit, and the store's batched commits
	// take concurrent ones together. After a kill during a burst there are
	// as many as ProvisionConcurrency; one after the other they cost a
	// commit each (docs/performance.md, P3), and no listener starts before
	// they are done.
	var g errgroup.Group
	g.SetLimit(recoverAtOnce)
	for _, r := range runners {
		switch r.State {
		case store.StateDeleting:
			c.startDelete(r.Name)
		case store.StatePending, store.StateConfigured:
			g.Go(func() error { return c.undoUnfinished(ctx, r, unknownAtStart) })
		}
	}
	return g.Wait()
}

// recoverAtOnce bounds the records startup recovery undoes at once.
const recoverAtOnce = 64

// sweepUnowned undoes, while the process runs, the pending and configured
// records that no provisioning owns any more: their provisioning could
// not record its end (the state file failed: a full disk), or, with
// replicas, they were left by a replica that died or lost the target.
// They are handled as at start, once the record is older than a janitor
// interval (a record is created just before its provisioning starts);
// with replicas, older than AddTimeout plus the hand-over grace, as the
// replica that wrote it may still be in AddInstance.
func (c *Controller) sweepUnowned(ctx context.Context) {
	runners, err := c.store.ListRunners(store.RunnerFilter{
		States: []store.RunnerState{store.StatePending, store.StateConfigured},
	})
	if err != nil {
		c.log.Error("list unfinished runners", "err", err)
		return
	}
	now := c.cfg.Now()
	wait := c.cfg.JanitorInterval
	if grace := c.cfg.Ownership.HandOverGrace(); grace > 0 {
		wait = max(wait, c.cfg.AddTimeout+grace)
	}
	for _, r := range runners {
		if now.Sub(r.UpdatedAt) < wait || c.isOwned(r.Name) || c.isServedElsewhere(r.TargetID) {
			continue
		}
		if err := c.undoUnfinished(ctx, r, unknownUnowned); err != nil {
			c.runnerLog(r).Error("undo an unfinished runner", "err", err)
		}
	}
}

// undoUnfinished undoes a pending or configured record that no
// provisioning owns:
//   - configured: AddInstance was in flight, so an instance may exist
//     whose cloud ID we never learned: the record becomes unknown-instance
//     at once (before a job message can move it on as if we knew its
//     instance: a record deleted without a cloud ID is finished as if its
//     instance were gone), then the runner is removed from GitHub;
//   - pending: the JIT config may exist on GitHub: the runner is removed
//     there, then the record goes to history as recovered.
//
// The removal runs in the background, retried until GitHub answers.
func (c *Controller) undoUnfinished(ctx context.Context, r store.Runner, why string) error {
	if !c.own(r.Name) {
		return nil // being provisioned or undone
	}
	// Read it again now that it is ours: the record listed may be stale,
	// its provisioning having finished in between.
	fresh, err := c.store.GetRunner(r.Name)
	if err != nil || (fresh.State != store.StatePending && fresh.State != store.StateConfigured) {
		c.disown(r.Name)
		if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
		return err
	}
	r = fresh
	if r.State == store.StateConfigured {
		if _, err := c.transition(r.Name, store.StateUnknownInstance, func(r *store.Runner) error {
			r.LastError = why
			return nil
		}); err != nil {
			c.disown(r.Name)
			return fmt.Errorf("mark runner %s unknown-instance: %w", r.Name, err)
		}
	}
	c.work.Add(1)
	go func() {
		defer c.work.Done()
		defer c.disown(r.Name)
		c.recoverRunner(ctx, r)
	}()
	return nil
}

// unknownUnowned is the last error of a configured runner whose
// provisioning ended without recording its outcome.
const unknownUnowned = "the provisioning could not record the AddInstance outcome (the state file failed): an instance may exist that shoes-scaleset cannot delete"

// unknownAtStart is the last error of a runner found configured at start.
const unknownAtStart = "the process stopped during AddInstance: an instance may exist that shoes-scaleset cannot delete"

// recoverRunner removes an unfinished runner from GitHub, retrying until
// GitHub answers or ctx ends, then finishes its record.
func (c *Controller) recoverRunner(ctx context.Context, r store.Runner) {
	log := c.log.With("scope", r.Scope, "runner", r.Name, "state", r.State)
	for attempt := 1; ; attempt++ {
		err := c.removeFromGitHub(ctx, r)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if attempt == 1 || attempt%10 == 0 {
			log.Warn("recover runner: remove from GitHub", "err", err, "attempt", attempt)
		}
		if !sleep(ctx, c.backoff(attempt)) {
			return
		}
	}
	if r.State == store.StatePending {
		c.finish(log, r.Name, "recovered")
		log.Info("recovered unfinished runner")
		return
	}
	log.Warn("runner instance unknown: the process stopped during AddInstance; check the provider for an instance named after the runner")
}

// Package controller is the reconciler of shoes-scaleset: it turns the
// targets myshoes lists into runner scale sets with one message session
// each, keeps the number of runners of every scale set at the desired
// count, and provisions and deletes runner instances through the shoes
// plugin. Every fact it acts on is written to the store before the side
// effect it announces, so a crash leaves records that the next start
// finishes or undoes.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
)

// Controller runs the scale sets of all targets.
type Controller struct {
	cfg     Config
	store   Store
	targets TargetSource
	gh      GitHub
	plugin  Plugin
	script  *runnerscript.Renderer
	log     *slog.Logger
	rec     Recorder

	reapNow        chan struct{} // wakes the reaper for a pass now
	syncNow        chan struct{} // wakes the target sync for a read now
	policyNow      chan struct{} // a new policy: apply the targets again now
	prepareSlots   *fairSlots    // runners getting or holding a JIT config before AddInstance
	provisionSlots *fairSlots    // runners in AddInstance
	deleteSlots    chan struct{} // DeleteInstance calls
	listenSlots    chan struct{} // targets setting up their scale set and session (maxListensAtOnce)

	mu      sync.Mutex
	workers map[string]*targetWorker // by target ID
	sets    map[int]*scaleSet        // by scale set ID
	adding  map[string]addCall       // runner names with an AddInstance in flight
	owned   map[string]bool          // runner names a provisioning or undoing goroutine owns
	// nameKeyed is what the AddInstance answers showed of the plugin: nil
	// before any, then whether every cloud ID was the runner name.
	nameKeyed *bool
	deletes   map[string]bool // runner names with a delete in flight
	// listed holds the IDs of the targets of myshoes's last list (nil
	// before the first sync); elsewhere those another replica serves:
	// their runners and scale sets are not ours to reap or retire.
	listed, elsewhere map[string]bool
	// leader: this replica does the chores of targets no longer listed
	// (Ownership.Leader at the last sync).
	leader bool
	sync   syncStatus
	// pol is the policy in force (SetPolicy replaces it).
	pol Policy
	// disabled holds the targets the policy disabled at the last apply,
	// with the rule; only the sync loop uses it.
	disabled map[string]string
	// warnedDuplicate holds the pairs of targets of one scope already
	// warned about ("kept=skipped"); only the sync loop uses it.
	warnedDuplicate map[string]bool

	// work tracks provisioning and delete goroutines, which outlive the
	// listener that started them until ShutdownTimeout.
	work sync.WaitGroup
	// workCtx is cancelled once ShutdownTimeout has passed after stop.
	// It is set when Run starts, before started is closed.
	workCtx context.Context
	started chan struct{}
}

// New returns a controller. Nothing runs until Run.
func New(st Store, targets TargetSource, gh GitHub, plugin Plugin, script *runnerscript.Renderer, cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("controller config: %w", err)
	}
	if st == nil || targets == nil || gh == nil || plugin == nil || script == nil {
		return nil, errors.New("controller: missing dependency")
	}
	pol := cfg.Policy
	if pol == nil {
		pol = cfg.basePolicy()
	}
	return &Controller{
		pol:            pol,
		policyNow:      make(chan struct{}, 1),
		cfg:            cfg,
		store:          st,
		targets:        targets,
		gh:             gh,
		plugin:         plugin,
		script:         script,
		log:            cfg.Logger,
		rec:            cfg.Recorder,
		reapNow:        make(chan struct{}, 1),
		syncNow:        make(chan struct{}, 1),
		prepareSlots:   newFairSlots(cfg.ProvisionConcurrency),
		provisionSlots: newFairSlots(cfg.ProvisionConcurrency),
		deleteSlots:    make(chan struct{}, cfg.DeleteConcurrency),
		listenSlots:    make(chan struct{}, maxListensAtOnce),
		workers:        make(map[string]*targetWorker),
		sets:           make(map[int]*scaleSet),
		adding:         make(map[string]addCall),
		owned:          make(map[string]bool),
		deletes:        make(map[string]bool),
		started:        make(chan struct{}),
	}, nil
}

// Run serves until ctx is cancelled. On cancel it stops polling, lets
// in-flight provisioning finish within ShutdownTimeout, deletes the
// sessions and returns. Instances are kept.
func (c *Controller) Run(ctx context.Context) error {
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	c.workCtx = workCtx
	close(c.started)

	c.loadCloudIDs()
	// With replicas the records of a target are recovered by the replica
	// that acquires it, through the janitor's sweep once the hand-over
	// grace has passed: at start this replica owns nothing yet, and an
	// unfinished record may be another replica's work in flight.
	if c.cfg.Ownership.HandOverGrace() == 0 {
		if err := c.recover(ctx); err != nil {
			return fmt.Errorf("recover state: %w", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.syncTargets(gctx) })
	g.Go(func() error { return c.janitor(gctx) })
	g.Go(func() error { return c.reaper(gctx) })
	err := g.Wait()

	// Stop every target worker: each stops polling and deletes its session.
	c.stopAllWorkers()

	// Let in-flight provisioning and deletes finish, within the bound.
	done := make(chan struct{})
	go func() { c.work.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(c.cfg.ShutdownTimeout):
		c.log.Warn("shutdown timeout: cancelling in-flight provisioning", "timeout", c.cfg.ShutdownTimeout)
		cancelWork()
		// What was cancelled records its outcome (unknown-instance for an
		// AddInstance cut short) at once; its GitHub clean-up may take
		// longer, and is left to the next start rather than holding the
		// exit whatever the plugin or GitHub do.
		select {
		case <-done:
		case <-time.After(shutdownGrace):
			c.log.Warn("leaving the clean-up of cancelled provisioning to the next start", "grace", shutdownGrace)
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// shutdownGrace bounds the wait, after the shutdown timeout cancelled
// in-flight work, for it to record its outcome.
const shutdownGrace = 2 * time.Second

// backoff returns the wait before attempt n (n >= 1): RetryBackoff doubled
// per attempt, capped at MaxBackoff.
func (c *Controller) backoff(n int) time.Duration {
	d := c.cfg.RetryBackoff
	for i := 1; i < n && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.cfg.MaxBackoff)
}

// sleep waits for d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

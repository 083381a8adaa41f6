package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// startProvision provisions one runner in the background, in two stages,
// each bounded by ProvisionConcurrency over all scale sets: prepare (runner
// version, JIT config, setup script), then AddInstance. A prepared runner
// waits for an AddInstance slot with its setup script in hand, so a freed
// slot goes to the next AddInstance at once, not after a GitHub round trip;
// it keeps its prepare slot until its AddInstance is sent.
// stop is the listener's context: a runner whose AddInstance has not
// started when it ends is dropped (and removed from GitHub if its JIT
// config was issued); one that has started finishes.
func (c *Controller) startProvision(stop context.Context, set *scaleSet, name string) {
	c.own(name)
	c.work.Add(1)
	go func() {
		defer c.work.Done()
		defer c.disown(name)
		if err := c.prepareSlots.acquire(stop, set.id); err != nil {
			c.finish(set.log, name, "canceled")
			return
		}
		p, err := c.prepare(set, name)
		if err != nil {
			c.prepareSlots.release(set.id)
			c.provisionFailed(set, name, err)
			return
		}
		// The prepare slot is held until the AddInstance is sent (or
		// fails): a provisioning slot frees when an AddInstance returns,
		// and the next runner's store write and call come first; the
		// runner prepared in its place (a JIT config from GitHub, a
		// rendered script) follows. Freed together, the next runners'
		// preparation competed for the CPU with the refill at every wave's
		// end (issue 15).
		prepared := sync.OnceFunc(func() { c.prepareSlots.release(set.id) })
		defer prepared()
		if err := c.provisionSlots.acquire(stop, set.id); err != nil {
			prepared()
			c.dropPrepared(set, name, p)
			return
		}
		release := sync.OnceFunc(func() { c.provisionSlots.release(set.id) })
		defer release()
		c.provision(set, name, p, prepared, release)
	}()
}

// prepared is a pending runner ready for AddInstance: its JIT config is
// issued (the runner is registered on GitHub) and its setup script
// rendered. Neither is stored: the JIT config is a secret.
type prepared struct {
	jit    *github.JITConfig
	script string
	start  time.Time
}

// jitWorkFolder is the runner's work folder: _work inside the runner's own
// directory (a relative path is resolved there), as garm does, not the
// base directory that holds every runner's directory.
const jitWorkFolder = "_work"

// prepare resolves the runner version, asks GitHub for the runner's JIT
// config and renders the setup script.
func (c *Controller) prepare(set *scaleSet, name string) (prepared, error) {
	ctx := c.workCtx
	p := prepared{start: c.cfg.Now()}
	version, err := c.gh.RunnerVersion(ctx, set.scope, c.cfg.RunnerVersion)
	if err != nil {
		return p, err // it names the operation
	}
	if p.jit, err = c.gh.ScaleSet(set.scope, set.id).JIT(ctx, name, jitWorkFolder); err != nil {
		return p, err // it names the operation and the runner
	}
	p.script, err = c.script.Render(runnerscript.Values{
		RunnerName:          name,
		JITConfig:           p.jit.EncodedJITConfig,
		RunnerVersion:       version,
		RunnerUser:          c.cfg.RunnerUser,
		RunnerBaseDirectory: c.cfg.RunnerBaseDirectory,
		Scope:               set.scope,
		Labels:              set.labels,
	})
	if err != nil {
		return p, fmt.Errorf("render setup script: %w", err)
	}
	return p, nil
}

// dropPrepared undoes a prepared runner whose listener stopped before its
// AddInstance started: the runner is removed from GitHub, so that it is
// not left registered, and the record goes to history as canceled.
func (c *Controller) dropPrepared(set *scaleSet, name string, p prepared) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.workCtx), 30*time.Second)
	defer cancel()
	r, err := c.store.GetRunner(name)
	if err == nil {
		r.RunnerID = int64(p.jit.Runner.ID)
		err = c.removeFromGitHub(ctx, r)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		set.log.Warn("remove a canceled runner from GitHub", "runner", name, "err", err)
	}
	c.finish(set.log, name, "canceled")
}

// provision takes a prepared runner through AddInstance to idle. Each step
// is stored before its side effect. It calls sent, its prepare slot's
// release, once the AddInstance is about to be sent or has failed, and
// release, its provisioning slot's, once AddInstance has returned: what is
// left is bookkeeping, and the next runner's AddInstance need not wait for
// it.
func (c *Controller) provision(set *scaleSet, name string, p prepared, sent, release func()) {
	ctx := c.workCtx
	log := set.log.With("runner", name)
	start, jit, script := p.start, p.jit, p.script

	// configured announces the AddInstance: a crash from then on leaves
	// an instance we may not know the cloud ID of. It is written once a
	// plugin process is ready to take the call, not while the call waits
	// for one: a call never sent cannot have created an instance, and a
	// crash meanwhile leaves a pending record, which is simply undone.
	c.setAdding(name, set.id, true)
	defer c.setAdding(name, set.id, false)
	stored := false
	configured := func() error {
		_, err := c.transition(name, store.StateConfigured, func(r *store.Runner) error {
			r.RunnerID = int64(jit.Runner.ID)
			return nil
		})
		if err != nil && !errors.Is(err, errNoChange) { // configured already: a retried call
			return fmt.Errorf("store configured runner: %w", err)
		}
		stored = true
		sent()
		return nil
	}

	inst, err := c.addInstance(ctx, set, name, script, configured)
	sent()
	release()
	if err != nil {
		if stored && outcomeUnknown(err) {
			c.instanceUnknown(set, name, err)
			return
		}
		c.provisionFailed(set, name, err)
		return
	}

	// The instance exists: its cloud ID is stored, retried with backoff
	// while the state file fails (a full disk), for as long as we run.
	instance := func(r *store.Runner) error {
		r.CloudID, r.ShoesType, r.IPAddress = inst.CloudID, inst.ShoesType, inst.IPAddress
		r.ResourceType = inst.ResourceType.String()
		return nil
	}
	var r store.Runner
	handedOver := false
	err = c.retryWrite(ctx, log, slog.LevelError, "store instance of runner", inst.CloudID, func() (bool, error) {
		var err error
		r, err = c.transition(name, store.StateIdle, instance)
		var moved *TransitionError
		switch {
		case errors.As(err, &moved) && moved.From == store.StateUnknownInstance:
			// Given up on while this replica did not own the target
			// (another replica marked it, and removed its runner from
			// GitHub): now that the instance is known, it is deleted.
			r, err = c.transition(name, store.StateDeleting, instance)
		case errors.As(err, &moved):
			// Its runner took a job (busy), or finished it (deleting),
			// before the plugin answered: the instance is recorded, the
			// state kept.
			r, err = c.editRunner(name, instance)
		}
		// Another replica owns the target now (this one was cut off
		// past its lease during the call): handled below.
		handedOver = errors.Is(err, store.ErrNotOwner)
		return handedOver || err == nil || errors.Is(err, store.ErrNotFound), err
	})
	switch {
	case handedOver:
		// Only this replica knows the instance: record it for the new owner.
		c.recordForNewOwner(ctx, set, log, name, inst, instance)
		return
	case err != nil:
		// Stopping, or the record is gone: if it stays configured, it
		// becomes unknown-instance at the next start.
		log.Error("instance of runner not stored", "cloud_id", inst.CloudID, "err", err)
		return
	}
	c.setAdding(name, set.id, false)
	c.learnCloudID(name, inst.CloudID)
	set.provisionSucceeded()
	c.rec.RunnerProvisioned(set.scope, set.name, r.UpdatedAt.Sub(r.CreatedAt))
	log.Info("runner instance up", "cloud_id", inst.CloudID, "took", c.cfg.Now().Sub(start).Round(time.Millisecond))
	if r.State == store.StateDeleting {
		// Its job completed while the instance was being created.
		c.startDelete(name)
	}
}

// recordForNewOwner records the instance of a runner whose target moved to
// another replica during its AddInstance (recordInstanceAfterHandOver),
// retried with backoff while the store fails (etcd out of reach is why
// the target moved), for as long as this process runs. If the new owner
// has finished the record meanwhile, nobody will delete the instance but
// this process: it deletes it.
func (c *Controller) recordForNewOwner(ctx context.Context, set *scaleSet, log *slog.Logger, name string, inst shoes.Instance, instance func(*store.Runner) error) {
	var r store.Runner
	err := c.retryWrite(ctx, log, slog.LevelWarn, "record the instance for the replica that owns the target now", inst.CloudID, func() (bool, error) {
		var err error
		r, err = c.recordInstanceAfterHandOver(name, instance)
		return err == nil || errors.Is(err, errNoChange) || errors.Is(err, store.ErrNotFound), err
	})
	switch {
	case err == nil:
		log.Info("recorded the instance for the replica that owns the target now", "cloud_id", inst.CloudID, "state", r.State)
		c.learnCloudID(name, inst.CloudID)
	case errors.Is(err, errNoChange):
		log.Info("the instance was recorded already", "cloud_id", inst.CloudID)
	case errors.Is(err, store.ErrNotFound):
		log.Warn("the new owner finished the runner before its instance was known; deleting the instance", "cloud_id", inst.CloudID)
		if err := c.plugin.DeleteInstance(ctx, inst.CloudID, set.labels); err != nil {
			log.Error("delete the instance of a finished runner; it is left for the operator", "cloud_id", inst.CloudID, "err", err)
		}
	default:
		log.Error("instance of runner not recorded; it is left for the operator", "cloud_id", inst.CloudID, "err", err)
	}
}

// retryWrite runs write until it reports done, with a growing wait (at
// most maxStoreBackoff) between attempts that fail, for as long as ctx
// lives. A failed attempt is logged at level, the first and every tenth.
// It returns the error of the last attempt: nil, or why write stopped, or
// why it still failed when ctx ended.
func (c *Controller) retryWrite(ctx context.Context, log *slog.Logger, level slog.Level, what, cloudID string, write func() (done bool, err error)) error {
	for attempt := 1; ; attempt++ {
		done, err := write()
		if done {
			return err
		}
		wait := min(c.backoff(attempt), maxStoreBackoff)
		if attempt == 1 || attempt%10 == 0 {
			log.Log(ctx, level, what+"; retrying", "cloud_id", cloudID, "err", err, "attempt", attempt, "retry_in", wait)
		}
		if !sleep(ctx, wait) {
			return err
		}
	}
}

// addInstance calls the plugin, retrying retryable failures.
// beforeSend runs once a plugin process is ready, before each attempt is sent.
func (c *Controller) addInstance(ctx context.Context, set *scaleSet, name, script string, beforeSend func() error) (shoes.Instance, error) {
	var err error
	for attempt := 1; attempt <= c.cfg.AddAttempts; attempt++ {
		var inst shoes.Instance
		inst, err = c.plugin.AddInstance(ctx, shoes.AddInstanceRequest{
			RunnerName:   name,
			SetupScript:  script,
			ResourceType: set.resourceType,
			Labels:       set.labels,
			BeforeSend:   beforeSend,
		})
		if err == nil {
			if inst.CloudID == "" {
				return inst, errors.New("plugin AddInstance returned an empty cloud ID")
			}
			return inst, nil
		}
		// Retry only what the plugin answered as a failure: a permanent
		// error never succeeds, a bad answer is not retried into a storm,
		// and after a crash or a timeout an instance may exist already.
		if errors.Is(err, shoes.ErrPermanent) || errors.Is(err, shoes.ErrBadResponse) || errors.Is(err, shoes.ErrNotSent) ||
			outcomeUnknown(err) || attempt == c.cfg.AddAttempts {
			break
		}
		set.log.Warn("add instance; retrying", "runner", name, "attempt", attempt, "err", err)
		if !sleep(ctx, c.backoff(attempt)) {
			break
		}
	}
	return shoes.Instance{}, err // the plugin host names the call
}

// outcomeUnknown reports whether a failed AddInstance may have created an
// instance anyway: the plugin crashed, hung past the deadline, or the
// connection broke, so its answer never arrived.
func outcomeUnknown(err error) bool {
	switch shoes.Code(err) {
	case shoes.CodeCrash, codes.DeadlineExceeded.String(), codes.Unavailable.String(), codes.Canceled.String():
		return true
	}
	return false
}

// instanceUnknown handles an AddInstance whose outcome is unknown: the
// runner is removed from GitHub, so it can take no job, and the record is
// kept as unknown-instance for the operator, since the shoes protocol has
// no way to find an instance by name.
func (c *Controller) instanceUnknown(set *scaleSet, name string, cause error) {
	pause := set.provisionFailed(c)
	r, err := c.transition(name, store.StateUnknownInstance, func(r *store.Runner) error {
		r.LastError = "AddInstance outcome unknown (an instance may exist): " + cause.Error()
		r.Attempts++
		return nil
	})
	var moved *TransitionError
	if errors.As(err, &moved) {
		// Its runner took a job (busy, or deleting once done) before the
		// answer was lost: the instance exists, and the job's end
		// handles it (deleting without a cloud ID → unknown-instance).
		set.log.Warn("AddInstance outcome unknown, but its runner took a job; its instance is handled when the job ends",
			"runner", name, "state", moved.From, "err", cause)
		return
	}
	if err != nil {
		set.log.Error("mark runner unknown-instance", "runner", name, "err", err)
		return
	}
	// The AddInstance may have been cancelled by the shutdown timeout:
	// the removal gets its own short deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.workCtx), 30*time.Second)
	defer cancel()
	if err := c.removeFromGitHub(ctx, r); err != nil {
		set.log.Warn("remove runner from GitHub after an unknown AddInstance outcome", "runner", name, "err", err)
	}
	set.log.Warn("AddInstance outcome unknown; an instance named after the runner may exist: check the provider, then runners rm it",
		"runner", name, "err", cause, "provisioning_paused_for", pause)
}

// provisionFailed undoes a provisioning: the runner is removed from
// GitHub, its instance (if any) deleted, and the record moved to history.
func (c *Controller) provisionFailed(set *scaleSet, name string, cause error) {
	// Provisioning may have been cancelled by the shutdown timeout: the
	// removal from GitHub gets its own short deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.workCtx), 30*time.Second)
	defer cancel()
	pause := set.provisionFailed(c)
	set.log.Warn("provision runner failed", "runner", name, "err", cause, "provisioning_paused_for", pause)
	r, err := c.editRunner(name, func(r *store.Runner) error {
		r.LastError = cause.Error()
		r.Attempts++
		return nil
	})
	if err != nil {
		set.log.Error("record provisioning failure", "runner", name, "err", err)
		return
	}
	if err := c.removeFromGitHub(ctx, r); err != nil {
		set.log.Warn("remove runner from GitHub after failure", "runner", name, "err", err)
	}
	if r.CloudID != "" {
		if err := c.markDeleting(name, "failed"); err == nil {
			c.startDelete(name)
		}
		return
	}
	c.finish(set.log, name, "failed")
}

// removeFromGitHub deregisters a runner that will not run a job. It finds
// the runner by name when its ID was never stored (the JIT call may have
// succeeded without us seeing the answer).
func (c *Controller) removeFromGitHub(ctx context.Context, r store.Runner) error {
	api := c.gh.ScaleSet(r.Scope, r.ScaleSetID)
	id := r.RunnerID
	if id == 0 {
		var err error
		if id, err = api.RunnerByName(ctx, r.Name); err != nil || id == 0 {
			return err
		}
	}
	return api.RemoveRunner(ctx, id)
}

// finish moves a runner record to history.
func (c *Controller) finish(log *slog.Logger, name, reason string) {
	if _, err := c.finishRunner(name, reason); err != nil && !errors.Is(err, store.ErrNotFound) {
		log.Error("move runner to history", "runner", name, "reason", reason, "err", err)
	}
}

func (c *Controller) setAdding(name string, scaleSetID int, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on {
		c.adding[name] = addCall{scaleSetID: scaleSetID, since: c.cfg.Now()}
	} else {
		delete(c.adding, name)
	}
}

// addCall is an AddInstance in flight.
type addCall struct {
	scaleSetID int
	since      time.Time
}

// stuckAdds counts the AddInstance calls of a scale set running for longer
// than ProvisionStuckAfter, and returns how long the oldest has run.
func (c *Controller) stuckAdds(scaleSetID int) (n int, oldest time.Duration) {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.adding {
		if d := now.Sub(a.since); a.scaleSetID == scaleSetID && d > c.cfg.ProvisionStuckAfter {
			n++
			oldest = max(oldest, d)
		}
	}
	return n, oldest
}

// own marks a runner record as owned by a goroutine (its provisioning, or
// its undoing); it reports false if one owns it already.
func (c *Controller) own(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owned[name] {
		return false
	}
	c.owned[name] = true
	return true
}

func (c *Controller) disown(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.owned, name)
}

// ownedNames returns a copy of the names owned now.
func (c *Controller) ownedNames() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.owned)
}

func (c *Controller) isOwned(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.owned[name]
}

func (c *Controller) isAdding(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.adding[name]
	return ok
}

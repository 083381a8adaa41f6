package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/policy"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// targetWorker serves one myshoes target: it ensures the scale set, holds
// its message session, and runs the scale set's reconcile loop.
type targetWorker struct {
	c      *Controller
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	target myshoes.Target
	pol    policy.Effective // what the policy gives target
	set    *scaleSet
	// stopReconcile stops the reconcile loop of set.
	stopReconcile context.CancelFunc
	err           string // the last error that stopped serving, for status
	// warnedDropped is set once GitHub's dropping of labels was logged.
	warnedDropped bool
}

func (c *Controller) newTargetWorker(parent context.Context, t myshoes.Target, eff policy.Effective) *targetWorker {
	ctx, cancel := context.WithCancel(parent)
	return &targetWorker{
		c:      c,
		log:    c.log.With("scope", t.Scope, "target", t.ID),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		target: t,
		pol:    eff,
	}
}

func (w *targetWorker) start() { go w.run() }

// stop cancels the worker and waits until it has deleted its session.
func (w *targetWorker) stop() {
	w.cancel()
	<-w.done
}

func (w *targetWorker) setTarget(t myshoes.Target) {
	w.mu.Lock()
	w.target = t
	w.mu.Unlock()
	if ss, err := w.c.store.GetScaleSet(t.ID); err == nil && ss.TargetStatus == t.Status && ss.TargetStatusDescription == t.StatusDescription {
		return // stored already: a write per target per sync adds up on etcd
	}
	if set := w.scaleSet(); set != nil {
		_ = w.c.store.UpdateScaleSet(t.ID, func(s *store.ScaleSet) error {
			s.TargetStatus, s.TargetStatusDescription = t.Status, t.StatusDescription
			return nil
		})
	}
}

func (w *targetWorker) scaleSet() *scaleSet {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.set
}

// run serves the target until the worker is cancelled, retrying failures
// with capped backoff. A failing target never affects another.
func (w *targetWorker) run() {
	defer close(w.done)
	var reconcile sync.WaitGroup
	defer reconcile.Wait()
	defer w.endReconcile()

	// The worker waits in serve's long poll nearly all the time, so run's
	// own frame is kept small: see scaleSet.poll.
	failures := 0
	for {
		healthy, err := w.serve(&reconcile)
		if w.ctx.Err() != nil || !w.retry(healthy, err, &failures) {
			return
		}
	}
}

// retry reports why serve ended, counting the failures in a row, and
// waits before serving again. It returns false once the worker stops.
func (w *targetWorker) retry(healthy bool, err error, failures *int) bool {
	if healthy {
		*failures = 0
	}
	*failures++
	w.setError(err)
	if errors.Is(err, github.ErrSessionGone) && *failures == 1 {
		// GitHub evicts sessions on its side (about every 50 minutes)
		// and expires one nobody polls; nothing is wrong with the
		// target, so a new session is opened at once.
		w.log.Info("message session expired or was evicted; opening a new one", "err", err)
		return true
	}
	wait := w.c.backoff(*failures)
	if errors.Is(err, github.ErrSessionConflict) {
		w.log.Warn("message session held by another owner; retrying", "err", err, "retry_in", wait)
	} else if *failures == 1 || *failures%10 == 0 {
		w.log.Error("serve target", "err", err, "failures", *failures, "retry_in", wait)
	}
	return sleep(w.ctx, wait)
}

// endReconcile stops the reconcile loop of the worker's scale set, if it
// has one (the worker's context is cancelled: run is returning).
func (w *targetWorker) endReconcile() {
	w.mu.Lock()
	set, stop := w.set, w.stopReconcile
	w.mu.Unlock()
	if set != nil {
		stop()
		set.endReconcile()
	}
}

func (w *targetWorker) setError(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	w.mu.Lock()
	w.err = msg
	t := w.target
	w.mu.Unlock()
	_ = w.c.store.UpdateScaleSet(t.ID, func(s *store.ScaleSet) error {
		s.LastError = msg
		return nil
	})
}

// serve ensures the scale set, opens a session and polls it until an error
// or cancellation. healthy reports whether a poll succeeded.
func (w *targetWorker) serve(reconcile *sync.WaitGroup) (healthy bool, err error) {
	set, sess, acq, err := w.listen(reconcile)
	if err != nil {
		return false, err
	}
	defer set.closeSession(w.ctx, sess)
	defer acq.stop()
	return set.poll(w.ctx, sess, acq)
}

// maxListensAtOnce bounds the targets that set up their scale set and
// message session at the same time. At start every target does, and
// unbounded, 1,000 targets sent ~1,000 requests to GitHub at once, where
// GitHub allows 100 concurrent requests before its secondary rate limit
// ("Rate limits for the REST API": "No more than 100 concurrent requests
// are allowed"); and the start's peak of deep goroutine stacks and
// requests in flight set the heap the process kept afterwards (issue 15).
// On two cores the start is no slower: it is CPU-bound well below this.
const maxListensAtOnce = 32

// listen finds or makes the scale set, adopts it, and opens its message
// session, with the session's acquirer, to be stopped before the session
// is closed. It waits for one of the listen slots first.
func (w *targetWorker) listen(reconcile *sync.WaitGroup) (*scaleSet, Session, *lazyAcquirer, error) {
	ctx := w.ctx
	select {
	case w.c.listenSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, nil, ctx.Err()
	}
	defer func() { <-w.c.listenSlots }()

	set, err := w.ensureScaleSet(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	w.adopt(set, reconcile)

	sess, err := set.openSession(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	w.setError(nil)

	// Job acquisition (GHES) runs next to the poll loop, on the same
	// session, so a failing acquisition never stops the polling.
	acq := newLazyAcquirer(ctx, newAcquirer(w.c, set, sess))
	if rec, err := w.c.store.GetSession(set.id); !errors.Is(err, store.ErrNotFound) && (err != nil || len(rec.PendingAcquire) > 0) {
		// Runner requests an earlier session or process left (or a
		// read that failed: the acquirer reads again, and says why).
		acq.wake()
	}
	return set, sess, acq, nil
}

// lazyAcquirer runs a session's acquirer from the first time it has
// something to acquire: requests left from before the session, or a
// message's JobAvailable entries. An idle target's session never gets
// any, and a goroutine for each target waiting for nothing was part of
// the idle footprint (issue 15: 1,000 of them at 1,000 targets, ~3 MiB
// of stacks).
type lazyAcquirer struct {
	acq    *acquirer
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	done   chan struct{}
}

// newLazyAcquirer returns acq, to be run under ctx once woken.
func newLazyAcquirer(ctx context.Context, acq *acquirer) *lazyAcquirer {
	ctx, cancel := context.WithCancel(ctx)
	return &lazyAcquirer{acq: acq, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// wake has the pending requests acquired: it starts the acquirer, which
// acquires at once, or wakes the running one.
func (l *lazyAcquirer) wake() {
	started := false
	l.once.Do(func() {
		started = true
		go func() {
			defer close(l.done)
			l.acq.run(l.ctx)
		}()
	})
	if !started {
		l.acq.wake()
	}
}

// stop stops the acquirer, if it started, and waits for it.
func (l *lazyAcquirer) stop() {
	l.cancel()
	l.once.Do(func() { close(l.done) }) // never started: nothing to wait for
	<-l.done
}

// adopt makes set the worker's scale set and serves its reconcile loop. A
// set with another ID replaces one that was deleted on GitHub (GitHub
// deletes inactive scale sets, and admins delete them too;
// actions-runner-controller#3205): the old loop stops, so nothing more is
// provisioned for it, and the reaper, woken at once, cleans up its
// runners.
func (w *targetWorker) adopt(set *scaleSet, reconcile *sync.WaitGroup) {
	w.mu.Lock()
	old, stopOld := w.set, w.stopReconcile
	if old == set {
		w.mu.Unlock()
		w.syncPolicy(set)
		return
	}
	rctx, cancel := context.WithCancel(w.ctx)
	w.set, w.stopReconcile = set, cancel
	w.mu.Unlock()
	// The policy in force now, not the one ensureScaleSet read: a reload
	// may have come meanwhile, and setPolicy left it to this.
	w.syncPolicy(set)
	if old != nil {
		stopOld()
		old.endReconcile()
		w.log.Warn("the scale set is gone from GitHub; serving the new one", "old_scale_set_id", old.id, "scale_set_id", set.id)
		// Its session and the jobs to acquire on it went with it.
		if err := w.c.store.DeleteSession(old.id); err != nil && !errors.Is(err, store.ErrNotFound) {
			w.log.Warn("forget the session record of the deleted scale set", "err", err)
		}
		w.c.wakeReaper()
	}
	set.serveReconcile(rctx, reconcile)
}

// ensureScaleSet gets or creates the target's scale set and stores it.
func (w *targetWorker) ensureScaleSet(ctx context.Context) (*scaleSet, error) {
	w.mu.Lock()
	t, eff := w.target, w.pol
	w.mu.Unlock()
	cfg := w.c.cfg
	name := w.c.policyScaleSetName(t.Scope, eff)
	labels := github.ScaleSetLabels(name, eff.Labels)
	spec := github.ScaleSetSpec{Scope: t.Scope, RunnerGroup: eff.RunnerGroup, Name: name, Labels: labels}
	old, err := w.c.store.GetScaleSet(t.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("read stored scale set: %w", err)
	}
	if err == nil && old.Name == name && slices.Equal(old.Labels, labels) {
		// What GitHub kept of these same labels last time: if it dropped
		// some, asking again would only drop them again.
		spec.KeptLabels = old.GitHubLabels
	}
	res, err := w.c.gh.EnsureScaleSet(ctx, spec)
	if err != nil {
		return nil, err // it names the scale set and the operation
	}
	rs := res.ScaleSet
	if res.Created {
		w.log.Info("created scale set", "scale_set", name, "scale_set_id", rs.ID)
	}
	w.warnDroppedLabels(name, res)
	now := cfg.Now()
	rec := store.ScaleSet{
		TargetID:                t.ID,
		Scope:                   t.Scope,
		Name:                    rs.Name,
		ScaleSetID:              rs.ID,
		RunnerGroupID:           rs.RunnerGroupID,
		Labels:                  labels,
		GitHubLabels:            res.Labels,
		DroppedLabels:           res.Dropped,
		ResourceType:            t.ResourceType,
		TargetStatus:            t.Status,
		TargetStatusDescription: t.StatusDescription,
		MinRunners:              eff.MinRunners,
		MaxRunners:              eff.MaxRunners,
		PolicyRule:              eff.Rule,
		CreatedAt:               old.CreatedAt,
		UpdatedAt:               now,
	}
	if err := w.c.store.PutScaleSet(rec); err != nil {
		return nil, fmt.Errorf("store scale set: %w", err)
	}
	w.log = w.c.log.With("scope", t.Scope, "scale_set", rs.Name)
	// Resolve the runner version now rather than at the first job; it is
	// cached for a day, then resolved again by the next provisioning.
	if v, err := w.c.gh.RunnerVersion(ctx, t.Scope, cfg.RunnerVersion); err != nil {
		w.log.Warn("resolve runner version", "requested", cfg.RunnerVersion, "err", err)
	} else {
		w.log.Debug("runner version", "requested", cfg.RunnerVersion, "version", v)
	}
	return w.c.registerScaleSet(rec, shoes.ParseResourceType(t.ResourceType), w.log), nil
}

// warnDroppedLabels logs, once per process, that GitHub does not hold
// some labels of the scale set: workflows asking for them wait forever.
// GHES 3.18–3.20 keep only the scale set's name unless the custom-labels
// feature flag is on (actions/scaleset README, GitHub Enterprise Server).
func (w *targetWorker) warnDroppedLabels(name string, res github.ScaleSetResult) {
	w.mu.Lock()
	warn := len(res.Dropped) > 0 && !w.warnedDropped
	w.warnedDropped = w.warnedDropped || warn
	w.mu.Unlock()
	if warn {
		w.log.Warn("GitHub dropped labels of the scale set: workflows can use only the labels it kept",
			"scale_set", name, "labels_kept", res.Labels, "labels_dropped", res.Dropped,
			"hint", "on GHES 3.18-3.20 a site admin must enable the feature flag DistributedTask.AllowRunnerScaleSetCustomLabels")
	}
}

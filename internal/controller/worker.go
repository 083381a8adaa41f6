package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
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
	set    *scaleSetState
	// stopReconcile stops the reconcile loop of set.
	stopReconcile context.CancelFunc
	err           string // the last error that stopped serving, for status
	// warnedDropped is set once GitHub's dropping of labels was logged.
	warnedDropped bool
}

func (c *Controller) newTargetWorker(parent context.Context, t myshoes.Target) *targetWorker {
	ctx, cancel := context.WithCancel(parent)
	return &targetWorker{
		c:      c,
		log:    c.log.With("scope", t.Scope, "target", t.ID),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		target: t,
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
	if set := w.scaleSet(); set != nil {
		_ = w.c.store.UpdateScaleSet(t.ID, func(s *store.ScaleSet) error {
			s.TargetStatus, s.TargetStatusDescription = t.Status, t.StatusDescription
			return nil
		})
	}
}

func (w *targetWorker) scaleSet() *scaleSetState {
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

	failures := 0
	for {
		healthy, err := w.serve(&reconcile)
		if w.ctx.Err() != nil {
			return
		}
		if healthy {
			failures = 0
		}
		failures++
		w.setError(err)
		if errors.Is(err, github.ErrSessionGone) && failures == 1 {
			// GitHub evicts sessions on its side (about every 50 minutes)
			// and expires one nobody polls; nothing is wrong with the
			// target, so a new session is opened at once.
			w.log.Info("message session expired or was evicted; opening a new one", "err", err)
			continue
		}
		wait := w.c.backoff(failures)
		if errors.Is(err, github.ErrSessionConflict) {
			w.log.Warn("message session held by another owner; retrying", "err", err, "retry_in", wait)
		} else if failures == 1 || failures%10 == 0 {
			w.log.Error("serve target", "err", err, "failures", failures, "retry_in", wait)
		}
		if !sleep(w.ctx, wait) {
			return
		}
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
	ctx := w.ctx
	set, err := w.ensureScaleSet(ctx)
	if err != nil {
		return false, err
	}
	w.adopt(set, reconcile)

	sess, err := w.openSession(ctx, set)
	if err != nil {
		return false, err
	}
	defer w.closeSession(set, sess)
	w.setError(nil)

	// Job acquisition (GHES) runs next to the poll loop, on the same
	// session, so a failing acquisition never stops the polling.
	acq := newAcquirer(w.c, set, sess)
	actx, stopAcquirer := context.WithCancel(ctx)
	acquirerDone := make(chan struct{})
	go func() {
		defer close(acquirerDone)
		acq.run(actx)
	}()
	defer func() {
		stopAcquirer()
		<-acquirerDone
	}()
	return w.poll(ctx, set, sess, acq)
}

// adopt makes set the worker's scale set and runs its reconcile loop. A
// set with another ID replaces one that was deleted on GitHub (GitHub
// deletes inactive scale sets, and admins delete them too;
// actions-runner-controller#3205): the old loop stops, so nothing more is
// provisioned for it, and the reaper, woken at once, cleans up its
// runners.
func (w *targetWorker) adopt(set *scaleSetState, reconcile *sync.WaitGroup) {
	w.mu.Lock()
	old, stopOld := w.set, w.stopReconcile
	if old == set {
		w.mu.Unlock()
		return
	}
	rctx, cancel := context.WithCancel(w.ctx)
	w.set, w.stopReconcile = set, cancel
	w.mu.Unlock()
	if old != nil {
		stopOld()
		w.log.Warn("the scale set is gone from GitHub; serving the new one", "old_scale_set_id", old.id, "scale_set_id", set.id)
		// Its session and the jobs to acquire on it went with it.
		if err := w.c.store.DeleteSession(old.id); err != nil && !errors.Is(err, store.ErrNotFound) {
			w.log.Warn("forget the session record of the deleted scale set", "err", err)
		}
		w.c.wakeReaper()
	}
	reconcile.Add(1)
	go func() {
		defer reconcile.Done()
		w.c.reconcileLoop(rctx, set)
	}()
}

// ensureScaleSet gets or creates the target's scale set and stores it.
func (w *targetWorker) ensureScaleSet(ctx context.Context) (*scaleSetState, error) {
	w.mu.Lock()
	t := w.target
	w.mu.Unlock()
	cfg := w.c.cfg
	name := github.ScaleSetName(cfg.ScaleSetPrefix, t.Scope)
	labels := github.ScaleSetLabels(name, cfg.Labels)
	spec := github.ScaleSetSpec{Scope: t.Scope, RunnerGroup: cfg.RunnerGroup, Name: name, Labels: labels}
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

// openSession deletes a session a previous run left behind, then creates
// a new one and stores it.
func (w *targetWorker) openSession(ctx context.Context, set *scaleSetState) (Session, error) {
	old, err := w.c.store.GetSession(set.id)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("read stored session: %w", err)
	case old.SessionID != "":
		// Left by a crash or an unclean exit. One GitHub expired or
		// evicted meanwhile counts as deleted.
		if err := w.c.gh.ScaleSet(set.scope, set.id).DeleteSession(ctx, old.SessionID); err != nil {
			// Never a reason to stop: if it still exists, creating ours
			// answers 409 and the delete is tried again after a backoff.
			w.log.Warn("delete stale message session; creating a new one anyway", "session", old.SessionID, "err", err)
			break
		}
		w.log.Info("deleted stale message session", "session", old.SessionID)
		if err := w.c.store.ForgetSession(set.id); err != nil {
			return nil, fmt.Errorf("forget stale session: %w", err)
		}
	}

	sess, err := w.c.gh.ScaleSet(set.scope, set.id).OpenSession(ctx, w.c.store.OwnerID())
	if err != nil {
		if errors.Is(err, github.ErrSessionConflict) {
			w.c.rec.SessionConflict(set.scope, set.name)
		}
		return nil, err // it names the operation
	}
	now := w.c.cfg.Now()
	rec := store.Session{
		ScaleSetID: set.id,
		TargetID:   set.targetID,
		Scope:      set.scope,
		SessionID:  sess.ID(),
		OwnerName:  w.c.store.OwnerID(),
		CreatedAt:  now,
		UpdatedAt:  now,
	}
	if err := w.c.store.PutSession(rec); err != nil {
		// Without a stored session a crash would leave it open: give it up.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.c.cfg.SessionCloseTimeout)
		defer cancel()
		_ = sess.Close(closeCtx)
		return nil, fmt.Errorf("store session: %w", err)
	}
	set.setSession(sess.ID())
	w.c.rec.Listener(set.scope, set.name, true)
	w.log.Info("message session open", "session", sess.ID())
	return sess, nil
}

// closeSession deletes the session on GitHub, then forgets it (keeping the
// acquisitions still pending). It runs on stop, so it has its own deadline.
func (w *targetWorker) closeSession(set *scaleSetState, sess Session) {
	set.setSession("")
	w.c.rec.Listener(set.scope, set.name, false)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), w.c.cfg.SessionCloseTimeout)
	defer cancel()
	if err := sess.Close(ctx); err != nil {
		// The stored session stays, so the next start deletes it.
		w.log.Warn("delete message session", "session", sess.ID(), "err", err)
		return
	}
	if err := w.c.store.ForgetSession(set.id); err != nil {
		w.log.Warn("forget message session", "err", err)
	}
	w.log.Info("message session closed", "session", sess.ID())
}

// poll long-polls the message queue until an error or cancellation. Each
// message's effects are stored before it is acknowledged.
func (w *targetWorker) poll(ctx context.Context, set *scaleSetState, sess Session, acq *acquirer) (bool, error) {
	healthy := false
	set.setStatistics(sess.Statistics(), w.c.cfg)
	// lastID is the last message handled on this session. GitHub does not
	// promise that naming it on the next poll acknowledges it (or the ones
	// before it), so a message whose acknowledgement was lost may come
	// again; it is acknowledged again, never handled twice.
	var lastID int64
	// pollFailures counts failed polls in a row, storeFailures failed
	// writes of a message's effects: a good poll does not reset the latter.
	pollFailures, storeFailures := 0, 0
	for {
		msg, err := sess.GetMessage(ctx, lastID, w.c.cfg.MaxRunners)
		if err != nil {
			if isCanceled(ctx, err) {
				return healthy, nil
			}
			var unsupported *github.UnsupportedMessageError
			if errors.As(err, &unsupported) {
				// Not ours to handle; acknowledge it so it is not
				// delivered again and again.
				w.log.Warn("skipping a message of an unsupported type", "message_id", unsupported.MessageID, "type", unsupported.MessageType)
				if err := sess.Ack(ctx, unsupported.MessageID); err != nil && !isCanceled(ctx, err) {
					w.log.Warn("acknowledge unsupported message", "message_id", unsupported.MessageID, "err", err)
				}
				lastID = max(lastID, unsupported.MessageID)
				continue
			}
			// A transient failure is retried on the same session; a
			// session that is gone, or one that keeps failing, is
			// replaced by a new one. A rate-limited poll waits as long as
			// GitHub asks (the client's gate) and says nothing about the
			// session, so it does not count toward replacing it.
			if !github.IsRateLimited(err) {
				pollFailures++
			}
			if !github.IsTransient(err) || pollFailures > maxPollRetries {
				return healthy, fmt.Errorf("get message: %w", err)
			}
			wait := w.c.backoff(max(pollFailures, 1))
			w.log.Warn("get message; retrying", "err", err, "attempt", pollFailures, "retry_in", wait)
			if !sleep(ctx, wait) {
				return healthy, nil
			}
			continue
		}
		pollFailures = 0
		healthy = true
		set.markPolled(w.c.cfg.Now())
		if msg == nil {
			set.setStatistics(nil, w.c.cfg)
			continue
		}
		if msg.ID <= lastID {
			w.log.Debug("message delivered again; acknowledging it again", "message_id", msg.ID)
			if err := sess.Ack(context.WithoutCancel(ctx), msg.ID); err != nil {
				w.log.Warn("acknowledge message", "message_id", msg.ID, "err", err)
			}
			continue
		}
		// A message that has started is handled to the end, even on stop.
		if err := w.handleMessage(context.WithoutCancel(ctx), set, sess, msg, acq); err != nil {
			// Only storing its effects can fail (the state file: a full
			// disk, an I/O error). It is not acknowledged, so it comes
			// again; the session is kept, and polling slows down, more
			// and more, while the writes fail.
			storeFailures++
			wait := min(w.c.backoff(storeFailures), maxStoreBackoff)
			if storeFailures == 1 || storeFailures%10 == 0 {
				w.log.Error("store the effects of a message; it will come again", "message_id", msg.ID, "err", err,
					"failures", storeFailures, "retry_in", wait)
			}
			if !sleep(ctx, wait) {
				return healthy, nil
			}
			continue
		}
		storeFailures = 0
		lastID = msg.ID
	}
}

// maxStoreBackoff caps the wait between two polls while a message's
// effects cannot be stored; a longer one would let GitHub expire the
// session.
const maxStoreBackoff = 30 * time.Second

// handleMessage stores the effects of one message, then acknowledges it,
// then has its available jobs acquired.
//
// The order cannot lose a job. Everything the message asks of us is stored
// first, in one write: busy and deleting runners, the statistics' effect,
// the message ID, and the runner requests to acquire (GHES). Only then is
// the message acknowledged. Acquisition comes last and runs apart from the
// poll loop, retried with backoff from the stored list (after a restart
// too), so a failing acquire neither blocks the queue (JobStarted and
// JobCompleted keep flowing) nor makes us churn sessions to get the
// message again; and GitHub itself offers a job that nobody acquired
// again, as the reference listener relies on (actions/scaleset HEAD acks,
// then acquires).
func (w *targetWorker) handleMessage(ctx context.Context, set *scaleSetState, sess Session, msg *github.Message, acq *acquirer) error {
	if err := w.applyMessage(set, msg); err != nil {
		return err
	}
	if err := sess.Ack(ctx, msg.ID); err != nil {
		// It may come again: it is then acknowledged, not handled, again.
		w.log.Warn("acknowledge message", "message_id", msg.ID, "err", err)
	}
	if len(msg.Available) > 0 {
		acq.wake()
	}
	w.log.Debug("message handled", "message_id", msg.ID, "available", len(msg.Available), "assigned", len(msg.Assigned),
		"started", len(msg.Started), "completed", len(msg.Completed), "total_assigned_jobs", set.desiredInput())
	return nil
}

// applyMessage stores the job effects of a message and records its
// statistics, as one step for the reconcile loop: a completed job's
// runner leaves the count together with the job leaving the desired count.
func (w *targetWorker) applyMessage(set *scaleSetState, msg *github.Message) error {
	set.countMu.Lock()
	defer set.countMu.Unlock()
	for _, m := range msg.Started {
		if err := w.c.onJobStarted(set, m); err != nil {
			return err
		}
	}
	for _, m := range msg.Completed {
		if err := w.c.onJobCompleted(set, m); err != nil {
			return err
		}
	}
	available := make([]int64, 0, len(msg.Available))
	for _, a := range msg.Available {
		available = append(available, a.RunnerRequestID)
	}
	if err := w.c.store.RecordMessage(set.id, msg.ID, available); err != nil {
		return fmt.Errorf("store message: %w", err)
	}
	set.setStatistics(msg.Statistics, w.c.cfg)
	return nil
}

// maxPollRetries is how many failed polls in a row are retried on the
// same session before it is replaced.
const maxPollRetries = 5

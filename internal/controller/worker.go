package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/actions/scaleset"

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
	err    string // the last error that stopped serving, for status
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
	if w.scaleSet() == nil {
		w.mu.Lock()
		w.set = set
		w.mu.Unlock()
		reconcile.Add(1)
		go func() {
			defer reconcile.Done()
			w.c.reconcileLoop(ctx, set)
		}()
	}

	sess, err := w.openSession(ctx, set)
	if err != nil {
		return false, err
	}
	defer w.closeSession(set, sess)
	w.setError(nil)
	return w.poll(ctx, set, sess)
}

// ensureScaleSet gets or creates the target's scale set and stores it.
func (w *targetWorker) ensureScaleSet(ctx context.Context) (*scaleSetState, error) {
	w.mu.Lock()
	t := w.target
	w.mu.Unlock()
	cfg := w.c.cfg
	name := github.ScaleSetName(cfg.ScaleSetPrefix, t.Scope)
	labels := github.ScaleSetLabels(name, cfg.Labels)
	rs, created, err := w.c.gh.GetOrCreateScaleSet(ctx, t.Scope, cfg.RunnerGroup, name, labels)
	if err != nil {
		return nil, err // it names the scale set and the operation
	}
	if created {
		w.log.Info("created scale set", "scale_set", name, "scale_set_id", rs.ID)
	}
	now := cfg.Now()
	rec := store.ScaleSet{
		TargetID:                t.ID,
		Scope:                   t.Scope,
		Name:                    rs.Name,
		ScaleSetID:              rs.ID,
		RunnerGroupID:           rs.RunnerGroupID,
		Labels:                  labels,
		ResourceType:            t.ResourceType,
		TargetStatus:            t.Status,
		TargetStatusDescription: t.StatusDescription,
		CreatedAt:               now,
		UpdatedAt:               now,
	}
	if old, err := w.c.store.GetScaleSet(t.ID); err == nil {
		rec.CreatedAt = old.CreatedAt
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

// openSession deletes a session a previous run left behind, then creates
// a new one and stores it.
func (w *targetWorker) openSession(ctx context.Context, set *scaleSetState) (*github.Session, error) {
	if old, err := w.c.store.GetSession(set.id); err == nil && old.SessionID != "" {
		w.log.Info("deleting stale message session", "session", old.SessionID)
		if err := w.c.gh.DeleteSession(ctx, set.scope, set.id, old.SessionID); err != nil {
			return nil, fmt.Errorf("delete stale session %s: %w", old.SessionID, err)
		}
		if err := w.c.store.DeleteSession(set.id); err != nil {
			return nil, fmt.Errorf("forget stale session: %w", err)
		}
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("read stored session: %w", err)
	}

	sess, err := w.c.gh.CreateSession(ctx, set.scope, set.id, w.c.store.OwnerID())
	if err != nil {
		if errors.Is(err, github.ErrSessionConflict) {
			w.c.rec.SessionConflict(set.scope, set.name)
		}
		return nil, fmt.Errorf("create message session: %w", err)
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

// closeSession deletes the session on GitHub, then forgets it. It runs on
// stop, so it has its own deadline.
func (w *targetWorker) closeSession(set *scaleSetState, sess *github.Session) {
	set.setSession("")
	w.c.rec.Listener(set.scope, set.name, false)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), w.c.cfg.SessionCloseTimeout)
	defer cancel()
	if err := sess.Close(ctx); err != nil {
		// The stored session stays, so the next start deletes it.
		w.log.Warn("delete message session", "session", sess.ID(), "err", err)
		return
	}
	if err := w.c.store.DeleteSession(set.id); err != nil {
		w.log.Warn("forget message session", "err", err)
	}
	w.log.Info("message session closed", "session", sess.ID())
}

// poll long-polls the message queue until an error or cancellation. Each
// message's effects are stored before it is acknowledged.
func (w *targetWorker) poll(ctx context.Context, set *scaleSetState, sess *github.Session) (bool, error) {
	healthy := false
	set.setStatistics(sess.Statistics(), w.c.cfg)
	var lastID int64
	pollFailures := 0
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
				if err := sess.DeleteMessage(ctx, unsupported.MessageID); err != nil && !isCanceled(ctx, err) {
					w.log.Warn("acknowledge unsupported message", "message_id", unsupported.MessageID, "err", err)
				}
				lastID = unsupported.MessageID
				continue
			}
			// A transient failure is retried on the same session; a
			// session that is gone, or one that keeps failing, is
			// replaced by a new one.
			pollFailures++
			if errors.Is(err, github.ErrNotFound) || !github.IsTransient(err) || pollFailures > maxPollRetries {
				return healthy, fmt.Errorf("get message: %w", err)
			}
			wait := w.c.backoff(pollFailures)
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
		// A message that has started is handled to the end, even on stop.
		if err := w.handleMessage(context.WithoutCancel(ctx), set, sess, msg); err != nil {
			return healthy, fmt.Errorf("handle message %d: %w", msg.ID, err)
		}
		lastID = msg.ID
	}
}

// handleMessage stores the effects of one message, then acknowledges it,
// then records the desired count.
func (w *targetWorker) handleMessage(ctx context.Context, set *scaleSetState, sess *github.Session, msg *github.Message) error {
	if err := w.applyMessage(set, msg); err != nil {
		return err
	}
	// GHES leaves an available job queued until it is acquired. The
	// message is acknowledged only once its jobs are acquired, so a
	// failure here redelivers it and the acquisition is tried again.
	if err := w.acquire(ctx, sess, msg.Available); err != nil {
		return fmt.Errorf("acquire jobs: %w", err)
	}
	if err := sess.DeleteMessage(ctx, msg.ID); err != nil {
		// The next poll names this message as the last one, which also
		// acknowledges it; a redelivery would be harmless.
		w.log.Warn("acknowledge message", "message_id", msg.ID, "err", err)
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
	if err := w.c.store.SetLastMessageID(set.id, msg.ID); err != nil {
		return fmt.Errorf("store last message id: %w", err)
	}
	set.setStatistics(msg.Statistics, w.c.cfg)
	return nil
}

// maxPollRetries is how many failed polls in a row are retried on the
// same session before it is replaced.
const maxPollRetries = 5

// maxAcquireAttempts bounds the tries of one acquisition.
const maxAcquireAttempts = 3

// acquire asks for the jobs announced as available (GHES), which GHES
// otherwise leaves queued forever. A job another listener acquired first
// is simply not in the answer.
func (w *targetWorker) acquire(ctx context.Context, sess *github.Session, available []*scaleset.JobMessageBase) error {
	if len(available) == 0 {
		return nil
	}
	ids := make([]int64, len(available))
	for i, a := range available {
		ids[i] = a.RunnerRequestID
	}
	var err error
	for attempt := 1; attempt <= maxAcquireAttempts; attempt++ {
		var acquired []int64
		if acquired, err = sess.AcquireJobs(ctx, ids); err == nil {
			w.log.Debug("acquired jobs", "requested", len(ids), "acquired", len(acquired))
			return nil
		}
		w.log.Warn("acquire jobs", "count", len(ids), "attempt", attempt, "err", err)
		if attempt < maxAcquireAttempts && !sleep(ctx, w.c.backoff(attempt)) {
			break
		}
	}
	return err
}

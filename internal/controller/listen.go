package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// openSession deletes a session a previous run left behind, then creates
// a new one and stores it.
func (s *scaleSet) openSession(ctx context.Context) (Session, error) {
	old, err := s.c.store.GetSession(s.id)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("read stored session: %w", err)
	case old.SessionID != "":
		// Left by a crash or an unclean exit. One GitHub expired or
		// evicted meanwhile counts as deleted.
		if err := s.c.gh.ScaleSet(s.scope, s.id).DeleteSession(ctx, old.SessionID); err != nil {
			// Never a reason to stop: if it still exists, creating ours
			// answers 409 and the delete is tried again after a backoff.
			s.log.Warn("delete stale message session; creating a new one anyway", "session", old.SessionID, "err", err)
			break
		}
		s.log.Info("deleted stale message session", "session", old.SessionID)
		if err := s.c.store.ForgetSession(s.id); err != nil {
			return nil, fmt.Errorf("forget stale session: %w", err)
		}
	}

	// A stop does not cut the create short: GitHub may have created the
	// session already, and with its answer dropped it would be known to
	// nobody, refusing every other owner with 409 until GitHub expires it
	// (a hand-over to another replica right after a start). The call gets
	// SessionCloseTimeout past the stop; a session it made then is closed.
	createCtx, cancel := graceAfter(ctx, s.c.cfg.SessionCloseTimeout)
	sess, err := s.c.gh.ScaleSet(s.scope, s.id).OpenSession(createCtx, s.c.store.OwnerID())
	cancel()
	if err == nil && ctx.Err() != nil {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.c.cfg.SessionCloseTimeout)
		defer cancel()
		if err := sess.Close(closeCtx); err != nil {
			s.log.Warn("delete a message session created during a stop", "session", sess.ID(), "err", err)
		}
		return nil, ctx.Err()
	}
	if err != nil {
		if errors.Is(err, github.ErrSessionConflict) {
			s.c.rec.SessionConflict(s.scope, s.name)
		}
		return nil, err // it names the operation
	}
	now := s.c.cfg.Now()
	rec := store.Session{
		ScaleSetID: s.id,
		TargetID:   s.targetID,
		Scope:      s.scope,
		SessionID:  sess.ID(),
		OwnerName:  s.c.store.OwnerID(),
		CreatedAt:  now,
		UpdatedAt:  now,
	}
	if err := s.c.store.PutSession(rec); err != nil {
		// Without a stored session a crash would leave it open: give it up.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.c.cfg.SessionCloseTimeout)
		defer cancel()
		_ = sess.Close(closeCtx)
		return nil, fmt.Errorf("store session: %w", err)
	}
	s.setSession(sess.ID())
	s.c.rec.Listener(s.scope, s.name, true)
	s.log.Info("message session open", "session", sess.ID())
	return sess, nil
}

// graceAfter returns a context that ends grace after ctx does: for a call
// a stop must not cut short, but must not be held by for long either.
func graceAfter(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return gctx, func() {
		stop()
		cancel()
	}
}

// closeSession deletes the session on GitHub, then forgets it (keeping the
// acquisitions still pending). It runs on stop, so it has its own deadline.
func (s *scaleSet) closeSession(ctx context.Context, sess Session) {
	s.setSession("")
	s.c.rec.Listener(s.scope, s.name, false)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.c.cfg.SessionCloseTimeout)
	defer cancel()
	if err := sess.Close(ctx); err != nil {
		// The stored session stays, so the next start deletes it.
		s.log.Warn("delete message session", "session", sess.ID(), "err", err)
		return
	}
	if err := s.c.store.ForgetSession(s.id); err != nil {
		s.log.Warn("forget message session", "err", err)
	}
	s.log.Info("message session closed", "session", sess.ID())
}

// poll long-polls the message queue until an error or cancellation. Each
// message's effects are stored before it is acknowledged.
//
// The loop itself is kept small, and what follows an answer lives in
// pollLoop.answer: this goroutine waits in the long poll on every target
// all the time, and the frames under the wait are what its stack keeps
// (issue 15: the runtime halves a goroutine's stack only while less than a
// quarter of it is in use).
func (s *scaleSet) poll(ctx context.Context, sess Session, acq *lazyAcquirer) (bool, error) {
	s.setStatistics(sess.Statistics())
	l := pollLoop{s: s, sess: sess, acq: acq}
	// No poll is in flight once the loop ends; why the last one failed
	// stays until one answers, on this session or the next.
	defer s.pollSent(time.Time{})
	for {
		_, capacity := s.limits()
		s.pollSent(s.c.cfg.Now())
		msg, err := sess.GetMessage(ctx, l.lastID, capacity)
		if done, err := l.answer(ctx, msg, err); done {
			return l.healthy, err
		}
	}
}

// pollLoop is the state of one session's poll loop.
type pollLoop struct {
	s    *scaleSet
	sess Session
	acq  *lazyAcquirer
	// healthy reports that a poll was answered on this session.
	healthy bool
	// lastID is the last message handled on this session. GitHub does not
	// promise that naming it on the next poll acknowledges it (or the ones
	// before it), so a message whose acknowledgement was lost may come
	// again; it is acknowledged again, never handled twice.
	lastID int64
	// pollFailures counts failed polls in a row, storeFailures failed
	// writes of a message's effects: a good poll does not reset the latter.
	pollFailures, storeFailures int
}

// answer handles what a poll returned: a message, none, or the poll's
// error. done reports that the loop ends, with err the reason to replace
// the session (nil: stopped).
func (l *pollLoop) answer(ctx context.Context, msg *github.Message, err error) (done bool, _ error) {
	s, sess := l.s, l.sess
	if err != nil {
		if isCanceled(ctx, err) {
			return true, nil
		}
		var unsupported *github.UnsupportedMessageError
		if errors.As(err, &unsupported) {
			s.pollEnded(nil) // the queue answered
			// Not ours to handle; acknowledge it so it is not
			// delivered again and again.
			s.log.Warn("skipping a message of an unsupported type", "message_id", unsupported.MessageID, "type", unsupported.MessageType)
			if err := sess.Ack(ctx, unsupported.MessageID); err != nil && !isCanceled(ctx, err) {
				s.log.Warn("acknowledge unsupported message", "message_id", unsupported.MessageID, "err", err)
			}
			l.lastID = max(l.lastID, unsupported.MessageID)
			return false, nil
		}
		// A transient failure is retried on the same session; a
		// session that is gone, or one that keeps failing, is
		// replaced by a new one. A rate-limited poll waits as long as
		// GitHub asks (the client's gate) and says nothing about the
		// session, so it does not count toward replacing it.
		if !github.IsRateLimited(err) {
			l.pollFailures++
		}
		s.pollEnded(err)
		if !github.IsTransient(err) || l.pollFailures > maxPollRetries {
			return true, err // it names the operation
		}
		wait := s.c.backoff(max(l.pollFailures, 1))
		s.log.Warn("get message; retrying", "err", err, "attempt", l.pollFailures, "retry_in", wait)
		return !sleep(ctx, wait), nil
	}
	l.pollFailures = 0
	l.healthy = true
	s.pollEnded(nil)
	polledAt := s.c.cfg.Now()
	s.markPolled(polledAt)
	s.c.rec.Polled(s.scope, s.name, polledAt)
	if msg == nil {
		s.setStatistics(nil)
		return false, nil
	}
	if msg.ID <= l.lastID {
		s.log.Debug("message delivered again; acknowledging it again", "message_id", msg.ID)
		if err := sess.Ack(context.WithoutCancel(ctx), msg.ID); err != nil {
			s.log.Warn("acknowledge message", "message_id", msg.ID, "err", err)
		}
		return false, nil
	}
	// A message that has started is handled to the end, even on stop.
	if err := s.handleMessage(context.WithoutCancel(ctx), sess, msg, l.acq); err != nil {
		// Only storing its effects can fail (the state file: a full
		// disk, an I/O error). It is not acknowledged, so it comes
		// again; the session is kept, and polling slows down, more
		// and more, while the writes fail.
		l.storeFailures++
		wait := min(s.c.backoff(l.storeFailures), maxStoreBackoff)
		if l.storeFailures == 1 || l.storeFailures%10 == 0 {
			s.log.Error("store the effects of a message; it will come again", "message_id", msg.ID, "err", err,
				"failures", l.storeFailures, "retry_in", wait)
		}
		return !sleep(ctx, wait), nil
	}
	l.storeFailures = 0
	l.lastID = msg.ID
	return false, nil
}

// pollSent records that a poll was sent at t and is in flight (the zero
// time: none is), for readiness: a long poll answers only after the poll
// hold, and a listener waiting on one is listening.
func (s *scaleSet) pollSent(t time.Time) {
	s.mu.Lock()
	s.pollSince = t
	s.mu.Unlock()
}

// pollEnded records the end of the poll in flight: err is why it failed,
// nil if the queue answered. A failed poll is not "in flight" while it is
// retried: readiness then rests on the last poll that answered.
func (s *scaleSet) pollEnded(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pollSince = time.Time{}
	if err != nil {
		s.pollErr = err.Error()
	} else {
		s.pollErr = ""
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
func (s *scaleSet) handleMessage(ctx context.Context, sess Session, msg *github.Message, acq *lazyAcquirer) error {
	if err := s.applyMessage(msg); err != nil {
		return err
	}
	if err := sess.Ack(ctx, msg.ID); err != nil {
		// It may come again: it is then acknowledged, not handled, again.
		s.log.Warn("acknowledge message", "message_id", msg.ID, "err", err)
	}
	if len(msg.Available) > 0 {
		acq.wake()
	}
	s.log.Debug("message handled", "message_id", msg.ID, "available", len(msg.Available), "assigned", len(msg.Assigned),
		"started", len(msg.Started), "completed", len(msg.Completed), "total_assigned_jobs", s.desiredInput())
	return nil
}

// applyMessage stores the job effects of a message and records its
// statistics, as one step for the reconcile loop: a completed job's
// runner leaves the count together with the job leaving the desired count.
func (s *scaleSet) applyMessage(msg *github.Message) error {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	for _, m := range msg.Started {
		if err := s.onJobStarted(m); err != nil {
			return err
		}
	}
	for _, m := range msg.Completed {
		if err := s.onJobCompleted(m); err != nil {
			return err
		}
	}
	available := make([]int64, 0, len(msg.Available))
	for _, a := range msg.Available {
		available = append(available, a.RunnerRequestID)
	}
	if err := s.c.store.RecordMessage(s.id, msg.ID, available); err != nil {
		return fmt.Errorf("store message: %w", err)
	}
	s.setStatistics(msg.Statistics)
	return nil
}

// maxPollRetries is how many failed polls in a row are retried on the
// same session before it is replaced.
const maxPollRetries = 5

package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// GHES leaves a job announced as JobAvailable queued until a listener
// acquires it (actions/scaleset v0.2.0 drops those entries; see
// PROTOCOLS.md). handleMessage stores the runner requests to acquire
// before it acknowledges their message; the acquirer of the session
// acquires them, retrying with backoff on the same session.

const (
	// maxAcquireBackoff caps the wait between two acquisition attempts: a
	// job waits for it, so it is shorter than the general backoff cap.
	maxAcquireBackoff = 30 * time.Second
	// acquireGiveUp is how long a runner request stays pending. An older
	// one is dropped: GitHub offers a job nobody acquired again, with a
	// new request, so retrying an old one forever helps nobody.
	acquireGiveUp = 10 * time.Minute
)

// acquirer acquires a scale set's pending runner requests on one session.
type acquirer struct {
	c    *Controller
	set  *scaleSet
	sess Session
	log  *slog.Logger
	kick chan struct{}
}

func newAcquirer(c *Controller, set *scaleSet, sess Session) *acquirer {
	return &acquirer{c: c, set: set, sess: sess, log: set.log, kick: make(chan struct{}, 1)}
}

// wake has the pending requests acquired without waiting for a retry.
func (a *acquirer) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// run acquires whatever is pending, at once on start (requests left by an
// earlier session or process) and whenever woken, until ctx ends.
func (a *acquirer) run(ctx context.Context) {
	defer a.set.setAcquireError("")
	failures := 0
	for {
		err := a.acquirePending(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			failures = 0
			a.set.setAcquireError("")
			select {
			case <-ctx.Done():
				return
			case <-a.kick:
			}
			continue
		}
		failures++
		a.c.rec.AcquireFailed(a.set.scope, a.set.name)
		a.set.setAcquireError(fmt.Sprintf("acquiring jobs failed %d times in a row: %v", failures, err))
		wait := min(a.c.backoff(failures), maxAcquireBackoff)
		if failures == 1 || failures%10 == 0 {
			a.log.Warn("acquire jobs; retrying on the same session", "err", err, "failures", failures, "retry_in", wait)
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

// acquirePending makes one acquisition of every pending request. The
// requests are done once the call succeeds, whatever it granted: a job
// another listener took, or one canceled meanwhile, is simply not granted.
func (a *acquirer) acquirePending(ctx context.Context) error {
	rec, err := a.c.store.GetSession(a.set.id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read pending acquisitions: %w", err)
	}
	now := a.c.cfg.Now()
	var ids, stale []int64
	for _, p := range rec.PendingAcquire {
		if now.Sub(p.Since) > acquireGiveUp {
			stale = append(stale, p.RequestID)
			continue
		}
		ids = append(ids, p.RequestID)
	}
	if len(stale) > 0 {
		a.log.Warn("giving up acquiring old runner requests; GitHub offers their jobs again", "count", len(stale), "older_than", acquireGiveUp)
		if err := a.c.store.AcquireDone(a.set.id, stale); err != nil {
			return err
		}
	}
	if len(ids) == 0 {
		return nil
	}
	acquired, err := a.sess.Acquire(ctx, ids)
	if err != nil {
		return err
	}
	if err := a.c.store.AcquireDone(a.set.id, ids); err != nil {
		return err
	}
	a.log.Debug("acquired jobs", "requested", len(ids), "acquired", len(acquired))
	return nil
}

package controller

import (
	"errors"
	"fmt"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// errNoChange aborts a store update that has nothing to do; handlers are
// idempotent, so a redelivered message ends here.
var errNoChange = errors.New("no change")

// onJobStarted marks the runner busy with its job.
func (c *Controller) onJobStarted(set *scaleSetState, m *scaleset.JobStarted) error {
	_, err := c.store.UpdateRunner(m.RunnerName, func(r *store.Runner) error {
		if r.State == store.StateBusy || r.State == store.StateDeleting {
			return errNoChange
		}
		now := c.cfg.Now()
		if r.State != store.StateUnknownInstance {
			r.State = store.StateBusy
			r.StateSince[store.StateBusy] = now
		}
		if r.RunnerID == 0 {
			r.RunnerID = int64(m.RunnerID)
		}
		r.JobID, r.JobRequestID = m.JobID, m.RunnerRequestID
		r.Repository, r.WorkflowRef, r.WorkflowRunID = m.RepositoryName, m.JobWorkflowRef, m.WorkflowRunID
		r.UpdatedAt = now
		return nil
	})
	switch {
	case err == nil:
		c.rec.JobStarted(set.scope, set.name, m)
		set.log.Info("job started", "runner", m.RunnerName, "job_id", m.JobID, "repository", m.RepositoryName)
		return nil
	case errors.Is(err, errNoChange):
		return nil
	case errors.Is(err, store.ErrNotFound):
		set.log.Warn("job started on a runner this process does not own", "runner", m.RunnerName, "job_id", m.JobID)
		return nil
	default:
		return fmt.Errorf("mark runner %s busy: %w", m.RunnerName, err)
	}
}

// onJobCompleted moves the runner to deleting and starts the deletion of
// its instance. A job completed without a runner (canceled before one took
// it) changes nothing here.
func (c *Controller) onJobCompleted(set *scaleSetState, m *scaleset.JobCompleted) error {
	if m.RunnerName == "" {
		return nil
	}
	_, err := c.store.UpdateRunner(m.RunnerName, func(r *store.Runner) error {
		if r.State == store.StateDeleting {
			return errNoChange
		}
		now := c.cfg.Now()
		r.JobResult = m.Result
		if r.JobID == "" {
			r.JobID, r.JobRequestID = m.JobID, m.RunnerRequestID
		}
		r.UpdatedAt = now
		if r.State == store.StateUnknownInstance {
			return nil
		}
		r.State = store.StateDeleting
		r.StateSince[store.StateDeleting] = now
		r.DeleteReason = reasonCompleted
		r.NextAttemptAt = now
		return nil
	})
	switch {
	case err == nil:
		c.rec.JobCompleted(set.scope, set.name, m)
		set.log.Info("job completed", "runner", m.RunnerName, "job_id", m.JobID, "result", m.Result)
		c.startDelete(m.RunnerName)
		return nil
	case errors.Is(err, errNoChange):
		return nil
	case errors.Is(err, store.ErrNotFound):
		// Already deleted and in history, or not ours.
		return nil
	default:
		return fmt.Errorf("mark runner %s deleting: %w", m.RunnerName, err)
	}
}

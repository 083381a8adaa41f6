package controller

import (
	"errors"
	"fmt"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// errKeepState: the record's state is kept; only its fields change.
var errKeepState = errors.New("keep state")

// onJobStarted marks the runner busy with its job. A redelivered message,
// or a runner already on its way out, changes nothing.
func (s *scaleSet) onJobStarted(m *scaleset.JobStarted) error {
	c := s.c
	record := func(r *store.Runner) error {
		if r.RunnerID == 0 {
			r.RunnerID = int64(m.RunnerID)
		}
		r.JobID, r.JobRequestID = m.JobID, m.RunnerRequestID
		r.Repository, r.WorkflowRef, r.WorkflowRunID = m.RepositoryName, m.JobWorkflowRef, m.WorkflowRunID
		return nil
	}
	_, err := c.transition(m.RunnerName, store.StateBusy, record)
	var refused *TransitionError
	if errors.As(err, &refused) && refused.From == store.StateUnknownInstance {
		// Its instance cannot be named: the job is recorded, the state kept.
		_, err = c.editRunner(m.RunnerName, record)
	}
	switch {
	case err == nil:
		c.rec.JobStarted(s.scope, s.name, m)
		s.log.Info("job started", "runner", m.RunnerName, "job_id", m.JobID, "repository", m.RepositoryName)
		return nil
	case errors.Is(err, errNoChange):
		return nil
	case errors.As(err, &refused):
		// Removed (deleting) just as the job reached it: the job fails on
		// GitHub's side and is offered again.
		s.log.Warn("job started on a runner that is leaving", "runner", m.RunnerName, "job_id", m.JobID, "state", refused.From)
		return nil
	case errors.Is(err, store.ErrNotFound):
		s.log.Warn("job started on a runner this process does not own", "runner", m.RunnerName, "job_id", m.JobID)
		return nil
	default:
		return fmt.Errorf("mark runner %s busy: %w", m.RunnerName, err)
	}
}

// onJobCompleted moves the runner to deleting and starts the deletion of
// its instance. A job completed without a runner (canceled before one took
// it) changes nothing here.
func (s *scaleSet) onJobCompleted(m *scaleset.JobCompleted) error {
	c := s.c
	if m.RunnerName == "" {
		return nil
	}
	record := func(r *store.Runner) error {
		r.JobResult = m.Result
		if r.JobID == "" {
			r.JobID, r.JobRequestID = m.JobID, m.RunnerRequestID
		}
		return nil
	}
	_, err := c.transition(m.RunnerName, store.StateDeleting, func(r *store.Runner) error {
		if r.State == store.StateUnknownInstance {
			return errKeepState
		}
		r.DeleteReason = reasonCompleted
		r.NextAttemptAt = c.cfg.Now()
		return record(r)
	})
	if errors.Is(err, errKeepState) {
		// Its instance cannot be named, so there is nothing to delete:
		// the job is recorded, the state kept for the operator.
		_, err = c.editRunner(m.RunnerName, record)
	}
	var refused *TransitionError
	switch {
	case err == nil:
		c.rec.JobCompleted(s.scope, s.name, m)
		s.log.Info("job completed", "runner", m.RunnerName, "job_id", m.JobID, "result", m.Result)
		c.startDelete(m.RunnerName)
		return nil
	case errors.Is(err, errNoChange):
		return nil
	case errors.As(err, &refused):
		s.log.Warn("job completed on a runner that never started", "runner", m.RunnerName, "job_id", m.JobID, "state", refused.From)
		return nil
	case errors.Is(err, store.ErrNotFound):
		// Already deleted and in history, or not ours.
		return nil
	default:
		return fmt.Errorf("mark runner %s deleting: %w", m.RunnerName, err)
	}
}

// Package ghadapter binds the GitHub client (internal/github) to the
// interfaces the controller declares: the controller names no concrete
// GitHub type, so its tests run on in-memory fakes.
package ghadapter

import (
	"context"
	"errors"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
)

// GitHub is controller.GitHub on a *github.Provider.
type GitHub struct {
	*github.Provider
}

var _ controller.GitHub = GitHub{}

// New returns the controller's GitHub on p.
func New(p *github.Provider) GitHub { return GitHub{Provider: p} }

// ScaleSet returns the calls made for one scale set.
func (g GitHub) ScaleSet(scope string, scaleSetID int) controller.ScaleSetAPI {
	return scaleSetAPI{p: g.Provider, scope: scope, id: scaleSetID}
}

type scaleSetAPI struct {
	p     *github.Provider
	scope string
	id    int
}

func (s scaleSetAPI) JIT(ctx context.Context, name, workFolder string) (*github.JITConfig, error) {
	return s.p.GenerateJITConfig(ctx, s.scope, s.id, name, workFolder)
}

// RemoveRunner maps the library's errors to the controller's contract:
// not found is done, a running job is controller.ErrJobRunning.
func (s scaleSetAPI) RemoveRunner(ctx context.Context, runnerID int64) error {
	err := s.p.RemoveRunner(ctx, s.scope, runnerID)
	switch {
	case err == nil, errors.Is(err, scaleset.RunnerNotFoundError):
		return nil
	case errors.Is(err, scaleset.JobStillRunningError):
		return controller.ErrJobRunning
	}
	return err
}

func (s scaleSetAPI) RunnerByName(ctx context.Context, name string) (int64, error) {
	return s.p.RunnerIDByName(ctx, s.scope, name)
}

func (s scaleSetAPI) RunnerStatus(ctx context.Context, runnerID int64) (github.RunnerStatus, bool, error) {
	st, err := s.p.GetRunnerStatus(ctx, s.scope, runnerID)
	if errors.Is(err, github.ErrNotFound) {
		return github.RunnerStatus{}, false, nil
	}
	if err != nil {
		return github.RunnerStatus{}, false, err
	}
	return st, true, nil
}

func (s scaleSetAPI) OpenSession(ctx context.Context, owner string) (controller.Session, error) {
	sess, err := s.p.CreateSession(ctx, s.scope, s.id, owner)
	if err != nil {
		return nil, err
	}
	return session{sess}, nil
}

func (s scaleSetAPI) DeleteSession(ctx context.Context, sessionID string) error {
	return s.p.DeleteSession(ctx, s.scope, s.id, sessionID)
}

// session is controller.Session on a *github.Session.
type session struct {
	*github.Session
}

func (s session) Ack(ctx context.Context, messageID int64) error {
	return s.DeleteMessage(ctx, messageID)
}

func (s session) Acquire(ctx context.Context, requestIDs []int64) ([]int64, error) {
	return s.AcquireJobs(ctx, requestIDs)
}

package controller

import (
	"time"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
)

// Recorder receives what the controller observes, for metrics. Every
// method is called with the scale set's scope and name, the only labels.
type Recorder interface {
	// Listener reports whether a scale set's listener holds a session.
	Listener(scope, scaleSet string, up bool)
	// Statistics records the latest statistics and the desired count.
	Statistics(scope, scaleSet string, st github.Statistics, desired int)
	// Limits records the scale set's effective min and max runners (its
	// policy: flags, or the rule of the policy file that matched).
	Limits(scope, scaleSet string, minRunners, maxRunners int)
	// Polled records a successful poll of the message queue.
	Polled(scope, scaleSet string, at time.Time)
	// JobStarted and JobCompleted record a job's messages.
	JobStarted(scope, scaleSet string, m *scaleset.JobStarted)
	JobCompleted(scope, scaleSet string, m *scaleset.JobCompleted)
	// RunnerProvisioned records the time from the decision to provision
	// to the instance being up.
	RunnerProvisioned(scope, scaleSet string, d time.Duration)
	// SessionConflict counts a 409 on session creation.
	SessionConflict(scope, scaleSet string)
	// AcquireFailed counts a failed acquisition of available jobs (GHES).
	AcquireFailed(scope, scaleSet string)
	// ProvisionsStuck records the AddInstance calls of a scale set running
	// for longer than ProvisionStuckAfter.
	ProvisionsStuck(scope, scaleSet string, n int)
	// RunnerReaped counts a runner removed by the reaper, by reason.
	RunnerReaped(scope, scaleSet, reason string)
	// TargetSync records one read of myshoes's target list.
	TargetSync(at time.Time, err error)
	// Forget drops the series of a scale set whose target was removed.
	Forget(scope, scaleSet string)
}

// nopRecorder records nothing.
type nopRecorder struct{}

func (nopRecorder) Listener(string, string, bool)                       {}
func (nopRecorder) Statistics(string, string, github.Statistics, int)   {}
func (nopRecorder) Limits(string, string, int, int)                     {}
func (nopRecorder) Polled(string, string, time.Time)                    {}
func (nopRecorder) JobStarted(string, string, *scaleset.JobStarted)     {}
func (nopRecorder) JobCompleted(string, string, *scaleset.JobCompleted) {}
func (nopRecorder) RunnerProvisioned(string, string, time.Duration)     {}
func (nopRecorder) SessionConflict(string, string)                      {}
func (nopRecorder) AcquireFailed(string, string)                        {}
func (nopRecorder) ProvisionsStuck(string, string, int)                 {}
func (nopRecorder) RunnerReaped(string, string, string)                 {}
func (nopRecorder) TargetSync(time.Time, error)                         {}
func (nopRecorder) Forget(string, string)                               {}

var _ Recorder = nopRecorder{}

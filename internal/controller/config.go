package controller

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/actions/scaleset"
)

// Config holds the controller's settings.
type Config struct {
	// RunnerGroup is the runner group the scale sets are created in.
	RunnerGroup string
	// ScaleSetPrefix prefixes scale set names: <prefix>-<scope>.
	ScaleSetPrefix string
	// Labels are extra scale set labels, after "self-hosted" and the name.
	Labels []string
	// MinRunners and MaxRunners bound the runners of each scale set.
	MinRunners, MaxRunners int
	// ProvisionConcurrency bounds the provisions in flight, over all scale sets.
	ProvisionConcurrency int
	// DeleteConcurrency bounds the DeleteInstance calls in flight, over all
	// scale sets (default ProvisionConcurrency).
	DeleteConcurrency int
	// SyncInterval is how often myshoes's target list is read.
	SyncInterval time.Duration
	// SyncTimeout bounds one read of the target list.
	SyncTimeout time.Duration
	// RunnerVersion is "latest" or a concrete version.
	RunnerVersion string
	// RunnerUser and RunnerBaseDirectory go into the setup script.
	RunnerUser, RunnerBaseDirectory string
	// AddAttempts is how often a retryable AddInstance failure is tried.
	AddAttempts int
	// RetryBackoff is the first wait of a failing target, session or
	// delete; it doubles up to MaxBackoff.
	RetryBackoff, MaxBackoff time.Duration
	// JanitorInterval is how often deleting records are retried.
	JanitorInterval time.Duration
	// ShutdownTimeout bounds the wait for in-flight provisioning on stop.
	ShutdownTimeout time.Duration
	// AddTimeout is the plugin's AddInstance deadline (the plugin host
	// enforces it). An instance of an unknown outcome is deleted by name
	// only once it has passed since the call was sent.
	AddTimeout time.Duration
	// ProvisionStuckAfter is how long an AddInstance may run before its
	// scale set's provisioning counts as stuck (readiness, metrics).
	// Default half AddTimeout.
	ProvisionStuckAfter time.Duration
	// PluginID names the plugin (the --plugin value): what was learned of
	// another plugin's cloud IDs is not used.
	PluginID string
	// SessionCloseTimeout bounds the deletion of a session on stop.
	SessionCloseTimeout time.Duration
	// PollHold is how long the broker holds an empty long-poll (50s on
	// GitHub); a listener that has not polled for two holds is not ready.
	PollHold time.Duration
	// Recorder receives metrics; nil records nothing.
	Recorder Recorder

	// ReaperInterval is how often the reaper runs (with jitter).
	ReaperInterval time.Duration
	// ReaperMaxRemovals caps the runners one reaper pass removes.
	ReaperMaxRemovals int
	// BootstrapTimeout is how long a runner may take to come online.
	BootstrapTimeout time.Duration
	// IdleTTL, when positive, removes runners idle for longer.
	IdleTTL time.Duration
	// ScaleDownGrace is how long a runner must have been idle before a
	// scale-down may remove it.
	ScaleDownGrace time.Duration
	// DeleteGiveUp is how long DeleteInstance is retried before the
	// record goes to history as delete-failed.
	DeleteGiveUp time.Duration
	// DeleteScaleSetsOnTargetRemoval deletes the scale set on GitHub once
	// a removed target has no runner left.
	DeleteScaleSetsOnTargetRemoval bool
	// Logger receives the controller's logs.
	Logger *slog.Logger
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.RunnerGroup == "" {
		c.RunnerGroup = scaleset.DefaultRunnerGroup
	}
	if c.ScaleSetPrefix == "" {
		c.ScaleSetPrefix = "myshoes"
	}
	if c.MaxRunners == 0 {
		c.MaxRunners = 10
	}
	if c.ProvisionConcurrency == 0 {
		c.ProvisionConcurrency = 16
	}
	if c.DeleteConcurrency == 0 {
		c.DeleteConcurrency = c.ProvisionConcurrency
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = 30 * time.Second
	}
	if c.SyncTimeout == 0 {
		c.SyncTimeout = min(c.SyncInterval, 30*time.Second)
	}
	if c.RunnerVersion == "" {
		c.RunnerVersion = "latest"
	}
	if c.RunnerUser == "" {
		c.RunnerUser = "runner"
	}
	if c.RunnerBaseDirectory == "" {
		c.RunnerBaseDirectory = "/tmp"
	}
	if c.AddAttempts == 0 {
		c.AddAttempts = 3
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Minute
	}
	if c.JanitorInterval == 0 {
		c.JanitorInterval = 5 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.AddTimeout == 0 {
		c.AddTimeout = 5 * time.Minute // the plugin host's default
	}
	if c.ProvisionStuckAfter == 0 {
		c.ProvisionStuckAfter = c.AddTimeout / 2
	}
	if c.SessionCloseTimeout == 0 {
		c.SessionCloseTimeout = 10 * time.Second
	}
	if c.ReaperInterval == 0 {
		c.ReaperInterval = time.Minute
	}
	if c.ReaperMaxRemovals == 0 {
		c.ReaperMaxRemovals = 20
	}
	if c.BootstrapTimeout == 0 {
		c.BootstrapTimeout = 20 * time.Minute
	}
	if c.ScaleDownGrace == 0 {
		c.ScaleDownGrace = 2 * time.Minute
	}
	if c.DeleteGiveUp == 0 {
		c.DeleteGiveUp = 24 * time.Hour
	}
	if c.PollHold == 0 {
		c.PollHold = 50 * time.Second
	}
	if c.Recorder == nil {
		c.Recorder = nopRecorder{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate fills in defaults and reports the first invalid setting.
func (c *Config) Validate() error {
	c.defaults()
	switch {
	case c.MinRunners < 0:
		return errors.New("min runners must not be negative")
	case c.MaxRunners < 1:
		return errors.New("max runners must be at least 1")
	case c.MinRunners > c.MaxRunners:
		return fmt.Errorf("min runners (%d) must not exceed max runners (%d)", c.MinRunners, c.MaxRunners)
	case c.ProvisionConcurrency < 1:
		return errors.New("provision concurrency must be at least 1")
	case c.DeleteConcurrency < 1:
		return errors.New("delete concurrency must be at least 1")
	case c.SyncInterval < 100*time.Millisecond:
		return errors.New("sync interval must be at least 100ms")
	case c.AddAttempts < 1:
		return errors.New("add attempts must be at least 1")
	case c.IdleTTL < 0:
		return errors.New("idle runner TTL must not be negative")
	case c.ReaperMaxRemovals < 1:
		return errors.New("reaper max removals must be at least 1")
	}
	return nil
}

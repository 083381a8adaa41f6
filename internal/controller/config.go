package controller

import (
	"log/slog"
	"strings"
	"time"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
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
	// Policy gives each target its min and max runners, labels, runner
	// group, scale set name, or disables it; nil: every target gets
	// RunnerGroup, Labels, MinRunners and MaxRunners. Controller.SetPolicy
	// replaces it while running.
	Policy Policy
	// Ownership says which listed targets this replica serves; nil: all
	// of them (one replica).
	Ownership Ownership
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

// MinSyncInterval is the shortest SyncInterval: myshoes's target list is
// not read more often than once a second.
const MinSyncInterval = time.Second

// maxSyncTimeout caps the default SyncTimeout.
const maxSyncTimeout = 30 * time.Second

// DefaultConfig returns the settings a zero Config gets: a zero field of
// Config means its value here. It is the one place these defaults are
// stated; the run command's flags take theirs from it. The settings that
// default to another one are left zero, so that they follow it:
// DeleteConcurrency (ProvisionConcurrency), SyncTimeout (SyncInterval,
// at most 30s) and ProvisionStuckAfter (half AddTimeout). Logger,
// Recorder and Now are left nil (discard, no-op, time.Now).
func DefaultConfig() Config {
	return Config{
		RunnerGroup:          scaleset.DefaultRunnerGroup,
		ScaleSetPrefix:       "myshoes",
		MaxRunners:           10,
		ProvisionConcurrency: 16,
		SyncInterval:         30 * time.Second,
		RunnerVersion:        "latest",
		RunnerUser:           runnerscript.DefaultRunnerUser,
		RunnerBaseDirectory:  runnerscript.DefaultRunnerBaseDirectory,
		AddAttempts:          3,
		RetryBackoff:         time.Second,
		MaxBackoff:           5 * time.Minute,
		JanitorInterval:      5 * time.Second,
		ShutdownTimeout:      30 * time.Second,
		AddTimeout:           5 * time.Minute, // the plugin host's default
		SessionCloseTimeout:  10 * time.Second,
		PollHold:             50 * time.Second,
		ReaperInterval:       time.Minute,
		ReaperMaxRemovals:    20,
		BootstrapTimeout:     20 * time.Minute,
		ScaleDownGrace:       2 * time.Minute,
		DeleteGiveUp:         24 * time.Hour,
	}
}

// defaults fills every zero field: from DefaultConfig, then the settings
// derived from others.
func (c *Config) defaults() {
	d := DefaultConfig()
	defaultTo(&c.RunnerGroup, d.RunnerGroup)
	defaultTo(&c.ScaleSetPrefix, d.ScaleSetPrefix)
	defaultTo(&c.MaxRunners, d.MaxRunners)
	defaultTo(&c.ProvisionConcurrency, d.ProvisionConcurrency)
	defaultTo(&c.SyncInterval, d.SyncInterval)
	defaultTo(&c.RunnerVersion, d.RunnerVersion)
	defaultTo(&c.RunnerUser, d.RunnerUser)
	defaultTo(&c.RunnerBaseDirectory, d.RunnerBaseDirectory)
	defaultTo(&c.AddAttempts, d.AddAttempts)
	defaultTo(&c.RetryBackoff, d.RetryBackoff)
	defaultTo(&c.MaxBackoff, d.MaxBackoff)
	defaultTo(&c.JanitorInterval, d.JanitorInterval)
	defaultTo(&c.ShutdownTimeout, d.ShutdownTimeout)
	defaultTo(&c.AddTimeout, d.AddTimeout)
	defaultTo(&c.SessionCloseTimeout, d.SessionCloseTimeout)
	defaultTo(&c.PollHold, d.PollHold)
	defaultTo(&c.ReaperInterval, d.ReaperInterval)
	defaultTo(&c.ReaperMaxRemovals, d.ReaperMaxRemovals)
	defaultTo(&c.BootstrapTimeout, d.BootstrapTimeout)
	defaultTo(&c.ScaleDownGrace, d.ScaleDownGrace)
	defaultTo(&c.DeleteGiveUp, d.DeleteGiveUp)

	defaultTo(&c.DeleteConcurrency, c.ProvisionConcurrency)
	defaultTo(&c.SyncTimeout, min(c.SyncInterval, maxSyncTimeout))
	defaultTo(&c.ProvisionStuckAfter, c.AddTimeout/2)
	if c.Recorder == nil {
		c.Recorder = nopRecorder{}
	}
	if c.Ownership == nil {
		c.Ownership = everyTarget{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// defaultTo sets *v to d if *v is zero.
func defaultTo[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// FieldError is an invalid setting of this package's Config; Field names
// the Config field.
type FieldError = setting.FieldError

// Validate fills in the defaults of the zero fields and reports the first
// invalid setting, as a *FieldError.
func (c *Config) Validate() error {
	c.defaults()
	bad := setting.Invalid
	positive := []struct {
		field string
		name  string
		d     time.Duration
	}{
		{"ShutdownTimeout", "shutdown timeout", c.ShutdownTimeout},
		{"JanitorInterval", "janitor interval", c.JanitorInterval},
		{"RetryBackoff", "retry backoff", c.RetryBackoff},
		{"MaxBackoff", "max backoff", c.MaxBackoff},
		{"AddTimeout", "add timeout", c.AddTimeout},
		{"SyncTimeout", "sync timeout", c.SyncTimeout},
		{"ProvisionStuckAfter", "provision stuck after", c.ProvisionStuckAfter},
		{"SessionCloseTimeout", "session close timeout", c.SessionCloseTimeout},
		{"PollHold", "poll hold", c.PollHold},
		{"ReaperInterval", "reaper interval", c.ReaperInterval},
		{"BootstrapTimeout", "runner bootstrap timeout", c.BootstrapTimeout},
		{"ScaleDownGrace", "scale-down grace", c.ScaleDownGrace},
		{"DeleteGiveUp", "delete give-up", c.DeleteGiveUp},
	}
	switch {
	case strings.TrimSpace(c.RunnerGroup) == "":
		return bad("RunnerGroup", "runner group must not be blank")
	case strings.TrimSpace(c.ScaleSetPrefix) == "":
		return bad("ScaleSetPrefix", "scale set prefix must not be blank")
	case c.MinRunners < 0:
		return bad("MinRunners", "min runners must not be negative")
	case c.MaxRunners < 1:
		return bad("MaxRunners", "max runners must be at least 1")
	case c.MinRunners > c.MaxRunners:
		return bad("MinRunners", "min runners must not exceed max runners (%d > %d)", c.MinRunners, c.MaxRunners)
	case c.ProvisionConcurrency < 1:
		return bad("ProvisionConcurrency", "provision concurrency must be at least 1")
	case c.DeleteConcurrency < 1:
		return bad("DeleteConcurrency", "delete concurrency must be at least 1")
	case c.SyncInterval < MinSyncInterval:
		return bad("SyncInterval", "sync interval must be at least %s", MinSyncInterval)
	case c.AddAttempts < 1:
		return bad("AddAttempts", "add attempts must be at least 1")
	case c.IdleTTL < 0:
		return bad("IdleTTL", "idle runner TTL must not be negative")
	case c.ReaperMaxRemovals < 1:
		return bad("ReaperMaxRemovals", "reaper max removals must be at least 1")
	case strings.TrimSpace(c.RunnerUser) == "":
		return bad("RunnerUser", "runner user must not be blank")
	}
	for _, p := range positive {
		if p.d <= 0 {
			return bad(p.field, "%s must be positive", p.name)
		}
	}
	if err := github.CheckRunnerVersion(c.RunnerVersion); err != nil {
		return &FieldError{Field: "RunnerVersion", Err: err}
	}
	if err := runnerscript.CheckRunnerBaseDirectory(c.RunnerBaseDirectory); err != nil {
		return bad("RunnerBaseDirectory", "runner base directory: %w", err)
	}
	return nil
}

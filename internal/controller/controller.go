// Package controller is the reconciler of shoes-scaleset: it turns the
// targets myshoes lists into runner scale sets with one message session
// each, keeps the number of runners of every scale set at the desired
// count, and provisions and deletes runner instances through the shoes
// plugin. Every fact it acts on is written to the store before the side
// effect it announces, so a crash leaves records that the next start
// finishes or undoes.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/actions/scaleset"
	"golang.org/x/sync/errgroup"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// TargetSource lists the targets to serve: myshoes's REST API.
type TargetSource interface {
	ListTargets(ctx context.Context) ([]myshoes.Target, error)
}

// Plugin creates and deletes runner instances: the shoes plugin host.
type Plugin interface {
	AddInstance(ctx context.Context, req shoes.AddInstanceRequest) (shoes.Instance, error)
	DeleteInstance(ctx context.Context, cloudID string, labels []string) error
}

// GitHub is what the controller needs of GitHub: scale sets, sessions and
// the Actions calls made per scope.
type GitHub interface {
	EnsureScaleSet(ctx context.Context, spec github.ScaleSetSpec) (github.ScaleSetResult, error)
	DeleteScaleSet(ctx context.Context, scope string, scaleSetID int) error
	RunnerVersion(ctx context.Context, scope, requested string) (string, error)
	GetRunnerStatus(ctx context.Context, scope string, runnerID int64) (github.RunnerStatus, error)
	RunnerIDByName(ctx context.Context, scope, name string) (int64, error)
	RemoveRunner(ctx context.Context, scope string, runnerID int64) error
	GenerateJITConfig(ctx context.Context, scope string, scaleSetID int, name, workFolder string) (*github.JITConfig, error)
	CreateSession(ctx context.Context, scope string, scaleSetID int, owner string) (*github.Session, error)
	DeleteSession(ctx context.Context, scope string, scaleSetID int, sessionID string) error
}

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

// Controller runs the scale sets of all targets.
type Controller struct {
	cfg     Config
	store   *store.Store
	targets TargetSource
	gh      GitHub
	plugin  Plugin
	script  *runnerscript.Renderer
	log     *slog.Logger
	rec     Recorder

	reapNow        chan struct{} // wakes the reaper for a pass now
	prepareSlots   *fairSlots    // runners getting or holding a JIT config before AddInstance
	provisionSlots *fairSlots    // runners in AddInstance
	deleteSlots    chan struct{} // DeleteInstance calls

	mu      sync.Mutex
	workers map[string]*targetWorker // by target ID
	sets    map[int]*scaleSetState   // by scale set ID
	adding  map[string]addCall       // runner names with an AddInstance in flight
	owned   map[string]bool          // runner names a provisioning or undoing goroutine owns
	// nameKeyed is what the AddInstance answers showed of the plugin: nil
	// before any, then whether every cloud ID was the runner name.
	nameKeyed *bool
	deletes   map[string]bool // runner names with a delete in flight
	sync      syncStatus
	// warnedDuplicate holds the pairs of targets of one scope already
	// warned about ("kept=skipped"); only the sync loop uses it.
	warnedDuplicate map[string]bool

	// work tracks provisioning and delete goroutines, which outlive the
	// listener that started them until ShutdownTimeout.
	work sync.WaitGroup
	// workCtx is cancelled once ShutdownTimeout has passed after stop.
	// It is set when Run starts, before started is closed.
	workCtx context.Context
	started chan struct{}
}

// New returns a controller. Nothing runs until Run.
func New(st *store.Store, targets TargetSource, gh GitHub, plugin Plugin, script *runnerscript.Renderer, cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("controller config: %w", err)
	}
	if st == nil || targets == nil || gh == nil || plugin == nil || script == nil {
		return nil, errors.New("controller: missing dependency")
	}
	return &Controller{
		cfg:            cfg,
		store:          st,
		targets:        targets,
		gh:             gh,
		plugin:         plugin,
		script:         script,
		log:            cfg.Logger,
		rec:            cfg.Recorder,
		reapNow:        make(chan struct{}, 1),
		prepareSlots:   newFairSlots(cfg.ProvisionConcurrency),
		provisionSlots: newFairSlots(cfg.ProvisionConcurrency),
		deleteSlots:    make(chan struct{}, cfg.DeleteConcurrency),
		workers:        make(map[string]*targetWorker),
		sets:           make(map[int]*scaleSetState),
		adding:         make(map[string]addCall),
		owned:          make(map[string]bool),
		deletes:        make(map[string]bool),
		started:        make(chan struct{}),
	}, nil
}

// Run serves until ctx is cancelled. On cancel it stops polling, lets
// in-flight provisioning finish within ShutdownTimeout, deletes the
// sessions and returns. Instances are kept.
func (c *Controller) Run(ctx context.Context) error {
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	c.workCtx = workCtx
	close(c.started)

	c.loadCloudIDs()
	if err := c.recover(ctx); err != nil {
		return fmt.Errorf("recover state: %w", err)
	}
	c.wakeReaper() // a first pass now: unknown-instance records may be resolvable

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.syncTargets(gctx) })
	g.Go(func() error { return c.janitor(gctx) })
	g.Go(func() error { return c.reaper(gctx) })
	err := g.Wait()

	// Stop every target worker: each stops polling and deletes its session.
	c.stopAllWorkers()

	// Let in-flight provisioning and deletes finish, within the bound.
	done := make(chan struct{})
	go func() { c.work.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(c.cfg.ShutdownTimeout):
		c.log.Warn("shutdown timeout: cancelling in-flight provisioning", "timeout", c.cfg.ShutdownTimeout)
		cancelWork()
		// What was cancelled records its outcome (unknown-instance for an
		// AddInstance cut short) at once; its GitHub clean-up may take
		// longer, and is left to the next start rather than holding the
		// exit whatever the plugin or GitHub do.
		select {
		case <-done:
		case <-time.After(shutdownGrace):
			c.log.Warn("leaving the clean-up of cancelled provisioning to the next start", "grace", shutdownGrace)
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// shutdownGrace bounds the wait, after the shutdown timeout cancelled
// in-flight work, for it to record its outcome.
const shutdownGrace = 2 * time.Second

// backoff returns the wait before attempt n (n >= 1): RetryBackoff doubled
// per attempt, capped at MaxBackoff.
func (c *Controller) backoff(n int) time.Duration {
	d := c.cfg.RetryBackoff
	for i := 1; i < n && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.cfg.MaxBackoff)
}

// sleep waits for d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

package controller

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// scaleSet is one runner scale set as the controller serves it. It owns
// its message session and the handling of each message (listen.go), the
// desired count, scale-up (its reconcile loop, scale.go) and
// scale-down (scale.go). Its target worker (worker.go) ensures it on
// GitHub and runs it, and replaces it when GitHub deleted it. Every
// runner state change it makes goes through the controller's one
// transition function (lifecycle.go).
type scaleSet struct {
	c            *Controller
	id           int
	name         string
	scope        string
	targetID     string
	labels       []string
	resourceType shoes.ResourceType
	log          *slog.Logger

	// countMu makes a message's effects and its statistics one step for
	// reconcile, which holds it while it counts and creates runners.
	countMu sync.Mutex
	desired atomic.Int64
	kick    chan struct{}

	// The reconcile loop's state (scale.go): the target's context and
	// wait group while it is served, and the context of the loop that
	// runs (nil if none).
	loopMu  sync.Mutex
	loopCtx context.Context
	loopWG  *sync.WaitGroup
	running context.Context

	mu          sync.Mutex
	minRunners  int // the policy's bounds (setLimits)
	maxRunners  int
	sessionID   string
	lastPoll    time.Time
	pollSince   time.Time // when the poll in flight was sent; zero if none (listen.go)
	pollErr     string    // why the last poll failed; "" once one answers
	stats       github.Statistics
	statsKnown  bool      // statistics have come from GitHub since this start
	failures    int       // consecutive provisioning failures
	pausedUntil time.Time // provisioning backs off after failures
	acquireErr  string    // why acquiring available jobs keeps failing, for readiness
}

// registerScaleSet returns the live state of a scale set, creating it on
// first use. Its identity fields are refreshed from rec.
func (c *Controller) registerScaleSet(rec store.ScaleSet, rt shoes.ResourceType, log *slog.Logger) *scaleSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sets[rec.ScaleSetID]
	if !ok {
		s = &scaleSet{c: c, id: rec.ScaleSetID, kick: make(chan struct{}, 1)}
		c.sets[rec.ScaleSetID] = s
	}
	s.name, s.scope, s.targetID = rec.Name, rec.Scope, rec.TargetID
	s.labels, s.resourceType, s.log = rec.Labels, rt, log
	return s
}

// setStatistics records the latest statistics (nil keeps the last ones),
// recomputes the desired count, and wakes the reconcile loop.
func (s *scaleSet) setStatistics(st *github.Statistics) {
	s.mu.Lock()
	if st != nil {
		s.stats = *st
		s.statsKnown = true
	}
	stats, minRunners, maxRunners := s.stats, s.minRunners, s.maxRunners
	s.mu.Unlock()
	desired := desiredRunners(minRunners, maxRunners, stats.TotalAssignedJobs)
	s.desired.Store(int64(desired))
	s.c.cfg.Recorder.Statistics(s.scope, s.name, stats, desired)
	s.wake()
}

// desiredRunners is the scale set contract: min + assigned jobs, capped.
func desiredRunners(minRunners, maxRunners, assigned int) int {
	return min(maxRunners, minRunners+max(assigned, 0))
}

// desiredInput returns the assigned jobs of the latest statistics.
func (s *scaleSet) desiredInput() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.TotalAssignedJobs
}

// knowsDesired reports whether the desired count rests on statistics from
// GitHub. Before the first ones (the session is not open yet) it is only
// the floor, and scaling down to it would remove runners that jobs are
// assigned to.
func (s *scaleSet) knowsDesired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statsKnown
}

func (s *scaleSet) setSession(id string) {
	s.mu.Lock()
	s.sessionID = id
	s.mu.Unlock()
}

func (s *scaleSet) setAcquireError(msg string) {
	s.mu.Lock()
	s.acquireErr = msg
	s.mu.Unlock()
}

func (s *scaleSet) markPolled(t time.Time) {
	s.mu.Lock()
	s.lastPoll = t
	s.mu.Unlock()
}

// provisionFailed pauses provisioning with a backoff that grows with
// consecutive failures, so a plugin that always fails is not called in a
// loop.
func (s *scaleSet) provisionFailed(c *Controller) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures++
	d := c.backoff(s.failures)
	s.pausedUntil = c.cfg.Now().Add(d)
	return d
}

func (s *scaleSet) provisionSucceeded() {
	s.mu.Lock()
	s.failures = 0
	s.pausedUntil = time.Time{}
	s.mu.Unlock()
}

func (s *scaleSet) paused(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Before(s.pausedUntil)
}

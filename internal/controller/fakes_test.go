package controller

// In-memory peers for the controller's unit tests: GitHub, its sessions,
// the plugin and myshoes, each a few maps behind a mutex. The store is the
// real bbolt store on a temporary file: it is fast, and a fake of it would
// only test itself.

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// fakeGitHub is GitHub in memory: scale sets by name, runners by ID, and
// the open session of each scale set.
type fakeGitHub struct {
	mu        sync.Mutex
	nextSet   int
	sets      map[string]int // scale set ID by name
	nextRun   int64
	runners   map[int64]*fakeRunner
	sessions  map[int]*fakeSession // the open session by scale set ID
	opened    map[int]int          // sessions opened per scale set
	deleted   []string             // session IDs deleted by DeleteSession
	removed   []int64              // runner IDs removed
	conflicts map[int]int          // OpenSession answers 409 this many more times
	jobRunner map[int64]bool       // RemoveRunner answers "job running"
	// openGate, when set, holds OpenSession until it is closed; the
	// session is then created whatever the caller's context, as GitHub
	// does once the request reached it, and a canceled caller gets only
	// its context's error: the answer is dropped.
	openGate chan struct{}
	// ensureGate, if set, holds each EnsureScaleSet: the call sends on it
	// when it starts and goes on once it receives.
	ensureGate chan struct{}
	// ensureHeld, if set, holds every EnsureScaleSet until it is closed
	// (ensureGate holds one call at a time).
	ensureHeld chan struct{}
}

type fakeRunner struct {
	name       string
	scaleSetID int
	status     string // "" (never online), online, busy, offline
}

func newFakeGitHub() *fakeGitHub {
	return &fakeGitHub{sets: map[string]int{}, runners: map[int64]*fakeRunner{}, sessions: map[int]*fakeSession{},
		opened: map[int]int{}, conflicts: map[int]int{}, jobRunner: map[int64]bool{}}
}

func (g *fakeGitHub) EnsureScaleSet(_ context.Context, spec github.ScaleSetSpec) (github.ScaleSetResult, error) {
	if g.ensureGate != nil {
		g.ensureGate <- struct{}{} // a test holds the call here
		<-g.ensureGate
	}
	if g.ensureHeld != nil {
		<-g.ensureHeld
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	id, ok := g.sets[spec.Name]
	if !ok {
		g.nextSet++
		id = g.nextSet
		g.sets[spec.Name] = id
	}
	return github.ScaleSetResult{
		ScaleSet: &scaleset.RunnerScaleSet{ID: id, Name: spec.Name, RunnerGroupID: 1},
		Created:  !ok, Labels: spec.Labels,
	}, nil
}

func (g *fakeGitHub) DeleteScaleSet(_ context.Context, _ string, id int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, v := range g.sets {
		if v == id {
			delete(g.sets, name)
		}
	}
	return nil
}

func (g *fakeGitHub) RunnerVersion(context.Context, string, string) (string, error) {
	return "2.330.0", nil
}

func (g *fakeGitHub) ScaleSet(scope string, id int) ScaleSetAPI { return fakeAPI{g: g, scaleSetID: id} }

// session returns the open session of a scale set, nil if none.
func (g *fakeGitHub) session(id int) *fakeSession {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sessions[id]
}

// scaleSetID returns the ID of the scale set named name, 0 if none.
func (g *fakeGitHub) scaleSetID(name string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sets[name]
}

func (g *fakeGitHub) setStatus(runnerID int64, status string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.runners[runnerID]; r != nil {
		r.status = status
	}
}

// registered reports whether a runner named name is registered.
func (g *fakeGitHub) registered(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.runners {
		if r.name == name {
			return true
		}
	}
	return false
}

func (g *fakeGitHub) wasRemoved(runnerID int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Contains(g.removed, runnerID)
}

// removals counts the RemoveRunner calls answered.
func (g *fakeGitHub) removals() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.removed)
}

type fakeAPI struct {
	g          *fakeGitHub
	scaleSetID int
}

func (a fakeAPI) JIT(_ context.Context, name, _ string) (*github.JITConfig, error) {
	g := a.g
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nextRun++
	g.runners[g.nextRun] = &fakeRunner{name: name, scaleSetID: a.scaleSetID}
	return &github.JITConfig{Runner: &scaleset.RunnerReference{ID: int(g.nextRun), Name: name}, EncodedJITConfig: "secret-jit-" + name}, nil
}

func (a fakeAPI) RemoveRunner(_ context.Context, id int64) error {
	g := a.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.jobRunner[id] {
		return ErrJobRunning
	}
	g.removed = append(g.removed, id)
	delete(g.runners, id)
	return nil
}

func (a fakeAPI) RunnerByName(_ context.Context, name string) (int64, error) {
	g := a.g
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, r := range g.runners {
		if r.name == name {
			return id, nil
		}
	}
	return 0, nil
}

func (a fakeAPI) RunnerStatus(_ context.Context, id int64) (github.RunnerStatus, bool, error) {
	g := a.g
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.runners[id]
	if !ok {
		return github.RunnerStatus{}, false, nil
	}
	return github.RunnerStatus{ID: id, Name: r.name, Status: r.status}, true, nil
}

func (a fakeAPI) OpenSession(ctx context.Context, owner string) (Session, error) {
	g := a.g
	g.mu.Lock()
	gate := g.openGate
	g.mu.Unlock()
	if gate != nil {
		<-gate
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if gate != nil && ctx.Err() != nil {
		g.opened[a.scaleSetID]++
		g.sessions[a.scaleSetID] = &fakeSession{g: g, scaleSetID: a.scaleSetID, id: fmt.Sprintf("session-%d-%d", a.scaleSetID, g.opened[a.scaleSetID]),
			queue: make(chan fakeDelivery, 64)}
		return nil, ctx.Err()
	}
	if g.conflicts[a.scaleSetID] > 0 {
		g.conflicts[a.scaleSetID]--
		return nil, fmt.Errorf("create session: %w", github.ErrSessionConflict)
	}
	if s := g.sessions[a.scaleSetID]; s != nil && !s.isClosed() {
		return nil, fmt.Errorf("create session: %w", github.ErrSessionConflict)
	}
	g.opened[a.scaleSetID]++
	s := &fakeSession{g: g, scaleSetID: a.scaleSetID, id: fmt.Sprintf("session-%d-%d", a.scaleSetID, g.opened[a.scaleSetID]),
		queue: make(chan fakeDelivery, 64)}
	g.sessions[a.scaleSetID] = s
	return s, nil
}

func (a fakeAPI) DeleteSession(_ context.Context, id string) error {
	g := a.g
	g.mu.Lock()
	defer g.mu.Unlock()
	g.deleted = append(g.deleted, id)
	if s := g.sessions[a.scaleSetID]; s != nil && s.id == id {
		s.closed.Store(true)
	}
	return nil
}

// fakeSession delivers what a test queues: a message or an error.
type fakeSession struct {
	g          *fakeGitHub
	scaleSetID int
	id         string
	queue      chan fakeDelivery
	closed     atomic.Bool

	mu       sync.Mutex
	acked    []int64
	acquired [][]int64
}

type fakeDelivery struct {
	msg *github.Message
	err error
}

// pollHold is how long an empty poll of a fake session waits.
const pollHold = 20 * time.Millisecond

func (s *fakeSession) ID() string                     { return s.id }
func (s *fakeSession) Statistics() *github.Statistics { return &github.Statistics{} }
func (s *fakeSession) isClosed() bool                 { return s.closed.Load() }

func (s *fakeSession) GetMessage(ctx context.Context, _ int64, _ int) (*github.Message, error) {
	t := time.NewTimer(pollHold)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case d := <-s.queue:
		return d.msg, d.err
	case <-t.C:
		return nil, nil
	}
}

func (s *fakeSession) Ack(_ context.Context, id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acked = append(s.acked, id)
	return nil
}

func (s *fakeSession) Acquire(_ context.Context, ids []int64) ([]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acquired = append(s.acquired, slices.Clone(ids))
	return ids, nil
}

func (s *fakeSession) Close(context.Context) error {
	s.closed.Store(true)
	s.g.mu.Lock()
	s.g.deleted = append(s.g.deleted, s.id)
	s.g.mu.Unlock()
	return nil
}

func (s *fakeSession) ackCount(id int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.acked {
		if a == id {
			n++
		}
	}
	return n
}

// fakePlugin creates instances named after their runner.
type fakePlugin struct {
	mu      sync.Mutex
	added   []string // runner names, one per AddInstance sent
	deleted []string // cloud IDs
	// addErr, when set, is what AddInstance answers after sending.
	addErr error
	// deleteErr, when set, is what DeleteInstance answers, deleteFails
	// more times (negative: always).
	deleteErr   error
	deleteFails int
	failed      int // DeleteInstance calls answered deleteErr
	// hold, when set, blocks AddInstance until it is closed.
	hold chan struct{}
	// ready, if set, holds each AddInstance before a plugin process is
	// ready for it (before BeforeSend): the call sends on it when it
	// starts and goes on once it receives.
	ready chan struct{}
}

func (p *fakePlugin) AddInstance(ctx context.Context, req shoes.AddInstanceRequest) (shoes.Instance, error) {
	if p.ready != nil {
		p.ready <- struct{}{} // a test holds the call here
		<-p.ready
	}
	if req.BeforeSend != nil {
		if err := req.BeforeSend(); err != nil {
			return shoes.Instance{}, fmt.Errorf("%w: %w", shoes.ErrNotSent, err)
		}
	}
	p.mu.Lock()
	p.added = append(p.added, req.RunnerName)
	err, hold := p.addErr, p.hold
	p.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return shoes.Instance{}, ctx.Err()
		}
	}
	if err != nil {
		return shoes.Instance{}, err
	}
	return shoes.Instance{CloudID: "cloud-" + req.RunnerName, ShoesType: "fake", ResourceType: req.ResourceType}, nil
}

func (p *fakePlugin) DeleteInstance(_ context.Context, cloudID string, _ []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.deleteErr != nil && p.deleteFails != 0 {
		p.deleteFails--
		p.failed++
		return p.deleteErr
	}
	p.deleted = append(p.deleted, cloudID)
	return nil
}

func (p *fakePlugin) counts() (added, deleted int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.added), len(p.deleted)
}

func (p *fakePlugin) wasDeleted(cloudID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.deleted, cloudID)
}

// fakeTargets is myshoes's target list.
type fakeTargets struct {
	mu      sync.Mutex
	targets []myshoes.Target
}

func (f *fakeTargets) ListTargets(context.Context) ([]myshoes.Target, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.targets), nil
}

func (f *fakeTargets) set(ts ...myshoes.Target) {
	f.mu.Lock()
	f.targets = ts
	f.mu.Unlock()
}

// setTargets changes myshoes's list and has the controller read it now.
func (u *unit) setTargets(ts ...myshoes.Target) {
	u.targets.set(ts...)
	u.c.wakeSync()
}

func target(scope string) myshoes.Target {
	return myshoes.Target{ID: "t-" + scope, Scope: scope, ResourceType: "nano", Status: "active"}
}

// fakeClock is a clock a test moves forward.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// unit is a controller on the in-memory peers and a real store.
type unit struct {
	t       *testing.T
	c       *Controller
	st      *store.Store
	gh      *fakeGitHub
	plugin  *fakePlugin
	targets *fakeTargets
	clock   *fakeClock
	logs    *testkit.SyncBuffer
	cancel  context.CancelFunc
	done    chan error
}

// newUnit builds a controller serving scopes; tune adjusts its config.
// Seed the store through u.st before u.start.
func newUnit(t *testing.T, scopes []string, tune func(*Config)) *unit {
	t.Helper()
	clock := &fakeClock{}
	st, err := store.Open(store.Options{Path: filepath.Join(t.TempDir(), "state.db"), Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	u := &unit{t: t, st: st, gh: newFakeGitHub(), plugin: &fakePlugin{}, targets: &fakeTargets{},
		clock: clock, logs: &testkit.SyncBuffer{}}
	var ts []myshoes.Target
	for _, s := range scopes {
		ts = append(ts, target(s))
	}
	u.targets.set(ts...)
	cfg := Config{
		MaxRunners:          10,
		SyncInterval:        time.Second, // the least Validate allows; the first sync runs at start
		RetryBackoff:        10 * time.Millisecond,
		MaxBackoff:          50 * time.Millisecond,
		JanitorInterval:     20 * time.Millisecond,
		ReaperInterval:      time.Hour, // passes run when a test wakes the reaper
		ShutdownTimeout:     2 * time.Second,
		SessionCloseTimeout: time.Second,
		PollHold:            pollHold,
		Logger:              slog.New(slog.NewTextHandler(u.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:                 u.clock.now,
	}
	if tune != nil {
		tune(&cfg)
	}
	script, err := runnerscript.New("")
	if err != nil {
		t.Fatal(err)
	}
	if u.c, err = New(st, u.targets, u.gh, u.plugin, script, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("controller log (tail):\n%s", testkit.Tail(u.logs.String(), 40))
		}
	})
	return u
}

// start runs the controller until the test ends.
func (u *unit) start() {
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel, u.done = cancel, make(chan error, 1)
	go func() { u.done <- u.c.Run(ctx) }()
	u.t.Cleanup(u.stop)
}

// stop stops the controller and waits for Run to return.
func (u *unit) stop() {
	if u.cancel == nil {
		return
	}
	u.cancel()
	u.cancel = nil
	select {
	case err := <-u.done:
		if err != nil {
			u.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		u.t.Errorf("Run did not return 10s after cancel")
	}
}

// wait polls cond until it holds (2 s at most).
func (u *unit) wait(what string, cond func() (bool, string)) {
	u.t.Helper()
	testkit.WaitFor(u.t, what, 2*time.Second, cond)
}

// listening waits until the scale set of scope has an open session and
// returns it with the scale set's ID.
func (u *unit) listening(scope string) (*fakeSession, int) {
	u.t.Helper()
	name := github.ScaleSetName("myshoes", scope)
	var s *fakeSession
	var id int
	u.wait("a session on "+name, func() (bool, string) {
		id = u.gh.scaleSetID(name)
		s = u.gh.session(id)
		return s != nil && !s.isClosed() && u.c.isServedTarget(target(scope).ID), fmt.Sprint(id, s)
	})
	return s, id
}

// deliver queues a message with statistics of assigned jobs.
func (s *fakeSession) deliver(id int64, assigned int, edit func(*github.Message)) {
	m := &github.Message{ID: id, Statistics: &github.Statistics{TotalAssignedJobs: assigned}}
	if edit != nil {
		edit(m)
	}
	s.queue <- fakeDelivery{msg: m}
}

// fail makes the next poll answer err.
func (s *fakeSession) fail(err error) { s.queue <- fakeDelivery{err: err} }

// runner returns the stored record of name, ok false if it is gone.
func (u *unit) runner(name string) (store.Runner, bool) {
	r, err := u.st.GetRunner(name)
	if err != nil {
		return store.Runner{}, false
	}
	return r, true
}

// runners returns the stored runners of a scale set.
func (u *unit) runners(scaleSetID int) []store.Runner {
	rs, err := u.st.ListRunners(store.RunnerFilter{})
	if err != nil {
		u.t.Fatal(err)
	}
	return slices.DeleteFunc(rs, func(r store.Runner) bool { return r.ScaleSetID != scaleSetID })
}

// states counts the runners of a scale set by state.
func (u *unit) states(scaleSetID int) map[store.RunnerState]int {
	out := map[store.RunnerState]int{}
	for _, r := range u.runners(scaleSetID) {
		out[r.State]++
	}
	return out
}

// seed stores a runner record in state, created age ago.
func (u *unit) seed(name, scope string, scaleSetID int, state store.RunnerState, age time.Duration, edit func(*store.Runner)) store.Runner {
	u.t.Helper()
	at := u.clock.now().Add(-age)
	r := store.Runner{Name: name, TargetID: target(scope).ID, Scope: scope, ScaleSetID: scaleSetID, ResourceType: "nano",
		State: state, StateSince: map[store.RunnerState]time.Time{state: at}, CreatedAt: at, UpdatedAt: at}
	if edit != nil {
		edit(&r)
	}
	if err := u.st.CreateRunners([]store.Runner{r}); err != nil {
		u.t.Fatal(err)
	}
	return r
}

// history returns the history reason of name, "" if it is not there.
func (u *unit) history(name string) string {
	hs, err := u.st.ListHistory(store.HistoryFilter{})
	if err != nil {
		u.t.Fatal(err)
	}
	for _, h := range hs {
		if h.Runner.Name == name {
			return h.Reason
		}
	}
	return ""
}

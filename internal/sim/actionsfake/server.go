package actionsfake

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Server is the fake. All of its state sits behind one mutex; long polls
// wait on signals (channels closed on change) outside the lock.
type Server struct {
	cfg         Config
	log         *slog.Logger
	now         func() time.Time
	mux         *http.ServeMux
	handler     http.Handler
	adminSecret []byte
	appIssuers  map[string]bool
	patTokens   map[string]bool
	uninstalled map[string]bool

	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	closed  bool
	baseURL string
	timers  map[*time.Timer]struct{}

	// GitHub side
	installations      map[string]*installation // by lower-case owner
	installationsByID  map[int64]*installation
	nextInstallationID int64
	installationTokens map[string]*installationToken
	registrationTokens map[string]*registrationToken

	// Actions side
	scaleSets      map[int]*scaleSet
	nextScaleSetID int
	sessions       map[uuid.UUID]*session
	queueTokens    map[string]*queueToken
	runners        map[int64]*runner
	runnersByToken map[string]*runner
	runnersByName  map[string]*runner // registered runners by runnerKey
	runnerOrder    []*runner
	nextRunnerID   int64

	// jobs
	jobs          map[string]*job
	jobOrder      []*job
	jobsByRequest map[int64]*job
	scopeQueue    []*job // jobs waiting for a matching scale set
	nextRequestID int64
	nextRunID     int64

	// sim
	faults     []*faultRule
	calls      map[string]int
	journal    []Request
	rateUsed   map[string]int // REST calls per credential in the current hour
	rateWindow time.Time
	violations []Violation
}

// New validates cfg and builds a Server. Call SetBaseURL once the listening
// address is known (otherwise URLs are derived from each request's Host).
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("actionsfake config: %w", err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("admin token secret: %w", err)
	}
	s := &Server{
		cfg:                cfg,
		log:                cfg.Logger,
		now:                cfg.Now,
		adminSecret:        secret,
		appIssuers:         map[string]bool{},
		patTokens:          map[string]bool{},
		uninstalled:        map[string]bool{},
		done:               make(chan struct{}),
		timers:             map[*time.Timer]struct{}{},
		installations:      map[string]*installation{},
		installationsByID:  map[int64]*installation{},
		nextInstallationID: 1000,
		installationTokens: map[string]*installationToken{},
		registrationTokens: map[string]*registrationToken{},
		scaleSets:          map[int]*scaleSet{},
		sessions:           map[uuid.UUID]*session{},
		queueTokens:        map[string]*queueToken{},
		runners:            map[int64]*runner{},
		runnersByToken:     map[string]*runner{},
		runnersByName:      map[string]*runner{},
		jobs:               map[string]*job{},
		jobsByRequest:      map[int64]*job{},
		nextRequestID:      1000,
		nextRunID:          5000,
		calls:              map[string]int{},
		rateUsed:           map[string]int{},
	}
	if cfg.AppPublicKey != nil {
		if cfg.AppID > 0 {
			s.appIssuers[fmt.Sprint(cfg.AppID)] = true
		}
		if cfg.ClientID != "" {
			s.appIssuers[cfg.ClientID] = true
		}
	}
	for _, t := range cfg.Tokens {
		s.patTokens[t] = true
	}
	for _, o := range cfg.Uninstalled {
		s.uninstalled[strings.ToLower(o)] = true
	}
	for _, o := range cfg.Installations {
		s.installationFor(o)
	}
	s.mux = http.NewServeMux()
	s.routes()
	s.handler = http.HandlerFunc(s.serve)
	return s, nil
}

// Handler serves every API of the fake at the root.
func (s *Server) Handler() http.Handler { return s.handler }

// SetBaseURL sets the externally visible root, e.g. "http://127.0.0.1:PORT",
// used in the URLs the fake hands out (admin connection, message queue, JIT config).
func (s *Server) SetBaseURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.baseURL = strings.TrimRight(u, "/")
}

// Close stops every timer and releases all long polls. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		for t := range s.timers {
			t.Stop()
		}
		clear(s.timers)
		s.mu.Unlock()
		close(s.done)
	})
}

func (s *Server) routes() {
	// GitHub REST API (GHES layout).
	s.handle("POST /api/v3/app/installations/{id}/access_tokens", s.handleAccessToken)
	s.handle("GET /api/v3/app/installations", s.handleListInstallations)
	s.handle("GET /api/v3/orgs/{owner}/installation", s.handleOwnerInstallation)
	s.handle("GET /api/v3/users/{owner}/installation", s.handleOwnerInstallation)
	s.handle("GET /api/v3/repos/{owner}/{repo}/installation", s.handleOwnerInstallation)
	s.handle("POST /api/v3/orgs/{org}/actions/runners/registration-token", s.handleRegistrationToken)
	s.handle("POST /api/v3/repos/{owner}/{repo}/actions/runners/registration-token", s.handleRegistrationToken)
	s.handle("POST /api/v3/enterprises/{enterprise}/actions/runners/registration-token", s.handleRegistrationToken)
	s.handle("GET /api/v3/orgs/{org}/actions/runners/downloads", s.handleDownloads)
	s.handle("GET /api/v3/repos/{owner}/{repo}/actions/runners/downloads", s.handleDownloads)
	s.handle("POST /api/v3/actions/runner-registration", s.handleRunnerRegistration)

	// Actions service.
	s.handle("GET /_actions/_apis/runtime/runnergroups/{$}", s.admin(s.handleRunnerGroups))
	s.handle("GET /_actions/_apis/runtime/runnergroups", s.admin(s.handleRunnerGroups))
	s.handle("GET /_actions/_apis/runtime/runnerscalesets", s.admin(s.handleListScaleSets))
	s.handle("POST /_actions/_apis/runtime/runnerscalesets", s.admin(s.handleCreateScaleSet))
	s.handle("GET /_actions/_apis/runtime/runnerscalesets/{id}", s.admin(s.handleGetScaleSet))
	s.handle("PATCH /_actions/_apis/runtime/runnerscalesets/{id}", s.admin(s.handleUpdateScaleSet))
	s.handle("DELETE /_actions/_apis/runtime/runnerscalesets/{id}", s.admin(s.handleDeleteScaleSet))
	s.handle("POST /_actions/_apis/runtime/runnerscalesets/{id}/sessions", s.admin(s.handleCreateSession))
	s.handle("PATCH /_actions/_apis/runtime/runnerscalesets/{id}/sessions/{sid}", s.admin(s.handleRefreshSession))
	s.handle("DELETE /_actions/_apis/runtime/runnerscalesets/{id}/sessions/{sid}", s.admin(s.handleDeleteSession))
	s.handle("POST /_actions/_apis/runtime/runnerscalesets/{id}/generatejitconfig", s.admin(s.handleGenerateJIT))
	s.handle("POST /_actions/_apis/runtime/runnerscalesets/{id}/acquirejobs", s.handleAcquireJobs)
	s.handle("GET /_actions/_apis/distributedtask/pools/0/agents", s.admin(s.handleListAgents))
	s.handle("GET /_actions/_apis/distributedtask/pools/0/agents/{id}", s.admin(s.handleGetAgent))
	s.handle("DELETE /_actions/_apis/distributedtask/pools/0/agents/{id}", s.admin(s.handleDeleteAgent))

	// Broker.
	s.handle("GET /_broker/{id}/{sid}/messages", s.handlePoll)
	s.handle("DELETE /_broker/{id}/{sid}/messages/{mid}", s.handleAck)

	// Runner side.
	s.handle("POST /_sim/runner/connect", s.handleRunnerConnect)
	s.handle("GET /_sim/runner/{id}/wait", s.handleRunnerWait)

	// Control.
	s.handle("POST /_sim/jobs", s.handleQueueJobs)
	s.handle("POST /_sim/faults", s.handleAddFault)
	s.handle("POST /_sim/sessions/evict", s.handleEvictSessions)
	s.handle("DELETE /_sim/faults", s.handleClearFaults)
	s.handle("GET /_sim/state", s.handleState)
	s.handle("GET /_sim/requests", s.handleRequests)
}

func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, h)
}

// Path prefixes of the GitHub API, the Actions service and the broker.
const (
	githubAPIPrefix = "/api/v3/"
	actionsPrefix   = "/_actions/"
	brokerPrefix    = "/_broker/"
)

// utf8BOM is the byte order mark the Actions service may start a body with.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// serve counts the call by route pattern, applies a matching fault, then routes.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if s.cfg.BOM && hasAnyPrefix(r.URL.Path, githubAPIPrefix, actionsPrefix, brokerPrefix) {
		w = &bomWriter{ResponseWriter: w}
	}
	_, pattern := s.mux.Handler(r)
	if pattern == "" {
		pattern = "unmatched"
	}
	s.mu.Lock()
	s.calls[pattern]++
	fault := s.matchFault(r)
	s.mu.Unlock()
	s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "route", pattern)

	if strings.HasPrefix(r.URL.Path, githubAPIPrefix) {
		s.rateLimitHeaders(w, r)
	}
	if !strings.HasPrefix(r.URL.Path, "/_sim/") {
		sw := &statusWriter{ResponseWriter: w}
		w = sw
		entry := Request{Route: pattern, Method: r.Method, Path: r.URL.Path, Start: s.now().UTC()}
		if fault != nil {
			entry.Fault = fault.Match
		}
		defer func() {
			entry.Status, entry.End = sw.status, s.now().UTC()
			s.record(entry)
		}()
	}
	if fault != nil && s.applyFault(w, r, fault) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// bomWriter starts a body with the UTF-8 BOM, as the Actions service does;
// actions/scaleset (sendRequest) and ARC trim it before decoding. An
// answer without a body gets none.
type bomWriter struct {
	http.ResponseWriter
	started bool
}

func (b *bomWriter) Write(p []byte) (int, error) {
	if !b.started && len(p) > 0 {
		b.started = true
		if _, err := b.ResponseWriter.Write(utf8BOM); err != nil {
			return 0, err
		}
	}
	return b.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (fault drops hijack it).
func (b *bomWriter) Unwrap() http.ResponseWriter { return b.ResponseWriter }

// base returns the externally visible root without a trailing slash. Lock held.
func (s *Server) base(r *http.Request) string {
	if s.baseURL != "" {
		return s.baseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// schedule runs fn under the lock after d, unless the timer was stopped
// through stopTimer or the server closed. Lock held.
func (s *Server) schedule(d time.Duration, fn func()) *time.Timer {
	if s.closed {
		return nil
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return
		}
		if _, ok := s.timers[t]; !ok {
			return
		}
		delete(s.timers, t)
		fn()
	})
	s.timers[t] = struct{}{}
	return t
}

// stopTimer cancels a timer made by schedule. Lock held.
func (s *Server) stopTimer(t *time.Timer) {
	if t == nil {
		return
	}
	delete(s.timers, t)
	t.Stop()
}

// signal is a broadcast: waiters take C() under the lock, Broadcast closes it.
type signal struct{ ch chan struct{} }

func (g *signal) C() <-chan struct{} {
	if g.ch == nil {
		g.ch = make(chan struct{})
	}
	return g.ch
}

func (g *signal) Broadcast() {
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
}

// sleep waits d unless the request or the server ends first; it reports whether d elapsed.
func (s *Server) sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.done:
		return false
	}
}

// Package shoes hosts a myshoes "shoes" provider plugin: a pool of
// go-plugin gRPC processes that serve AddInstance and DeleteInstance.
package shoes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoespb "github.com/shoes-scaleset/shoes-scaleset/proto"
)

// maxIPAddressLen bounds the ip_address kept from a plugin response.
const maxIPAddressLen = 255

// AddInstanceRequest asks the plugin for one instance that runs SetupScript.
type AddInstanceRequest struct {
	RunnerName   string
	SetupScript  string
	ResourceType ResourceType
	Labels       []string
	// BeforeSend, if set, is called once a plugin process is ready to take
	// the call, right before the RPC is sent. Until then no instance can
	// exist: a call that fails earlier (waiting for a free process, a
	// process that does not start) was never sent. An error from
	// BeforeSend aborts the call unsent; AddInstance then returns an error
	// that wraps ErrNotSent and it.
	BeforeSend func() error
}

// Instance is an instance created by the plugin.
type Instance struct {
	CloudID      string
	ShoesType    string
	IPAddress    string
	ResourceType ResourceType
}

// Host runs a pool of plugin processes. Each process serves one call at a
// time and is reused; a process that crashed or stopped answering is killed
// and replaced on the next call. Processes start on demand. A Host is safe
// for concurrent use.
type Host struct {
	cfg    Config
	log    *slog.Logger
	launch *launcher
	slots  chan struct{} // one token per process that may run
	done   chan struct{} // closed by Close
	// closing is cancelled by Close: it ends the starts in progress.
	closing     context.Context
	cancelStart context.CancelFunc

	mu     sync.Mutex
	closed bool
	idle   []*proc
	live   map[*proc]struct{} // idle and busy
	calls  sync.WaitGroup
	// starts follows the outcome of process starts, for readiness
	// (StartFailure, check.go).
	starts startHealth
	// starting counts the process starts in progress, the calls' and the
	// warmer's; warming the warmer's alone (warm.go).
	starting  int
	warming   int
	warmerRun sync.Once
	// lastUse is when the last call took a slot, or Warm was called: the
	// warm floor holds while the pool is in use (warm.go: floor).
	lastUse time.Time
}

// New validates cfg and prepares the plugin executable, downloading it
// first when cfg.Path is an http(s) URL. No process is started until the
// first call.
func New(ctx context.Context, cfg Config) (*Host, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, asConfigError(fmt.Errorf("shoes config: %w", err))
	}
	log := cfg.Logger.With("scope", "shoes")
	path, err := resolvePlugin(ctx, &cfg, log)
	if err != nil {
		return nil, err
	}
	// The host's own lifetime, ended by Close; not the caller's ctx, which
	// only bounds the preparation above.
	closing, cancelStart := context.WithCancel(context.Background())
	return &Host{
		cfg: cfg,
		log: log,
		launch: &launcher{
			path:         path,
			args:         cfg.Args,
			env:          slices.Concat(filterEnv(os.Environ(), cfg.DropEnv), cfg.Env),
			startTimeout: cfg.StartTimeout,
			logger:       newHCLogAdapter(cfg.Logger.With("scope", "go-plugin")).quietFor(path),
			log:          log,
			stderrLog:    cfg.Logger.With("scope", "go-plugin", "logger", filepath.Base(path)),
		},
		slots:       make(chan struct{}, cfg.PoolSize),
		done:        make(chan struct{}),
		closing:     closing,
		cancelStart: cancelStart,
		live:        make(map[*proc]struct{}),
	}, nil
}

// PluginPath is the local executable the host runs.
func (h *Host) PluginPath() string { return h.launch.path }

// PoolStats is a snapshot of the pool of plugin processes.
type PoolStats struct {
	// Size is the most processes the pool runs (Config.PoolSize).
	Size int
	// Processes are the processes started and not yet discarded, idle or
	// in a call. One that died while idle counts until a call finds it
	// dead; one still starting does not count yet.
	Processes int
	// Busy are the processes in a call.
	Busy int
}

// PoolStats returns a snapshot of the pool. It only holds the pool's
// lock for a moment (never held across a plugin call), for a scrape.
func (h *Host) PoolStats() PoolStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	// idle is a subset of live: a process checked out is in live only.
	return PoolStats{Size: h.cfg.PoolSize, Processes: len(h.live), Busy: len(h.live) - len(h.idle)}
}

// AddInstance asks the plugin for an instance. An InvalidArgument answer
// wraps ErrPermanent; every other failure wraps ErrRetryable. The RPC is
// bounded by Config.AddTimeout; waiting for a free process only by ctx.
func (h *Host) AddInstance(ctx context.Context, req AddInstanceRequest) (Instance, error) {
	start := time.Now()
	inst, err := h.addInstance(ctx, req)
	if !errors.Is(err, ErrNotSent) {
		h.cfg.Recorder.ObservePluginCall("AddInstance", Code(err), time.Since(start))
	}
	return inst, err
}

func (h *Host) addInstance(ctx context.Context, req AddInstanceRequest) (Instance, error) {
	var resp *shoespb.AddInstanceResponse
	err := h.do(ctx, "AddInstance", h.cfg.AddTimeout, func(ctx context.Context, c shoespb.ShoesClient) error {
		if req.BeforeSend != nil {
			if err := req.BeforeSend(); err != nil {
				return fmt.Errorf("plugin AddInstance: %w: %w", ErrNotSent, err)
			}
		}
		var err error
		resp, err = c.AddInstance(ctx, &shoespb.AddInstanceRequest{
			RunnerName:   req.RunnerName,
			SetupScript:  req.SetupScript,
			ResourceType: req.ResourceType.toProto(),
			Labels:       req.Labels,
		})
		return err
	})
	if ce, ok := errors.AsType[*CallError](err); ok && ce.Code == codes.InvalidArgument.String() {
		ce.Permanent = true
	}
	if err != nil {
		return Instance{}, err
	}
	if resp.GetCloudId() == "" {
		return Instance{}, &CallError{
			Method: "AddInstance",
			Code:   CodeBadResponse,
			Err:    fmt.Errorf("%w: empty cloud_id for runner %s", ErrBadResponse, req.RunnerName),
		}
	}
	inst := Instance{
		CloudID:      resp.GetCloudId(),
		ShoesType:    resp.GetShoesType(),
		IPAddress:    resp.GetIpAddress(),
		ResourceType: resourceFromProto(resp.GetResourceType()),
	}
	if len(inst.IPAddress) > maxIPAddressLen {
		h.log.Warn("plugin returned an oversized ip_address; dropped it",
			"runner", req.RunnerName, "cloud_id", inst.CloudID, "len", len(inst.IPAddress))
		inst.IPAddress = ""
	}
	if inst.ResourceType == ResourceUnknown {
		inst.ResourceType = req.ResourceType
	}
	return inst, nil
}

// DeleteInstance asks the plugin to delete an instance. NotFound counts as
// success. Failures wrap ErrRetryable. The RPC is bounded by
// Config.DeleteTimeout.
func (h *Host) DeleteInstance(ctx context.Context, cloudID string, labels []string) error {
	if cloudID == "" {
		return fmt.Errorf("plugin DeleteInstance: empty cloud ID: %w", ErrPermanent)
	}
	start := time.Now()
	err := h.do(ctx, "DeleteInstance", h.cfg.DeleteTimeout, func(ctx context.Context, c shoespb.ShoesClient) error {
		_, err := c.DeleteInstance(ctx, &shoespb.DeleteInstanceRequest{CloudId: cloudID, Labels: labels})
		return err
	})
	code := Code(err)
	h.cfg.Recorder.ObservePluginCall("DeleteInstance", code, time.Since(start))
	if code == codes.NotFound.String() {
		return nil
	}
	return err
}

// Close kills every plugin process, waits for them and for calls in flight.
// Calls after Close return ErrClosed. Close is bounded in time whatever the
// plugin does: processes still starting are killed, an idle process gets
// a few seconds to exit, and no process is waited for long once its group
// has been killed.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.calls.Wait()
		return nil
	}
	h.closed = true
	close(h.done)
	h.cancelStart()
	idle := make(map[*proc]bool, len(h.idle))
	for _, p := range h.idle {
		idle[p] = true
	}
	procs := make([]*proc, 0, len(h.live))
	for p := range h.live {
		procs = append(procs, p)
	}
	h.idle, h.live = nil, nil
	h.mu.Unlock()

	var wg sync.WaitGroup
	for _, p := range procs {
		// An idle process is asked to exit; a busy one is killed, which
		// fails its call.
		wg.Go(func() { p.kill(!idle[p]) })
	}
	wg.Wait()
	h.calls.Wait()
	return nil
}

// rpcFunc performs one RPC on a plugin process.
type rpcFunc func(ctx context.Context, c shoespb.ShoesClient) error

// do runs rpc on a pooled process and turns failures into *CallError.
func (h *Host) do(ctx context.Context, method string, timeout time.Duration, rpc rpcFunc) error {
	if err := h.enter(); err != nil {
		return fmt.Errorf("plugin %s: %w", method, err)
	}
	defer h.calls.Done()

	h.mu.Lock()
	h.lastUse = time.Now()
	h.mu.Unlock()
	select {
	case h.slots <- struct{}{}:
	case <-h.done:
		return fmt.Errorf("plugin %s: %w", method, ErrClosed)
	case <-ctx.Done():
		return &CallError{Method: method, Code: Code(ctx.Err()), Err: fmt.Errorf("wait for a plugin process: %w", ctx.Err())}
	}
	defer func() { <-h.slots }()
	if err := ctx.Err(); err != nil {
		// Don't spend (and then discard) a process on a dead call.
		return &CallError{Method: method, Code: Code(err), Err: err}
	}

	p, err := h.checkout(ctx)
	if errors.Is(err, ErrClosed) {
		return fmt.Errorf("plugin %s: %w", method, err)
	}
	if err != nil {
		return h.startFailed(ctx, method, err)
	}

	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	err = rpc(rctx, p.shoes)
	cancel()
	if errors.Is(err, ErrNotSent) {
		h.checkin(p)
		return err
	}
	log := h.log.With("method", method, "pid", p.pid, "duration", time.Since(start))
	if err == nil {
		h.checkin(p)
		log.Debug("plugin call", "code", CodeOK)
		return nil
	}

	c := status.Code(err)
	if h.isClosed() {
		h.discard(p)
		return &CallError{Method: method, Code: CodeClosed, Err: fmt.Errorf("%w during the call: %w", ErrClosed, err)}
	}
	label := c.String()
	crashed := p.client.Exited() || (c == codes.Unavailable && p.exited(time.Second))
	if crashed {
		label = CodeCrash
	}
	if crashed || isTransport(c) {
		h.discard(p)
		log.Warn("plugin process discarded", "code", label, "err", err)
	} else {
		h.checkin(p)
		log.Debug("plugin call", "code", label, "err", err)
	}
	return &CallError{Method: method, Code: label, Err: err}
}

// startFailed logs and counts a plugin process that did not start for a
// call, and returns the call's error: the caller's context error if it
// gave up meanwhile, ErrClosed if the host closed, else StartFailed.
func (h *Host) startFailed(ctx context.Context, method string, err error) error {
	se, ok := errors.AsType[*startError](err)
	if !ok {
		return &CallError{Method: method, Code: CodeStartFailed, Err: err}
	}
	h.cfg.Recorder.PluginStartFailed(se.reason)
	log := h.log.With("method", method, "plugin", h.launch.path, "pid", se.pid, "took", se.took.Round(time.Millisecond))
	if se.reason != StartFailureCanceled {
		log.Warn("plugin process did not start", "reason", se.reason, "start_timeout", h.cfg.StartTimeout, "err", err)
		return &CallError{Method: method, Code: CodeStartFailed, Err: err}
	}
	log.Info("plugin process start abandoned: the call ended or the host closed; killed it")
	switch {
	case h.isClosed():
		return fmt.Errorf("plugin %s: %w: %w", method, ErrClosed, err)
	case ctx.Err() != nil:
		return &CallError{Method: method, Code: Code(ctx.Err()), Err: err}
	}
	return &CallError{Method: method, Code: CodeStartFailed, Err: err}
}

func (h *Host) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// enter registers a call unless the host is closed.
func (h *Host) enter() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	h.calls.Add(1)
	return nil
}

// checkout returns an idle process or starts a new one. The caller holds a
// slot, so at most PoolSize processes exist. A start ends early when ctx
// ends or the host closes.
func (h *Host) checkout(ctx context.Context) (*proc, error) {
	var dead []*proc
	defer func() {
		for _, p := range dead {
			p.kill(true)
		}
	}()

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	for len(h.idle) > 0 {
		p := h.idle[len(h.idle)-1]
		h.idle = h.idle[:len(h.idle)-1]
		if p.client.Exited() {
			delete(h.live, p)
			dead = append(dead, p)
			h.log.Warn("idle plugin process exited; replacing it", "pid", p.pid)
			continue
		}
		h.mu.Unlock()
		return p, nil
	}
	// Counted in the same critical section that found no idle process,
	// so that the warmer sees this start (warm.go: grow).
	h.starting++
	h.mu.Unlock()
	p, err := h.startProc(ctx)
	h.mu.Lock()
	h.starting--
	h.mu.Unlock()
	return p, err
}

// startProc starts a process and adds it to the live ones. The start ends
// early when ctx ends or the host closes.
func (h *Host) startProc(ctx context.Context) (*proc, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(h.closing, cancel)
	defer stop()
	p, err := h.launch.start(sctx)
	h.starts.note(err, time.Now())
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		p.kill(false)
		return nil, ErrClosed
	}
	h.live[p] = struct{}{}
	h.mu.Unlock()
	h.log.Debug("plugin process started", "pid", p.pid)
	return p, nil
}

// checkin returns a healthy process to the pool.
func (h *Host) checkin(p *proc) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		p.kill(false)
		return
	}
	p.idleSince = time.Now()
	h.idle = append(h.idle, p)
	h.mu.Unlock()
}

// discard kills a process that can no longer be trusted.
func (h *Host) discard(p *proc) {
	h.mu.Lock()
	delete(h.live, p)
	h.mu.Unlock()
	p.kill(true)
}

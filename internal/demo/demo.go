// Package demo runs the main job of shoes-scaleset against the simulated
// peers: a fake GitHub and Actions service and a fake myshoes in process,
// the fake shoes plugin as real plugin processes, and the real controller.
// It queues jobs, shows their progress, waits until every instance is
// gone, and reports what happened: jobs completed, instances leaked,
// runners provisioned twice, protocol violations and latencies.
//
// The controller itself is started by the caller (RunController), which
// turns a ControllerSetup into the daemon's own options, so the demo runs
// exactly what `shoes-scaleset run` runs.
package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// Defaults of a demo run.
const (
	DefaultSettleTimeout = 60 * time.Second
	// PollHold is how long the fake broker holds an empty long-poll.
	PollHold = time.Second
	// TargetPrefix names the targets: demo-org-1, demo-org-2, ...
	TargetPrefix = "demo-org-"
	// ResourceType of every target.
	ResourceType = "small"
)

// ControllerSetup is what the caller needs to start the controller
// against the demo's fakes.
type ControllerSetup struct {
	MyshoesURL string
	GitHubURL  string
	AppID      int64
	// AppKeyFile holds the GitHub App private key (PEM).
	AppKeyFile string
	// PluginPath is the binary serving the fake plugin as `PluginArgs...`;
	// PluginEnv holds its SIM_PLUGIN_* knobs.
	PluginPath     string
	PluginArgs     []string
	PluginEnv      []string
	PluginPoolSize int
	// StateFile is run's --state-file: the state with bbolt; with Etcd
	// only its directory is used (the API token file).
	StateFile string
	// Etcd, when set, is where the state is kept instead (run's
	// --store etcd and --etcd-* settings).
	Etcd *Etcd
	// Listen is a free loopback address for the controller's HTTP API.
	Listen string
	// PollHold is how long the fake broker holds an empty long-poll.
	PollHold             time.Duration
	RunnerBaseDirectory  string
	MinRunners           int
	MaxRunners           int
	ProvisionConcurrency int
	// HistoryMaxCount keeps at least every runner of the run in the history.
	HistoryMaxCount int
	// Log receives the controller's logs, at debug level.
	Log io.Writer
}

// Config configures a demo run.
type Config struct {
	// Jobs are queued round-robin over Targets targets; each runs JobDuration.
	Jobs        int
	Targets     int
	JobDuration time.Duration
	// PluginLatency delays every call of the fake plugin.
	PluginLatency time.Duration
	// Acquire is GHES mode: jobs must be acquired by the listener.
	Acquire              bool
	MinRunners           int
	MaxRunners           int
	ProvisionConcurrency int
	PluginPoolSize       int
	// PluginMode is how the fake plugin runs an instance's runner:
	// PluginModeScript (default) or PluginModeInProcess.
	PluginMode string
	// PluginPath is a shoes-scaleset binary: its `sim plugin` command is
	// the fake plugin.
	PluginPath string
	// StateFile is kept after the run; empty means a temporary file,
	// deleted at the end. An existing file is refused.
	StateFile string
	// Etcd keeps the state in etcd instead of a bbolt file (StateFile
	// must be empty): the controller gets it as ControllerSetup.Etcd, and
	// the demo reads the state back with OpenState, which is then
	// required. The caller has checked that its prefix holds no key.
	Etcd *Etcd
	// OpenState opens the state the stopped controller kept, read-only,
	// for the report: required with Etcd (the demo holds no etcd client);
	// nil opens the bbolt state file.
	OpenState StateOpener
	// WorkDir is where the demo works, created if it does not exist; it
	// must be empty. The controller log and the plugin call log are kept
	// there after the run, everything else the demo made is deleted.
	// Empty means a new directory under os.TempDir(), deleted whole at
	// the end (a normal end, an error or an interrupt).
	WorkDir string
	// Timeout bounds the run from start until every job completed.
	Timeout time.Duration
	// SettleTimeout bounds the wait for every instance to be deleted after
	// the jobs completed (default DefaultSettleTimeout).
	SettleTimeout time.Duration
	// Out receives messages and progress; nil is quiet.
	Out io.Writer
	// TTY redraws the progress in place on Out, a few times a second.
	TTY bool
	// RunController runs the controller until ctx ends and returns nil on
	// a clean shutdown.
	RunController func(ctx context.Context, setup ControllerSetup) error
}

// Plugin modes: how the fake plugin runs an instance's runner (see
// shoesfake.EnvRunnerMode).
const (
	// PluginModeScript runs the setup script under bash, whose run.sh
	// starts the sim runner as a process: the whole path, for tests.
	PluginModeScript = shoesfake.RunnerModeScript
	// PluginModeInProcess runs the sim runner as a goroutine of the plugin
	// process with the JIT config taken out of the setup script: cheap
	// instances, for benchmarks.
	PluginModeInProcess = shoesfake.RunnerModeInProcess
)

// The demo's bounds: a run bigger than this measures the machine.
const (
	MaxJobs    = 10000
	MaxTargets = 100
)

// Validate fills in defaults and reports the first invalid field, as a
// *setting.FieldError.
func (c *Config) Validate() error {
	if c.SettleTimeout == 0 {
		c.SettleTimeout = DefaultSettleTimeout
	}
	if c.PluginMode == "" {
		c.PluginMode = PluginModeScript
	}
	bad := setting.Invalid
	switch {
	case c.PluginMode != PluginModeScript && c.PluginMode != PluginModeInProcess:
		return bad("PluginMode", "plugin mode %q: want %s or %s", c.PluginMode, PluginModeScript, PluginModeInProcess)
	case c.Jobs < 1 || c.Jobs > MaxJobs:
		return bad("Jobs", "jobs: must be from 1 to %d", MaxJobs)
	case c.Targets < 1 || c.Targets > MaxTargets:
		return bad("Targets", "targets: must be from 1 to %d", MaxTargets)
	case c.JobDuration < 0:
		return bad("JobDuration", "job duration: must not be negative")
	case c.PluginLatency < 0:
		return bad("PluginLatency", "plugin latency: must not be negative")
	case c.Timeout <= 0:
		return bad("Timeout", "timeout: must be positive")
	case c.SettleTimeout < 0:
		return bad("SettleTimeout", "settle timeout: must not be negative")
	case c.PluginPath == "":
		return errors.New("plugin path: required")
	case c.RunController == nil:
		return errors.New("RunController: required")
	}
	if c.WorkDir != "" {
		switch entries, err := os.ReadDir(c.WorkDir); {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return &setting.FieldError{Field: "WorkDir", Err: fmt.Errorf("work directory: %w", err)}
		case len(entries) > 0:
			return bad("WorkDir", "work directory %s is not empty: the demo reads its logs back; remove it or choose another", c.WorkDir)
		}
	}
	if c.Etcd != nil {
		switch {
		case c.StateFile != "":
			return bad("StateFile", "state file %s and etcd: the state is kept in one of them; give either", c.StateFile)
		case c.OpenState == nil:
			return errors.New("OpenState: required with Etcd")
		}
		if err := c.Etcd.validate(); err != nil {
			return err
		}
	}
	if c.StateFile != "" {
		if _, err := os.Stat(c.StateFile); err == nil {
			return bad("StateFile", "state file %s exists: the demo starts from an empty state; remove it or choose another path", c.StateFile)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return &setting.FieldError{Field: "StateFile", Err: fmt.Errorf("state file: %w", err)}
		}
	}
	return nil
}

// Targets returns the demo's target scopes: demo-org-1 ... demo-org-n.
func Targets(n int) []string { return scenario.Scopes(TargetPrefix, n) }

// files is the layout of the demo's work directory.
type files struct {
	dir, log, callLog, key, state, instances, runners string
	tempState                                         bool
	// tempDir: dir is ours, under os.TempDir(), and goes whole at the
	// end; else it is the user's and the two logs stay in it.
	tempDir bool
}

func newFiles(dir, stateFile string) files {
	f := files{
		dir:       dir,
		log:       filepath.Join(dir, "controller.log"),
		callLog:   filepath.Join(dir, "calls.jsonl"),
		key:       filepath.Join(dir, "app-key.pem"),
		state:     stateFile,
		instances: filepath.Join(dir, "instances"),
		runners:   filepath.Join(dir, "runners"),
	}
	if f.state == "" {
		f.state, f.tempState = filepath.Join(dir, "state.db"), true
	}
	return f
}

// workDir returns the demo's work directory, absolute: the one the user
// named, created if need be, or a new temporary one (temp true), which
// the caller removes.
func workDir(named string) (dir string, temp bool, err error) {
	if named == "" {
		if dir, err = os.MkdirTemp("", "shoes-scaleset-demo-"); err != nil {
			return "", false, fmt.Errorf("work directory: %w", err)
		}
		temp = true
	} else if err = os.MkdirAll(named, 0o755); err != nil {
		return "", false, fmt.Errorf("work directory: %w", err)
	} else {
		dir = named
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		if temp {
			_ = os.RemoveAll(dir)
		}
		return "", false, err
	}
	return abs, temp, nil
}

// deletedNote says, after a path in the work directory, that it goes
// with a temporary work directory.
func (f files) deletedNote() string {
	if !f.tempDir {
		return ""
	}
	return " (deleted at exit; keep it with --work-dir DIR)"
}

// logHint points at the controller log, for an error: the path while it
// outlives the run, else how to keep it.
func (f files) logHint() string {
	if f.tempDir {
		return "run again with --work-dir DIR to keep the controller log"
	}
	return "see " + f.log
}

// cleanup stops what the fake plugin left running and removes everything
// but the two logs.
func (f files) cleanup() {
	killInstances(f.instances)
	remove := []string{f.instances, f.runners, f.key, f.callLog + ".counter"}
	if f.tempState {
		remove = append(remove, f.state, store.CheckedPath(f.state))
	}
	for _, p := range remove {
		_ = os.RemoveAll(p)
	}
}

// killInstances kills the process group of every instance the fake plugin
// left: instances of runners kept idle, or of an interrupted run.
func killInstances(dir string) { shoesfake.KillAll(dir) }

// controllerRun is the controller running in its goroutine.
type controllerRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startController(ctx context.Context, fn func(context.Context, ControllerSetup) error, setup ControllerSetup) *controllerRun {
	ctx, cancel := context.WithCancel(ctx)
	c := &controllerRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = fn(ctx, setup)
	}()
	return c
}

func (c *controllerRun) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop cancels the controller and waits for it to return.
func (c *controllerRun) stop() error {
	c.cancel()
	<-c.done
	return c.err
}

// run is one demo run in progress.
type run struct {
	cfg      Config
	files    files
	world    *sim.World
	ctrl     *controllerRun
	listen   string
	progress *ProgressWriter
	http     *http.Client
	started  time.Time // when the first job was queued
	calls    shoesfake.CallLogTail
}

// waitOutcome is how a wait ended.
type waitOutcome int

const (
	waitDone waitOutcome = iota
	waitTimeout
	waitInterrupted
	waitControllerExited
)

// Run runs the demo. The error is about running it at all (the fakes or
// the controller did not start); a run that went wrong returns a Report
// whose Problems say so.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	start := time.Now()
	deadline := start.Add(cfg.Timeout)
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	interval := 2 * time.Second
	if cfg.TTY {
		interval = 250 * time.Millisecond
	}

	dir, tempDir, err := workDir(cfg.WorkDir)
	if err != nil {
		return Report{}, err
	}
	if tempDir {
		// Last: after the plugin's instances are stopped and the log
		// closed.
		defer os.RemoveAll(dir)
	}
	f := newFiles(dir, cfg.StateFile)
	f.tempDir = tempDir
	if cfg.PluginMode == PluginModeInProcess {
		// The sim's instances, not the controller's state, go to memory:
		// their file churn is the fake plugin's cost, not the
		// controller's (see MemoryDir). In script mode they stay in the
		// work directory, whose file system lets their scripts run.
		if mem := MemoryDir(); mem != "" {
			f.instances = mem
		}
	}
	defer f.cleanup()
	logFile, err := os.OpenFile(f.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return Report{}, fmt.Errorf("controller log: %w", err)
	}
	defer logFile.Close()

	targets := Targets(cfg.Targets)
	world, err := sim.Start(sim.Config{
		Targets:      targets,
		ResourceType: ResourceType,
		Acquire:      cfg.Acquire,
		PollHold:     PollHold,
		Logger:       slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "sim"),
	})
	if err != nil {
		return Report{}, fmt.Errorf("start the simulated GitHub and myshoes: %w", err)
	}
	defer world.Close()
	if err := os.WriteFile(f.key, world.AppKeyPEM(), 0o600); err != nil {
		return Report{}, fmt.Errorf("write app key: %w", err)
	}
	listen, err := scenario.FreeLoopbackAddr()
	if err != nil {
		return Report{}, err
	}

	r := &run{
		cfg: cfg, files: f, world: world, listen: listen,
		progress: NewProgressWriter(out, cfg.TTY, interval),
		http:     &http.Client{Timeout: 2 * time.Second},
		calls:    shoesfake.CallLogTail{Path: f.callLog},
	}
	fmt.Fprintf(out, "demo: %d jobs of %s over %d targets (%s), plugin latency %s, plugin mode %s\n",
		cfg.Jobs, cfg.JobDuration, cfg.Targets, targetRange(targets), cfg.PluginLatency, cfg.PluginMode)
	fmt.Fprintf(out, "  fake GitHub:     %s   fake myshoes: %s\n", world.GitHubURL(), world.MyshoesURL())
	fmt.Fprintf(out, "  controller API:  %s   (shoes-scaleset runners ls --listen %s)\n", listen, listen)
	fmt.Fprintf(out, "  controller log:  %s%s\n", f.log, f.deletedNote())
	fmt.Fprintf(out, "  fake instances:  %s (deleted at exit)\n", f.instances)
	if cfg.Etcd != nil {
		fmt.Fprintf(out, "  state:           %s\n", cfg.Etcd.describe())
	}

	r.ctrl = startController(ctx, cfg.RunController, ControllerSetup{
		MyshoesURL:           world.MyshoesURL(),
		GitHubURL:            world.GitHubURL(),
		AppID:                world.AppID(),
		AppKeyFile:           f.key,
		PluginPath:           cfg.PluginPath,
		PluginArgs:           []string{"sim", "plugin"},
		PluginEnv:            pluginEnv(cfg.PluginLatency, cfg.PluginMode, f),
		PluginPoolSize:       cfg.PluginPoolSize,
		StateFile:            f.state,
		Etcd:                 cfg.Etcd,
		Listen:               listen,
		PollHold:             PollHold,
		RunnerBaseDirectory:  f.runners,
		MinRunners:           cfg.MinRunners,
		MaxRunners:           cfg.MaxRunners,
		ProvisionConcurrency: cfg.ProvisionConcurrency,
		HistoryMaxCount:      max(10000, 2*cfg.Jobs),
		Log:                  logFile,
	})
	defer r.ctrl.stop() //nolint:errcheck // stopped and checked below; this covers early returns

	if err := r.waitReady(ctx, start, deadline); err != nil {
		if cerr := r.ctrl.stop(); cerr != nil {
			return Report{}, fmt.Errorf("%v: %w", err, cerr)
		}
		return Report{}, err
	}

	if err := r.queueJobs(targets); err != nil {
		return Report{}, err
	}
	var why string // why the run stopped early, if it did
	switch outcome, p := r.waitJobs(ctx, deadline); outcome {
	case waitDone:
		if p.Canceled > 0 {
			break // they never complete; the report says so
		}
		if keep := cfg.MinRunners * cfg.Targets; keep > 0 {
			r.progress.Println(fmt.Sprintf("all jobs completed; waiting until only the %d idle runners of --min-runners are left", keep))
		} else {
			r.progress.Println("all jobs completed; waiting until every instance is deleted")
		}
		switch r.waitSettled(ctx, time.Now().Add(cfg.SettleTimeout)) {
		case waitTimeout:
			why = fmt.Sprintf("the run did not settle within %s after the jobs completed (instances or runner records left)", cfg.SettleTimeout)
		case waitControllerExited:
			why = "the controller stopped during the run"
		}
	case waitTimeout:
		why = fmt.Sprintf("timed out after %s", cfg.Timeout)
	case waitControllerExited:
		why = "the controller stopped during the run"
	}
	if ctx.Err() != nil {
		why = "interrupted"
	}

	r.progress.Println("stopping the controller")
	ctrlErr := r.ctrl.stop()
	rep, err := r.summarize()
	if err != nil {
		return Report{}, errors.Join(err, ctrlErr)
	}
	rep.Interrupted = why
	if ctrlErr != nil {
		rep.ControllerError = ctrlErr.Error()
	}
	return rep, nil
}

func targetRange(targets []string) string {
	if len(targets) == 1 {
		return targets[0]
	}
	return targets[0] + " ... " + targets[len(targets)-1]
}

func pluginEnv(latency time.Duration, mode string, f files) []string {
	return []string{
		shoesfake.EnvLatency + "=" + latency.String(),
		shoesfake.EnvRunnerMode + "=" + mode,
		shoesfake.EnvCallLog + "=" + f.callLog,
		shoesfake.EnvStateDir + "=" + f.instances,
	}
}

// waitUntil polls cond until it holds, the deadline passes, ctx ends or
// the controller exits.
func (r *run) waitUntil(ctx context.Context, deadline time.Time, cond func() bool) waitOutcome {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return waitDone
		}
		if r.ctrl.exited() {
			return waitControllerExited
		}
		if time.Now().After(deadline) {
			return waitTimeout
		}
		select {
		case <-ctx.Done():
			return waitInterrupted
		case <-t.C:
		}
	}
}

// pluginProcesses reads the plugin processes the controller runs from its
// /metrics (shoes_scaleset_plugin_processes); 0 while it does not answer.
func (r *run) pluginProcesses() int {
	const name = "shoes_scaleset_plugin_processes "
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.listen+"/metrics", nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int(f)
			}
		}
	}
	return 0
}

// waitReady waits until the controller holds a session on every target's
// scale set and has started its warm plugin processes.
func (r *run) waitReady(ctx context.Context, start, deadline time.Time) error {
	n, idle, keep := 0, 0, r.cfg.MinRunners*r.cfg.Targets
	// run's default --plugin-warm-processes: the provisioning concurrency,
	// at most the pool (by default twice that).
	warmProcs := max(r.cfg.ProvisionConcurrency, 1)
	if r.cfg.PluginPoolSize > 0 {
		warmProcs = min(warmProcs, r.cfg.PluginPoolSize)
	}
	outcome := r.waitUntil(ctx, deadline, func() bool {
		st := r.world.Actions.State()
		n, idle = scenario.Sessions(st), 0
		for _, rn := range st.Runners {
			if rn.State == "idle" {
				idle++
			}
		}
		procs := r.pluginProcesses()
		status := fmt.Sprintf("starting the controller: %d/%d scale sets listening, %d/%d plugin processes warm", n, r.cfg.Targets, procs, warmProcs)
		if keep > 0 {
			status += fmt.Sprintf(", %d/%d idle runners online", idle, keep)
		}
		r.progress.Status(fmt.Sprintf("%s | %.1fs", status, time.Since(start).Seconds()))
		// With --min-runners, the jobs go to a warm pool: wait for it.
		// The burst also finds the plugin's warm processes started, as
		// it would on a daemon that has run for a while.
		return n == r.cfg.Targets && idle >= keep && procs >= warmProcs
	})
	switch outcome {
	case waitDone:
		warm := ""
		if keep > 0 {
			warm = fmt.Sprintf(" and %d idle runners online (--min-runners)", idle)
		}
		r.progress.Println(fmt.Sprintf("controller ready: %d scale sets listening, %d plugin processes warm%s after %.1fs; queuing %d jobs", n, warmProcs, warm, time.Since(start).Seconds(), r.cfg.Jobs))
		return nil
	case waitTimeout:
		if n == r.cfg.Targets {
			return fmt.Errorf("the %d idle runners of --min-runners were not online after %s (%d were); %s", keep, r.cfg.Timeout, idle, r.files.logHint())
		}
		return fmt.Errorf("the controller was not listening on all %d scale sets after %s (%d were); %s", r.cfg.Targets, r.cfg.Timeout, n, r.files.logHint())
	case waitInterrupted:
		return fmt.Errorf("interrupted while the controller started: %w", ctx.Err())
	default:
		return fmt.Errorf("the controller stopped before it was ready; %s", r.files.logHint())
	}
}

// queueJobs queues the jobs one by one, round-robin over the targets.
func (r *run) queueJobs(targets []string) error {
	r.started = time.Now()
	return scenario.QueueRoundRobin(scenario.InProcess(r.world), targets, r.cfg.Jobs, r.cfg.JobDuration)
}

// snapshot reads the current progress.
func (r *run) snapshot() Progress {
	calls, _ := r.calls.Read() // a read error shows as no progress
	return Snapshot(r.cfg.Jobs, r.world.Actions.State(), calls, time.Since(r.started))
}

// waitJobs shows progress until every job is final.
func (r *run) waitJobs(ctx context.Context, deadline time.Time) (waitOutcome, Progress) {
	var p Progress
	outcome := r.waitUntil(ctx, deadline, func() bool {
		p = r.snapshot()
		r.progress.Update(p, time.Now())
		return p.Finished()
	})
	r.progress.Flush(p, time.Now())
	return outcome, p
}

// waitSettled shows progress until the run is at rest: see Settled.
func (r *run) waitSettled(ctx context.Context, deadline time.Time) waitOutcome {
	keep := r.cfg.MinRunners * r.cfg.Targets
	var p Progress
	outcome := r.waitUntil(ctx, deadline, func() bool {
		calls, err := r.calls.Read()
		if err != nil {
			return false
		}
		p = Snapshot(r.cfg.Jobs, r.world.Actions.State(), calls, time.Since(r.started))
		r.progress.Update(p, time.Now())
		runners, err := r.runners(ctx)
		return err == nil && Settled(calls, runners, keep)
	})
	r.progress.Flush(p, time.Now())
	return outcome
}

// runners asks the controller's API for the stored runners.
func (r *run) runners(ctx context.Context) ([]store.Runner, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.listen+"/api/v1/runners", nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/runners: %s", resp.Status)
	}
	var body httpapi.RunnersResponse
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("decode runners: %w", err)
	}
	return body.Runners, nil
}

// Settled reports whether a run is at rest after its jobs: exactly keep
// runners are stored (the idle ones --min-runners asks for), all idle,
// and the instances created and not deleted are exactly theirs.
func Settled(calls []shoesfake.Call, runners []store.Runner, keep int) bool {
	if len(runners) != keep {
		return false
	}
	live := scenario.LiveInstances(calls)
	if len(live) != len(runners) {
		return false
	}
	for _, rn := range runners {
		if rn.State != store.StateIdle || !live[rn.CloudID] {
			return false
		}
	}
	return true
}

// summarize reads the final state: the fake's, the call log, and the
// store (the state file, which the stopped controller no longer holds, or
// etcd).
func (r *run) summarize() (Report, error) {
	calls, err := shoesfake.ReadCallLog(r.files.callLog)
	if err != nil {
		return Report{}, err
	}
	open, what := r.cfg.OpenState, "the state in etcd"
	if open == nil {
		open, what = openStateFile(r.files.state), "the state file"
	}
	st, closeState, err := open()
	if err != nil {
		return Report{}, fmt.Errorf("read %s: %w", what, err)
	}
	defer closeState()
	history, err := st.ListHistory(store.HistoryFilter{})
	if err != nil {
		return Report{}, err
	}
	runners, err := st.ListRunners(store.RunnerFilter{})
	if err != nil {
		return Report{}, err
	}
	rep := Summarize(Inputs{
		Jobs:                 r.cfg.Jobs,
		State:                r.world.Actions.State(),
		Calls:                calls,
		History:              history,
		Runners:              runners,
		KeepIdle:             r.cfg.MinRunners > 0,
		ProvisionConcurrency: r.cfg.ProvisionConcurrency,
		PluginLatency:        r.cfg.PluginLatency,
		PluginMode:           r.cfg.PluginMode,
	})
	if !r.files.tempDir {
		rep.LogFile, rep.CallLog = r.files.log, r.files.callLog
	}
	switch {
	case r.cfg.Etcd != nil:
		rep.StateIn = r.cfg.Etcd.describe()
	case !r.files.tempState:
		rep.StateFile = r.files.state
	}
	return rep, nil
}

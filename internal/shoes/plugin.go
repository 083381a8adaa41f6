package shoes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	shoespb "github.com/shoes-scaleset/shoes-scaleset/proto"
)

// pluginKey is the name myshoes dispenses the shoes plugin under.
const pluginKey = "shoes_grpc"

// handshake is the go-plugin handshake of myshoes and its plugins.
func handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  1,
		MagicCookieKey:   "SHOES_PLUGIN_MAGIC_COOKIE",
		MagicCookieValue: "are_you_a_shoes?",
	}
}

// grpcPlugin is the host side of the shoes go-plugin.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

var _ plugin.GRPCPlugin = grpcPlugin{}

func (grpcPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("shoes plugin server is not implemented by the host")
}

func (grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return shoespb.NewShoesClient(conn), nil
}

// launcher starts plugin processes.
type launcher struct {
	path         string
	args         []string
	env          []string // the whole environment of a plugin process
	startTimeout time.Duration
	logger       hclog.Logger // go-plugin's
	log          *slog.Logger
	// stderrLog logs what plugin processes write to their stderr
	// (pluginStderr).
	stderrLog *slog.Logger
}

// proc is one running plugin process, the leader of a process group of its
// own.
type proc struct {
	client *plugin.Client
	shoes  shoespb.ShoesClient
	pid    int
	// killGroup kills the process group with SIGKILL unless the process
	// has been reaped already (its pid, the group's ID, may then belong to
	// another process). It may be called any number of times.
	killGroup context.CancelFunc
	log       *slog.Logger
	killOnce  sync.Once
	// idleSince is when the process last went idle (Host.mu).
	idleSince time.Time
}

// startError is a plugin process that did not complete its start.
type startError struct {
	reason string // a StartFailure* constant
	pid    int    // 0 if the executable never ran
	took   time.Duration
	err    error
	// brief is err without what the plugin wrote to stderr: the reason
	// /readyz serves, which must not repeat whatever a plugin printed.
	brief error
}

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// start launches a plugin process and completes the handshake, within
// startTimeout and as long as ctx lasts. A failure is a *startError.
func (l *launcher) start(ctx context.Context) (*proc, error) {
	// A freshly downloaded plugin can briefly be "text file busy" while a
	// process forked elsewhere in this program still holds the write
	// descriptor (golang.org/issue/22315); that passes within milliseconds.
	for attempt := 1; ; attempt++ {
		p, err := l.startOnce(ctx)
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || attempt == 5 {
			return p, err
		}
		t := time.NewTimer(time.Duration(attempt) * 20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, &startError{reason: StartFailureCanceled, err: fmt.Errorf("start plugin %s: %w", l.path, ctx.Err())}
		case <-t.C:
		}
	}
}

func (l *launcher) startOnce(ctx context.Context) (*proc, error) {
	// The command's context is the process's life: cancelling it makes
	// os/exec call Cancel, which kills the whole process group, unless
	// the process has been reaped (os/exec orders the two), so the group
	// ID cannot be another's yet.
	life, killGroup := context.WithCancel(context.Background())
	cmd := exec.CommandContext(life, l.path, l.args...)
	// A copy per process: go-plugin appends to cmd.Env, and starts run
	// concurrently (the warm pool), so a shared slice with spare capacity
	// would be written by two of them at once.
	cmd.Env = slices.Clip(slices.Clone(l.env))
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid) }
	stderr := newPluginStderr(l.stderrLog)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake(),
		Plugins:          plugin.PluginSet{pluginKey: grpcPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           l.logger,
		Stderr:           stderr,
		// Our own deadline below ends the start first.
		StartTimeout: l.startTimeout + time.Second,
		// cmd.Env already holds our environment; go-plugin would append
		// it again after Env and so override Env's values.
		SkipHostEnv: true,
	})
	p := &proc{client: client, killGroup: killGroup, log: l.log}

	// When the caller gives up or the handshake takes too long, the group
	// is killed: that ends go-plugin's wait for the handshake at once,
	// even when a child of the plugin holds its stdout open.
	began := time.Now()
	sctx, cancel := context.WithTimeout(ctx, l.startTimeout)
	defer cancel()
	unwatch := context.AfterFunc(sctx, killGroup)
	rpc, err := client.Client()
	if !unwatch() && err == nil {
		err = sctx.Err() // killed just as the handshake completed
	}
	if cmd.Process != nil {
		p.pid = cmd.Process.Pid
	}
	if err != nil {
		took := time.Since(began)
		p.kill(true) // and so waits for the rest of its stderr
		return nil, l.startFailed(ctx, sctx, p.pid, took, stderr.lastLines(), err)
	}
	raw, err := rpc.Dispense(pluginKey)
	if err != nil {
		p.kill(true)
		return nil, &startError{reason: StartFailureHandshake, pid: p.pid, took: time.Since(began), err: fmt.Errorf("dispense plugin %s: %w", l.path, err)}
	}
	shoes, ok := raw.(shoespb.ShoesClient)
	if !ok {
		p.kill(true)
		return nil, &startError{reason: StartFailureHandshake, pid: p.pid, took: time.Since(began), err: fmt.Errorf("dispense plugin %s: unexpected type %T", l.path, raw)}
	}
	p.shoes = shoes
	return p, nil
}

// startFailed explains why a start failed: ctx is the caller's, sctx the
// start's own, bounded by startTimeout; stderr is the last lines the
// process wrote there, which say why more often than go-plugin does.
func (l *launcher) startFailed(ctx, sctx context.Context, pid int, took time.Duration, stderr string, err error) *startError {
	reason := StartFailureHandshake
	// When we killed the process, go-plugin's own error only describes
	// the kill: it is left out.
	switch {
	case ctx.Err() != nil:
		reason = StartFailureCanceled
		err = fmt.Errorf("%w during the start; killed it", ctx.Err())
	case sctx.Err() != nil || took >= l.startTimeout:
		reason = StartFailureTimeout
		err = fmt.Errorf("no handshake within %s; killed it", l.startTimeout)
	case pid == 0:
		reason = StartFailureExec
	}
	what := "start plugin " + l.path
	brief := fmt.Errorf("%s: %w", what, err)
	if stderr != "" && reason != StartFailureCanceled {
		what += " (its stderr ended with: " + stderr + ")"
	}
	return &startError{reason: reason, pid: pid, took: took, err: fmt.Errorf("%s: %w", what, err), brief: brief}
}

// signalGroup kills the process group pgid with SIGKILL.
func signalGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// Bounds of a kill.
const (
	// gracefulKillTimeout bounds a polite exit before the group is
	// killed. go-plugin itself kills the process (not its group) 2s after
	// asking it to exit.
	gracefulKillTimeout = 3 * time.Second
	// killWaitTimeout bounds the wait, once the group is killed, for
	// go-plugin to see the end of the process: its output pipes closed.
	killWaitTimeout = 5 * time.Second
)

// kill stops the process and waits for it, within bounds. With force its
// process group is killed at once (it crashed or stopped answering);
// otherwise it is asked to exit first, and the group is killed if it has
// not within gracefulKillTimeout. A process whose pipes are still held
// open past killWaitTimeout after that (by a child that left the group) is
// given up on, with a warning.
func (p *proc) kill(force bool) {
	p.killOnce.Do(func() {
		if force {
			p.killGroup()
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.client.Kill()
		}()
		if !force {
			t := time.NewTimer(gracefulKillTimeout)
			select {
			case <-done:
			case <-t.C:
			}
			t.Stop()
			p.killGroup() // nothing left to kill once the process was reaped
		}
		t := time.NewTimer(killWaitTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			p.log.Warn("plugin process group killed, but its output is still held open (by a child that left the group?); not waiting any longer",
				"pid", p.pid, "waited", killWaitTimeout)
		}
	})
}

// exited waits up to d for the process to be seen as exited.
func (p *proc) exited(d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if p.client.Exited() {
			return true
		}
		select {
		case <-deadline.C:
			return p.client.Exited()
		case <-tick.C:
		}
	}
}

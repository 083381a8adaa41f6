package shoes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
	env          []string
	startTimeout time.Duration
	logger       hclog.Logger
}

// proc is one running plugin process.
type proc struct {
	client   *plugin.Client
	cmd      *exec.Cmd
	shoes    shoespb.ShoesClient
	pid      int
	killOnce sync.Once
}

// start launches a plugin process and completes the handshake.
func (l *launcher) start() (*proc, error) {
	// A freshly downloaded plugin can briefly be "text file busy" while a
	// process forked elsewhere in this program still holds the write
	// descriptor (golang.org/issue/22315); that passes within milliseconds.
	for attempt := 1; ; attempt++ {
		p, err := l.startOnce()
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || attempt == 5 {
			return p, err
		}
		time.Sleep(time.Duration(attempt) * 20 * time.Millisecond)
	}
}

func (l *launcher) startOnce() (*proc, error) {
	cmd := exec.Command(l.path, l.args...)
	cmd.Env = append(os.Environ(), l.env...)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake(),
		Plugins:          plugin.PluginSet{pluginKey: grpcPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           l.logger,
		StartTimeout:     l.startTimeout,
		// cmd.Env already holds our environment; go-plugin would append
		// it again after Env and so override Env's values.
		SkipHostEnv: true,
	})
	p := &proc{client: client, cmd: cmd}
	rpc, err := client.Client()
	if err != nil {
		p.kill(true)
		return nil, fmt.Errorf("start plugin %s: %w", l.path, err)
	}
	raw, err := rpc.Dispense(pluginKey)
	if err != nil {
		p.kill(true)
		return nil, fmt.Errorf("dispense plugin %s: %w", l.path, err)
	}
	shoes, ok := raw.(shoespb.ShoesClient)
	if !ok {
		p.kill(true)
		return nil, fmt.Errorf("dispense plugin %s: unexpected type %T", l.path, raw)
	}
	p.shoes = shoes
	p.pid = cmd.Process.Pid
	return p, nil
}

// gracefulKillTimeout bounds a polite shutdown before the process is killed.
const gracefulKillTimeout = 5 * time.Second

// kill stops the process and waits for it. With force it is killed at once
// (it crashed or stopped answering); otherwise it is asked to exit first,
// and killed if it has not within gracefulKillTimeout.
func (p *proc) kill(force bool) {
	p.killOnce.Do(func() {
		if p.cmd.Process != nil {
			if force {
				_ = p.cmd.Process.Kill()
			} else {
				t := time.AfterFunc(gracefulKillTimeout, func() { _ = p.cmd.Process.Kill() })
				defer t.Stop()
			}
		}
		p.client.Kill()
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

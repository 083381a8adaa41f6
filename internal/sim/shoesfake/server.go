package shoesfake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shoespb "github.com/shoes-scaleset/shoes-scaleset/proto"
)

// The handshake and plugin name of myshoes plugins, spelled out here as a
// plugin author would, so tests check the host against an independent copy.
const (
	magicCookieKey   = "SHOES_PLUGIN_MAGIC_COOKIE"
	magicCookieValue = "are_you_a_shoes?"
	pluginKey        = "shoes_grpc"
	shoesType        = "shoesfake"
	hugeIPLen        = 1 << 20
)

// ErrBadKnob: a SIM_PLUGIN_* variable is invalid.
var ErrBadKnob = errors.New("invalid fake plugin setting")

// ErrStartRefused: the file of SIM_PLUGIN_FAIL_START_IF exists, so the
// plugin exits before its handshake.
var ErrStartRefused = errors.New("refusing to start")

// ServeFromEnv serves the fake plugin with its knobs from the SIM_PLUGIN_*
// variables; the fake runner tarball's run.sh execs runner, the command of
// the sim runner. Both entry points (shoes-scaleset sim plugin, and the
// fakeshoes binary the tests build) call it. An invalid knob is ErrBadKnob.
func ServeFromEnv(runner []string) error {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadKnob, err)
	}
	cfg.RunnerCommand = runner
	return Serve(cfg)
}

// Serve runs the fake plugin until the host stops it. It must be started by
// a go-plugin host (the handshake cookie is checked). It returns an error
// for an invalid cfg, and ErrStartRefused while cfg.FailStartIf exists.
func Serve(cfg Config) error {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("shoesfake config: %w", err)
	}
	if cfg.FailStartIf != "" {
		if _, err := os.Stat(cfg.FailStartIf); err == nil {
			return fmt.Errorf("%w: %s exists (%s)", ErrStartRefused, cfg.FailStartIf, EnvFailStartIf)
		}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("shoesfake state dir: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := newServer(ctx, cfg)
	defer srv.instances.wg.Wait()
	defer cancel() // stops the in-process runners
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  1,
			MagicCookieKey:   magicCookieKey,
			MagicCookieValue: magicCookieValue,
		},
		Plugins:    plugin.PluginSet{pluginKey: &grpcPlugin{srv: srv}},
		GRPCServer: plugin.DefaultGRPCServer,
		// os.Stderr is still the real stderr here; go-plugin swaps it later.
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "shoesfake",
			Level:      hclog.Info,
			Output:     os.Stderr,
			JSONFormat: true,
		}),
	})
	return nil
}

type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srv *server
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	shoespb.RegisterShoesServer(s, p.srv)
	return nil
}

func (p *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("shoesfake is a plugin server only")
}

// server implements the Shoes service.
type server struct {
	shoespb.UnimplementedShoesServer
	cfg       Config
	log       *slog.Logger
	pid       int
	counter   counter
	instances *instances
	inflight  atomic.Int32
}

func newServer(ctx context.Context, cfg Config) *server {
	counterPath := filepath.Join(cfg.StateDir, ".counter")
	if cfg.CallLog != "" {
		counterPath = cfg.CallLog + ".counter"
	}
	log := cfg.Logger.With("scope", "shoesfake", "pid", os.Getpid())
	return &server{
		cfg:     cfg,
		log:     log,
		pid:     os.Getpid(),
		counter: counter{path: counterPath},
		instances: &instances{
			dir:       cfg.StateDir,
			runnerCmd: cfg.RunnerCommand,
			callLog:   cfg.CallLog,
			runScript: !cfg.NoRunner,
			mode:      cfg.RunnerMode,
			cloudIDs:  cfg.CloudIDs,
			log:       log,
			ctx:       ctx,
			children:  make(map[string]chan struct{}),
			inproc:    make(map[string]*inprocRunner),
		},
	}
}

func (s *server) AddInstance(ctx context.Context, req *shoespb.AddInstanceRequest) (*shoespb.AddInstanceResponse, error) {
	c := Call{
		PID:          s.pid,
		Method:       MethodAddInstance,
		RunnerName:   req.GetRunnerName(),
		Labels:       req.GetLabels(),
		ResourceType: req.GetResourceType().String(),
		Start:        time.Now().UTC(),
	}
	resp, err := s.addInstance(ctx, req, &c)
	s.finish(&c, err)
	return resp, err
}

func (s *server) addInstance(ctx context.Context, req *shoespb.AddInstanceRequest, c *Call) (*shoespb.AddInstanceResponse, error) {
	defer s.inflight.Add(-1)
	// In CloudIDsName mode the cloud ID is the runner name, used once
	// validated.
	cloudID := s.instances.newCloudID(req.GetRunnerName())
	var inst *newInstance
	create := func() error {
		if err := validateRunnerName(req.GetRunnerName()); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if first, _, _ := strings.Cut(req.GetSetupScript(), "\n"); !strings.HasPrefix(first, "#!") || !strings.Contains(first, "bash") {
			return status.Error(codes.InvalidArgument, "setup_script must start with a bash shebang (#!/bin/bash)")
		}
		c.CloudID = cloudID
		var err error
		inst, err = s.instances.prepare(Instance{
			CloudID:      cloudID,
			RunnerName:   req.GetRunnerName(),
			Labels:       req.GetLabels(),
			ResourceType: req.GetResourceType().String(),
			PID:          s.pid,
			Created:      time.Now().UTC(),
		}, req.GetSetupScript())
		if err != nil {
			s.log.Error("create instance", "cloud_id", cloudID, "err", err)
			return status.Errorf(codes.Internal, "create instance %s: %v", cloudID, err)
		}
		return nil
	}
	if err := s.begin(ctx, c, create); err != nil {
		s.instances.discard(inst)
		return nil, err
	}
	// The runner starts once the call's latency has passed, as an
	// instance boots once it is created; an existing instance (name mode)
	// boots again if it has stopped.
	mode, err := s.instances.launch(inst)
	if err != nil {
		s.instances.discard(inst)
		s.log.Error("start instance", "cloud_id", cloudID, "err", err)
		if errors.Is(err, errNotFound) {
			err = errors.New("deleted while being started")
		}
		return nil, status.Errorf(codes.Internal, "start instance %s: %v", cloudID, err)
	}
	c.RunnerMode, c.Existing = mode, inst.existing
	if inst.existing {
		s.log.Info("instance exists", "cloud_id", cloudID, "runner", req.GetRunnerName(), "started", mode)
	} else {
		s.log.Info("instance created", "cloud_id", cloudID, "runner", req.GetRunnerName(), "runner_mode", mode)
	}
	resp := &shoespb.AddInstanceResponse{
		CloudId:      cloudID,
		ShoesType:    shoesType,
		IpAddress:    "127.0.0.1",
		ResourceType: req.GetResourceType(),
	}
	if s.cfg.EmptyCloudID {
		resp.CloudId = ""
	}
	if s.cfg.UnknownResourceType {
		resp.ResourceType = shoespb.ResourceType_Unknown
	}
	if s.cfg.HugeIP {
		resp.IpAddress = strings.Repeat("9", hugeIPLen)
	}
	return resp, nil
}

func (s *server) DeleteInstance(ctx context.Context, req *shoespb.DeleteInstanceRequest) (*shoespb.DeleteInstanceResponse, error) {
	c := Call{
		PID:     s.pid,
		Method:  MethodDeleteInstance,
		CloudID: req.GetCloudId(),
		Labels:  req.GetLabels(),
		Start:   time.Now().UTC(),
	}
	resp, err := s.deleteInstance(ctx, req, &c)
	s.finish(&c, err)
	return resp, err
}

func (s *server) deleteInstance(ctx context.Context, req *shoespb.DeleteInstanceRequest, c *Call) (*shoespb.DeleteInstanceResponse, error) {
	defer s.inflight.Add(-1)
	if err := s.begin(ctx, c, nil); err != nil {
		return nil, err
	}
	err := s.instances.remove(req.GetCloudId())
	switch {
	case errors.Is(err, errNotFound):
		return nil, status.Errorf(codes.NotFound, "instance %q not found", req.GetCloudId())
	case err != nil:
		s.log.Error("delete instance", "cloud_id", req.GetCloudId(), "err", err)
		return nil, status.Errorf(codes.Internal, "delete instance %s: %v", req.GetCloudId(), err)
	}
	s.log.Info("instance deleted", "cloud_id", req.GetCloudId())
	return &shoespb.DeleteInstanceResponse{}, nil
}

// begin applies the injected behaviour shared by both methods: the
// one-call-at-a-time check, latency, crash, hang and failures; then it runs
// work, the call's own. A call takes the latency with its work included,
// as a real plugin's does: work runs at the start and the latency's rest
// is waited out after it. A call that crashes, hangs or fails waits the
// latency, then faults, and never runs work. The caller must decrement
// inflight when done.
func (s *server) begin(ctx context.Context, c *Call, work func() error) error {
	deadline := time.Now().Add(s.cfg.Latency)
	if s.inflight.Add(1) > 1 {
		return status.Error(codes.FailedPrecondition, "shoesfake: concurrent RPCs on one plugin process")
	}
	matches := s.cfg.FailCode != codes.OK && (s.cfg.FailMethod == "" || s.cfg.FailMethod == c.Method)
	// The cross-process counter (a locked file) is kept only when a fault
	// needs the call's number: it is the fake's costliest step, and in a
	// benchmark it would take CPU from the controller under test.
	var n int
	var fail bool
	if matches || s.cfg.CrashOnCall > 0 {
		var err error
		n, fail, err = s.counter.next(func(st counts) bool {
			if !matches || (s.cfg.FailTimes > 0 && st.Failed >= s.cfg.FailTimes) {
				return false
			}
			return s.cfg.FailRate >= 1 || rand.Float64() < s.cfg.FailRate
		})
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
	}
	crash := s.cfg.CrashOnCall > 0 && n == s.cfg.CrashOnCall
	hang := s.cfg.Hang == c.Method && (s.cfg.HangResourceType == "" || strings.EqualFold(s.cfg.HangResourceType, c.ResourceType))
	var workErr error
	if work != nil && !crash && !hang && !fail {
		workErr = work()
	}
	if wait := time.Until(deadline); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if crash {
		c.Code = "Crash"
		s.record(c)
		s.log.Warn("crashing on purpose", "call", n)
		os.Exit(2)
	}
	if hang {
		c.Code = "Hang"
		s.record(c)
		s.log.Warn("hanging on purpose", "method", c.Method)
		select {} // never answers, even when the host gives up
	}
	if fail {
		return status.Errorf(s.cfg.FailCode, "shoesfake: injected %s failure (call %d)", s.cfg.FailCode, n)
	}
	return workErr
}

// finish records a call's outcome.
func (s *server) finish(c *Call, err error) {
	c.Code = status.Code(err).String()
	s.record(c)
}

func (s *server) record(c *Call) {
	c.End = time.Now().UTC()
	if err := appendLine(s.cfg.CallLog, c); err != nil {
		s.log.Error("write call log", "err", err)
	}
}

// validateRunnerName checks the name the way shoes-lxd and shoes-openstack
// do: myshoes-<lower-case uuid>.
func validateRunnerName(name string) error {
	id, ok := strings.CutPrefix(name, "myshoes-")
	if !ok {
		return fmt.Errorf("runner name %q: want myshoes-<uuid>", name)
	}
	if _, err := uuid.Parse(id); err != nil || strings.ToLower(id) != id || len(id) != 36 {
		return fmt.Errorf("runner name %q: want myshoes-<lower-case uuid>", name)
	}
	return nil
}

// Package shoesfake is a fake myshoes shoes plugin: a real go-plugin gRPC
// process that "boots" instances by running the setup script locally under
// bash, with shims for curl, sudo and friends, and a sim runner that talks
// to the fake Actions service. It injects latency, failures, crashes and
// hangs on demand.
package shoesfake

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// Method names as used in knobs and the call log.
const (
	MethodAddInstance    = "AddInstance"
	MethodDeleteInstance = "DeleteInstance"
)

// Environment knobs read by ConfigFromEnv.
const (
	EnvLatency     = "SIM_PLUGIN_LATENCY"
	EnvFailCode    = "SIM_PLUGIN_FAIL_CODE"
	EnvFailRate    = "SIM_PLUGIN_FAIL_RATE"
	EnvFailMethod  = "SIM_PLUGIN_FAIL_METHOD"
	EnvFailTimes   = "SIM_PLUGIN_FAIL_TIMES"
	EnvCrashOnCall = "SIM_PLUGIN_CRASH_ON_CALL"
	EnvHang        = "SIM_PLUGIN_HANG"
	// EnvHangResourceType limits SIM_PLUGIN_HANG to calls of one resource
	// type (the proto enum name, e.g. Large): one backend hangs, the
	// others answer.
	EnvHangResourceType = "SIM_PLUGIN_HANG_RESOURCE_TYPE"
	EnvCallLog          = "SIM_PLUGIN_CALL_LOG"
	EnvStateDir         = "SIM_PLUGIN_STATE_DIR"
	EnvNoRunner         = "SIM_PLUGIN_NO_RUNNER"
	EnvEmptyCloudID     = "SIM_PLUGIN_EMPTY_CLOUD_ID"
	EnvHugeIP           = "SIM_PLUGIN_HUGE_IP"
	// EnvUnknownResourceType answers resource_type Unknown, as shoes-lxd does.
	EnvUnknownResourceType = "SIM_PLUGIN_UNKNOWN_RESOURCE_TYPE"
	// EnvRunnerMode selects how an instance runs: RunnerModeScript or
	// RunnerModeInProcess.
	EnvRunnerMode = "SIM_PLUGIN_RUNNER_MODE"
	// EnvCloudIDs selects what AddInstance answers as the cloud ID:
	// CloudIDsOpaque or CloudIDsName.
	EnvCloudIDs = "SIM_PLUGIN_CLOUD_IDS"
	// EnvFailStartIf names a file: while it exists, the plugin exits
	// before the go-plugin handshake, as a plugin whose settings or
	// backend are gone does. A test makes later starts fail by creating
	// it.
	EnvFailStartIf = "SIM_PLUGIN_FAIL_START_IF"
)

// Cloud-ID modes: what AddInstance answers as the cloud ID, and so what
// DeleteInstance takes. An instance's directory under the state directory
// is named after its cloud ID in both.
const (
	// CloudIDsOpaque answers an opaque fake-<uuid>, a new instance per
	// call, as shoes-aws and shoes-openstack do. The default.
	CloudIDsOpaque = "opaque"
	// CloudIDsName names the instance after the runner and answers the
	// runner name, as shoes-lxd does: an AddInstance for a name whose
	// instance exists returns that instance, started again if it is not
	// running, instead of creating a second one.
	CloudIDsName = "name"
)

// Runner modes: how an instance "boots".
const (
	// RunnerModeScript runs the setup script under bash with shims; its
	// run.sh starts the sim runner as a process. The default.
	RunnerModeScript = "script"
	// RunnerModeInProcess runs no script: the JIT config is taken out of
	// the setup script and the sim runner runs as a goroutine of the
	// plugin process. For benchmarks, where hundreds of bash scripts and
	// runner processes would measure the machine rather than the
	// controller.
	RunnerModeInProcess = "inprocess"
)

// Config configures the fake plugin.
type Config struct {
	// Latency is how long every call takes: AddInstance does its own work
	// within it and starts the runner once it has passed.
	Latency time.Duration
	// FailCode, when not OK, is the gRPC code of injected failures.
	FailCode codes.Code
	// FailRate is the probability that a matching call fails (default 1
	// when FailCode is set).
	FailRate float64
	// FailMethod limits failures to one method; "" means both.
	FailMethod string
	// FailTimes, when positive, fails only the first N matching calls,
	// counted across all plugin processes sharing the counter file.
	FailTimes int
	// CrashOnCall, when positive, makes the process serving the Nth call
	// (counted across all processes) exit with status 2 mid-call.
	CrashOnCall int
	// Hang names a method whose calls block forever.
	Hang string
	// HangResourceType, when set, limits Hang to calls of this resource
	// type (the proto enum name, e.g. "Large").
	HangResourceType string
	// CallLog is a JSONL file every call appends one line to ("" = none).
	// The cross-process call counter lives next to it (CallLog+".counter"),
	// kept only when FailCode or CrashOnCall needs it.
	CallLog string
	// StateDir holds one directory per instance (default
	// os.TempDir()/shoesfake). All processes of a pool must share it.
	StateDir string
	// NoRunner creates instances without running their setup scripts.
	NoRunner bool
	// EmptyCloudID answers AddInstance with an empty cloud_id.
	EmptyCloudID bool
	// HugeIP answers AddInstance with a 1 MiB ip_address.
	HugeIP bool
	// UnknownResourceType answers AddInstance with resource_type Unknown.
	UnknownResourceType bool
	// RunnerMode is RunnerModeScript (default) or RunnerModeInProcess. In
	// RunnerModeInProcess a setup script the JIT config cannot be found in
	// (a custom template) runs in script mode instead, with a warning.
	RunnerMode string
	// CloudIDs is CloudIDsOpaque (default) or CloudIDsName.
	CloudIDs string
	// FailStartIf names a file: while it exists, Serve returns
	// ErrStartRefused before the handshake.
	FailStartIf string
	// RunnerCommand is what the fake runner tarball's run.sh execs, with
	// run.sh's arguments appended (e.g. [fakeshoes runner]).
	RunnerCommand []string
	// Logger receives the plugin's logs (default JSON on stderr). Setup
	// scripts and JIT configs are never logged.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.FailCode != codes.OK && c.FailRate == 0 {
		c.FailRate = 1
	}
	if c.StateDir == "" {
		c.StateDir = filepath.Join(os.TempDir(), "shoesfake")
	}
	if c.RunnerMode == "" {
		c.RunnerMode = RunnerModeScript
	}
	if c.CloudIDs == "" {
		c.CloudIDs = CloudIDsOpaque
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.Latency < 0:
		return fmt.Errorf("latency %s: must not be negative", c.Latency)
	case c.FailRate < 0 || c.FailRate > 1:
		return fmt.Errorf("fail rate %v: must be within 0..1", c.FailRate)
	case !validMethod(c.FailMethod):
		return fmt.Errorf("fail method %q: want %s, %s or empty", c.FailMethod, MethodAddInstance, MethodDeleteInstance)
	case !validMethod(c.Hang):
		return fmt.Errorf("hang method %q: want %s, %s or empty", c.Hang, MethodAddInstance, MethodDeleteInstance)
	case c.FailTimes < 0:
		return fmt.Errorf("fail times %d: must not be negative", c.FailTimes)
	case c.CrashOnCall < 0:
		return fmt.Errorf("crash on call %d: must not be negative", c.CrashOnCall)
	case c.RunnerMode != "" && c.RunnerMode != RunnerModeScript && c.RunnerMode != RunnerModeInProcess:
		return fmt.Errorf("runner mode %q: want %s or %s", c.RunnerMode, RunnerModeScript, RunnerModeInProcess)
	case c.CloudIDs != "" && c.CloudIDs != CloudIDsOpaque && c.CloudIDs != CloudIDsName:
		return fmt.Errorf("cloud IDs %q: want %s or %s", c.CloudIDs, CloudIDsOpaque, CloudIDsName)
	case !c.NoRunner && len(c.RunnerCommand) == 0:
		return errors.New("runner command is empty")
	}
	return nil
}

func validMethod(m string) bool {
	return m == "" || m == MethodAddInstance || m == MethodDeleteInstance
}

// ConfigFromEnv reads the SIM_PLUGIN_* knobs. RunnerCommand and Logger are
// left for the caller to set.
func ConfigFromEnv() (Config, error) {
	var c Config
	var err error
	get := os.Getenv
	if v := get(EnvLatency); v != "" {
		if c.Latency, err = time.ParseDuration(v); err != nil {
			return c, fmt.Errorf("%s: %w", EnvLatency, err)
		}
	}
	if v := get(EnvFailCode); v != "" {
		if c.FailCode, err = ParseCode(v); err != nil {
			return c, fmt.Errorf("%s: %w", EnvFailCode, err)
		}
	}
	if v := get(EnvFailRate); v != "" {
		if c.FailRate, err = strconv.ParseFloat(v, 64); err != nil {
			return c, fmt.Errorf("%s: %w", EnvFailRate, err)
		}
		if c.FailCode == codes.OK {
			c.FailCode = codes.Internal
		}
	}
	c.FailMethod = get(EnvFailMethod)
	if c.FailTimes, err = envInt(EnvFailTimes); err != nil {
		return c, err
	}
	if c.CrashOnCall, err = envInt(EnvCrashOnCall); err != nil {
		return c, err
	}
	c.Hang = get(EnvHang)
	c.HangResourceType = get(EnvHangResourceType)
	c.CallLog = get(EnvCallLog)
	c.StateDir = get(EnvStateDir)
	c.RunnerMode = strings.ToLower(strings.TrimSpace(get(EnvRunnerMode)))
	c.CloudIDs = strings.ToLower(strings.TrimSpace(get(EnvCloudIDs)))
	c.FailStartIf = get(EnvFailStartIf)
	for _, b := range []struct {
		name string
		dst  *bool
	}{{EnvNoRunner, &c.NoRunner}, {EnvEmptyCloudID, &c.EmptyCloudID}, {EnvHugeIP, &c.HugeIP}, {EnvUnknownResourceType, &c.UnknownResourceType}} {
		if v := get(b.name); v != "" {
			if *b.dst, err = strconv.ParseBool(v); err != nil {
				return c, fmt.Errorf("%s: %w", b.name, err)
			}
		}
	}
	return c, nil
}

func envInt(name string) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

// ParseCode parses a gRPC code name such as "Internal" or "InvalidArgument"
// (case-insensitive).
func ParseCode(s string) (codes.Code, error) {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.EqualFold(c.String(), s) {
			return c, nil
		}
	}
	return codes.OK, fmt.Errorf("unknown gRPC code %q", s)
}

package github

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/actions/scaleset"
)

// agentsEndpoint is the Actions service path of runners ("agents").
const agentsEndpoint = "_apis/distributedtask/pools/0/agents"

// Runner statuses the Actions service reports.
const (
	RunnerOnline  = "online"
	RunnerOffline = "offline"
	RunnerBusy    = "busy"
)

// RunnerStatus is what the Actions service says of one runner. Its status
// is "online", "offline" or "busy"; the real object has no busy boolean.
// The library's RunnerReference drops the field.
type RunnerStatus struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
}

// Online reports whether the runner is connected: idle ("online") or
// running a job ("busy").
func (s RunnerStatus) Online() bool { return s.Status == RunnerOnline || s.Status == RunnerBusy }

// Busy reports whether the runner runs a job.
func (s RunnerStatus) Busy() bool { return s.Status == RunnerBusy }

// GetRunnerStatus returns the status of a runner by ID. A runner the
// service does not know gives an error wrapping ErrNotFound.
func (p *Provider) GetRunnerStatus(ctx context.Context, scope string, runnerID int64) (RunnerStatus, error) {
	sc, err := parseScope(scope)
	if err != nil {
		return RunnerStatus{}, fmt.Errorf("get runner %d: %w", runnerID, err)
	}
	r, err := p.adminRequest(ctx, sc, http.MethodGet, fmt.Sprintf("%s/%d", agentsEndpoint, runnerID), nil)
	if err != nil {
		return RunnerStatus{}, fmt.Errorf("get runner %d: %w", runnerID, err)
	}
	if r.status != http.StatusOK {
		return RunnerStatus{}, fmt.Errorf("get runner %d: %w", runnerID, r.statusError())
	}
	var st RunnerStatus
	if err := json.Unmarshal(r.body, &st); err != nil {
		return RunnerStatus{}, fmt.Errorf("get runner %d: decode: %w", runnerID, err)
	}
	return st, nil
}

// JITConfig is a just-in-time runner configuration: the runner GitHub
// registered and the encoded config that run.sh --jitconfig takes. The
// encoded config is a credential: never log it.
type JITConfig = scaleset.RunnerScaleSetJitRunnerConfig

// GenerateJITConfig registers a runner named name in a scale set and
// returns its JIT config. Unlike the library's client, which serialises
// every call of a scope behind one lock, calls run in parallel, so a burst
// of provisioning is not queued behind one connection.
func (p *Provider) GenerateJITConfig(ctx context.Context, scope string, scaleSetID int, name, workFolder string) (*JITConfig, error) {
	sc, err := parseScope(scope)
	if err != nil {
		return nil, fmt.Errorf("generate JIT config: %w", err)
	}
	body, err := json.Marshal(scaleset.RunnerScaleSetJitRunnerSetting{Name: name, WorkFolder: workFolder})
	if err != nil {
		return nil, fmt.Errorf("generate JIT config: %w", err)
	}
	r, err := p.adminRequest(ctx, sc, http.MethodPost, fmt.Sprintf("%s/%d/generatejitconfig", scaleSetEndpoint, scaleSetID), body)
	if err != nil {
		return nil, fmt.Errorf("generate JIT config for %s: %w", name, err)
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("generate JIT config for %s: %w", name, r.statusError())
	}
	var out JITConfig
	if err := json.Unmarshal(r.body, &out); err != nil {
		return nil, fmt.Errorf("generate JIT config for %s: decode: %w", name, err)
	}
	if out.Runner == nil || out.EncodedJITConfig == "" {
		return nil, fmt.Errorf("generate JIT config for %s: answer without runner or config", name)
	}
	return &out, nil
}

// RemoveRunner deregisters a runner. A runner GitHub does not know is
// scaleset.RunnerNotFoundError, one running a job
// scaleset.JobStillRunningError (both wrapped).
func (p *Provider) RemoveRunner(ctx context.Context, scope string, runnerID int64) error {
	client, err := p.ScaleSetClient(ctx, scope)
	if err != nil {
		return fmt.Errorf("remove runner %d: %w", runnerID, err)
	}
	if err := client.RemoveRunner(withScope(ctx, scope), runnerID); err != nil {
		return fmt.Errorf("remove runner %d: %w", runnerID, err)
	}
	return nil
}

// RunnerIDByName looks a runner up by name; 0 means GitHub does not know it.
func (p *Provider) RunnerIDByName(ctx context.Context, scope, name string) (int64, error) {
	client, err := p.ScaleSetClient(ctx, scope)
	if err != nil {
		return 0, fmt.Errorf("get runner %s: %w", name, err)
	}
	ref, err := client.GetRunnerByName(withScope(ctx, scope), name)
	if err != nil {
		return 0, fmt.Errorf("get runner %s: %w", name, err)
	}
	if ref == nil {
		return 0, nil
	}
	return int64(ref.ID), nil
}

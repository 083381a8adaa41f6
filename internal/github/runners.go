package github

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// agentsEndpoint is the Actions service path of runners ("agents").
const agentsEndpoint = "_apis/distributedtask/pools/0/agents"

// RunnerStatus is what the Actions service says of one runner: whether it
// ever came online (status "online" or "offline") and whether it runs a
// job. The library's RunnerReference drops both fields.
type RunnerStatus struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
	Busy   bool   `json:"busy"`
}

// Online reports whether the runner is connected.
func (s RunnerStatus) Online() bool { return s.Status == "online" }

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

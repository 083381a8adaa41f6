package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/myshoesfake"
)

// Sim is the control side of the simulated peers a scenario runs
// against: a sim.World in this process (InProcess) or a `sim serve`
// process (SimClient).
type Sim interface {
	// State is the fake Actions service's state.
	State() (actionsfake.State, error)
	// QueueJobs queues jobs.
	QueueJobs(req actionsfake.JobsRequest) (actionsfake.JobsResult, error)
}

var (
	_ Sim = inProcess{}
	_ Sim = (*SimClient)(nil)
)

// InProcess is the Sim of a World started in this process.
func InProcess(w *sim.World) Sim { return inProcess{w} }

type inProcess struct{ w *sim.World }

func (p inProcess) State() (actionsfake.State, error) { return p.w.Actions.State(), nil }

func (p inProcess) QueueJobs(req actionsfake.JobsRequest) (actionsfake.JobsResult, error) {
	return p.w.Actions.QueueJobs(req)
}

// SimClient drives a `sim serve` process through its control API (see
// docs/development.md).
type SimClient struct {
	// URL is where sim serve listens: http://127.0.0.1:PORT.
	URL  string
	HTTP *http.Client
}

// NewSimClient returns a client of the sim serve at url.
func NewSimClient(url string) *SimClient {
	return &SimClient{URL: url, HTTP: &http.Client{Timeout: 15 * time.Second}}
}

// Do sends a request with body as JSON (nil: none), requires the status
// want, and decodes the answer into out (nil: ignored).
func (c *SimClient) Do(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s, want %d: %s", method, path, resp.Status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w\n%s", method, path, err, b)
		}
	}
	return nil
}

func (c *SimClient) do(method, path string, body any, want int, out any) error {
	return c.Do(context.Background(), method, path, body, want, out)
}

// State is GET /_sim/state.
func (c *SimClient) State() (actionsfake.State, error) {
	var st actionsfake.State
	err := c.do(http.MethodGet, "/_sim/state", nil, http.StatusOK, &st)
	return st, err
}

// QueueJobs is POST /_sim/jobs.
func (c *SimClient) QueueJobs(req actionsfake.JobsRequest) (actionsfake.JobsResult, error) {
	var out actionsfake.JobsResult
	err := c.do(http.MethodPost, "/_sim/jobs", req, http.StatusOK, &out)
	return out, err
}

// AddFault is POST /_sim/faults.
func (c *SimClient) AddFault(f actionsfake.Fault) error {
	return c.do(http.MethodPost, "/_sim/faults", f, http.StatusNoContent, nil)
}

// ClearFaults is DELETE /_sim/faults.
func (c *SimClient) ClearFaults() error {
	return c.do(http.MethodDelete, "/_sim/faults", nil, http.StatusNoContent, nil)
}

// EvictSessions evicts the live sessions of the given scale sets (none:
// all), as GitHub does on its side, and returns how many.
func (c *SimClient) EvictSessions(ids ...int) (int, error) {
	var out actionsfake.EvictResult
	err := c.do(http.MethodPost, "/_sim/sessions/evict", actionsfake.EvictRequest{ScaleSetIDs: ids}, http.StatusOK, &out)
	return out.Evicted, err
}

// Requests returns the requests the sim answered on route, oldest first.
func (c *SimClient) Requests(route string) ([]actionsfake.Request, error) {
	var out []actionsfake.Request
	err := c.do(http.MethodGet, "/_sim/requests?route="+url.QueryEscape(route), nil, http.StatusOK, &out)
	return out, err
}

// Target is an entry of the fake myshoes's target list.
type Target struct {
	ID           string `json:"id,omitempty"`
	Scope        string `json:"scope"`
	ResourceType string `json:"resource_type,omitempty"`
	Status       string `json:"status,omitempty"`
}

// SetTargets replaces the fake myshoes's targets (PUT /myshoes/_sim/targets).
func (c *SimClient) SetTargets(ts []Target) error {
	if ts == nil {
		ts = []Target{}
	}
	return c.do(http.MethodPut, "/myshoes/_sim/targets", ts, http.StatusOK, nil)
}

// Targets returns the fake myshoes's targets, of every status.
func (c *SimClient) Targets() ([]Target, error) {
	var out []Target
	err := c.do(http.MethodGet, "/myshoes/_sim/targets", nil, http.StatusOK, &out)
	return out, err
}

// MyshoesFault sets the fake myshoes's fault; the zero Fault clears it.
func (c *SimClient) MyshoesFault(f myshoesfake.Fault) error {
	return c.do(http.MethodPost, "/myshoes/_sim/myshoes-fault", f, http.StatusNoContent, nil)
}

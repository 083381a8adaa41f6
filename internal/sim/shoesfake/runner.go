package shoesfake

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RunnerFile is the .runner file of a JIT config.
type RunnerFile struct {
	AgentID    int64  `json:"agentId"`
	AgentName  string `json:"agentName"`
	PoolID     int64  `json:"poolId"`
	PoolName   string `json:"poolName"`
	ScaleSetID int64  `json:"scaleSetId"`
	ServerURL  string `json:"serverUrl"`
	GitHubURL  string `json:"gitHubUrl"`
	WorkFolder string `json:"workFolder"`
	Ephemeral  bool   `json:"ephemeral"`
}

// CredentialsFile is the .credentials file of a JIT config.
type CredentialsFile struct {
	Scheme string `json:"scheme"`
	Data   struct {
		Token string `json:"token"`
	} `json:"data"`
}

// JITConfig is a decoded JIT runner config.
type JITConfig struct {
	Runner      RunnerFile
	Credentials CredentialsFile
}

// Runner states reported by the fake Actions service.
const (
	StateIdle    = "idle"
	StateBusy    = "busy"
	StateDone    = "done"
	StateRemoved = "removed"
)

// DecodeJITConfig decodes a JIT config: std base64 of a JSON object that
// maps file names (".runner", ".credentials", ...) to base64 contents.
func DecodeJITConfig(encoded string) (JITConfig, error) {
	var jc JITConfig
	raw, err := decodeBase64(strings.TrimSpace(encoded))
	if err != nil {
		return jc, fmt.Errorf("decode jit config: %w", err)
	}
	var files map[string]string
	if err := json.Unmarshal(raw, &files); err != nil {
		return jc, fmt.Errorf("decode jit config: %w", err)
	}
	for name, dst := range map[string]any{".runner": &jc.Runner, ".credentials": &jc.Credentials} {
		enc, ok := files[name]
		if !ok {
			return jc, fmt.Errorf("decode jit config: no %s file", name)
		}
		b, err := decodeBase64(enc)
		if err != nil {
			return jc, fmt.Errorf("decode jit config %s: %w", name, err)
		}
		b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // the real runner writes a BOM
		if err := json.Unmarshal(b, dst); err != nil {
			return jc, fmt.Errorf("decode jit config %s: %w", name, err)
		}
	}
	switch {
	case jc.Runner.ServerURL == "":
		return jc, errors.New("decode jit config: .runner has no serverUrl")
	case jc.Credentials.Data.Token == "":
		return jc, errors.New("decode jit config: .credentials has no token")
	}
	return jc, nil
}

// EncodeJITConfig is the inverse of DecodeJITConfig.
func EncodeJITConfig(jc JITConfig) (string, error) {
	files := make(map[string]string, 2)
	for name, v := range map[string]any{".runner": jc.Runner, ".credentials": jc.Credentials} {
		b, err := json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("encode jit config %s: %w", name, err)
		}
		files[name] = base64.StdEncoding.EncodeToString(b)
	}
	b, err := json.Marshal(files)
	if err != nil {
		return "", fmt.Errorf("encode jit config: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b2, err2 := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); err2 == nil {
			return b2, nil
		}
	}
	return b, err
}

// RunRunner is the sim runner that the fake runner tarball's run.sh runs:
// it decodes jitConfig, connects to the fake Actions service and polls
// until the service reports the runner done or removed.
func RunRunner(ctx context.Context, jitConfig string, logger *slog.Logger) error {
	return runRunner(ctx, jitConfig, logger, &http.Client{})
}

// runRunner is RunRunner with the HTTP client to use.
func runRunner(ctx context.Context, jitConfig string, logger *slog.Logger, client *http.Client) error {
	jc, err := DecodeJITConfig(jitConfig)
	if err != nil {
		return err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &simRunner{
		jit:        jc,
		http:       client,
		log:        logger.With("scope", "sim-runner", "runner", jc.Runner.AgentName, "agent_id", jc.Runner.AgentID),
		hold:       30 * time.Second,
		budget:     time.Minute,
		backoffMin: 100 * time.Millisecond,
		backoffMax: 2 * time.Second,
	}
	return r.run(ctx)
}

// simRunner speaks the runner side of the fake Actions service contract.
type simRunner struct {
	jit        JITConfig
	http       *http.Client
	log        *slog.Logger
	hold       time.Duration // long-poll hold asked of the service
	budget     time.Duration // how long transient errors are retried
	backoffMin time.Duration
	backoffMax time.Duration
}

// statusError is a non-200 answer.
type statusError struct {
	op     string
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s: %d %s: %s", e.op, e.status, http.StatusText(e.status), e.body)
}

// transient reports whether err may go away on retry.
func transient(err error) bool {
	if se, ok := errors.AsType[*statusError](err); ok {
		return se.status >= 500 || se.status == http.StatusTooManyRequests
	}
	return true // network errors
}

func (r *simRunner) run(ctx context.Context) error {
	// Connect: only a failure to reach the service is retried.
	err := r.retry(ctx, "connect", func() error {
		return r.connect(ctx)
	}, func(err error) bool {
		_, isStatus := errors.AsType[*statusError](err)
		return !isStatus
	})
	if err != nil {
		return err
	}
	r.log.Info("runner connected")

	last := StateIdle
	for {
		var state string
		start := time.Now()
		err := r.retry(ctx, "wait", func() error {
			var err error
			state, err = r.wait(ctx)
			return err
		}, transient)
		if err != nil {
			return err
		}
		if state != last {
			r.log.Info("runner state", "state", state)
			last = state
		}
		if state == StateDone || state == StateRemoved {
			return nil
		}
		if time.Since(start) < r.backoffMin {
			// The service did not hold the poll; don't spin.
			if err := sleepCtx(ctx, r.backoffMin); err != nil {
				return fmt.Errorf("wait: %w", err)
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retry calls fn until it succeeds, fails with an error retryable rejects,
// or transient errors have lasted longer than the budget.
func (r *simRunner) retry(ctx context.Context, op string, fn func() error, retryable func(error) bool) error {
	var firstFail time.Time
	backoff := r.backoffMin
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", op, ctx.Err())
		}
		if !retryable(err) {
			return err
		}
		if firstFail.IsZero() {
			firstFail = time.Now()
		}
		if time.Since(firstFail) > r.budget {
			return fmt.Errorf("%s: giving up after %s: %w", op, r.budget, err)
		}
		r.log.Warn("runner call failed; retrying", "op", op, "err", err, "backoff", backoff)
		if err := sleepCtx(ctx, backoff); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		backoff = min(backoff*2, r.backoffMax)
	}
}

func (r *simRunner) connect(ctx context.Context) error {
	body, err := json.Marshal(map[string]any{"agentId": r.jit.Runner.AgentID, "agentName": r.jit.Runner.AgentName})
	if err != nil {
		return err
	}
	var out struct {
		State string `json:"state"`
	}
	return r.do(ctx, "connect", http.MethodPost, "_sim/runner/connect", body, 30*time.Second, &out)
}

func (r *simRunner) wait(ctx context.Context) (string, error) {
	path := "_sim/runner/" + strconv.FormatInt(r.jit.Runner.AgentID, 10) + "/wait?holdMs=" + strconv.FormatInt(r.hold.Milliseconds(), 10)
	var out struct {
		State string `json:"state"`
		JobID string `json:"jobId"`
	}
	if err := r.do(ctx, "wait", http.MethodGet, path, nil, r.hold+15*time.Second, &out); err != nil {
		return "", err
	}
	return out.State, nil
}

// do sends one request to the service and decodes a 200 answer into out.
func (r *simRunner) do(ctx context.Context, op, method, path string, body []byte, timeout time.Duration, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := strings.TrimRight(r.jit.Runner.ServerURL, "/") + "/" + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+r.jit.Credentials.Data.Token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		body := strings.TrimSpace(string(b))
		if len(body) > 512 {
			body = body[:512] + "..."
		}
		return &statusError{op: op, status: resp.StatusCode, body: body}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: decode answer: %w", op, err)
	}
	return nil
}

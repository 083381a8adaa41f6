package actionsfake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/actions/scaleset/listener"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// testScaler brings runners up to the desired count; each runner speaks
// the runner contract with the JIT config it was given.
type testScaler struct {
	t          *testing.T
	client     *scaleset.Client
	scaleSetID int
	runCtx     context.Context // lives as long as the test's runners
	wg         *sync.WaitGroup

	mu      sync.Mutex
	desired []int
	alive   int
	made    int

	started, completed atomic.Int32
}

var _ listener.Scaler = (*testScaler)(nil)

func (s *testScaler) HandleJobStarted(context.Context, *scaleset.JobStarted) error {
	s.started.Add(1)
	return nil
}

func (s *testScaler) HandleJobCompleted(_ context.Context, j *scaleset.JobCompleted) error {
	if j.Result != "succeeded" {
		return fmt.Errorf("job %s: result %q", j.JobID, j.Result)
	}
	s.completed.Add(1)
	return nil
}

func (s *testScaler) HandleDesiredRunnerCount(ctx context.Context, count int) (int, error) {
	s.mu.Lock()
	s.desired = append(s.desired, count)
	need := count - s.alive
	s.mu.Unlock()
	for range need {
		s.mu.Lock()
		s.made++
		name := fmt.Sprintf("runner-%d", s.made)
		s.mu.Unlock()
		jit, err := s.client.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: name}, s.scaleSetID)
		if err != nil {
			return 0, fmt.Errorf("jit %s: %w", name, err)
		}
		s.mu.Lock()
		s.alive++
		s.mu.Unlock()
		s.wg.Add(1)
		go s.runRunner(jit.EncodedJITConfig)
	}
	return count, nil
}

func (s *testScaler) snapshot() (desired []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.desired)
}

// runRunner connects and follows the runner's state until it is done.
func (s *testScaler) runRunner(encoded string) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		s.alive--
		s.mu.Unlock()
	}()
	cfg, err := DecodeJITConfig(encoded)
	if err != nil {
		s.t.Errorf("decode jit: %v", err)
		return
	}
	var st runnerStatusJSON
	body := map[string]any{"agentId": cfg.Runner.AgentID, "agentName": cfg.Runner.AgentName}
	code := runnerCall(s.runCtx, "POST", cfg.Runner.ServerURL+"_sim/runner/connect", cfg.Token, body, &st)
	if s.runCtx.Err() != nil {
		return
	}
	if code != http.StatusOK || st.State != "idle" {
		s.t.Errorf("connect %s: status %d state %q", cfg.Runner.AgentName, code, st.State)
		return
	}
	for {
		u := fmt.Sprintf("%s_sim/runner/%d/wait?holdMs=1000&since=%s", cfg.Runner.ServerURL, cfg.Runner.AgentID, st.State)
		code := runnerCall(s.runCtx, "GET", u, cfg.Token, nil, &st)
		if s.runCtx.Err() != nil {
			return
		}
		if code != http.StatusOK {
			s.t.Errorf("wait %s: status %d", cfg.Runner.AgentName, code)
			return
		}
		if st.State == "done" || st.State == "removed" {
			return
		}
	}
}

// runnerCall is call() for goroutines: no t.Fatal, status 0 on transport errors.
func runnerCall(ctx context.Context, method, url, token string, body, out any) int {
	req, err := newJSONRequest(ctx, method, url, body)
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := decodeJSON(resp.Body, out); err != nil {
			return 0
		}
	}
	return resp.StatusCode
}

func newJSONRequest(ctx context.Context, method, url string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

func decodeJSON(r io.Reader, out any) error { return json.NewDecoder(r).Decode(out) }

func TestListenerFollowsJobs(t *testing.T) {
	f := newFake(t, nil)
	ctx := t.Context()
	c, ss, sc := sessionFor(t, f)
	l, err := listener.New(sc, listener.Config{ScaleSetID: ss.ID, MaxRunners: 10})
	if err != nil {
		t.Fatalf("listener: %v", err)
	}

	runCtx, stopRunners := context.WithCancel(ctx)
	var wg sync.WaitGroup
	scaler := &testScaler{t: t, client: c, scaleSetID: ss.ID, runCtx: runCtx, wg: &wg}
	listenCtx, stopListener := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Run(listenCtx, scaler) }()
	t.Cleanup(func() {
		stopListener()
		<-done
		stopRunners()
		wg.Wait()
	})

	testkit.Eventually(t, 5*time.Second, "initial desired count", func() bool { return len(scaler.snapshot()) > 0 })
	f.queue(t, JobsRequest{Scope: "org-a", Count: 5, DurationMS: 50})
	testkit.Eventually(t, 10*time.Second, "desired count 5", func() bool { return slices.Contains(scaler.snapshot(), 5) })
	testkit.Eventually(t, 20*time.Second, "5 jobs completed and desired back to 0", func() bool {
		d := scaler.snapshot()
		return scaler.completed.Load() == 5 && d[len(d)-1] == 0
	})

	if got := scaler.started.Load(); got != 5 {
		t.Fatalf("JobStarted seen %d, want 5", got)
	}
	if d := scaler.snapshot(); slices.Max(d) != 5 {
		t.Fatalf("desired counts %v: max should be 5", d)
	}
	st := f.srv.State()
	for _, j := range st.Jobs {
		if j.State != "completed" || j.Result != "succeeded" || j.RunnerName == "" {
			t.Fatalf("job %+v", j)
		}
	}
	if got := st.ScaleSets[0]; got.Statistics.TotalAssignedJobs != 0 || got.Jobs.Completed != 5 || got.MaxCapacity != 10 {
		t.Fatalf("scale set state %+v", got)
	}
	f.requireNoViolations(t)

	stopListener()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("listener: %v", err)
	}
	done <- nil // for the cleanup
	if err := sc.Close(context.WithoutCancel(ctx)); err != nil {
		t.Fatalf("close session: %v", err)
	}
}

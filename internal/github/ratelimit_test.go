package github

import (
	"maps"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
)

// recordingRecorder records the rate-limit observations and the metered
// exchanges.
type recordingRecorder struct {
	mu        sync.Mutex
	limited   map[string]int
	remaining map[string]RateBudget
	requests  map[string]int // "operation code" → count
}

func newRecordingRecorder() *recordingRecorder {
	return &recordingRecorder{limited: map[string]int{}, remaining: map[string]RateBudget{}, requests: map[string]int{}}
}

func (r *recordingRecorder) RateLimited(scope string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.limited[scope]++
}

func (r *recordingRecorder) RateLimitRemaining(scope string, b RateBudget) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.remaining[scope] = b
}

func (r *recordingRecorder) GitHubRequest(operation, code string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d < 0 {
		code += " negative duration"
	}
	r.requests[operation+" "+code]++
}

func (r *recordingRecorder) get(scope string) (limited, remaining int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.limited[scope], r.remaining[scope].Remaining
}

func (r *recordingRecorder) budget(scope string) RateBudget {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.remaining[scope]
}

// metered returns a copy of the exchanges counted so far.
func (r *recordingRecorder) metered() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.requests)
}

// starts returns when each request of route (a pattern of the fake's
// journal) began.
func (f *fakeGitHub) starts(route string) []time.Time {
	var out []time.Time
	for _, r := range f.srv.Requests(route) {
		out = append(out, r.Start)
	}
	return out
}

// TestRateLimitRetryAfter: a 429 with Retry-After on an admin call; the
// retry comes no sooner than GitHub asked, even though our own retry wait
// is a millisecond, and the answer is counted.
func TestRateLimitRetryAfter(t *testing.T) {
	f := newFake(t)
	rec := newRecordingRecorder()
	p, _ := newProvider(t, f, func(c *Config) { c.Recorder = rec })
	id := newScaleSet(t, p, "acme", "shoes-acme")
	f.fault(t, actionsfake.Fault{Match: "POST .*/generatejitconfig", Status: http.StatusTooManyRequests, Times: 1, Headers: map[string]string{"Retry-After": "1"}})
	if _, err := p.GenerateJITConfig(testCtx(t), "acme", id, "myshoes-a", "_work"); err != nil {
		t.Fatalf("GenerateJITConfig: %v", err)
	}
	calls := f.starts("POST /_actions/_apis/runtime/runnerscalesets/{id}/generatejitconfig")
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
	if gap := calls[1].Sub(calls[0]); gap < time.Second {
		t.Fatalf("retried %v after a 429 with Retry-After: 1", gap)
	}
	// The fake's REST answers for acme (the first call of each credential
	// in the hour) said 4999 were left.
	if limited, remaining := rec.get("acme"); limited != 1 || remaining != 4999 {
		t.Fatalf("recorded %d rate-limited answers and remaining %d, want 1 and 4999", limited, remaining)
	}
}

// TestRateLimitResetOnPoll: a poll answered 403 with no budget left and a
// reset time fails at once (the poll is not retried by the client), and
// the next poll waits until the reset; another scope is not held up.
func TestRateLimitResetOnPoll(t *testing.T) {
	f := newFake(t)
	rec := newRecordingRecorder()
	p, _ := newProvider(t, f, func(c *Config) { c.Recorder = rec })
	s := openSession(t, p)
	other := newScaleSet(t, p, "acme/widgets", "shoes-acme-widgets")
	ctx := testCtx(t)
	reset := time.Now().Add(2 * time.Second).Truncate(time.Second)
	f.fault(t, actionsfake.Fault{Match: "GET /_broker/", Status: http.StatusForbidden, Times: 1, Headers: map[string]string{
		"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(reset.Unix(), 10),
	}})

	_, err := s.GetMessage(ctx, 0, 5)
	if !IsRateLimited(err) || !IsTransient(err) {
		t.Fatalf("GetMessage = %v; want a transient rate-limited error", err)
	}
	// Another scope is not held up by this one's limit.
	start := time.Now()
	if _, err := p.GenerateJITConfig(ctx, "acme/widgets", other, "myshoes-b", "_work"); err != nil {
		t.Fatalf("other scope: %v", err)
	}
	if took := time.Since(start); took >= time.Second {
		t.Errorf("another scope waited %v for this one's rate limit", took)
	}
	if msg, err := s.GetMessage(ctx, 0, 5); msg != nil || err != nil {
		t.Fatalf("second GetMessage = %v, %v", msg, err)
	}
	calls := f.starts("GET /_broker/{id}/{sid}/messages")
	if len(calls) != 2 || calls[1].Before(reset) {
		t.Fatalf("polls at %v; want the second one after the reset %v", calls, reset)
	}
	if limited, remaining := rec.get("acme"); limited != 1 || remaining != 0 {
		t.Fatalf("recorded %d rate-limited answers and remaining %d, want 1 and 0", limited, remaining)
	}
}

// TestRateLimitLibraryCalls: the scaleset library's calls pass the same
// gate: its retry of a 429 waits as long as GitHub asked.
func TestRateLimitLibraryCalls(t *testing.T) {
	f := newFake(t)
	f.fault(t, actionsfake.Fault{Match: "GET " + scaleSetsPath + "$", Status: http.StatusTooManyRequests, Times: 1, Headers: map[string]string{"Retry-After": "1"}})
	p, _ := newProvider(t, f)
	if _, err := p.EnsureScaleSet(testCtx(t), ScaleSetSpec{Scope: "acme", Name: "shoes-acme", Labels: []string{"shoes-acme"}}); err != nil {
		t.Fatalf("EnsureScaleSet: %v", err)
	}
	calls := f.starts("GET " + scaleSetsPath)
	if len(calls) != 2 || calls[1].Sub(calls[0]) < time.Second {
		t.Fatalf("library calls at %v; want a retry no sooner than 1s", calls)
	}
}

func TestRateLimitWait(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"retry-after seconds", map[string]string{"Retry-After": "2"}, 2 * time.Second},
		{"retry-after wins over reset", map[string]string{"Retry-After": "3", "X-RateLimit-Reset": "1700000100"}, 3 * time.Second},
		{"reset", map[string]string{"X-RateLimit-Reset": "1700000010"}, 11 * time.Second},
		{"reset in the past", map[string]string{"X-RateLimit-Reset": "1699999990"}, 0},
		{"nothing said", nil, time.Minute},
		{"absurd", map[string]string{"Retry-After": "99999999"}, time.Hour},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.header {
			h.Set(k, v)
		}
		if got := rateLimitWait(h, now); got != tt.want {
			t.Errorf("%s: wait %v, want %v", tt.name, got, tt.want)
		}
	}
	for _, tc := range []struct {
		status int
		header map[string]string
		want   bool
	}{
		{429, nil, true},
		{403, map[string]string{"X-RateLimit-Remaining": "0"}, true},
		{403, map[string]string{"Retry-After": "60"}, true},
		{403, map[string]string{"X-RateLimit-Remaining": "12"}, false},
		{401, map[string]string{"Retry-After": "1"}, false},
	} {
		h := http.Header{}
		for k, v := range tc.header {
			h.Set(k, v)
		}
		if got := isRateLimited(tc.status, h); got != tc.want {
			t.Errorf("isRateLimited(%d, %v) = %t", tc.status, tc.header, got)
		}
	}
}

package github

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// GitHub answers a rate-limited call with 429, or with 403 and
// X-RateLimit-Remaining: 0, and says when to come back with Retry-After
// (seconds) or X-RateLimit-Reset (epoch seconds). Retrying sooner risks a
// secondary rate-limit block, so every call made for a scope waits at
// least that long: our own calls, the long poll, the scaleset library's
// calls and ghinstallation's token requests all pass the same gate.
//
// The gate is per scope (the account the call acts for), so one
// rate-limited target does not hold up the others; calls without a scope
// (the app's own calls: installation lookups, installation tokens) share
// the gate appScope.

// appScope is the gate key of calls made as the app rather than for a scope.
const appScope = "app"

// defaultRateLimitWait is the wait when a rate-limited answer names no
// time: GitHub's documentation asks for at least a minute then.
const defaultRateLimitWait = time.Minute

// maxRateLimitWait bounds a wait read from a header, so that a clock far
// off or a garbled header cannot stop a scope for hours.
const maxRateLimitWait = time.Hour

// Recorder receives what the Provider observes of its calls to GitHub:
// every HTTP exchange, and the rate limits. The metrics package implements
// it.
type Recorder interface {
	// RateLimited counts a rate-limited answer for scope ("app" for the
	// app's own calls) and the wait it asked for.
	RateLimited(scope string, wait time.Duration)
	// RateLimitRemaining records the budget an answer for scope reported.
	RateLimitRemaining(scope string, b RateBudget)
	// GitHubRequest observes one HTTP exchange (each retry is one more):
	// operation is one of the Op* constants, code the HTTP status or
	// CodeTransportError, d the time to the answer's headers.
	GitHubRequest(operation, code string, d time.Duration)
}

// RateBudget is what an answer said of its rate limit: the X-RateLimit-*
// headers.
type RateBudget struct {
	// Resource is X-RateLimit-Resource ("core", "graphql", ...); "" when
	// the answer did not say.
	Resource string
	// Remaining is X-RateLimit-Remaining.
	Remaining int
	// Limit is X-RateLimit-Limit; 0 when the answer did not say.
	Limit int
	// Reset is X-RateLimit-Reset, when the budget is full again; zero
	// when the answer did not say.
	Reset time.Time
}

// rateBudget reads the budget an answer reported; false if it reported
// none (the Actions service and the broker do not).
func rateBudget(h http.Header) (RateBudget, bool) {
	rem, err := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
	if err != nil {
		return RateBudget{}, false
	}
	b := RateBudget{Resource: h.Get("X-RateLimit-Resource"), Remaining: rem}
	if limit, err := strconv.Atoi(h.Get("X-RateLimit-Limit")); err == nil {
		b.Limit = limit
	}
	if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil && reset > 0 {
		b.Reset = time.Unix(reset, 0)
	}
	return b, true
}

type nopRecorder struct{}

func (nopRecorder) RateLimited(string, time.Duration)           {}
func (nopRecorder) RateLimitRemaining(string, RateBudget)       {}
func (nopRecorder) GitHubRequest(string, string, time.Duration) {}

var _ Recorder = nopRecorder{}

type scopeKey struct{}

// withScope tags ctx with the scope its calls are made for; the rate-limit
// gate reads it.
func withScope(ctx context.Context, scope string) context.Context {
	return context.WithValue(ctx, scopeKey{}, scope)
}

func scopeOf(ctx context.Context) string {
	if s, ok := ctx.Value(scopeKey{}).(string); ok && s != "" {
		return s
	}
	return appScope
}

// rateGates holds when each scope may call GitHub again.
type rateGates struct {
	rec Recorder
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	until map[string]time.Time
}

func newRateGates(rec Recorder, log *slog.Logger, now func() time.Time) *rateGates {
	return &rateGates{rec: rec, log: log, now: now, until: map[string]time.Time{}}
}

// wait blocks until scope may call again, or ctx ends.
func (g *rateGates) wait(ctx context.Context, scope string) error {
	for {
		g.mu.Lock()
		d := g.until[scope].Sub(g.now())
		g.mu.Unlock()
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// observe reads the rate-limit headers of an answer for scope: it records
// the remaining budget and, for a rate-limited answer, closes the scope's
// gate for as long as GitHub asked.
func (g *rateGates) observe(scope string, status int, h http.Header) {
	if b, ok := rateBudget(h); ok {
		g.rec.RateLimitRemaining(scope, b)
	}
	if !isRateLimited(status, h) {
		return
	}
	wait := rateLimitWait(h, g.now())
	g.rec.RateLimited(scope, wait)
	g.mu.Lock()
	defer g.mu.Unlock()
	until := g.now().Add(wait)
	if open := !g.until[scope].After(g.now()); open {
		// Logged when the gate closes, not for every call that hits it.
		g.log.Warn("GitHub rate limit: waiting before the next call", "scope", scope, "status", status, "wait", wait.Round(time.Millisecond))
	}
	if until.After(g.until[scope]) {
		g.until[scope] = until
	}
}

// isRateLimited: 429, or 403 with no budget left or a Retry-After (a
// secondary rate limit).
func isRateLimited(status int, h http.Header) bool {
	switch status {
	case http.StatusTooManyRequests:
		return true
	case http.StatusForbidden:
		return h.Get("X-RateLimit-Remaining") == "0" || h.Get("Retry-After") != ""
	}
	return false
}

// rateLimitWait is how long a rate-limited answer asks us to wait:
// Retry-After (seconds), else until X-RateLimit-Reset (epoch seconds),
// else a minute.
func rateLimitWait(h http.Header, now time.Time) time.Duration {
	var d time.Duration
	if s, err := strconv.ParseInt(h.Get("Retry-After"), 10, 64); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	} else if at, err := http.ParseTime(h.Get("Retry-After")); err == nil {
		d = at.Sub(now)
	} else if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
		// The reset is a whole second; wait until that second has passed.
		d = time.Unix(reset, 0).Sub(now) + time.Second
	} else {
		d = defaultRateLimitWait
	}
	return min(max(d, 0), maxRateLimitWait)
}

// gateTransport puts the rate-limit gate and BOM trimming under a client
// whose requests we do not build ourselves (ghinstallation's).
type gateTransport struct {
	base  http.RoundTripper
	gates *rateGates
}

func (t *gateTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	scope := scopeOf(req.Context())
	if err := t.gates.wait(req.Context(), scope); err != nil {
		return nil, err
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	t.gates.observe(scope, resp.StatusCode, resp.Header)
	resp.Body = trimBOMReader(resp.Body)
	return resp, nil
}

// libraryHooks make the scaleset library's retrying client pass the gate:
// before each attempt it waits, after each answer it observes. The
// library requires a bare *http.Transport in its client, so a wrapping
// RoundTripper is not possible there (libraryTransport meters its calls
// through RegisterProtocol); the library trims BOMs itself.
func (g *rateGates) libraryHooks(rc *retryablehttp.Client) {
	rc.RequestLogHook = func(_ retryablehttp.Logger, req *http.Request, _ int) {
		_ = g.wait(req.Context(), scopeOf(req.Context())) // a cancelled ctx fails the request itself
	}
	rc.ResponseLogHook = func(_ retryablehttp.Logger, resp *http.Response) {
		if resp != nil && resp.Request != nil {
			g.observe(scopeOf(resp.Request.Context()), resp.StatusCode, resp.Header)
		}
	}
}

// The Actions service may begin an answer with a UTF-8 byte order mark;
// actions/scaleset and ARC trim it before decoding, and so do we, for
// every body we decode.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

func trimBOM(b []byte) []byte { return bytes.TrimPrefix(b, utf8BOM) }

// trimBOMReader drops a leading BOM from a streamed body, lazily: nothing
// is read before the caller's first Read.
func trimBOMReader(rc io.ReadCloser) io.ReadCloser {
	return &bomBody{rc: rc}
}

type bomBody struct {
	rc      io.ReadCloser
	br      *bufio.Reader
	checked bool
}

func (b *bomBody) Read(p []byte) (int, error) {
	if !b.checked {
		b.checked = true
		// A small buffer: it only needs the BOM's 3 bytes, and reads at
		// least as large bypass it. The default 4 KiB was allocated for
		// every answer, each long poll's too (issue 15's profile).
		b.br = bufio.NewReaderSize(b.rc, 16)
		if head, err := b.br.Peek(len(utf8BOM)); err == nil && bytes.Equal(head, utf8BOM) {
			_, _ = b.br.Discard(len(utf8BOM))
		}
	}
	return b.br.Read(p)
}

func (b *bomBody) Close() error { return b.rc.Close() }

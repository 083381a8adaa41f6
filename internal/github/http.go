package github

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"
)

// maxResponseBody bounds what we read of any answer.
const maxResponseBody = 16 << 20

// request is one call made by this package. Header values may hold
// credentials; they are never logged.
type request struct {
	method string
	url    string
	body   []byte // nil: no body
	header http.Header
	// retry enables retries of transport errors, 5xx and 429 (never set
	// for the long-poll).
	retry bool
	// timeout, when set, bounds each attempt (the exchange and reading
	// the answer, not the wait at the rate-limit gate) through the
	// request's context; for a client without a Timeout of its own. The
	// long poll uses it: behind our own RoundTripper (meter, gate)
	// net/http enforces http.Client.Timeout with two goroutines and a
	// timer per request, and a long poll is always in flight on every
	// target (2,000 goroutines at 1,000 targets; issue 15's profile).
	timeout time.Duration
}

// response is a fully read answer.
type response struct {
	req    *http.Request
	status int
	header http.Header
	body   []byte
}

func (r *response) statusError() *StatusError { return newStatusError(r.req, r) }

func (r *response) retryable() bool {
	return r.statusError().retryable()
}

// sender sends one request and returns the answer's headers: an
// *http.Client, or for the long poll the transport itself (pollSender).
type sender interface {
	Do(req *http.Request) (*http.Response, error)
}

// pollSender sends the long poll straight to the transport. An
// http.Client adds nothing a poll needs (it follows no redirect of the
// broker's, and has no cookie jar or Timeout here) but costs, for every
// poll in flight on every target, a copy of the request's headers for the
// redirects and ~1 KiB more of the poll goroutine's stack (issue 15's
// profile at 1,000 idle targets).
type pollSender struct{ rt http.RoundTripper }

func (s *pollSender) Do(req *http.Request) (*http.Response, error) { return s.rt.RoundTrip(req) }

// send performs rq with client, retrying as configured. A non-2xx answer is
// not an error here; callers map status codes to outcomes.
func (p *Provider) send(ctx context.Context, client sender, rq *request) (*response, error) {
	attempts := 1
	if rq.retry {
		attempts += p.cfg.retries()
	}
	for i := 0; ; i++ {
		// Wait for the scope's rate-limit gate here, outside the attempt's
		// timeout (the transport waits too, for calls that bypass send).
		if err := p.gates.wait(ctx, scopeOf(ctx)); err != nil {
			return nil, err
		}
		r, err := p.attempt(ctx, client, rq)
		if err != nil {
			if ctx.Err() != nil || i+1 >= attempts {
				return nil, err
			}
			if werr := p.backoff(ctx, i); werr != nil {
				return nil, err
			}
			continue
		}
		if i+1 < attempts && r.retryable() {
			if werr := p.backoff(ctx, i); werr != nil {
				return r, nil
			}
			continue
		}
		return r, nil
	}
}

// attempt sends rq once with client and reads the answer, all within
// rq.timeout when it is set. Errors carry no query string.
func (p *Provider) attempt(ctx context.Context, client sender, rq *request) (*response, error) {
	if rq.timeout > 0 {
		// Bound before the request is made, so that the request is not
		// copied to carry the deadline.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rq.timeout)
		defer cancel()
	}
	var body io.Reader
	if rq.body != nil {
		body = bytes.NewReader(rq.body)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, rq.url, body)
	if err != nil {
		return nil, err
	}
	p.setHeader(req, rq)
	resp, err := client.Do(req)
	if err != nil {
		return nil, redactTransportError(req, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return nil, redactTransportError(req, err)
	}
	return &response{req: req, status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// setHeader sets the header of req from rq. It is kept out of attempt,
// whose frame the long poll's goroutine keeps while it waits (see
// scaleSet.poll in internal/controller).
func (p *Provider) setHeader(req *http.Request, rq *request) {
	for k, vs := range rq.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("User-Agent", p.userAgent)
	if rq.body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
}

// backoff waits before retry number attempt+1: exponential from 1 s with
// jitter, capped at RetryWaitMax. A wait GitHub asked for (Retry-After, a
// rate-limit reset) is not ours to compute: the scope's rate-limit gate
// holds the retry for as long as GitHub asked.
func (p *Provider) backoff(ctx context.Context, attempt int) error {
	d := min(time.Second<<min(attempt, 10), p.cfg.RetryWaitMax)
	if d > 1 {
		d = d/2 + rand.N(d/2)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// redactTransportError strips the query string from the URL net/http puts
// into its errors.
func redactTransportError(req *http.Request, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: ue.Err}
	}
	return &url.Error{Op: req.Method, URL: redactURL(req.URL.String()), Err: err}
}

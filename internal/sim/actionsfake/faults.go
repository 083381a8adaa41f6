package actionsfake

import (
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// Fault makes the next Times requests matching Match misbehave.
type Fault struct {
	// Match is "<METHOD> <path regex>", e.g. "POST .*/generatejitconfig".
	// METHOD may be "*" for any. The regex is unanchored (regexp.MatchString)
	// and applies to the URL path without the query.
	Match string `json:"match"`
	// Status is the answer, with a JSON error body (the GitHub API's shape
	// under /api/v3, the Actions service's elsewhere) unless EmptyBody. 0
	// with Drop false and a delay: the request is only delayed, then served
	// normally.
	Status int `json:"status"`
	// Times is how many requests the fault hits; 0 = until cleared.
	Times int `json:"times"`
	// DelayMS delays the request before the fault's answer (or drop).
	DelayMS int `json:"delay_ms"`
	// Drop closes the connection without an answer.
	Drop bool `json:"drop"`
	// Headers are set on the fault's answer, e.g. Retry-After,
	// X-RateLimit-Remaining, X-RateLimit-Reset or X-RateLimit-Limit for a
	// rate limit (429, or 403 with X-RateLimit-Remaining: 0).
	Headers map[string]string `json:"headers,omitempty"`
	// EmptyBody answers Status with no body at all. A 200 with an empty
	// body on a poll is what GitHub sometimes sends (actions-runner-controller#4285).
	EmptyBody bool `json:"empty_body,omitempty"`
}

type faultRule struct {
	Fault
	method string
	re     *regexp.Regexp
	hits   int
}

func (f *faultRule) active() bool { return f.Times == 0 || f.hits < f.Times }

// AddFault registers a fault. Faults never apply to /_sim/ paths. The first
// active matching fault, in the order added, takes a request.
func (s *Server) AddFault(f Fault) error {
	method, expr, ok := strings.Cut(strings.TrimSpace(f.Match), " ")
	expr = strings.TrimSpace(expr)
	if !ok || method == "" || expr == "" {
		return fmt.Errorf("add fault: match %q is not \"<METHOD> <path regex>\"", f.Match)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return fmt.Errorf("add fault: %w", err)
	}
	switch {
	case f.Status != 0 && (f.Status < 100 || f.Status > 599):
		return fmt.Errorf("add fault: status %d out of range", f.Status)
	case f.Status == 0 && !f.Drop && f.DelayMS <= 0:
		return fmt.Errorf("add fault: a fault needs a status, drop or delay_ms")
	case f.Times < 0 || f.DelayMS < 0:
		return fmt.Errorf("add fault: times and delay_ms must not be negative")
	case f.Drop && (f.EmptyBody || len(f.Headers) > 0):
		return fmt.Errorf("add fault: a dropped connection has no headers or body")
	case f.Status == 0 && (f.EmptyBody || len(f.Headers) > 0):
		return fmt.Errorf("add fault: headers and empty_body need a status")
	}
	for k, v := range f.Headers {
		if !validHeader(k, v) {
			return fmt.Errorf("add fault: invalid header %q: %q", k, v)
		}
	}
	f.Headers = maps.Clone(f.Headers)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultRule{Fault: f, method: strings.ToUpper(method), re: re})
	return nil
}

// validHeader reports whether k is a header name (an RFC 9110 token) and v
// a value without control characters other than tab.
func validHeader(k, v string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// ClearFaults removes every fault (and its hit count).
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// matchFault returns a copy of the fault that takes r, counting the hit. Lock held.
func (s *Server) matchFault(r *http.Request) *Fault {
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		return nil
	}
	for _, f := range s.faults {
		if !f.active() || (f.method != "*" && f.method != r.Method) || !f.re.MatchString(r.URL.Path) {
			continue
		}
		f.hits++
		out := f.Fault
		return &out
	}
	return nil
}

// applyFault delays, then answers or drops. It reports whether the request
// was answered (false: a delay-only fault, serve it normally).
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	if !s.sleep(r, time.Duration(f.DelayMS)*time.Millisecond) {
		return true
	}
	if f.Drop {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
			return true
		}
		panic(http.ErrAbortHandler) // closes the stream without a response
	}
	if f.Status == 0 {
		return false
	}
	for k, v := range f.Headers {
		w.Header().Set(k, v)
	}
	switch {
	case f.EmptyBody:
		w.WriteHeader(f.Status)
	case strings.HasPrefix(r.URL.Path, githubAPIPrefix):
		writeGitHubError(w, f.Status, "injected fault %q", f.Match)
	default:
		writeActionsError(w, f.Status, exSimulatedFault, "injected fault %q", f.Match)
	}
	return true
}

package actionsfake

import (
	"fmt"
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
	// Status is the answer (with a JSON error body). 0 with Drop false and
	// a delay: the request is only delayed, then served normally.
	Status int `json:"status"`
	// Times is how many requests the fault hits; 0 = until cleared.
	Times int `json:"times"`
	// DelayMS delays the request before the fault's answer (or drop).
	DelayMS int `json:"delay_ms"`
	// Drop closes the connection without an answer.
	Drop bool `json:"drop"`
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
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultRule{Fault: f, method: strings.ToUpper(method), re: re})
	return nil
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
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler) // closes the stream without a response
	}
	if f.Status == 0 {
		return false
	}
	writeActionsError(w, f.Status, "SimulatedFaultException", "injected fault %q", f.Match)
	return true
}

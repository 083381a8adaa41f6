package scenario

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// Scopes returns the scopes prefix1 ... prefixN.
func Scopes(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i+1)
	}
	return out
}

// QueueRoundRobin queues n jobs of the given duration one by one,
// round-robin over scopes.
func QueueRoundRobin(s Sim, scopes []string, n int, duration time.Duration) error {
	for i := range n {
		req := actionsfake.JobsRequest{Scope: scopes[i%len(scopes)], Count: 1, DurationMS: int(duration.Milliseconds())}
		if _, err := s.QueueJobs(req); err != nil {
			return fmt.Errorf("queue job %d: %w", i+1, err)
		}
	}
	return nil
}

// JobCounts counts the sim's jobs by state.
func JobCounts(st actionsfake.State) map[string]int {
	out := map[string]int{}
	for _, j := range st.Jobs {
		out[j.State]++
	}
	return out
}

// JobsFinal reports whether every job of the sim is completed or canceled.
func JobsFinal(st actionsfake.State) bool {
	for _, j := range st.Jobs {
		if j.State != "completed" && j.State != "canceled" {
			return false
		}
	}
	return true
}

// Sessions counts the scale sets with a live session.
func Sessions(st actionsfake.State) int {
	n := 0
	for _, ss := range st.ScaleSets {
		if ss.Session != nil {
			n++
		}
	}
	return n
}

// Listening reports whether every scope has a scale set with a session
// created at or after since (zero: any session), and if not, what it saw.
func Listening(st actionsfake.State, scopes []string, since time.Time) (bool, string) {
	fresh := map[string]bool{}
	for _, ss := range st.ScaleSets {
		if ss.Session != nil && !ss.Session.CreatedAt.Before(since.Add(-time.Millisecond)) {
			fresh[ss.Scope] = true
		}
	}
	for _, sc := range scopes {
		if !fresh[sc] {
			return false, fmt.Sprintf("fresh sessions: %v; scale sets: %s", fresh, SummarizeScaleSets(st))
		}
	}
	return true, ""
}

// Conflicts sums the sim's 409 session conflicts over all scale sets.
func Conflicts(st actionsfake.State) int {
	n := 0
	for _, ss := range st.ScaleSets {
		n += ss.Conflicts
	}
	return n
}

// SummarizeScaleSets describes the sim's scale sets, one line each, for
// a failure message.
func SummarizeScaleSets(st actionsfake.State) string {
	var b strings.Builder
	for _, ss := range st.ScaleSets {
		sess := "none"
		if ss.Session != nil {
			sess = ss.Session.ID[:min(8, len(ss.Session.ID))] + " (" + ss.Session.Owner + ")"
		}
		fmt.Fprintf(&b, "  %s id=%d session=%s jobs=%+v runners=%+v conflicts=%d\n", ss.Scope, ss.ID, sess, ss.Jobs, ss.Runners, ss.Conflicts)
	}
	return b.String()
}

// CountStates counts runner records by state.
func CountStates(rs []store.Runner) map[store.RunnerState]int {
	out := map[store.RunnerState]int{}
	for _, r := range rs {
		out[r.State]++
	}
	return out
}

// FreeLoopbackAddr returns a loopback address with a port that was free a
// moment ago.
func FreeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", err
	}
	return addr, nil
}

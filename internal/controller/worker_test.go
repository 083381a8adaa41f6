package controller

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
)

// TestAcquirerStartsOnlyWhenNeeded: a session's acquirer starts with the
// first thing to acquire (it is not running for an idle target), and at
// once on a new session when requests are still pending from the one
// before it.
func TestAcquirerStartsOnlyWhenNeeded(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	u.start()
	sess, id := u.listening("org-a")

	acquired := func(s *fakeSession, ids ...int64) func() (bool, string) {
		return func() (bool, string) {
			s.mu.Lock()
			defer s.mu.Unlock()
			return slices.ContainsFunc(s.acquired, func(got []int64) bool { return slices.Equal(got, ids) }), fmt.Sprint(s.acquired)
		}
	}
	// A message's JobAvailable entries start it.
	sess.deliver(1, 0, func(m *github.Message) {
		m.Available = []*scaleset.JobMessageBase{{RunnerRequestID: 11}}
	})
	u.wait("request 11 acquired", acquired(sess, 11))

	// A request stored with no wake-up (as one left by an earlier
	// process), then the session is gone: the next session acquires it
	// without any message.
	if err := u.st.RecordMessage(id, 2, []int64{21}); err != nil {
		t.Fatal(err)
	}
	sess.fail(fmt.Errorf("poll: %w", github.ErrSessionGone))
	var next *fakeSession
	u.wait("a new session", func() (bool, string) {
		next = u.gh.session(id)
		return next != nil && next != sess && !next.isClosed(), ""
	})
	u.wait("request 21 acquired on the new session", acquired(next, 21))
	u.wait("nothing pending", func() (bool, string) {
		rec, err := u.st.GetSession(id)
		return err == nil && len(rec.PendingAcquire) == 0, fmt.Sprint(rec.PendingAcquire, err)
	})
}

// TestReconcileLoopRunsOnDemand: an idle scale set holds no reconcile
// goroutine; jobs assigned start one, which provisions their runners and
// ends once nothing is desired again.
func TestReconcileLoopRunsOnDemand(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	u.start()
	sess, id := u.listening("org-a")
	loops := func(want int) func() (bool, string) {
		return func() (bool, string) {
			n := goroutinesIn("controller.(*scaleSet).reconcileLoop")
			return n == want, fmt.Sprintf("%d reconcile loops", n)
		}
	}
	u.wait("no reconcile loop while idle", loops(0))

	sess.deliver(1, 2, nil)
	u.wait("2 AddInstance calls", func() (bool, string) {
		added, _ := u.plugin.counts()
		return added == 2, fmt.Sprint(added, u.states(id))
	})
	// While runners are desired the loop stays, to retry a scale-up.
	u.wait("a reconcile loop while runners are desired", loops(1))

	sess.deliver(2, 0, nil)
	u.wait("no reconcile loop once nothing is desired", loops(0))
}

// goroutinesIn counts the goroutines whose stack has fn in it.
func goroutinesIn(fn string) int { return goroutinesWith(fn) }

// goroutinesWith counts the goroutines whose stack (its header line
// included, e.g. "[select") has every one of parts in it.
func goroutinesWith(parts ...string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(g, p) }) {
			count++
		}
	}
	return count
}

// TestListensBoundedAtOnce: at most maxListensAtOnce targets set up their
// scale set and session at the same time; the others wait for a slot, and
// every one of them listens in the end.
func TestListensBoundedAtOnce(t *testing.T) {
	n := maxListensAtOnce + 8
	var scopes []string
	for i := range n {
		scopes = append(scopes, fmt.Sprintf("org-%02d", i))
	}
	u := newUnit(t, scopes, nil)
	held := make(chan struct{})
	u.gh.ensureHeld = held
	u.start()
	release := sync.OnceFunc(func() { close(held) })
	t.Cleanup(release) // before the controller stops, if the test fails
	u.wait("the targets beyond the bound waiting for a listen slot", func() (bool, string) {
		waiting := goroutinesWith("[select", "targetWorker).listen")
		held := goroutinesIn("fakeGitHub).EnsureScaleSet")
		return waiting == n-maxListensAtOnce && held == maxListensAtOnce, fmt.Sprintf("%d waiting, %d in EnsureScaleSet", waiting, held)
	})
	release()
	for _, s := range scopes {
		u.listening(s)
	}
}

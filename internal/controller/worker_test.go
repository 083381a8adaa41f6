package controller

import (
	"fmt"
	"slices"
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

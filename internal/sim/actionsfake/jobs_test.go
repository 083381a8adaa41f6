package actionsfake

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// entriesOf returns the entries of type typ.
func entriesOf(m *rawMessage, typ string) []jobEntry {
	var out []jobEntry
	for _, e := range m.entries {
		if e.MessageType == typ {
			out = append(out, e)
		}
	}
	return out
}

// entryIDs lists the job IDs of the entries of type typ.
func entryIDs(m *rawMessage, typ string) []string {
	var out []string
	for _, e := range entriesOf(m, typ) {
		out = append(out, e.JobID)
	}
	return out
}

// pollEntries polls (acking what it got through lastMessageId) until a
// message has entries of type typ, and returns them.
func pollEntries(t *testing.T, sess scaleset.RunnerScaleSetSession, lastID *int, capacity, typ string) []jobEntry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, msg := pollWith(t, sess, *lastID, capacity)
		if st != http.StatusOK || msg == nil {
			continue
		}
		*lastID = msg.MessageID
		if es := entriesOf(msg, typ); len(es) > 0 {
			return es
		}
	}
	t.Fatalf("no %s entry before the deadline", typ)
	return nil
}

// pollUntil is pollEntries returning job IDs.
func pollUntil(t *testing.T, sess scaleset.RunnerScaleSetSession, lastID *int, capacity, typ string) []string {
	t.Helper()
	var out []string
	for _, e := range pollEntries(t, sess, lastID, capacity, typ) {
		out = append(out, e.JobID)
	}
	return out
}

func TestCapacity(t *testing.T) {
	t.Run("assign", func(t *testing.T) {
		f := newFake(t, nil)
		c, ss, sc := sessionFor(t, f)
		sess := sc.Session()
		// The listener reports its capacity before the jobs arrive.
		if st, _ := pollWith(t, sess, 0, "2"); st != http.StatusAccepted {
			t.Fatalf("first poll: status %d", st)
		}
		res := f.queue(t, JobsRequest{Scope: "org-a", Count: 5, DurationMS: 10})
		lastID := 0
		if got := pollUntil(t, sess, &lastID, "2", "JobAssigned"); !slices.Equal(got, res.JobIDs[:2]) {
			t.Fatalf("assigned %v, want the first two jobs", got)
		}
		s := f.srv.State().ScaleSets[0]
		if s.Jobs.Assigned != 2 || s.Jobs.Queued != 3 || s.PeakAssigned != 2 || s.MaxCapacity != 2 || s.Statistics.TotalAssignedJobs != 2 {
			t.Fatalf("at capacity 2: %+v", s)
		}
		// A larger capacity lets the next job in.
		if got := pollUntil(t, sess, &lastID, "3", "JobAssigned"); !slices.Equal(got, res.JobIDs[2:3]) {
			t.Fatalf("assigned %v after capacity 3, want the third job", got)
		}
		// A completed job frees its place for the next one in line.
		connectRunner(t, f, c, ss.ID, "r1")
		if got := pollUntil(t, sess, &lastID, "3", "JobAssigned"); !slices.Equal(got, res.JobIDs[3:4]) {
			t.Fatalf("assigned %v after a completion, want the fourth job", got)
		}
		s = f.srv.State().ScaleSets[0]
		if s.Jobs.Completed != 1 || s.Jobs.Queued != 1 || s.Jobs.Assigned+s.Jobs.Running != 3 || s.PeakAssigned != 3 {
			t.Fatalf("after a completion: %+v", s)
		}
		// A smaller capacity takes nothing back, and a completion under it gives nothing new.
		if st, msg := pollWith(t, sess, lastID, "1"); st == http.StatusOK {
			lastID = msg.MessageID
		}
		connectRunner(t, f, c, ss.ID, "r2")
		testkit.Eventually(t, 5*time.Second, "the second job to complete", func() bool { return f.srv.State().ScaleSets[0].Jobs.Completed == 2 })
		for {
			st, msg := pollWith(t, sess, lastID, "1")
			if st != http.StatusOK {
				break
			}
			lastID = msg.MessageID
			if got := entryIDs(msg, "JobAssigned"); len(got) > 0 {
				t.Fatalf("assigned %v over capacity 1", got)
			}
		}
		if s = f.srv.State().ScaleSets[0]; s.Jobs.Queued != 1 || s.PeakAssigned != 3 {
			t.Fatalf("at capacity 1: %+v", s)
		}
		f.requireNoViolations(t)
	})

	t.Run("acquire", func(t *testing.T) {
		f := newFake(t, func(c *Config) { c.Acquire = true })
		_, ss, sc := sessionFor(t, f)
		sess := sc.Session()
		if st, _ := pollWith(t, sess, 0, "2"); st != http.StatusAccepted {
			t.Fatalf("first poll: status %d", st)
		}
		res := f.queue(t, JobsRequest{Scope: "org-a", Count: 3})
		lastID := 0
		st, msg := pollWith(t, sess, lastID, "2")
		if st != http.StatusOK || !slices.Equal(entryIDs(msg, "JobAvailable"), res.JobIDs[:2]) {
			t.Fatalf("offered: status %d, %+v; want the first two jobs", st, msg)
		}
		lastID = msg.MessageID
		// Acquired and available jobs both count: acquiring one lets nothing in.
		var acq acquireJSON
		u := f.actionsURL(fmt.Sprintf("_apis/runtime/runnerscalesets/%d/acquirejobs", ss.ID))
		if st := call(t, "POST", u, "Bearer "+sess.MessageQueueAccessToken, []int64{msg.entries[0].RunnerRequestID}, &acq); st != http.StatusOK || acq.Count != 1 {
			t.Fatalf("acquire: status %d, %+v", st, acq)
		}
		st, msg = pollWith(t, sess, lastID, "2")
		if st != http.StatusOK || !slices.Equal(entryIDs(msg, "JobAssigned"), res.JobIDs[:1]) || len(entryIDs(msg, "JobAvailable")) != 0 {
			t.Fatalf("after acquire: status %d, %+v; want only the first job assigned", st, msg)
		}
		lastID = msg.MessageID
		if s := f.srv.State().ScaleSets[0]; s.Jobs.Available != 1 || s.Jobs.Assigned != 1 || s.Jobs.Queued != 1 {
			t.Fatalf("at capacity 2: %+v", s)
		}
		if got := pollUntil(t, sess, &lastID, "3", "JobAvailable"); !slices.Equal(got, res.JobIDs[2:]) {
			t.Fatalf("offered %v after capacity 3, want the third job", got)
		}
		f.requireNoViolations(t)
	})
}

func TestMessageBatching(t *testing.T) {
	f := newFake(t, nil)
	sess := pollSession(t, f)
	res := f.queue(t, JobsRequest{Scope: "org-a", Count: 120})
	var got []string
	lastID := 0
	for _, want := range []int{50, 50, 20} {
		st, msg := poll(t, sess, lastID)
		if st != http.StatusOK || len(msg.entries) != want {
			t.Fatalf("poll: status %d, %d entries; want %d", st, len(msg.entries), want)
		}
		got = append(got, entryIDs(msg, "JobAssigned")...)
		lastID = msg.MessageID
	}
	if !slices.Equal(got, res.JobIDs) {
		t.Fatal("the jobs did not arrive in order")
	}
	if st, _ := poll(t, sess, lastID); st != http.StatusAccepted {
		t.Fatalf("poll after the batches: status %d", st)
	}
	f.requireNoViolations(t)
}

func TestNoAckThrough(t *testing.T) {
	for _, noAck := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoAckThrough=%t", noAck), func(t *testing.T) {
			f := newFake(t, func(c *Config) { c.NoAckThrough = noAck })
			_, _, sc := sessionFor(t, f)
			sess := sc.Session()
			f.queue(t, JobsRequest{Scope: "org-a"})
			st, first := poll(t, sess, 0)
			if st != http.StatusOK {
				t.Fatalf("poll: status %d", st)
			}
			// The next poll names the message as lastMessageId but never DELETEd it.
			st, again := poll(t, sess, first.MessageID)
			if !noAck {
				if st != http.StatusAccepted {
					t.Fatalf("lastMessageId acks: status %d, want 202", st)
				}
				return
			}
			if st != http.StatusOK || again.MessageID != first.MessageID {
				t.Fatalf("status %d, %+v; want message %d again", st, again, first.MessageID)
			}
			if err := sc.DeleteMessage(t.Context(), first.MessageID); err != nil {
				t.Fatalf("ack: %v", err)
			}
			if st, _ := poll(t, sess, first.MessageID); st != http.StatusAccepted {
				t.Fatalf("after DELETE: status %d, want 202", st)
			}
			if m := f.srv.State().ScaleSets[0].Messages; m.Redelivered != 1 || m.Acked != 1 {
				t.Fatalf("message counts %+v", m)
			}
		})
	}
}

// GHES mode: a job offered and not acquired is offered again, on a timer
// and to a new session.
func TestReoffer(t *testing.T) {
	t.Run("interval", func(t *testing.T) {
		f := newFake(t, func(c *Config) {
			c.Acquire = true
			c.ReofferInterval = 150 * time.Millisecond
			c.PollHold = 600 * time.Millisecond
		})
		_, ss, sc := sessionFor(t, f)
		sess := sc.Session()
		res := f.queue(t, JobsRequest{Scope: "org-a"})
		lastID := 0
		var offers []jobEntry
		for len(offers) < 2 { // the offer, then at least one more
			offers = append(offers, pollEntries(t, sess, &lastID, "10", "JobAvailable")...)
		}
		for _, e := range offers {
			if e.JobID != res.JobIDs[0] || e.RunnerRequestID != offers[0].RunnerRequestID {
				t.Fatalf("offers %+v: want the same job and request", offers)
			}
		}
		u := f.actionsURL(fmt.Sprintf("_apis/runtime/runnerscalesets/%d/acquirejobs", ss.ID))
		for i, want := range []int{1, 0} { // acquiring twice is harmless
			var acq acquireJSON
			if st := call(t, "POST", u, "Bearer "+sess.MessageQueueAccessToken, []int64{offers[0].RunnerRequestID}, &acq); st != http.StatusOK || acq.Count != want {
				t.Fatalf("acquire %d: status %d, %+v", i, st, acq)
			}
		}
		if got := pollUntil(t, sess, &lastID, "10", "JobAssigned"); !slices.Equal(got, res.JobIDs) {
			t.Fatalf("assigned %v", got)
		}
		// Acquired: no more offers within a hold of four intervals.
		if st, msg := poll(t, sess, lastID); st != http.StatusAccepted {
			t.Fatalf("poll after acquire: status %d, %+v", st, msg)
		}
		f.requireNoViolations(t)
	})

	t.Run("new session", func(t *testing.T) {
		f := newFake(t, func(c *Config) { c.Acquire = true })
		c, ss, sc := sessionFor(t, f)
		sess := sc.Session()
		res := f.queue(t, JobsRequest{Scope: "org-a"})
		st, msg := poll(t, sess, 0)
		if st != http.StatusOK || !slices.Equal(entryIDs(msg, "JobAvailable"), res.JobIDs) {
			t.Fatalf("offer: status %d, %+v", st, msg)
		}
		if err := sc.DeleteMessage(t.Context(), msg.MessageID); err != nil {
			t.Fatalf("ack: %v", err)
		}
		if err := sc.Close(t.Context()); err != nil {
			t.Fatalf("close: %v", err)
		}
		// Queued while no session listens: offered once to the next one, not twice.
		res2 := f.queue(t, JobsRequest{Scope: "org-a"})
		sc2, err := c.MessageSessionClient(t.Context(), ss.ID, "host-2")
		if err != nil {
			t.Fatalf("session 2: %v", err)
		}
		st, msg = poll(t, sc2.Session(), 0)
		if st != http.StatusOK || !slices.Equal(entryIDs(msg, "JobAvailable"), []string{res2.JobIDs[0], res.JobIDs[0]}) {
			t.Fatalf("new session: status %d, %+v; want both jobs offered once", st, msg)
		}
		f.requireNoViolations(t)
	})
}

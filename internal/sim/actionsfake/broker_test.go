package actionsfake

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/actions/scaleset"
)

// sessionFor creates a scale set "ss" in org-a and a session on it with the real client.
func sessionFor(t *testing.T, f *fake) (*scaleset.Client, *scaleset.RunnerScaleSet, *scaleset.MessageSessionClient) {
	t.Helper()
	ctx := t.Context()
	c := f.client(t, "org-a")
	ss := newScaleSet(t, c, "ss")
	sc, err := c.MessageSessionClient(ctx, ss.ID, "host-1")
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	return c, ss, sc
}

// pollSession is the session of sessionFor, for tests that poll it raw.
func pollSession(t *testing.T, f *fake) scaleset.RunnerScaleSetSession {
	t.Helper()
	_, _, sc := sessionFor(t, f)
	return sc.Session()
}

func TestGHESAcquire(t *testing.T) {
	f := newFake(t, func(c *Config) { c.Acquire = true })
	_, ss, sc := sessionFor(t, f)
	sess := sc.Session()
	res := f.queue(t, JobsRequest{Scope: "org-a", DurationMS: 10})

	st, msg := poll(t, sess, 0)
	if st != http.StatusOK || len(msg.entries) != 1 {
		t.Fatalf("poll: status %d, message %+v", st, msg)
	}
	avail := msg.entries[0]
	if avail.MessageType != "JobAvailable" || avail.JobID != res.JobIDs[0] || avail.RunnerRequestID == 0 || avail.EventName != "push" {
		t.Fatalf("entry %+v", avail)
	}
	if msg.MessageType != "RunnerScaleSetJobMessages" || msg.Statistics.TotalAvailableJobs != 1 || msg.Statistics.TotalAssignedJobs != 0 {
		t.Fatalf("message %+v", msg)
	}

	// Not acquired: it stays available through an empty poll.
	if st, _ := poll(t, sess, msg.MessageID); st != http.StatusAccepted {
		t.Fatalf("second poll: status %d, want 202", st)
	}
	if j := f.job(t, res.JobIDs[0]); j.State != "available" {
		t.Fatalf("job before acquire: %+v", j)
	}

	var acq struct {
		Count int     `json:"count"`
		Value []int64 `json:"value"`
	}
	u := f.actionsURL(fmt.Sprintf("_apis/runtime/runnerscalesets/%d/acquirejobs", ss.ID))
	if st := call(t, "POST", u, "Bearer "+sess.MessageQueueAccessToken, []int64{avail.RunnerRequestID, 999999}, &acq); st != http.StatusOK {
		t.Fatalf("acquirejobs: status %d", st)
	}
	if acq.Count != 1 || len(acq.Value) != 1 || acq.Value[0] != avail.RunnerRequestID {
		t.Fatalf("acquired %+v", acq)
	}
	f.requireViolation(t, ViolationAcquireUnknown)

	st, msg = poll(t, sess, msg.MessageID)
	if st != http.StatusOK || len(msg.entries) != 1 || msg.entries[0].MessageType != "JobAssigned" || msg.entries[0].JobID != res.JobIDs[0] {
		t.Fatalf("poll after acquire: status %d, message %+v", st, msg)
	}
	if msg.Statistics.TotalAssignedJobs != 1 || msg.Statistics.TotalAvailableJobs != 0 {
		t.Fatalf("statistics after acquire %+v", msg.Statistics)
	}

	// Acquiring again is harmless: nothing acquired, no new violation. The admin token is refused.
	before := len(f.violations())
	if st := call(t, "POST", u, "Bearer "+sess.MessageQueueAccessToken, []int64{avail.RunnerRequestID}, &acq); st != http.StatusOK || acq.Count != 0 {
		t.Fatalf("second acquire: status %d, %+v", st, acq)
	}
	if st := call(t, "POST", u, "Bearer "+f.adminToken(t, "org-a"), []int64{avail.RunnerRequestID}, nil); st != http.StatusUnauthorized {
		t.Fatalf("acquire with the admin token: status %d, want 401", st)
	}
	if got := len(f.violations()); got != before {
		t.Fatalf("violations grew from %d to %d", before, got)
	}
}

func TestAssignTimeoutRequeues(t *testing.T) {
	f := newFake(t, func(c *Config) {
		c.AssignTimeout = 200 * time.Millisecond
		c.PollHold = 500 * time.Millisecond
	})
	_, _, sc := sessionFor(t, f)
	sess := sc.Session()
	res := f.queue(t, JobsRequest{Scope: "org-a"})
	jobID := res.JobIDs[0]

	var assigned, canceled []jobEntry
	lastID := 0
	deadline := time.Now().Add(10 * time.Second)
	for len(canceled) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("assigned %d, canceled %d before the deadline", len(assigned), len(canceled))
		}
		st, msg := poll(t, sess, lastID)
		if st != http.StatusOK {
			continue
		}
		lastID = msg.MessageID
		for _, e := range msg.entries {
			switch {
			case e.MessageType == "JobAssigned":
				assigned = append(assigned, e)
			case e.MessageType == "JobCompleted" && e.Result == "canceled":
				canceled = append(canceled, e)
			default:
				t.Fatalf("unexpected entry %+v", e)
			}
		}
	}
	if len(assigned) != 3 {
		t.Fatalf("JobAssigned %d times, want 3", len(assigned))
	}
	seen := map[int64]bool{}
	for i, e := range assigned {
		if e.JobID != jobID || seen[e.RunnerRequestID] || canceled[i].RunnerRequestID != e.RunnerRequestID {
			t.Fatalf("attempt %d: assigned %+v canceled %+v", i, e, canceled[i])
		}
		seen[e.RunnerRequestID] = true
	}
	// Final: nothing more arrives within a poll hold.
	if st, msg := poll(t, sess, lastID); st != http.StatusAccepted {
		t.Fatalf("poll after the last cancel: status %d, %+v", st, msg)
	}
	if j := f.job(t, jobID); j.State != "canceled" || j.Attempts != 3 || j.Result != "canceled" {
		t.Fatalf("job %+v", j)
	}
	if s := f.srv.State().ScaleSets[0]; s.Jobs.Canceled != 1 || s.Statistics.TotalAssignedJobs != 0 {
		t.Fatalf("scale set %+v", s)
	}
	f.requireNoViolations(t)
}

func TestBrokerRedeliveryAndAcks(t *testing.T) {
	f := newFake(t, nil)
	c, ss, sc := sessionFor(t, f)
	sess := sc.Session()
	f.queue(t, JobsRequest{Scope: "org-a", Count: 3})
	st, first := poll(t, sess, 0)
	if st != http.StatusOK || len(first.entries) != 3 || first.Statistics.TotalAssignedJobs != 3 {
		t.Fatalf("poll: status %d, %+v", st, first)
	}
	// Not acked: a crash and a new session get it again.
	if err := sc.Close(t.Context()); err != nil {
		t.Fatalf("close: %v", err)
	}
	sc2, err := c.MessageSessionClient(t.Context(), ss.ID, "host-2")
	if err != nil {
		t.Fatalf("session 2: %v", err)
	}
	msg, err := sc2.GetMessage(t.Context(), 0, 10)
	if err != nil || msg == nil || msg.MessageID != first.MessageID || len(msg.JobAssignedMessages) != 3 {
		t.Fatalf("redelivery: %+v, %v", msg, err)
	}
	if err := sc2.DeleteMessage(t.Context(), msg.MessageID); err != nil {
		t.Fatalf("ack: %v", err)
	}
	f.requireNoViolations(t)
	m := f.srv.State().ScaleSets[0].Messages
	if m.Delivered != 1 || m.Redelivered != 1 || m.Acked != 1 || m.Unacked != 0 {
		t.Fatalf("message counts %+v", m)
	}

	// Ack of a message that was never sent.
	sess2 := sc2.Session()
	var e actionsError
	if st := call(t, "DELETE", sess2.MessageQueueURL+"/9999", "Bearer "+sess2.MessageQueueAccessToken, nil, &e); st != http.StatusNotFound || e.TypeName == "" {
		t.Fatalf("ack unknown: status %d, %+v", st, e)
	}
	f.requireViolation(t, ViolationAckUnknownMessage)
}

package controller

// Unit tests of the controller on in-memory peers (fakes_test.go). Each
// runs in milliseconds; the end-to-end tests on the sim world are the
// TestE2E* ones.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

func TestDesiredRunners(t *testing.T) {
	for _, tc := range []struct{ min, max, assigned, want int }{
		{0, 10, 0, 0},
		{0, 10, 3, 3},
		{2, 10, 0, 2},
		{2, 10, 3, 5},
		{2, 10, 20, 10}, // capped
		{0, 10, -1, 0},  // a negative count from the service counts as none
		{3, 3, 0, 3},
		{0, 1, 5, 1},
	} {
		if got := desiredRunners(tc.min, tc.max, tc.assigned); got != tc.want {
			t.Errorf("desiredRunners(min %d, max %d, assigned %d) = %d, want %d", tc.min, tc.max, tc.assigned, got, tc.want)
		}
	}
}

// TestLifecycle tries every pair of states on a stored record: the ones
// the lifecycle lists move, the others are refused with a
// *TransitionError and leave the record as it was, and a move to the
// state the runner is in is errNoChange.
func TestLifecycle(t *testing.T) {
	u := newUnit(t, nil, nil)
	states := []store.RunnerState{store.StatePending, store.StateConfigured, store.StateIdle, store.StateBusy,
		store.StateDeleting, store.StateUnknownInstance, stateHistory}
	allowed := 0
	for _, from := range states[:len(states)-1] {
		for _, to := range states {
			name := fmt.Sprintf("myshoes-%s-%s", from, to)
			u.seed(name, "org-a", 1, from, time.Minute, nil)
			var err error
			if to == stateHistory {
				_, err = u.c.finishRunner(name, "test")
			} else {
				_, err = u.c.transition(name, to, nil)
			}
			r, stored := u.runner(name)
			var refused *TransitionError
			switch {
			case from == to:
				if !errors.Is(err, errNoChange) || r.State != from {
					t.Errorf("%s → %s: err %v, state %s; want errNoChange and no change", from, to, err, r.State)
				}
			case canMove(from, to):
				allowed++
				if err != nil {
					t.Errorf("%s → %s: %v, want the move", from, to, err)
				} else if to == stateHistory && (stored || u.history(name) != "test") {
					t.Errorf("%s → history: record still stored (%v) or no history (%q)", from, stored, u.history(name))
				} else if to != stateHistory && (r.State != to || r.StateSince[to].IsZero()) {
					t.Errorf("%s → %s: stored state %s since %v", from, to, r.State, r.StateSince[to])
				}
			default:
				if !errors.As(err, &refused) || refused.From != from || refused.To != to {
					t.Errorf("%s → %s: err %v, want a *TransitionError", from, to, err)
				}
				if !stored || r.State != from {
					t.Errorf("%s → %s refused, yet the record changed: stored %v, state %s", from, to, stored, r.State)
				}
			}
		}
	}
	if allowed != 14 {
		t.Errorf("%d transitions allowed, want the 14 of the table in docs/architecture.md", allowed)
	}
	// An edit may not change the state behind the table's back.
	u.seed("myshoes-edit", "org-a", 1, store.StateIdle, time.Minute, nil)
	if _, err := u.c.editRunner("myshoes-edit", func(r *store.Runner) error { r.State = store.StateBusy; return nil }); err == nil {
		t.Error("editRunner let an edit change the state")
	}
	if _, err := u.c.transition("myshoes-edit", store.StateBusy, func(r *store.Runner) error { r.State = store.StateDeleting; return nil }); err == nil {
		t.Error("transition let its edit change the state")
	}
}

// TestScaleUpToStatistics: the desired count is min + assigned jobs, and
// one AddInstance goes out per missing runner; a second message with the
// same count adds nothing.
func TestScaleUpToStatistics(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, func(c *Config) { c.MinRunners = 1 })
	u.start()
	sess, id := u.listening("org-a")
	u.wait("the min runner idle", func() (bool, string) {
		c := u.states(id)
		return c[store.StateIdle] == 1, fmt.Sprint(c)
	})
	sess.deliver(1, 3, nil)
	u.wait("1 + 3 idle runners", func() (bool, string) {
		c := u.states(id)
		return c[store.StateIdle] == 4, fmt.Sprint(c)
	})
	sess.deliver(2, 3, nil)
	u.wait("message 2 acknowledged", func() (bool, string) { return sess.ackCount(2) == 1, "" })
	if added, _ := u.plugin.counts(); added != 4 {
		t.Errorf("%d AddInstance calls, want 4", added)
	}
	for _, r := range u.runners(id) {
		if r.CloudID != "cloud-"+r.Name || r.RunnerID == 0 {
			t.Errorf("runner %s: cloud ID %q, runner ID %d", r.Name, r.CloudID, r.RunnerID)
		}
	}
	if strings.Contains(u.logs.String(), "secret-jit-") {
		t.Error("a JIT config appears in the logs")
	}
}

// TestJobMessages: JobStarted makes the runner busy, JobCompleted deletes
// its instance and moves it to history; each message, delivered again, is
// acknowledged again and changes nothing more.
func TestJobMessages(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	u.start()
	sess, id := u.listening("org-a")
	sess.deliver(1, 1, nil)
	var r store.Runner
	u.wait("an idle runner", func() (bool, string) {
		rs := u.runners(id)
		if len(rs) == 1 {
			r = rs[0]
		}
		return len(rs) == 1 && r.State == store.StateIdle, fmt.Sprint(u.states(id))
	})
	started := func(m *github.Message) {
		m.Started = []*scaleset.JobStarted{{RunnerName: r.Name, RunnerID: int(r.RunnerID),
			JobMessageBase: scaleset.JobMessageBase{JobID: "job-1", RunnerRequestID: 7}}}
	}
	for _, msgID := range []int64{2, 2} { // the second is a redelivery
		sess.deliver(msgID, 1, started)
	}
	u.wait("message 2 acknowledged twice", func() (bool, string) { return sess.ackCount(2) == 2, fmt.Sprint(sess.ackCount(2)) })
	got, _ := u.runner(r.Name)
	if got.State != store.StateBusy || got.JobID != "job-1" || got.JobRequestID != 7 {
		t.Fatalf("after JobStarted: state %s, job %q, request %d", got.State, got.JobID, got.JobRequestID)
	}
	completed := func(m *github.Message) {
		m.Completed = []*scaleset.JobCompleted{{RunnerName: r.Name, Result: "succeeded",
			JobMessageBase: scaleset.JobMessageBase{JobID: "job-1"}}}
	}
	sess.deliver(3, 0, completed)
	u.wait("the runner in history", func() (bool, string) { return u.history(r.Name) == reasonCompleted, u.history(r.Name) })
	sess.deliver(3, 0, completed) // redelivered after the delete
	sess.deliver(4, 0, completed) // the same job in a new message
	u.wait("messages 3 and 4 acknowledged", func() (bool, string) {
		return sess.ackCount(3) == 2 && sess.ackCount(4) == 1, fmt.Sprint(sess.ackCount(3), sess.ackCount(4))
	})
	if _, deleted := u.plugin.counts(); deleted != 1 || !u.plugin.wasDeleted("cloud-"+r.Name) {
		t.Errorf("%d DeleteInstance calls, want 1 for cloud-%s", deleted, r.Name)
	}
	if added, _ := u.plugin.counts(); added != 1 {
		t.Errorf("%d AddInstance calls, want 1: a completed job's runner is not replaced at desired 0", added)
	}
}

// TestJobStartedOnALeavingRunner: a runner the reaper is deleting does
// not go back to busy when its JobStarted arrives late.
func TestJobStartedOnALeavingRunner(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	u.plugin.deleteErr, u.plugin.deleteFails = errors.New("cloud down"), -1 // keep it deleting
	u.start()
	sess, id := u.listening("org-a")
	u.seed("myshoes-leaving", "org-a", id, store.StateDeleting, time.Minute, func(r *store.Runner) { r.CloudID = "cloud-x" })
	sess.deliver(1, 0, func(m *github.Message) {
		m.Started = []*scaleset.JobStarted{{RunnerName: "myshoes-leaving"}}
	})
	u.wait("message 1 acknowledged", func() (bool, string) { return sess.ackCount(1) == 1, "" })
	if r, _ := u.runner("myshoes-leaving"); r.State != store.StateDeleting {
		t.Errorf("state %s, want deleting", r.State)
	}
	if !strings.Contains(u.logs.String(), "job started on a runner that is leaving") {
		t.Error("no warning about the late JobStarted")
	}
}

// TestAvailableJobsAreAcquired: JobAvailable entries are stored with the
// message, then acquired on the session.
func TestAvailableJobsAreAcquired(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	u.start()
	sess, id := u.listening("org-a")
	sess.deliver(1, 0, func(m *github.Message) {
		m.Available = []*scaleset.JobMessageBase{{RunnerRequestID: 11}, {RunnerRequestID: 12}}
	})
	u.wait("requests 11 and 12 acquired", func() (bool, string) {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		return slices.ContainsFunc(sess.acquired, func(ids []int64) bool { return slices.Equal(ids, []int64{11, 12}) }), fmt.Sprint(sess.acquired)
	})
	u.wait("nothing pending", func() (bool, string) {
		rec, err := u.st.GetSession(id)
		return err == nil && len(rec.PendingAcquire) == 0, fmt.Sprint(rec.PendingAcquire, err)
	})
}

// TestReaperRules: one pass on seeded runners applies each rule.
func TestReaperRules(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, func(c *Config) {
		c.BootstrapTimeout = 10 * time.Minute
		c.IdleTTL = time.Hour
		c.ScaleDownGrace = time.Minute
	})
	u.start()
	sess, id := u.listening("org-a")
	jit := func(name string) int64 {
		cfg, _ := u.gh.ScaleSet("org-a", id).JIT(t.Context(), name, "")
		return int64(cfg.Runner.ID)
	}
	// Keep 2 runners (2 assigned jobs) so only the rules remove the others.
	sess.deliver(1, 2, nil)
	u.wait("desired known", func() (bool, string) { return sess.ackCount(1) == 1, "" })
	cloud := func(r *store.Runner) { r.CloudID = "cloud-" + r.Name }
	neverOnline := u.seed("myshoes-never-online", "org-a", id, store.StateIdle, 11*time.Minute, func(r *store.Runner) {
		cloud(r)
		r.RunnerID = jit(r.Name)
	})
	idleLong := u.seed("myshoes-idle-ttl", "org-a", id, store.StateIdle, 2*time.Hour, func(r *store.Runner) {
		cloud(r)
		r.RunnerID = jit(r.Name)
	})
	u.gh.setStatus(idleLong.RunnerID, github.RunnerOnline)
	busyJob := u.seed("myshoes-busy-job", "org-a", id, store.StateBusy, 2*time.Hour, func(r *store.Runner) {
		cloud(r)
		r.RunnerID = jit(r.Name)
	})
	u.gh.setStatus(busyJob.RunnerID, github.RunnerBusy)
	orphan := u.seed("myshoes-busy-gone", "org-a", id, store.StateBusy, time.Hour, func(r *store.Runner) {
		cloud(r)
		r.RunnerID = 999 // GitHub does not know it: its job is done
	})
	gone := u.seed("myshoes-other-target", "org-gone", 99, store.StateIdle, time.Minute, cloud)
	u.wait("the reaper's removals in history", func() (bool, string) {
		u.c.wakeReaper()
		h := []string{u.history(neverOnline.Name), u.history(idleLong.Name), u.history(orphan.Name), u.history(gone.Name)}
		return slices.Equal(h, []string{reasonBootstrapTimeout, reasonIdleTTL, reasonCompleted, reasonTargetRemoved}), fmt.Sprint(h)
	})
	if r, ok := u.runner(busyJob.Name); !ok || r.State != store.StateBusy {
		t.Errorf("the busy runner GitHub still knows: %v %s, want kept busy", ok, r.State)
	}
	if !u.gh.wasRemoved(neverOnline.RunnerID) || !u.gh.wasRemoved(idleLong.RunnerID) {
		t.Error("a reaped runner was not removed from GitHub first")
	}
	for _, r := range []store.Runner{neverOnline, idleLong, orphan, gone} {
		if !u.plugin.wasDeleted(r.CloudID) {
			t.Errorf("instance %s of %s not deleted", r.CloudID, r.Name)
		}
	}
}

// TestReaperScaleDown: idle runners beyond the desired count go once idle
// past the grace, oldest first; a runner GitHub says runs a job stays.
// Before the scale set's statistics are known (the session is not open
// yet after a start) nothing is removed.
func TestReaperScaleDown(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, func(c *Config) { c.ScaleDownGrace = time.Minute })
	// Seeded before the start, on the scale set the first sync creates (ID 1).
	u.gh.conflicts[1] = 1 << 30 // no session: statistics stay unknown
	for i, age := range []time.Duration{3 * time.Minute, 2 * time.Minute, 30 * time.Second} {
		u.seed(fmt.Sprintf("myshoes-idle-%d", i), "org-a", 1, store.StateIdle, age, func(r *store.Runner) {
			r.CloudID = "cloud-" + r.Name
			r.RunnerID = int64(100 + i)
		})
	}
	u.gh.mu.Lock()
	u.gh.runners[101] = &fakeRunner{name: "myshoes-idle-1", status: github.RunnerOnline}
	u.gh.jobRunner[101] = true // GitHub: a job is running on it
	u.gh.mu.Unlock()
	u.start()
	u.wait("the target served", func() (bool, string) { return u.c.isServedTarget(target("org-a").ID), "" })
	// Reaper passes while every session attempt answers 409.
	u.wait("reaper passes with unknown statistics", func() (bool, string) {
		u.c.wakeReaper()
		return strings.Count(u.logs.String(), "session held by another owner") >= 3, ""
	})
	if _, deleted := u.plugin.counts(); deleted != 0 || len(u.runners(1)) != 3 {
		t.Fatalf("scale-down before the statistics were known: %v", u.states(1))
	}
	u.gh.mu.Lock()
	u.gh.conflicts[1] = 0
	u.gh.mu.Unlock()
	sess, _ := u.listening("org-a")
	sess.deliver(1, 0, nil) // desired 0
	u.wait("message 1 acknowledged", func() (bool, string) { return sess.ackCount(1) == 1, "" })
	u.wait("the oldest idle runner scaled down", func() (bool, string) {
		u.c.wakeReaper()
		return u.history("myshoes-idle-0") == reasonScaleDown, u.history("myshoes-idle-0")
	})
	// One more whole pass: it removes nothing more.
	if err := u.c.reap(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := u.runner("myshoes-idle-1"); !ok {
		t.Error("the runner GitHub says runs a job was removed")
	}
	if _, ok := u.runner("myshoes-idle-2"); !ok {
		t.Error("a runner idle for less than the grace was removed")
	}
}

// TestRecoveryFromEveryState: at start, what a previous run left is
// finished or undone: pending leaves GitHub and goes to history,
// configured becomes unknown-instance, deleting is deleted, idle and busy
// stay, unknown-instance stays for the operator.
func TestRecoveryFromEveryState(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	api := u.gh.ScaleSet("org-a", 1)
	reg := func(r *store.Runner) {
		cfg, _ := api.JIT(t.Context(), r.Name, "")
		r.RunnerID = int64(cfg.Runner.ID)
	}
	pending := u.seed("myshoes-pending", "org-a", 1, store.StatePending, time.Minute, reg)
	configured := u.seed("myshoes-configured", "org-a", 1, store.StateConfigured, time.Minute, reg)
	deleting := u.seed("myshoes-deleting", "org-a", 1, store.StateDeleting, time.Minute, func(r *store.Runner) { r.CloudID = "cloud-d" })
	u.seed("myshoes-idle", "org-a", 1, store.StateIdle, time.Minute, func(r *store.Runner) { r.CloudID = "cloud-i" })
	u.seed("myshoes-busy", "org-a", 1, store.StateBusy, time.Minute, func(r *store.Runner) { r.CloudID = "cloud-b" })
	u.seed("myshoes-unknown", "org-a", 1, store.StateUnknownInstance, time.Minute, nil)
	u.start()
	u.wait("pending and deleting finished", func() (bool, string) {
		return u.history(pending.Name) == "recovered" && u.history(deleting.Name) == reasonCompleted,
			u.history(pending.Name) + " " + u.history(deleting.Name)
	})
	u.wait("the configured runner removed from GitHub", func() (bool, string) {
		return u.gh.wasRemoved(configured.RunnerID) && u.gh.wasRemoved(pending.RunnerID), ""
	})
	want := map[string]store.RunnerState{"myshoes-configured": store.StateUnknownInstance, "myshoes-idle": store.StateIdle,
		"myshoes-busy": store.StateBusy, "myshoes-unknown": store.StateUnknownInstance}
	for name, state := range want {
		if r, ok := u.runner(name); !ok || r.State != state {
			t.Errorf("%s: stored %v, state %s; want %s", name, ok, r.State, state)
		}
	}
	if !u.plugin.wasDeleted("cloud-d") {
		t.Error("the deleting runner's instance was not deleted")
	}
	if added, _ := u.plugin.counts(); added != 0 {
		t.Errorf("%d AddInstance calls at start, want 0 (desired 0, 2 live runners)", added)
	}
}

// TestTargetsAddChangeRemove: a new target gets a scale set and a session;
// a changed status is stored; a removed target's session is closed and
// its idle runner removed, while the other target keeps its session.
func TestTargetsAddChangeRemove(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	u.start()
	sessA, idA := u.listening("org-a")
	b := target("org-b")
	u.setTargets(target("org-a"), b)
	sessB, idB := u.listening("org-b")
	if idA == idB {
		t.Fatal("two targets share a scale set")
	}
	b.Status, b.StatusDescription = "err", "token expired"
	u.setTargets(target("org-a"), b)
	u.wait("the changed status stored", func() (bool, string) {
		ss, err := u.st.GetScaleSet(b.ID)
		return err == nil && ss.TargetStatus == "err" && ss.TargetStatusDescription == "token expired", fmt.Sprint(ss.TargetStatus, err)
	})
	sessB.deliver(1, 1, nil)
	u.wait("an idle runner on org-b", func() (bool, string) { return u.states(idB)[store.StateIdle] == 1, fmt.Sprint(u.states(idB)) })
	u.setTargets(target("org-a"))
	u.wait("org-b's session closed", func() (bool, string) { return sessB.isClosed(), "" })
	u.wait("org-b's runner removed", func() (bool, string) {
		u.c.wakeReaper()
		return len(u.runners(idB)) == 0, fmt.Sprint(u.states(idB))
	})
	if sessA.isClosed() {
		t.Error("org-a's session closed when org-b was removed")
	}
	u.wait("org-b's scale set marked removed", func() (bool, string) {
		u.c.wakeReaper()
		ss, err := u.st.GetScaleSet(b.ID)
		return err == nil && ss.TargetStatus == targetRemoved, fmt.Sprint(ss.TargetStatus, err)
	})
}

// TestSessionConflictAndReplacement: a 409 is retried until the other
// owner's session is gone; a session GitHub evicted is replaced at once
// by a new one, and the stored session follows; a session left by an
// earlier run is deleted before a new one is created.
func TestSessionConflictAndReplacement(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	// What an earlier run left: a stored session for scale set 1.
	if err := u.st.PutSession(store.Session{ScaleSetID: 1, TargetID: target("org-a").ID, Scope: "org-a", SessionID: "stale-session"}); err != nil {
		t.Fatal(err)
	}
	u.gh.conflicts[1] = 2
	u.start()
	first, id := u.listening("org-a")
	u.gh.mu.Lock()
	deleted := slices.Clone(u.gh.deleted)
	u.gh.mu.Unlock()
	if !slices.Contains(deleted, "stale-session") {
		t.Errorf("the stale session was not deleted: %v", deleted)
	}
	if c := strings.Count(u.logs.String(), "session held by another owner"); c != 2 {
		t.Errorf("%d conflict retries logged, want 2", c)
	}
	first.fail(fmt.Errorf("get message: %w", github.ErrSessionGone))
	var second *fakeSession
	u.wait("a new session", func() (bool, string) {
		second = u.gh.session(id)
		return second != first && second != nil, ""
	})
	u.wait("the new session stored", func() (bool, string) {
		rec, err := u.st.GetSession(id)
		return err == nil && rec.SessionID == second.id, fmt.Sprint(rec.SessionID, err)
	})
	second.deliver(1, 1, nil)
	u.wait("the new session serves", func() (bool, string) { return u.states(id)[store.StateIdle] == 1, fmt.Sprint(u.states(id)) })
	u.stop()
	if !second.isClosed() {
		t.Error("the session was not closed on stop")
	}
	if _, err := u.st.GetSession(id); err == nil {
		if rec, _ := u.st.GetSession(id); rec.SessionID != "" {
			t.Errorf("the closed session is still stored: %s", rec.SessionID)
		}
	}
}

// TestAddInstanceOutcomeUnknown: an AddInstance that hangs past its
// deadline leaves an unknown-instance record, removed from GitHub.
func TestAddInstanceOutcomeUnknown(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	u.plugin.addErr = status.Error(codes.Unavailable, "connection lost") // the answer never came
	u.start()
	sess, id := u.listening("org-a")
	sess.deliver(1, 1, nil)
	var r store.Runner
	u.wait("an unknown-instance record", func() (bool, string) {
		for _, x := range u.runners(id) {
			if x.State == store.StateUnknownInstance {
				r = x
				return true, ""
			}
		}
		return false, fmt.Sprint(u.states(id))
	})
	if !strings.Contains(r.LastError, "outcome unknown") {
		t.Errorf("last error %q does not say the outcome is unknown", r.LastError)
	}
	u.wait("its runner removed from GitHub", func() (bool, string) { return u.gh.wasRemoved(r.RunnerID), "" })
}

// TestDeleteRetriesThenGivesUp: a failing DeleteInstance is retried with
// backoff until it succeeds; one failing for DeleteGiveUp goes to history
// as delete-failed, with its error and cloud ID.
func TestDeleteRetriesThenGivesUp(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, func(c *Config) { c.DeleteGiveUp = time.Hour })
	u.plugin.deleteErr, u.plugin.deleteFails = errors.New("cloud busy"), 3
	u.start()
	_, id := u.listening("org-a")
	u.seed("myshoes-retried", "org-a", id, store.StateDeleting, time.Minute, func(r *store.Runner) { r.CloudID = "cloud-r" })
	u.wait("deleted after 3 failures", func() (bool, string) { return u.history("myshoes-retried") == reasonCompleted, "" })
	u.plugin.mu.Lock()
	failed, deleted := u.plugin.failed, slices.Clone(u.plugin.deleted)
	u.plugin.deleteFails = -1
	u.plugin.mu.Unlock()
	if failed != 3 || !slices.Equal(deleted, []string{"cloud-r"}) {
		t.Errorf("DeleteInstance: %d failed, deleted %v; want 3 and [cloud-r]", failed, deleted)
	}
	u.seed("myshoes-stuck", "org-a", id, store.StateDeleting, 2*time.Hour, func(r *store.Runner) { r.CloudID = "cloud-s" })
	u.wait("the stuck delete given up", func() (bool, string) {
		u.c.wakeReaper()
		return u.history("myshoes-stuck") == reasonDeleteFailed, u.history("myshoes-stuck")
	})
	hs, err := u.st.ListHistory(store.HistoryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.Runner.Name == "myshoes-stuck" && (h.Runner.LastError == "" || h.Runner.CloudID != "cloud-s") {
			t.Errorf("delete-failed record lacks the error or cloud ID: %+v", h.Runner)
		}
	}
}

// TestRemoveRunnerByHand: runners rm removes an idle runner; a busy one
// only with force; a provisioning one never; an unknown name is
// ErrNotFound; an unknown-instance record goes to history at once.
func TestRemoveRunnerByHand(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	u.start()
	_, id := u.listening("org-a")
	cloud := func(r *store.Runner) { r.CloudID = "cloud-" + r.Name }
	u.seed("myshoes-idle", "org-a", id, store.StateIdle, time.Minute, cloud)
	busy := u.seed("myshoes-busy", "org-a", id, store.StateBusy, time.Minute, func(r *store.Runner) {
		cloud(r)
		r.RunnerID = 42
	})
	u.gh.mu.Lock()
	u.gh.jobRunner[busy.RunnerID] = true
	u.gh.mu.Unlock()
	u.seed("myshoes-pending", "org-a", id, store.StatePending, time.Millisecond, nil)
	u.seed("myshoes-unknown", "org-a", id, store.StateUnknownInstance, time.Minute, nil)
	ctx := t.Context()
	if err := u.c.RemoveRunner(ctx, "myshoes-idle", false); err != nil {
		t.Errorf("remove idle: %v", err)
	}
	if err := u.c.RemoveRunner(ctx, "myshoes-busy", false); !errors.Is(err, ErrRunnerBusy) {
		t.Errorf("remove busy without force: %v, want ErrRunnerBusy", err)
	}
	if err := u.c.RemoveRunner(ctx, "myshoes-pending", false); !errors.Is(err, ErrRunnerProvisioning) {
		t.Errorf("remove pending: %v, want ErrRunnerProvisioning", err)
	}
	if err := u.c.RemoveRunner(ctx, "myshoes-nope", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("remove unknown name: %v, want ErrNotFound", err)
	}
	if err := u.c.RemoveRunner(ctx, "myshoes-unknown", false); err != nil {
		t.Errorf("remove unknown-instance: %v", err)
	}
	if err := u.c.RemoveRunner(ctx, "myshoes-busy", true); err != nil {
		t.Errorf("remove busy with force: %v", err)
	}
	u.wait("3 removals in history", func() (bool, string) {
		h := []string{u.history("myshoes-idle"), u.history("myshoes-busy"), u.history("myshoes-unknown")}
		return slices.Equal(h, []string{reasonRemoved, reasonRemoved, reasonRemoved}), fmt.Sprint(h)
	})
	if !u.plugin.wasDeleted("cloud-myshoes-busy") || !u.plugin.wasDeleted("cloud-myshoes-idle") {
		t.Error("a removed runner's instance was not deleted")
	}
}

// TestCanceledPreparedRunnerLeavesGitHub: a runner that got its JIT config
// and waits for an AddInstance slot when its target goes is removed from
// GitHub and goes to history as canceled, never to AddInstance; the
// runner in AddInstance finishes, then leaves with its target.
func TestCanceledPreparedRunnerLeavesGitHub(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, func(c *Config) {
		c.MinRunners = 3
		c.ProvisionConcurrency = 1
	})
	hold := make(chan struct{})
	u.plugin.hold = hold
	u.start()
	_, id := u.listening("org-a")
	var prepared store.Runner
	u.wait("1 runner in AddInstance, 1 prepared", func() (bool, string) {
		added, _ := u.plugin.counts()
		n := 0
		for _, r := range u.runners(id) {
			if r.State == store.StatePending && u.gh.registered(r.Name) {
				prepared, n = r, n+1
			}
		}
		return added == 1 && n == 1, fmt.Sprint(added, u.states(id))
	})
	u.setTargets()
	u.wait("the prepared runner and the one waiting to be prepared canceled", func() (bool, string) {
		hs, _ := u.st.ListHistory(store.HistoryFilter{})
		n := 0
		for _, h := range hs {
			if h.Reason == "canceled" {
				n++
			}
		}
		return n == 2 && u.history(prepared.Name) == "canceled", fmt.Sprint(n, u.states(id))
	})
	if u.gh.registered(prepared.Name) {
		t.Errorf("the prepared runner %s is still registered on GitHub", prepared.Name)
	}
	close(hold)
	u.wait("the started runner retired with its target", func() (bool, string) {
		u.c.wakeReaper()
		return len(u.runners(id)) == 0, fmt.Sprint(u.states(id))
	})
	u.plugin.mu.Lock()
	defer u.plugin.mu.Unlock()
	if slices.Contains(u.plugin.added, prepared.Name) {
		t.Errorf("AddInstance was called for the canceled runner %s", prepared.Name)
	}
}

// TestReadinessFollowsTheSession: a listener whose polls keep failing
// makes the controller not ready, naming its scope; it is ready again
// once polls succeed.
func TestReadinessFollowsTheSession(t *testing.T) {
	u := newUnit(t, []string{"org-a", "org-b"}, nil)
	u.start()
	u.listening("org-a")
	sessB, idB := u.listening("org-b")
	u.wait("ready", func() (bool, string) { ok, why := u.c.Ready(); return ok, fmt.Sprint(why) })
	for range 3 {
		sessB.fail(fmt.Errorf("get message: %w", errors.New("500 Internal Server Error")))
	}
	u.wait("not ready because of org-b", func() (bool, string) {
		ok, why := u.c.Ready()
		return !ok && len(why) == 1 && why[0].Scope == "org-b", fmt.Sprint(why)
	})
	u.wait("ready again", func() (bool, string) { ok, why := u.c.Ready(); return ok, fmt.Sprint(why) })
	if u.gh.session(idB) == nil {
		t.Error("no session on org-b")
	}
}

// TestRemovedTargetRetiresItsScaleSet: with DeleteScaleSetsOnTargetRemoval
// the scale set of a removed target is deleted on GitHub, and forgotten,
// once it has no runner left; without it, it is kept, marked removed.
func TestRemovedTargetRetiresItsScaleSet(t *testing.T) {
	for _, del := range []bool{false, true} {
		t.Run(fmt.Sprint("delete=", del), func(t *testing.T) {
			u := newUnit(t, []string{"org-a"}, func(c *Config) { c.DeleteScaleSetsOnTargetRemoval = del })
			u.start()
			u.listening("org-a")
			name := github.ScaleSetName("myshoes", "org-a")
			u.setTargets()
			u.wait("the scale set retired", func() (bool, string) {
				u.c.wakeReaper()
				ss, err := u.st.GetScaleSet(target("org-a").ID)
				if del {
					return errors.Is(err, store.ErrNotFound) && u.gh.scaleSetID(name) == 0, fmt.Sprint(err)
				}
				return err == nil && ss.TargetStatus == targetRemoved, fmt.Sprint(ss.TargetStatus, err)
			})
			if !del && u.gh.scaleSetID(name) == 0 {
				t.Error("the scale set was deleted on GitHub without DeleteScaleSetsOnTargetRemoval")
			}
		})
	}
}

// fakeOwnership serves the listed targets whose scope is in mine; set
// announces the change on Changed. It is the leader when leader is set,
// with a hand-over grace of grace.
type fakeOwnership struct {
	mu      sync.Mutex
	mine    map[string]bool
	changed chan struct{}
	leader  bool
	grace   time.Duration
}

func (o *fakeOwnership) Leader() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.leader
}

func (o *fakeOwnership) HandOverGrace() time.Duration { return o.grace }

func (o *fakeOwnership) Changed() <-chan struct{} { return o.changed }

func (o *fakeOwnership) Mine(_ context.Context, listed []myshoes.Target) ([]myshoes.Target, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(listed), func(t myshoes.Target) bool { return !o.mine[t.Scope] }), nil
}

func (o *fakeOwnership) set(scopes ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.mine = map[string]bool{}
	for _, s := range scopes {
		o.mine[s] = true
	}
	select {
	case o.changed <- struct{}{}:
	default:
	}
}

// TestTargetsOwnedElsewhere: with replicas, a listed target another
// replica serves is not served here, and is not "removed": its runners and
// its scale set are left alone. A target handed over to another replica
// stops here (its session closed) with its runners kept; one handed to
// this replica starts, as soon as the ownership announces the change (no
// new read of the target list).
func TestTargetsOwnedElsewhere(t *testing.T) {
	own := &fakeOwnership{changed: make(chan struct{}, 1)}
	own.set("org-a")
	u := newUnit(t, []string{"org-a", "org-b"}, func(c *Config) {
		c.Ownership = own
		c.BootstrapTimeout = time.Hour // org-b's runner is past it: only ownership keeps it
		c.SyncInterval = time.Hour     // one read, at start: the hand-over comes through Changed
	})
	// org-b's runner and scale set record, as the replica serving it wrote them.
	if err := u.st.PutScaleSet(store.ScaleSet{TargetID: target("org-b").ID, Scope: "org-b", Name: "myshoes-org-b", ScaleSetID: 77}); err != nil {
		t.Fatal(err)
	}
	u.seed("myshoes-of-b", "org-b", 77, store.StateIdle, 2*time.Hour, func(r *store.Runner) { r.CloudID = "cloud-b" })
	u.start()
	sessA, idA := u.listening("org-a")
	sessA.deliver(1, 1, nil)
	u.wait("org-a's runner idle", func() (bool, string) { return u.states(idA)[store.StateIdle] == 1, fmt.Sprint(u.states(idA)) })
	if err := u.c.reap(t.Context()); err != nil { // a whole pass with org-b served elsewhere
		t.Fatal(err)
	}
	if u.gh.scaleSetID("myshoes-org-b") != 0 || u.c.isServedTarget(target("org-b").ID) {
		t.Fatal("org-b, served by another replica, is served here too")
	}
	if _, ok := u.runner("myshoes-of-b"); !ok || u.plugin.wasDeleted("cloud-b") {
		t.Fatal("the runner of a target served elsewhere was removed")
	}
	if ss, _ := u.st.GetScaleSet(target("org-b").ID); ss.TargetStatus == targetRemoved {
		t.Fatal("the scale set of a target served elsewhere was marked removed")
	}
	// runners rm of another replica's runner is refused here, before any
	// GitHub call: the owner removes it.
	if err := u.c.RemoveRunner(t.Context(), "myshoes-of-b", false); !errors.Is(err, ErrServedElsewhere) {
		t.Fatalf("remove a runner served elsewhere: %v, want ErrServedElsewhere", err)
	}
	if r, ok := u.runner("myshoes-of-b"); !ok || r.State != store.StateIdle || u.gh.removals() != 0 {
		t.Fatalf("the refused removal changed something: %+v, %d GitHub removals", r, u.gh.removals())
	}

	// org-a goes to another replica, org-b comes here.
	own.set("org-b")
	u.wait("org-a's session closed", func() (bool, string) { return sessA.isClosed(), "" })
	u.listening("org-b")
	if err := u.c.reap(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c := u.states(idA); c[store.StateIdle] != 1 {
		t.Errorf("org-a's runner after the hand-over: %v, want it kept idle for its new owner", c)
	}
	if ss, _ := u.st.GetScaleSet(target("org-a").ID); ss.TargetStatus == targetRemoved {
		t.Error("a target handed over was marked removed")
	}
}

// TestReplicaRecoveryWaitsForTheHandOverGrace: with replicas (a hand-over
// grace), nothing is recovered at start; a configured record that no
// provisioning here owns, which another replica may still be adding, is
// left alone until AddTimeout plus the grace has passed since it last
// changed, and only then becomes unknown-instance.
func TestReplicaRecoveryWaitsForTheHandOverGrace(t *testing.T) {
	own := &fakeOwnership{changed: make(chan struct{}, 1), leader: true, grace: 10 * time.Second}
	own.set("org-a")
	u := newUnit(t, []string{"org-a"}, func(c *Config) {
		c.Ownership = own
		c.AddTimeout = time.Minute
	})
	// The store stamps records with the unit's clock: old last changed
	// 75s ago, young 30s ago.
	old := u.seed("myshoes-old", "org-a", 1, store.StateConfigured, 0, nil)
	u.clock.advance(45 * time.Second)
	young := u.seed("myshoes-young", "org-a", 1, store.StateConfigured, 0, nil)
	u.clock.advance(30 * time.Second)
	u.start()
	u.listening("org-a")
	u.wait("the record past the grace undone", func() (bool, string) {
		r, _ := u.runner(old.Name)
		return r.State == store.StateUnknownInstance, string(r.State)
	})
	if r, _ := u.runner(young.Name); r.State != store.StateConfigured {
		t.Fatalf("a record inside AddTimeout + grace is %s, want it left configured (another replica may be adding it)", r.State)
	}
	u.clock.advance(45 * time.Second) // 75s: past 1m + 10s
	u.wait("the young record undone past the grace", func() (bool, string) {
		r, _ := u.runner(young.Name)
		return r.State == store.StateUnknownInstance, string(r.State)
	})
}

// TestRemovedTargetsAreTheLeaders: with replicas, the runners of a target
// no longer listed are the leader's to remove; another replica leaves
// them alone.
func TestRemovedTargetsAreTheLeaders(t *testing.T) {
	own := &fakeOwnership{changed: make(chan struct{}, 1)}
	own.set("org-a")
	u := newUnit(t, []string{"org-a"}, func(c *Config) { c.Ownership = own })
	gone := myshoes.Target{ID: "removed-target", Scope: "org-gone"}
	u.seed("myshoes-of-gone", "org-gone", 77, store.StateIdle, time.Hour, func(r *store.Runner) {
		r.TargetID, r.CloudID = gone.ID, "cloud-gone"
	})
	u.start()
	u.listening("org-a")
	if err := u.c.reap(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := u.runner("myshoes-of-gone"); !ok || u.plugin.wasDeleted("cloud-gone") {
		t.Fatal("a replica that is not the leader removed the runner of a removed target")
	}
	own.mu.Lock()
	own.leader = true
	own.mu.Unlock()
	own.set("org-a") // announces the change: the leadership is read again
	u.wait("the leader removed the removed target's runner", func() (bool, string) {
		if err := u.c.reap(t.Context()); err != nil {
			return false, err.Error()
		}
		_, ok := u.runner("myshoes-of-gone")
		return !ok && u.plugin.wasDeleted("cloud-gone"), ""
	})
}

// TestRecordInstanceAfterHandOver: the instance an old owner learned after
// losing the target is recorded for the new owner: a record still waiting
// for it becomes idle, one given up on (unknown-instance) goes to deleting
// so that its instance is deleted, a busy one gets the cloud ID, and one
// that has a cloud ID is left alone.
func TestRecordInstanceAfterHandOver(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	cases := []struct {
		state, want store.RunnerState
		cloudID     string
	}{
		{store.StateConfigured, store.StateIdle, ""},
		{store.StateUnknownInstance, store.StateDeleting, ""},
		{store.StateBusy, store.StateBusy, ""},
		{store.StateIdle, store.StateIdle, "cloud-known"},
	}
	for _, tc := range cases {
		name := "myshoes-" + string(tc.state)
		u.seed(name, "org-a", 1, tc.state, time.Minute, func(r *store.Runner) { r.CloudID = tc.cloudID })
		_, err := u.c.recordInstanceAfterHandOver(name, func(r *store.Runner) error { r.CloudID = "cloud-late"; return nil })
		r, _ := u.runner(name)
		wantID := "cloud-late"
		if tc.cloudID != "" {
			wantID = tc.cloudID
			if !errors.Is(err, errNoChange) {
				t.Errorf("%s with a cloud ID: %v, want errNoChange", tc.state, err)
			}
		} else if err != nil {
			t.Errorf("%s: %v", tc.state, err)
		}
		if r.State != tc.want || r.CloudID != wantID {
			t.Errorf("%s: now %s with cloud ID %q, want %s with %q", tc.state, r.State, r.CloudID, tc.want, wantID)
		}
	}
}

// TestInheritedRecordsDoNotHoldJobs: with replicas, the pending and
// configured records a dead replica left on a target this one took over
// are not counted as runners to come: a job assigned meanwhile gets a new
// runner at once, not after the hand-over grace.
func TestInheritedRecordsDoNotHoldJobs(t *testing.T) {
	own := &fakeOwnership{changed: make(chan struct{}, 1), leader: true, grace: time.Hour}
	own.set("org-a")
	u := newUnit(t, []string{"org-a"}, func(c *Config) { c.Ownership = own })
	u.seed("myshoes-of-the-dead", "org-a", 1, store.StateConfigured, 0, nil)
	u.start()
	sess, id := u.listening("org-a")
	sess.deliver(1, 1, nil)
	u.wait("a new runner idle for the job", func() (bool, string) {
		c := u.states(id)
		return c[store.StateIdle] == 1, fmt.Sprint(c)
	})
	if r, _ := u.runner("myshoes-of-the-dead"); r.State != store.StateConfigured {
		t.Errorf("the inherited record is %s, want it left configured inside the grace", r.State)
	}
}

// TestStopDuringSessionCreate: a target stopped while its session is being
// created (a hand-over to another replica right after a start) does not
// leave a session on GitHub that nobody knows, which would answer every
// other owner 409 until GitHub expires it: the create is let finish, and
// its session closed.
func TestStopDuringSessionCreate(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, nil)
	gate := make(chan struct{})
	u.gh.mu.Lock()
	u.gh.openGate = gate
	u.gh.mu.Unlock()
	u.start()
	u.wait("the scale set created", func() (bool, string) { return u.gh.scaleSetID("myshoes-org-a") != 0, "" })
	u.setTargets() // the target goes while OpenSession waits
	u.wait("the worker stopping", func() (bool, string) { return strings.Contains(u.logs.String(), `msg="stop target"`), "" })
	close(gate)
	u.wait("the session created during the stop closed", func() (bool, string) {
		id := u.gh.scaleSetID("myshoes-org-a")
		u.gh.mu.Lock()
		s := u.gh.sessions[id]
		u.gh.mu.Unlock()
		return s != nil && s.isClosed(), fmt.Sprint(s != nil)
	})
}

// TestNextRunnerPreparedAfterTheRefillIsSent: a prepared runner keeps its
// prepare slot until its AddInstance is sent, so the runner prepared in
// its place (a JIT config, a setup script) does not compete with the
// refill for the CPU when a wave of AddInstance calls ends. With one slot
// each: while the first runner waits for a plugin process, the other two
// wait to be prepared, and neither is registered on GitHub.
func TestNextRunnerPreparedAfterTheRefillIsSent(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, func(c *Config) {
		c.MinRunners = 3
		c.ProvisionConcurrency = 1
	})
	ready := make(chan struct{})
	u.plugin.ready = ready
	u.start()
	_, id := u.listening("org-a")
	<-ready // the first runner's AddInstance, before it is sent
	u.wait("the other two runners waiting to be prepared", func() (bool, string) {
		return u.c.prepareSlots.waiting(id) == 2, fmt.Sprint(u.c.prepareSlots.waiting(id), u.states(id))
	})
	registered := 0
	for _, r := range u.runners(id) {
		if u.gh.registered(r.Name) {
			registered++
		}
	}
	if registered != 1 {
		t.Errorf("%d runners registered on GitHub while the first AddInstance is unsent, want 1: %v", registered, u.states(id))
	}
	go func() {
		// The first call goes on, then each of the next two as it comes.
		for i := range 3 {
			if i > 0 {
				select {
				case <-ready:
				case <-t.Context().Done():
					return
				}
			}
			select {
			case ready <- struct{}{}:
			case <-t.Context().Done():
				return
			}
		}
	}()
	u.wait("3 AddInstance calls", func() (bool, string) {
		added, _ := u.plugin.counts()
		return added == 3, fmt.Sprint(added, u.states(id))
	})
}

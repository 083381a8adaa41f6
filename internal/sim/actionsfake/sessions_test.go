package actionsfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/google/uuid"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// sessionURL is the Actions service URL of a session.
func (f *fake) sessionURL(ssID int, sid string) string {
	return f.actionsURL(fmt.Sprintf("_apis/runtime/runnerscalesets/%d/sessions/%s", ssID, sid))
}

// requireGone checks what GitHub answers about a session it no longer has:
// the queue 401 (poll, ack and acquirejobs), the refresh 404
// RunnerAdminException and the DELETE 400 RunnerScaleSetSessionExpiredException.
func requireGone(t *testing.T, f *fake, ssID int, sess scaleset.RunnerScaleSetSession) {
	t.Helper()
	queue := "Bearer " + sess.MessageQueueAccessToken
	if st, _ := poll(t, sess, 0); st != http.StatusUnauthorized {
		t.Fatalf("poll: status %d, want 401", st)
	}
	var e actionsError
	if st := call(t, "DELETE", sess.MessageQueueURL+"/1", queue, nil, &e); st != http.StatusUnauthorized || !strings.Contains(e.TypeName, "VssUnauthorizedException") {
		t.Fatalf("ack: status %d, %+v; want 401 VssUnauthorizedException", st, e)
	}
	acquire := f.actionsURL(fmt.Sprintf("_apis/runtime/runnerscalesets/%d/acquirejobs", ssID))
	if st := call(t, "POST", acquire, queue, []int64{1}, nil); st != http.StatusUnauthorized {
		t.Fatalf("acquirejobs: status %d, want 401", st)
	}
	admin := "Bearer " + f.adminToken(t, "org-a")
	e = actionsError{}
	if st := call(t, "PATCH", f.sessionURL(ssID, sess.SessionID.String()), admin, nil, &e); st != http.StatusNotFound ||
		e.TypeName != "RunnerAdminException" || e.Message != "runner referenced a session ID that doesn't exist in redis" {
		t.Fatalf("refresh: status %d, %+v; want 404 RunnerAdminException", st, e)
	}
	e = actionsError{}
	st := call(t, "DELETE", f.sessionURL(ssID, sess.SessionID.String()), admin, nil, &e)
	wantMsg := fmt.Sprintf("The session identifier %s is not valid.", sess.SessionID)
	if st != http.StatusBadRequest || e.Message != wantMsg ||
		!strings.HasPrefix(e.TypeName, "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionExpiredException") ||
		e.TypeKey != "RunnerScaleSetSessionExpiredException" {
		t.Fatalf("delete: status %d, %+v; want 400 RunnerScaleSetSessionExpiredException", st, e)
	}
}

func TestSessionExpiry(t *testing.T) {
	var skew atomic.Int64
	advance := func(d time.Duration) { skew.Add(int64(d)) }
	f := newFake(t, func(c *Config) {
		c.SessionTTL = time.Minute
		c.PollHold = time.Second
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	c, ss, sc := sessionFor(t, f)
	first := sc.Session()
	live := func() *SessionState { return f.srv.State().ScaleSets[0].Session }

	// The TTL runs from creation...
	advance(50 * time.Second)
	if live() == nil {
		t.Fatal("session expired before its TTL")
	}
	// ...then from the end of the last poll (one answered at once, with a job).
	f.queue(t, JobsRequest{Scope: "org-a"})
	st, msg := poll(t, first, 0)
	if st != http.StatusOK {
		t.Fatalf("poll: status %d", st)
	}
	advance(50 * time.Second)
	if live() == nil {
		t.Fatal("session expired 50s after a poll; the TTL must run from the poll's end")
	}

	// A poll in progress counts as polling, however long it is held.
	held := make(chan int, 1)
	go func() {
		st, _ := poll(t, first, msg.MessageID) // acks the message, then holds
		held <- st
	}()
	testkit.Eventually(t, 5*time.Second, "the poll to be held", func() bool { s := live(); return s != nil && s.Polls == 1 })
	advance(2 * time.Minute)
	if live() == nil {
		t.Fatal("session expired while a poll was held")
	}
	if st := <-held; st != http.StatusAccepted {
		t.Fatalf("held poll: status %d, want 202", st)
	}
	advance(59 * time.Second)
	if live() == nil {
		t.Fatal("session expired 59s after its poll ended")
	}
	advance(2 * time.Second)
	got := f.srv.State().ScaleSets[0]
	if got.Session != nil || got.Evictions != 1 || got.SessionsCreated != 1 {
		t.Fatalf("after the TTL: %+v; want no session, 1 eviction, 1 session created", got)
	}

	// The library's refresh dies on the 404 (actions/scaleset#123).
	if _, err := sc.GetMessage(t.Context(), 0, 10); err == nil || !strings.Contains(err.Error(), "RunnerAdminException") {
		t.Fatalf("GetMessage on an expired session: err = %v, want the refresh's 404 RunnerAdminException", err)
	}
	requireGone(t, f, ss.ID, first)
	if err := sc.Close(t.Context()); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("Close of an expired session: err = %v, want a 400", err)
	}

	// The scale set is free: a new session, no 409.
	sc2, err := c.MessageSessionClient(t.Context(), ss.ID, "host-2")
	if err != nil {
		t.Fatalf("session after expiry: %v", err)
	}
	got = f.srv.State().ScaleSets[0]
	if got.Session == nil || got.Session.ID != sc2.Session().SessionID.String() || got.SessionsCreated != 2 || got.Conflicts != 0 {
		t.Fatalf("after a new session: %+v", got)
	}
	// A session that never existed is still a 404.
	admin := "Bearer " + f.adminToken(t, "org-a")
	if st := call(t, "DELETE", f.sessionURL(ss.ID, uuid.NewString()), admin, nil, nil); st != http.StatusNotFound {
		t.Fatalf("delete of an unknown session: status %d, want 404", st)
	}
	// Expiry is no client mistake.
	f.requireNoViolations(t)
	if err := sc2.Close(t.Context()); err != nil {
		t.Fatalf("close: %v", err)
	}

	// Negative: sessions never expire.
	var skewG atomic.Int64
	g := newFake(t, func(c *Config) {
		c.SessionTTL = -1
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skewG.Load())) }
	})
	sessionFor(t, g)
	skewG.Store(int64(time.Hour))
	if s := g.srv.State().ScaleSets[0]; s.Session == nil || s.Evictions != 0 {
		t.Fatalf("with SessionTTL < 0: %+v", s)
	}
}

func TestEvictSessions(t *testing.T) {
	f, c := newClient(t, func(c *Config) { c.PollHold = 300 * time.Millisecond })
	ctx := t.Context()
	var ids [2]int
	var sess [2]scaleset.RunnerScaleSetSession
	for i := range ids {
		ss, err := c.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{Name: fmt.Sprintf("ss-%d", i), RunnerGroupID: 1})
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		sc, err := c.MessageSessionClient(ctx, ss.ID, "host-1")
		if err != nil {
			t.Fatalf("session: %v", err)
		}
		ids[i], sess[i] = ss.ID, sc.Session()
	}
	// Scale set 0 has an unacked message.
	res := f.queue(t, JobsRequest{Scope: "org-a", Labels: []string{"ss-0"}})
	st, unacked := poll(t, sess[0], 0)
	if st != http.StatusOK {
		t.Fatalf("poll: status %d", st)
	}

	// A poll held on scale set 1 when its session is evicted gets no
	// message, even one queued meanwhile, and ends in a 401.
	held := make(chan int, 1)
	go func() {
		st, _ := poll(t, sess[1], 0)
		held <- st
	}()
	testkit.Eventually(t, 5*time.Second, "the poll to be held", func() bool {
		s := f.srv.State().ScaleSets[1].Session
		return s != nil && s.Polls == 1
	})
	var out EvictResult
	if st := call(t, "POST", f.url+"/_sim/sessions/evict", "", EvictRequest{ScaleSetIDs: []int{ids[1], 999}}, &out); st != http.StatusOK || out.Evicted != 1 {
		t.Fatalf("evict scale set %d: status %d, %+v", ids[1], st, out)
	}
	res1 := f.queue(t, JobsRequest{Scope: "org-a", Labels: []string{"ss-1"}})
	if st := <-held; st != http.StatusUnauthorized {
		t.Fatalf("held poll of an evicted session: status %d, want 401", st)
	}
	requireGone(t, f, ids[1], sess[1])

	// No ids: every live session. Empty body too.
	if n := f.srv.EvictSessions(); n != 1 {
		t.Fatalf("EvictSessions() = %d, want 1", n)
	}
	if st := call(t, "POST", f.url+"/_sim/sessions/evict", "", nil, &out); st != http.StatusOK || out.Evicted != 0 {
		t.Fatalf("evict with nothing live: status %d, %+v", st, out)
	}
	requireGone(t, f, ids[0], sess[0])

	// New sessions get what the evicted ones left: the unacked message and the new job.
	for i, want := range []string{res.JobIDs[0], res1.JobIDs[0]} {
		sc, err := c.MessageSessionClient(ctx, ids[i], "host-2")
		if err != nil {
			t.Fatalf("session after eviction: %v", err)
		}
		msg, err := sc.GetMessage(ctx, 0, 10)
		if err != nil || msg == nil || len(msg.JobAssignedMessages) != 1 || msg.JobAssignedMessages[0].JobID != want {
			t.Fatalf("scale set %d, new session: message %+v, %v; want job %s", ids[i], msg, err, want)
		}
		if i == 0 && msg.MessageID != unacked.MessageID {
			t.Fatalf("message %d, want the unacked %d again", msg.MessageID, unacked.MessageID)
		}
	}
	for _, s := range f.srv.State().ScaleSets {
		if s.Evictions != 1 || s.SessionsCreated != 2 || s.Session == nil {
			t.Fatalf("scale set %+v: want 1 eviction, 2 sessions created, a live session", s)
		}
	}
	f.requireNoViolations(t)

	// A bad body is refused.
	req, err := http.NewRequest("POST", f.url+"/_sim/sessions/evict", strings.NewReader(`{"scale_set_ids":"x"}`))
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("evict: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("evict with a bad body: status %d", resp.StatusCode)
	}
}

// A token the client itself replaced or whose session it deleted is still
// a violation; only the service's evictions are not.
func TestStaleTokenStillAViolation(t *testing.T) {
	f := newFake(t, nil)
	_, ss, sc := sessionFor(t, f)
	old := sc.Session()
	if err := sc.Close(t.Context()); err != nil {
		t.Fatalf("close: %v", err)
	}
	acquire := f.actionsURL(fmt.Sprintf("_apis/runtime/runnerscalesets/%d/acquirejobs", ss.ID))
	if st := call(t, "POST", acquire, "Bearer "+old.MessageQueueAccessToken, []int64{}, nil); st != http.StatusUnauthorized {
		t.Fatalf("acquirejobs with a deleted session's token: status %d", st)
	}
	f.requireViolation(t, ViolationStaleToken)
	var st State
	if code := call(t, "GET", f.url+"/_sim/state", "", nil, &st); code != http.StatusOK {
		t.Fatalf("state: %d", code)
	}
	raw, _ := json.Marshal(st.ScaleSets[0])
	for _, key := range []string{`"sessions_created":1`, `"evictions":0`, `"peak_assigned":0`, `"session":null`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("scale set state %s lacks %s", raw, key)
		}
	}
}

// A poll with the token of a session its client just deleted answers 404;
// it is a violation only once the poll could not have been sent before the
// deletion (after inFlightGrace): a stopping listener cancels its long poll
// and deletes the session, and the poll may arrive second.
func TestPollRightAfterDeleteIsNoViolation(t *testing.T) {
	var offset atomic.Int64
	f := newFake(t, func(c *Config) { c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) } })
	_, _, sc := sessionFor(t, f)
	old := sc.Session()
	if err := sc.Close(t.Context()); err != nil {
		t.Fatalf("close: %v", err)
	}
	if st, _ := poll(t, old, 0); st != http.StatusNotFound {
		t.Fatalf("poll of a deleted session: status %d, want 404", st)
	}
	f.requireNoViolations(t)
	offset.Add(int64(2 * inFlightGrace))
	if st, _ := poll(t, old, 0); st != http.StatusNotFound {
		t.Fatalf("late poll of a deleted session: status %d, want 404", st)
	}
	f.requireViolation(t, ViolationStaleToken)
}

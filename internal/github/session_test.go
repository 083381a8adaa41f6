package github

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
)

// queueJobs queues jobs for acme on the fake.
func (f *fakeGitHub) queueJobs(t *testing.T, n int) {
	t.Helper()
	if _, err := f.srv.QueueJobs(actionsfake.JobsRequest{Scope: "acme", Count: n}); err != nil {
		t.Fatal(err)
	}
}

// withQueueQuery gives the fake's message queue URLs a query of their own
// (shard=3), which a client must keep.
func (f *fakeGitHub) withQueueQuery() {
	for _, pattern := range []string{"POST " + scaleSetsPath + "/{id}/sessions", "PATCH " + scaleSetsPath + "/{id}/sessions/{sid}"} {
		f.route(pattern, func(w http.ResponseWriter, r *http.Request) {
			rec := f.answer(r)
			var sess map[string]any
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &sess) != nil {
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
				return
			}
			sess["messageQueueUrl"] = sess["messageQueueUrl"].(string) + "?shard=3"
			writeJSON(w, http.StatusOK, sess)
		})
	}
}

// pollWith answers every poll of the message queue with h.
func (f *fakeGitHub) pollWith(h http.HandlerFunc) { f.route("GET /_broker/{id}/{sid}/messages", h) }

func TestCreateSession(t *testing.T) {
	f, p := newFakeProvider(t)
	id := newScaleSet(t, p, "acme", "shoes-acme")
	f.queueJobs(t, 2) // assigned to the scale set: the session counts them
	s, err := p.CreateSession(testCtx(t), "acme", id, "host-1")
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}

	var body map[string]any
	if err := json.Unmarshal(f.requests("POST", scaleSetPath(id, "/sessions"))[0].body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"sessionId": "00000000-0000-0000-0000-000000000000", "ownerName": "host-1"}
	if !reflect.DeepEqual(body, want) {
		t.Fatalf("request body = %v, want %v", body, want)
	}
	if got := f.srv.State().ScaleSets[0].Session; got == nil || s.ID() != got.ID {
		t.Fatalf("ID = %q, the fake's session %+v", s.ID(), got)
	}
	if st := s.Statistics(); st.TotalAvailableJobs != 0 || st.TotalAssignedJobs != 2 {
		t.Fatalf("Statistics = %+v, want 2 assigned", st)
	}
}

func TestCreateSessionConflict(t *testing.T) {
	f, p := newFakeProvider(t)
	first := openSession(t, p)
	_, err := p.CreateSession(testCtx(t), "acme", first.ScaleSetID(), "host-2")
	if !errors.Is(err, ErrSessionConflict) {
		t.Fatalf("err = %v, want ErrSessionConflict", err)
	}
	if !strings.Contains(err.Error(), "already has an active session") {
		t.Fatalf("err %q lacks the server's message", err)
	}
	if IsTransient(err) {
		t.Fatal("a conflict is a definite outcome")
	}
	if n := f.count("POST", scaleSetPath(first.ScaleSetID(), "/sessions")); n != 2 {
		t.Fatalf("create called %d times, want 2 (409 is not retried)", n)
	}
}

func TestAdminRequestRenewsRevokedAdminToken(t *testing.T) {
	f, p := newFakeProvider(t)
	id := newScaleSet(t, p, "acme", "shoes-acme")
	if _, err := p.adminConn(testCtx(t), mustScope(t, "acme")); err != nil {
		t.Fatal(err)
	}
	registrations := f.count("POST", registrationPath)
	// The service revokes the cached admin token; the next one works.
	f.fault(t, actionsfake.Fault{Match: "POST .*/sessions$", Status: http.StatusUnauthorized, Times: 1})
	if _, err := p.CreateSession(testCtx(t), "acme", id, "host-1"); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	if n := f.count("POST", scaleSetPath(id, "/sessions")); n != 2 {
		t.Fatalf("create called %d times, want 2 (401, then with the new admin token)", n)
	}
	if n := f.count("POST", registrationPath) - registrations; n != 1 {
		t.Fatalf("runner-registration called %d more times, want 1", n)
	}
}

func TestGetMessageNoMessage(t *testing.T) {
	f := newFake(t)
	f.withQueueQuery()
	p, _ := newProvider(t, f)
	s := openSession(t, p)
	_, token := s.queue()

	msg, err := s.GetMessage(testCtx(t), 41, 10)
	if msg != nil || err != nil {
		t.Fatalf("GetMessage = %v, %v; want nil, nil", msg, err)
	}
	polls := f.requests("GET", queuePath(t, s))
	if len(polls) != 1 {
		t.Fatalf("queue polled %d times, want 1", len(polls))
	}
	r := polls[0]
	checks := map[string][2]string{
		"authorization": {r.header.Get("Authorization"), "Bearer " + token},
		"accept":        {r.header.Get("Accept"), "application/json; api-version=6.0-preview"},
		"capacity":      {r.header.Get("X-ScaleSetMaxCapacity"), "10"},
		"lastMessageId": {r.query.Get("lastMessageId"), "41"},
		"queue query":   {r.query.Get("shard"), "3"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
}

func jobMessage(t *testing.T, id int64, entries []map[string]any) map[string]any {
	t.Helper()
	body, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"messageId":   id,
		"messageType": "RunnerScaleSetJobMessages",
		"body":        string(body),
		"statistics":  map[string]any{"totalAvailableJobs": 3, "totalAssignedJobs": 5, "totalRunningJobs": 1},
	}
}

// TestGetMessageParsesEveryEntryType: a local message holds every entry
// type, and one the client does not know.
func TestGetMessageParsesEveryEntryType(t *testing.T) {
	f := newFake(t)
	f.pollWith(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("lastMessageId") {
			t.Errorf("lastMessageId sent for 0")
		}
		writeJSON(w, http.StatusOK, jobMessage(t, 12, []map[string]any{
			{"messageType": "JobAvailable", "runnerRequestId": 101, "jobId": "job-a", "repositoryName": "widgets", "ownerName": "acme",
				"requestLabels": []string{"self-hosted", "shoes-acme"}, "queueTime": "2025-01-02T03:04:05.123Z"},
			{"messageType": "JobAssigned", "runnerRequestId": 102, "jobId": "job-b"},
			{"messageType": "JobStarted", "runnerRequestId": 103, "runnerId": 55, "runnerName": "myshoes-abc"},
			{"messageType": "JobCompleted", "runnerRequestId": 104, "runnerId": 56, "runnerName": "myshoes-def", "result": "canceled"},
			{"messageType": "SomethingNew", "runnerRequestId": 105},
		}))
	})
	p, _ := newProvider(t, f)
	s := openSession(t, p)

	msg, err := s.GetMessage(testCtx(t), 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	if msg.ID != 12 {
		t.Fatalf("ID = %d", msg.ID)
	}
	if len(msg.Available) != 1 || len(msg.Assigned) != 1 || len(msg.Started) != 1 || len(msg.Completed) != 1 {
		t.Fatalf("entries: available %d assigned %d started %d completed %d; want 1 each",
			len(msg.Available), len(msg.Assigned), len(msg.Started), len(msg.Completed))
	}
	a := msg.Available[0]
	if a.RunnerRequestID != 101 || a.JobID != "job-a" || a.RepositoryName != "widgets" || a.MessageType != MessageTypeJobAvailable ||
		len(a.RequestLabels) != 2 || a.QueueTime.IsZero() {
		t.Fatalf("JobAvailable = %+v", a)
	}
	if msg.Assigned[0].RunnerRequestID != 102 {
		t.Fatalf("JobAssigned = %+v", msg.Assigned[0])
	}
	if st := msg.Started[0]; st.RunnerID != 55 || st.RunnerName != "myshoes-abc" || st.RunnerRequestID != 103 {
		t.Fatalf("JobStarted = %+v", st)
	}
	if c := msg.Completed[0]; c.Result != "canceled" || c.RunnerName != "myshoes-def" || c.RunnerRequestID != 104 {
		t.Fatalf("JobCompleted = %+v", c)
	}
	if msg.Statistics == nil || msg.Statistics.TotalAssignedJobs != 5 {
		t.Fatalf("Statistics = %+v", msg.Statistics)
	}
	if s.Statistics().TotalAssignedJobs != 5 {
		t.Fatal("session statistics not updated from the message")
	}
}

func TestGetMessageUnsupportedType(t *testing.T) {
	f := newFake(t)
	f.pollWith(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"messageId": 9, "messageType": "SomethingElse", "body": ""})
	})
	p, _ := newProvider(t, f)
	s := openSession(t, p)
	_, err := s.GetMessage(testCtx(t), 0, 1)
	var ue *UnsupportedMessageError
	if !errors.As(err, &ue) || ue.MessageID != 9 {
		t.Fatalf("err = %v, want UnsupportedMessageError for message 9", err)
	}
}

// TestGetMessagePollTimeout: PollTimeout bounds a poll the queue does not
// answer (through the poll's context, not the client's Timeout): the poll
// fails as a transient timeout while the caller's context lives on. The
// wait at a closed rate-limit gate is not part of it.
func TestGetMessagePollTimeout(t *testing.T) {
	f := newFake(t)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	var polls atomic.Int32
	f.pollWith(func(w http.ResponseWriter, r *http.Request) {
		switch polls.Add(1) {
		case 1: // closes the gate for a second
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		case 2: // answers at once, once the gate opened
			w.WriteHeader(http.StatusAccepted)
		default: // never answers
			select {
			case <-r.Context().Done():
			case <-hang:
			}
		}
	})
	const pollTimeout = 300 * time.Millisecond
	p, _ := newProvider(t, f, func(c *Config) { c.PollTimeout = pollTimeout })
	s := openSession(t, p)
	ctx := testCtx(t)

	if _, err := s.GetMessage(ctx, 0, 1); !IsRateLimited(err) {
		t.Fatalf("first GetMessage = %v; want rate-limited", err)
	}
	start := time.Now()
	if msg, err := s.GetMessage(ctx, 0, 1); msg != nil || err != nil {
		t.Fatalf("GetMessage after the gate = %v, %v; want no message (the gate's wait is not the poll's)", msg, err)
	}
	if waited := time.Since(start); waited < pollTimeout {
		t.Fatalf("the second poll waited %v; want the gate's second", waited)
	}

	_, err := s.GetMessage(ctx, 0, 1)
	if !errors.Is(err, context.DeadlineExceeded) || !IsTransient(err) {
		t.Fatalf("unanswered GetMessage = %v; want a transient deadline error", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the caller's context ended: %v", ctx.Err())
	}
}

// TestGetMessageUnauthorized: a poll answered 401 refreshes the session
// once and polls again with the new token; a second 401 is ErrUnauthorized.
// A poll is never retried otherwise.
func TestGetMessageUnauthorized(t *testing.T) {
	tests := []struct {
		name   string
		status int
		times  int // of the fault; 0: every poll
		polls  int
		check  func(t *testing.T, msg *Message, err error)
	}{
		{"refreshed", http.StatusUnauthorized, 1, 2, func(t *testing.T, msg *Message, err error) {
			if err != nil || msg == nil || len(msg.Assigned) != 1 {
				t.Fatalf("GetMessage = %+v, %v; want the job", msg, err)
			}
		}},
		{"unauthorized after the refresh", http.StatusUnauthorized, 0, 2, func(t *testing.T, _ *Message, err error) {
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("err = %v, want ErrUnauthorized", err)
			}
		}},
		{"server error is not retried", http.StatusServiceUnavailable, 0, 1, func(t *testing.T, _ *Message, err error) {
			if err == nil || !IsTransient(err) || errors.Is(err, ErrNotFound) {
				t.Fatalf("err = %v, want a transient error", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, p := newFakeProvider(t)
			s := openSession(t, p)
			f.queueJobs(t, 1)
			_, first := s.queue()
			f.fault(t, actionsfake.Fault{Match: "GET /_broker/", Status: tt.status, Times: tt.times})

			msg, err := s.GetMessage(testCtx(t), 0, 1)
			tt.check(t, msg, err)
			polls := f.requests("GET", queuePath(t, s))
			if len(polls) != tt.polls {
				t.Fatalf("polled %d times, want %d", len(polls), tt.polls)
			}
			if n := f.count("PATCH", sessionPath(s)); n != tt.polls-1 {
				t.Fatalf("refresh called %d times, want %d", n, tt.polls-1)
			}
			_, now := s.queue()
			if tt.polls == 2 && (polls[0].header.Get("Authorization") != "Bearer "+first || polls[1].header.Get("Authorization") != "Bearer "+now || now == first) {
				t.Fatal("the second poll did not use the refreshed token")
			}
		})
	}
}

func TestDeleteMessage(t *testing.T) {
	f := newFake(t)
	f.withQueueQuery()
	p, _ := newProvider(t, f)
	s := openSession(t, p)
	f.queueJobs(t, 1)
	msg, err := s.GetMessage(testCtx(t), 0, 1)
	if err != nil || msg == nil {
		t.Fatalf("GetMessage = %+v, %v", msg, err)
	}
	f.fault(t, actionsfake.Fault{Match: "DELETE /_broker/", Status: http.StatusUnauthorized, Times: 1})

	if err := s.DeleteMessage(testCtx(t), msg.ID); err != nil {
		t.Fatal(err)
	}
	deletes := f.requests("DELETE", queuePath(t, s)+"/"+strconv.FormatInt(msg.ID, 10))
	if len(deletes) != 2 {
		t.Fatalf("delete called %d times, want 2 (401, refresh, retry)", len(deletes))
	}
	for _, d := range deletes {
		if d.query.Get("shard") != "3" {
			t.Errorf("queue query lost: %v", d.query)
		}
	}
	if n := f.count("PATCH", sessionPath(s)); n != 1 {
		t.Fatalf("refresh called %d times, want 1", n)
	}
}

func TestAcquireJobsUsesQueueToken(t *testing.T) {
	f, p := newFakeProvider(t, func(c *actionsfake.Config) { c.Acquire = true })
	s := openSession(t, p)
	f.queueJobs(t, 2)
	msg, err := s.GetMessage(testCtx(t), 0, 10)
	if err != nil || msg == nil || len(msg.Available) != 2 {
		t.Fatalf("GetMessage = %+v, %v; want 2 jobs available", msg, err)
	}
	want := []int64{msg.Available[0].RunnerRequestID}

	ids, err := s.AcquireJobs(testCtx(t), want)
	if err != nil || !reflect.DeepEqual(ids, want) {
		t.Fatalf("AcquireJobs = %v, %v; want %v", ids, err, want)
	}
	if ids, err := s.AcquireJobs(testCtx(t), nil); ids != nil || err != nil {
		t.Fatalf("empty AcquireJobs = %v, %v", ids, err)
	}
	calls := f.requests("POST", scaleSetPath(s.ScaleSetID(), "/acquirejobs"))
	if len(calls) != 1 {
		t.Fatalf("acquirejobs called %d times, want 1", len(calls))
	}
	_, token := s.queue()
	var sent []int64
	if c := calls[0]; c.header.Get("Authorization") != "Bearer "+token || c.query.Get("api-version") != "6.0-preview" ||
		json.Unmarshal(c.body, &sent) != nil || !reflect.DeepEqual(sent, want) {
		t.Fatalf("acquirejobs sent %s with api-version %q, the queue token: %v", c.body, c.query.Get("api-version"), c.header.Get("Authorization") == "Bearer "+token)
	}
}

func TestDeleteSession(t *testing.T) {
	fault := func(status int) func(*testing.T, *fakeGitHub, *Session) {
		return func(t *testing.T, f *fakeGitHub, _ *Session) {
			f.fault(t, actionsfake.Fault{Match: "DELETE .*/sessions/", Status: status, EmptyBody: status == http.StatusGone})
		}
	}
	tests := []struct {
		name    string
		before  func(*testing.T, *fakeGitHub, *Session)
		wantErr bool
	}{
		{"deleted", nil, false},
		{"already gone", func(t *testing.T, _ *fakeGitHub, s *Session) {
			if err := s.Close(testCtx(t)); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"gone for good", fault(http.StatusGone), false},
		// What GitHub answers for an expired or evicted session
		// (actions-runner-controller#4285).
		{"expired or evicted", func(t *testing.T, f *fakeGitHub, _ *Session) { f.srv.EvictSessions() }, false},
		{"another bad request", fault(http.StatusBadRequest), true},
		{"server error", fault(http.StatusInternalServerError), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, p := newFakeProvider(t)
			s := openSession(t, p)
			if tt.before != nil {
				tt.before(t, f, s)
			}
			sent := f.count("DELETE", sessionPath(s))
			err := p.DeleteSession(testCtx(t), "acme", s.ScaleSetID(), s.ID())
			if (err != nil) != tt.wantErr {
				t.Fatalf("DeleteSession err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.name == "server error" && !IsTransient(err) {
				t.Fatalf("a 500 must be transient: %v", err)
			}
			if f.count("DELETE", sessionPath(s)) == sent {
				t.Fatal("no DELETE sent")
			}
		})
	}
}

// TestEvictedSession: after GitHub evicts a session, the poll answers 401
// and the refresh 404 ("doesn't exist"): GetMessage reports ErrSessionGone,
// a definite outcome, after one refresh.
func TestEvictedSession(t *testing.T) {
	f, p := newFakeProvider(t)
	s := openSession(t, p)
	f.srv.EvictSessions()
	msg, err := s.GetMessage(testCtx(t), 0, 5)
	if msg != nil || !errors.Is(err, ErrSessionGone) || IsTransient(err) {
		t.Fatalf("GetMessage = %v, %v; want ErrSessionGone, not transient", msg, err)
	}
	if n := f.count("PATCH", sessionPath(s)); n != 1 {
		t.Fatalf("refreshed %d times, want 1", n)
	}
}

// TestEmptyMessage: a poll may answer 200 with an empty body, which means
// no message (actions-runner-controller#4285).
func TestEmptyMessage(t *testing.T) {
	for name, body := range map[string]string{"empty": "", "whitespace": "\r\n", "bom only": "\xef\xbb\xbf"} {
		t.Run(name, func(t *testing.T) {
			f := newFake(t)
			f.pollWith(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte(body))
			})
			p, _ := newProvider(t, f)
			s := openSession(t, p)
			if msg, err := s.GetMessage(testCtx(t), 0, 5); msg != nil || err != nil {
				t.Fatalf("GetMessage = %+v, %v; want no message, no error", msg, err)
			}
		})
	}
}

func TestDeleteSessionRejectsBadID(t *testing.T) {
	f, p := newFakeProvider(t)
	if err := p.DeleteSession(testCtx(t), "acme", 7, "../../x"); err == nil {
		t.Fatal("want an error for a non-UUID session ID")
	}
	if f.total() != 0 {
		t.Fatal("a request was sent")
	}
}

func TestSessionClose(t *testing.T) {
	f, p := newFakeProvider(t)
	s := openSession(t, p)
	if err := s.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if f.count("DELETE", sessionPath(s)) != 1 {
		t.Fatal("session not deleted")
	}
}

package github

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	testScaleSetID = 7
	testSessionID  = "5f0c6a7e-8d4b-4c3a-9b1e-2f3d4c5b6a79"
	queueToken1    = "QUEUEtoken-one"
	queueToken2    = "QUEUEtoken-two"
	sessionsPath   = "/tenant/_apis/runtime/runnerscalesets/7/sessions"
	queuePath      = "/queue/7/messages"
)

func (f *fakeGitHub) sessionJSON(token string) map[string]any {
	return map[string]any{
		"sessionId":               testSessionID,
		"ownerName":               "host-1",
		"runnerScaleSet":          map[string]any{"id": testScaleSetID, "name": "shoes-acme"},
		"messageQueueUrl":         f.srv.URL + queuePath + "?shard=3",
		"messageQueueAccessToken": token,
		"statistics":              map[string]any{"totalAvailableJobs": 1, "totalAssignedJobs": 2},
	}
}

// checkAdmin verifies admin auth and the api-version of an Actions call.
func (f *fakeGitHub) checkAdmin(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Query().Get("api-version") != "6.0-preview" {
		f.t.Errorf("%s %s: api-version = %q", r.Method, r.URL.Path, r.URL.Query().Get("api-version"))
	}
	f.mu.Lock()
	tok := f.adminToken
	f.mu.Unlock()
	return f.checkBearer(w, r, tok)
}

// sessionRoutes serves create (token 1), refresh (token 2) and delete.
func (f *fakeGitHub) sessionRoutes() {
	f.route("POST", sessionsPath, func(w http.ResponseWriter, r *http.Request) {
		if f.checkAdmin(w, r) {
			writeJSON(w, http.StatusOK, f.sessionJSON(queueToken1))
		}
	})
	f.route("PATCH", sessionsPath+"/"+testSessionID, func(w http.ResponseWriter, r *http.Request) {
		if f.checkAdmin(w, r) {
			writeJSON(w, http.StatusOK, f.sessionJSON(queueToken2))
		}
	})
	f.route("DELETE", sessionsPath+"/"+testSessionID, func(w http.ResponseWriter, r *http.Request) {
		if f.checkAdmin(w, r) {
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

func openSession(t *testing.T, f *fakeGitHub, p *Provider) *Session {
	t.Helper()
	s, err := p.CreateSession(testCtx(t), "acme", testScaleSetID, "host-1")
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return s
}

func TestCreateSession(t *testing.T) {
	f := newFake(t)
	f.sessionRoutes()
	var body map[string]any
	f.route("POST", sessionsPath, func(w http.ResponseWriter, r *http.Request) {
		if !f.checkAdmin(w, r) {
			return
		}
		if err := json.Unmarshal(readBody(t, r), &body); err != nil {
			t.Errorf("body: %v", err)
		}
		writeJSON(w, http.StatusOK, f.sessionJSON(queueToken1))
	})
	p, _ := newProvider(t, f)
	s := openSession(t, f, p)

	want := map[string]any{"sessionId": "00000000-0000-0000-0000-000000000000", "ownerName": "host-1"}
	if !reflect.DeepEqual(body, want) {
		t.Fatalf("request body = %v, want %v", body, want)
	}
	if s.ID() != testSessionID {
		t.Fatalf("ID = %q", s.ID())
	}
	if st := s.Statistics(); st.TotalAvailableJobs != 1 || st.TotalAssignedJobs != 2 {
		t.Fatalf("Statistics = %+v", st)
	}
}

func TestCreateSessionConflict(t *testing.T) {
	f := newFake(t)
	f.route("POST", sessionsPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusConflict, map[string]string{
			"typeName": "TaskAgentSessionConflictException",
			"message":  "The scale set already has an active session for owner other-host.",
		})
	})
	p, _ := newProvider(t, f)
	_, err := p.CreateSession(testCtx(t), "acme", testScaleSetID, "host-1")
	if !errors.Is(err, ErrSessionConflict) {
		t.Fatalf("err = %v, want ErrSessionConflict", err)
	}
	if !strings.Contains(err.Error(), "active session for owner other-host") {
		t.Fatalf("err %q lacks the server's message", err)
	}
	if IsTransient(err) {
		t.Fatal("a conflict is a definite outcome")
	}
	if n := f.count("POST", sessionsPath); n != 1 {
		t.Fatalf("create called %d times, want 1 (409 is not retried)", n)
	}
}

func TestAdminRequestRenewsRevokedAdminToken(t *testing.T) {
	f := newFake(t)
	f.sessionRoutes()
	p, _ := newProvider(t, f)
	ctx := testCtx(t)
	if _, err := p.adminConn(ctx, mustScope(t, "acme")); err != nil {
		t.Fatal(err)
	}
	// The service revokes the cached admin token; the next one works.
	f.mu.Lock()
	f.adminToken = fakeJWT(time.Now().Add(time.Hour), "admin-2")
	f.mu.Unlock()
	openSession(t, f, p)
	if n := f.count("POST", sessionsPath); n != 2 {
		t.Fatalf("create called %d times, want 2 (401, then with the new admin token)", n)
	}
	if n := f.count("POST", "/api/v3/actions/runner-registration"); n != 2 {
		t.Fatalf("runner-registration called %d times, want 2", n)
	}
}

func TestGetMessageNoMessage(t *testing.T) {
	f := newFake(t)
	f.sessionRoutes()
	f.route("GET", queuePath, func(w http.ResponseWriter, r *http.Request) {
		checks := map[string][2]string{
			"authorization": {r.Header.Get("Authorization"), "Bearer " + queueToken1},
			"accept":        {r.Header.Get("Accept"), "application/json; api-version=6.0-preview"},
			"capacity":      {r.Header.Get("X-ScaleSetMaxCapacity"), "10"},
			"lastMessageId": {r.URL.Query().Get("lastMessageId"), "41"},
			"queue query":   {r.URL.Query().Get("shard"), "3"},
		}
		for name, c := range checks {
			if c[0] != c[1] {
				t.Errorf("%s = %q, want %q", name, c[0], c[1])
			}
		}
		w.WriteHeader(http.StatusAccepted)
	})
	p, _ := newProvider(t, f)
	s := openSession(t, f, p)

	msg, err := s.GetMessage(testCtx(t), 41, 10)
	if msg != nil || err != nil {
		t.Fatalf("GetMessage = %v, %v; want nil, nil", msg, err)
	}
	if f.count("GET", queuePath) != 1 {
		t.Fatal("queue not polled once")
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

func TestGetMessageParsesEveryEntryType(t *testing.T) {
	f := newFake(t)
	f.sessionRoutes()
	f.route("GET", queuePath, func(w http.ResponseWriter, r *http.Request) {
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
	s := openSession(t, f, p)

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
	f.sessionRoutes()
	f.route("GET", queuePath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"messageId": 9, "messageType": "SomethingElse", "body": ""})
	})
	p, _ := newProvider(t, f)
	s := openSession(t, f, p)
	_, err := s.GetMessage(testCtx(t), 0, 1)
	var ue *UnsupportedMessageError
	if !errors.As(err, &ue) || ue.MessageID != 9 {
		t.Fatalf("err = %v, want UnsupportedMessageError for message 9", err)
	}
}

func TestGetMessageRefreshesOn401(t *testing.T) {
	f := newFake(t)
	f.sessionRoutes()
	var tokens []string
	f.route("GET", queuePath, func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		tokens = append(tokens, r.Header.Get("Authorization"))
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+queueToken2 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		writeJSON(w, http.StatusOK, jobMessage(t, 3, nil))
	})
	p, _ := newProvider(t, f)
	s := openSession(t, f, p)

	msg, err := s.GetMessage(testCtx(t), 2, 1)
	if err != nil || msg == nil || msg.ID != 3 {
		t.Fatalf("GetMessage = %+v, %v", msg, err)
	}
	if n := f.count("PATCH", sessionsPath+"/"+testSessionID); n != 1 {
		t.Fatalf("refresh called %d times, want 1", n)
	}
	want := []string{"Bearer " + queueToken1, "Bearer " + queueToken2}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !reflect.DeepEqual(tokens, want) {
		t.Fatalf("poll tokens = %v, want %v", tokens, want)
	}
}

func TestGetMessageUnauthorizedAfterRefresh(t *testing.T) {
	f := newFake(t)
	f.sessionRoutes()
	f.route("GET", queuePath, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	})
	p, _ := newProvider(t, f)
	s := openSession(t, f, p)

	_, err := s.GetMessage(testCtx(t), 0, 1)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	if n := f.count("GET", queuePath); n != 2 {
		t.Fatalf("polled %d times, want 2 (once, then once after the refresh)", n)
	}
	if n := f.count("PATCH", sessionsPath+"/"+testSessionID); n != 1 {
		t.Fatalf("refresh called %d times, want 1", n)
	}
}

func TestGetMessageServerErrorIsNotRetried(t *testing.T) {
	f := newFake(t)
	f.sessionRoutes()
	f.route("GET", queuePath, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	p, _ := newProvider(t, f)
	s := openSession(t, f, p)
	_, err := s.GetMessage(testCtx(t), 0, 1)
	if err == nil || !IsTransient(err) || errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	if n := f.count("GET", queuePath); n != 1 {
		t.Fatalf("polled %d times, want 1: the poll is never retried", n)
	}
}

func TestDeleteMessage(t *testing.T) {
	f := newFake(t)
	f.sessionRoutes()
	f.route("DELETE", queuePath+"/12", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("shard") != "3" {
			t.Errorf("queue query lost: %q", r.URL.RawQuery)
		}
		if r.Header.Get("Authorization") != "Bearer "+queueToken2 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	p, _ := newProvider(t, f)
	s := openSession(t, f, p)

	if err := s.DeleteMessage(testCtx(t), 12); err != nil {
		t.Fatal(err)
	}
	if n := f.count("DELETE", queuePath+"/12"); n != 2 {
		t.Fatalf("delete called %d times, want 2 (401, refresh, retry)", n)
	}
	if n := f.count("PATCH", sessionsPath+"/"+testSessionID); n != 1 {
		t.Fatalf("refresh called %d times, want 1", n)
	}
}

func TestAcquireJobsUsesQueueToken(t *testing.T) {
	f := newFake(t)
	f.sessionRoutes()
	var got []int64
	f.route("POST", "/tenant/_apis/runtime/runnerscalesets/7/acquirejobs", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("api-version") != "6.0-preview" {
			t.Errorf("api-version = %q", r.URL.Query().Get("api-version"))
		}
		if a := r.Header.Get("Authorization"); a != "Bearer "+queueToken1 {
			t.Errorf("Authorization is not the queue token (admin token used: %v)", a == "Bearer "+f.adminToken)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if err := json.Unmarshal(readBody(t, r), &got); err != nil {
			t.Errorf("body: %v", err)
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": 1, "value": []int64{101}})
	})
	p, _ := newProvider(t, f)
	s := openSession(t, f, p)

	ids, err := s.AcquireJobs(testCtx(t), []int64{101, 102})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ids, []int64{101}) || !reflect.DeepEqual(got, []int64{101, 102}) {
		t.Fatalf("acquired %v (sent %v)", ids, got)
	}
	if ids, err := s.AcquireJobs(testCtx(t), nil); ids != nil || err != nil {
		t.Fatalf("empty AcquireJobs = %v, %v", ids, err)
	}
	if n := f.count("POST", "/tenant/_apis/runtime/runnerscalesets/7/acquirejobs"); n != 1 {
		t.Fatalf("acquirejobs called %d times, want 1", n)
	}
}

func TestDeleteSession(t *testing.T) {
	expired := map[string]string{
		"typeName": "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionExpiredException",
		"message":  "The session identifier " + testSessionID + " is not valid.",
	}
	tests := []struct {
		name    string
		status  int
		body    any
		wantErr bool
	}{
		{"deleted", http.StatusNoContent, nil, false},
		{"already gone", http.StatusNotFound, nil, false},
		{"gone for good", http.StatusGone, nil, false},
		// What GitHub answers for an expired or evicted session
		// (actions-runner-controller#4285).
		{"expired or evicted", http.StatusBadRequest, expired, false},
		{"another bad request", http.StatusBadRequest, map[string]string{"typeName": "ArgumentException", "message": "no"}, true},
		{"server error", http.StatusInternalServerError, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.route("DELETE", sessionsPath+"/"+testSessionID, func(w http.ResponseWriter, r *http.Request) {
				if !f.checkAdmin(w, r) {
					return
				}
				if tt.body != nil {
					writeJSON(w, tt.status, tt.body)
					return
				}
				w.WriteHeader(tt.status)
			})
			p, _ := newProvider(t, f)
			err := p.DeleteSession(testCtx(t), "acme", testScaleSetID, testSessionID)
			if (err != nil) != tt.wantErr {
				t.Fatalf("DeleteSession err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.status >= 500 && !IsTransient(err) {
				t.Fatalf("a 500 must be transient: %v", err)
			}
			if f.count("DELETE", sessionsPath+"/"+testSessionID) == 0 {
				t.Fatal("no DELETE sent")
			}
		})
	}
}

// TestEvictedSession: after GitHub evicts a session, the poll answers 401
// and the refresh 404 ("doesn't exist"): GetMessage reports ErrSessionGone,
// a definite outcome, after one refresh.
func TestEvictedSession(t *testing.T) {
	f := newFake(t)
	f.sessionRoutes()
	f.route("PATCH", sessionsPath+"/"+testSessionID, func(w http.ResponseWriter, r *http.Request) {
		if f.checkAdmin(w, r) {
			writeJSON(w, http.StatusNotFound, map[string]string{"typeName": "RunnerAdminException", "message": "runner referenced a session ID that doesn't exist in redis"})
		}
	})
	f.route("GET", queuePath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"typeName": "VssUnauthorizedException", "message": "session evicted"})
	})
	p, _ := newProvider(t, f)
	s := openSession(t, f, p)
	msg, err := s.GetMessage(testCtx(t), 0, 5)
	if msg != nil || !errors.Is(err, ErrSessionGone) || IsTransient(err) {
		t.Fatalf("GetMessage = %v, %v; want ErrSessionGone, not transient", msg, err)
	}
	if n := f.count("PATCH", sessionsPath+"/"+testSessionID); n != 1 {
		t.Fatalf("refreshed %d times, want 1", n)
	}
}

// TestEmptyMessage: a poll may answer 200 with an empty body, which means
// no message (actions-runner-controller#4285).
func TestEmptyMessage(t *testing.T) {
	for name, body := range map[string]string{"empty": "", "whitespace": "\r\n", "bom only": "\xef\xbb\xbf"} {
		t.Run(name, func(t *testing.T) {
			f := newFake(t)
			f.sessionRoutes()
			f.route("GET", queuePath, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte(body))
			})
			p, _ := newProvider(t, f)
			s := openSession(t, f, p)
			if msg, err := s.GetMessage(testCtx(t), 0, 5); msg != nil || err != nil {
				t.Fatalf("GetMessage = %+v, %v; want no message, no error", msg, err)
			}
		})
	}
}

func TestDeleteSessionRejectsBadID(t *testing.T) {
	f := newFake(t)
	p, _ := newProvider(t, f)
	if err := p.DeleteSession(testCtx(t), "acme", 7, "../../x"); err == nil {
		t.Fatal("want an error for a non-UUID session ID")
	}
	if f.total() != 0 {
		t.Fatal("a request was sent")
	}
}

func TestSessionClose(t *testing.T) {
	f := newFake(t)
	f.sessionRoutes()
	p, _ := newProvider(t, f)
	s := openSession(t, f, p)
	if err := s.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if f.count("DELETE", sessionsPath+"/"+testSessionID) != 1 {
		t.Fatal("session not deleted")
	}
}

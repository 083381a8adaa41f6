package actionsfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset"
)

const jitRoute = "POST /_actions/_apis/runtime/runnerscalesets/{id}/generatejitconfig"

func TestFaultHitsExactlyTimes(t *testing.T) {
	f, c := newClient(t, nil)
	ctx := t.Context()
	ss := newScaleSet(t, c, "ss")
	if err := f.srv.AddFault(Fault{Match: "POST .*/generatejitconfig", Status: 500, Times: 2}); err != nil {
		t.Fatalf("add fault: %v", err)
	}

	// WithRetryMax(1): the call and its retry take both hits.
	if _, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "a"}, ss.ID); err == nil {
		t.Fatal("jit during the fault: want error")
	}
	if _, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "b"}, ss.ID); err != nil {
		t.Fatalf("jit after the fault: %v", err)
	}
	st := f.srv.State()
	if len(st.Faults) != 1 || st.Faults[0].Hits != 2 || st.Faults[0].Active {
		t.Fatalf("faults %+v", st.Faults)
	}
	if got := st.Calls[jitRoute]; got != 3 {
		t.Fatalf("jit calls = %d, want 3", got)
	}
	// Other routes were never hit.
	if _, err := c.GetRunnerScaleSetByID(ctx, ss.ID); err != nil {
		t.Fatalf("get: %v", err)
	}

	// The same through the control API and raw requests.
	f.srv.ClearFaults()
	fault := map[string]any{"match": "POST .*/generatejitconfig", "status": 503, "times": 2}
	if st := call(t, "POST", f.url+"/_sim/faults", "", fault, nil); st != http.StatusNoContent {
		t.Fatalf("POST /_sim/faults: status %d", st)
	}
	admin := "Bearer " + f.adminToken(t, "org-a")
	u := f.actionsURL(fmt.Sprintf("_apis/runtime/runnerscalesets/%d/generatejitconfig", ss.ID))
	want := []int{http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusOK}
	for i, code := range want {
		var e actionsError
		got := call(t, "POST", u, admin, map[string]string{"name": fmt.Sprintf("raw-%d", i)}, &e)
		if got != code {
			t.Fatalf("raw request %d: status %d, want %d", i, got, code)
		}
		if code != http.StatusOK && e.TypeName != "SimulatedFaultException" {
			t.Fatalf("raw request %d: body %+v", i, e)
		}
	}
	if st := f.srv.State(); st.Faults[0].Hits != 2 {
		t.Fatalf("hits = %d, want 2", st.Faults[0].Hits)
	}
	if st := call(t, "DELETE", f.url+"/_sim/faults", "", nil, nil); st != http.StatusNoContent || len(f.srv.State().Faults) != 0 {
		t.Fatalf("DELETE /_sim/faults: status %d", st)
	}
	f.requireNoViolations(t)
}

func TestFaultDropAndExemptions(t *testing.T) {
	f := newFake(t, nil)
	admin := "Bearer " + f.adminToken(t, "org-a")
	u := f.actionsURL("_apis/runtime/runnergroups/")
	if err := f.srv.AddFault(Fault{Match: "GET .*/runnergroups", Drop: true, Times: 1}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	req.Header.Set("Authorization", admin)
	// A fresh connection: net/http silently retries a GET dropped on a reused one.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := fresh.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped request: got status %d, want a transport error", resp.StatusCode)
	}
	if st := call(t, "GET", u, admin, nil, nil); st != http.StatusOK {
		t.Fatalf("after the drop: status %d", st)
	}

	// Unlimited faults on everything leave /_sim/ alone.
	if err := f.srv.AddFault(Fault{Match: "* .*", Status: 500}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	if st := call(t, "GET", f.url+"/_sim/state", "", nil, nil); st != http.StatusOK {
		t.Fatalf("state under faults: status %d", st)
	}
	for range 3 {
		if st := call(t, "GET", u, admin, nil, nil); st != http.StatusInternalServerError {
			t.Fatalf("under an unlimited fault: status %d", st)
		}
	}
	if st := f.srv.State(); st.Faults[1].Hits != 3 || !st.Faults[1].Active {
		t.Fatalf("faults %+v", st.Faults)
	}

	for _, bad := range []Fault{{Match: "GET"}, {Match: "GET ("}, {Match: "GET /x"}, {Match: "GET /x", Status: 42}} {
		if err := f.srv.AddFault(bad); err == nil {
			t.Errorf("AddFault(%+v): want error", bad)
		}
	}
}

func TestFaultHeadersAndEmptyBody(t *testing.T) {
	f := newFake(t, nil)
	sess := pollSession(t, f)
	f.queue(t, JobsRequest{Scope: "org-a"})

	// A poll answered 200 with no body at all, as GitHub sometimes does
	// (actions-runner-controller#4285); the message is still there after.
	empty := map[string]any{"match": "GET .*/messages", "status": 200, "empty_body": true, "times": 1}
	if st := call(t, "POST", f.url+"/_sim/faults", "", empty, nil); st != http.StatusNoContent {
		t.Fatalf("add empty_body fault: status %d", st)
	}
	resp, body := rawDo(t, "GET", sess.MessageQueueURL, "Bearer "+sess.MessageQueueAccessToken)
	if resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Fatalf("faulted poll: status %d, body %q; want 200 with no body", resp.StatusCode, body)
	}
	if st, msg := poll(t, sess, 0); st != http.StatusOK || msg == nil || len(msg.entries) != 1 {
		t.Fatalf("poll after the fault: status %d, %+v", st, msg)
	}

	// A rate limit: headers on the fault's answer, a body in the API's own shape.
	limit := Fault{Match: "POST .*/registration-token", Status: 403, Times: 1, Headers: map[string]string{
		"X-RateLimit-Remaining": "0", "X-RateLimit-Limit": "5000", "X-RateLimit-Reset": "1700000000", "Retry-After": "7",
	}}
	if err := f.srv.AddFault(limit); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	resp, body = rawDo(t, "POST", f.url+"/api/v3/orgs/org-a/actions/runners/registration-token", "Bearer test-pat")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("rate-limited call: status %d", resp.StatusCode)
	}
	for k, v := range limit.Headers {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	var ghErr githubError
	if err := json.Unmarshal(body, &ghErr); err != nil || ghErr.Message == "" {
		t.Fatalf("rate-limit body %q: want a GitHub API error (%v)", body, err)
	}
	// An Actions service fault keeps the Actions error shape.
	if err := f.srv.AddFault(Fault{Match: "GET .*/runnergroups", Status: 429, Times: 1, Headers: map[string]string{"Retry-After": "1"}}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	resp, body = rawDo(t, "GET", f.actionsURL("_apis/runtime/runnergroups/"), "Bearer "+f.adminToken(t, "org-a"))
	var e actionsError
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || json.Unmarshal(body, &e) != nil || e.TypeName != "SimulatedFaultException" {
		t.Fatalf("429: status %d, Retry-After %q, body %q", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if st := f.srv.State(); st.Faults[1].Headers["Retry-After"] != "7" {
		t.Fatalf("fault state %+v lacks its headers", st.Faults[1])
	}

	for _, bad := range []Fault{
		{Match: "GET /x", EmptyBody: true, DelayMS: 10},
		{Match: "GET /x", Headers: map[string]string{"Retry-After": "1"}, DelayMS: 10},
		{Match: "GET /x", Drop: true, EmptyBody: true},
		{Match: "GET /x", Status: 429, Headers: map[string]string{"Bad Header": "1"}},
		{Match: "GET /x", Status: 429, Headers: map[string]string{"": "1"}},
		{Match: "GET /x", Status: 429, Headers: map[string]string{"Retry-After": "1\r\nX: y"}},
	} {
		if err := f.srv.AddFault(bad); err == nil {
			t.Errorf("AddFault(%+v): want error", bad)
		}
	}
	f.requireNoViolations(t)
}

// TestRequestJournal: every answered request is in the journal with its
// route, status, times and the fault that answered it; /_sim/ is not.
func TestRequestJournal(t *testing.T) {
	f, c := newClient(t, nil)
	ctx := t.Context()
	ss := newScaleSet(t, c, "ss")
	if err := f.srv.AddFault(Fault{Match: "POST .*/generatejitconfig", Status: 429, Times: 1, Headers: map[string]string{"Retry-After": "0"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "a"}, ss.ID); err != nil {
		t.Fatalf("jit: %v", err)
	}
	var got []Request
	if st := call(t, "GET", f.url+"/_sim/requests?route="+url.QueryEscape(jitRoute), "", nil, &got); st != http.StatusOK {
		t.Fatalf("GET /_sim/requests: %d", st)
	}
	if len(got) != 2 || got[0].Status != 429 || got[0].Fault == "" || got[1].Status != 200 || got[1].Fault != "" ||
		got[1].Start.Before(got[0].End) || got[0].Route != jitRoute {
		t.Fatalf("journal of the JIT route = %+v; want a faulted 429, then a 200", got)
	}
	for _, r := range f.srv.Requests("") {
		if strings.HasPrefix(r.Path, "/_sim/") {
			t.Fatalf("control request journaled: %+v", r)
		}
	}
}

// TestRESTRateLimitHeaders: REST answers carry GitHub's rate-limit headers,
// the budget falling with each call of a credential; a fault's headers win.
func TestRESTRateLimitHeaders(t *testing.T) {
	f := newFake(t, nil)
	// Each call signs a new JWT, issued a second apart: an App's JWTs
	// share the App's budget.
	issued := time.Now()
	get := func() http.Header {
		t.Helper()
		req, err := http.NewRequest("GET", f.url+"/api/v3/app/installations", nil)
		if err != nil {
			t.Fatal(err)
		}
		issued = issued.Add(-time.Second)
		req.Header.Set("Authorization", "Bearer "+signAppJWT(t, appKey(t), fmt.Sprint(testAppID), issued, issued.Add(9*time.Minute)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header
	}
	first, second := get(), get()
	if first.Get("X-RateLimit-Limit") != "5000" || first.Get("X-RateLimit-Reset") == "" || first.Get("X-RateLimit-Resource") != "core" {
		t.Fatalf("headers %v", first)
	}
	a, _ := strconv.Atoi(first.Get("X-RateLimit-Remaining"))
	b, _ := strconv.Atoi(second.Get("X-RateLimit-Remaining"))
	if a <= 0 || b >= a {
		t.Fatalf("remaining %d then %d; want a falling budget", a, b)
	}
	if err := f.srv.AddFault(Fault{Match: "GET /api/v3/app/installations", Status: 403, Times: 1, Headers: map[string]string{"X-RateLimit-Remaining": "0"}}); err != nil {
		t.Fatal(err)
	}
	if h := get(); h.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("fault headers lost: %v", h)
	}
}

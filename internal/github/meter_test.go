package github

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
)

func TestOperationFor(t *testing.T) {
	const (
		api    = "https://api.github.com"
		ghes   = "https://ghes.example/api/v3"
		tenant = "https://pipelines.actions.githubusercontent.com/AbCdEf123"
		rss    = tenant + "/_apis/runtime/runnerscalesets"
	)
	tests := []struct {
		method, url, want string
	}{
		{"GET", rss + "/7/messages?sessionId=6f1c", OpGetMessage},
		{"GET", "https://broker.example/_broker/7/6f1c/messages?lastMessageId=3", OpGetMessage},
		{"DELETE", "https://broker.example/_broker/7/6f1c/messages/42", OpAcknowledge},
		{"POST", rss + "/7/acquirejobs?api-version=6.0-preview", OpAcquireJobs},
		{"GET", rss + "/7/acquirablejobs", OpAcquirableJobs},
		{"POST", rss + "/7/sessions", OpCreateSession},
		{"PATCH", rss + "/7/sessions/6f1c-aa", OpRefreshSession},
		{"DELETE", rss + "/7/sessions/6f1c-aa", OpDeleteSession},
		{"POST", rss + "/7/generatejitconfig", OpGenerateJITConfig},
		{"GET", tenant + "/_apis/distributedtask/pools/0/agents/991", OpGetRunner},
		{"GET", tenant + "/_apis/distributedtask/pools/0/agents?agentName=myshoes-a", OpGetRunner},
		{"DELETE", tenant + "/_apis/distributedtask/pools/0/agents/991", OpRemoveRunner},
		{"GET", rss + "?runnerGroupId=1&name=shoes", OpGetScaleSet},
		{"GET", rss + "/7", OpGetScaleSet},
		{"POST", rss, OpCreateScaleSet},
		{"PATCH", rss + "/7", OpUpdateScaleSet},
		{"DELETE", rss + "/7", OpDeleteScaleSet},
		{"GET", tenant + "/_apis/runtime/runnergroups/?groupName=big", OpGetRunnerGroup},
		{"GET", api + "/orgs/acme/installation", OpGetInstallation},
		{"GET", ghes + "/repos/acme/widgets/installation", OpGetInstallation},
		{"GET", api + "/enterprises/big/installation", OpGetInstallation},
		{"GET", api + "/app/installations?per_page=100&page=2", OpListInstallations},
		{"POST", api + "/app/installations/1234/access_tokens", OpAccessToken},
		{"POST", ghes + "/orgs/acme/actions/runners/registration-token", OpRegistrationToken},
		{"POST", api + "/repos/acme/widgets/actions/runners/registration-token", OpRegistrationToken},
		{"POST", api + "/actions/runner-registration", OpRunnerRegistration},
		{"POST", ghes + "/actions/runner-registration", OpRunnerRegistration},
		{"GET", api + "/orgs/acme/actions/runners/downloads", OpRunnerVersion},
		{"GET", api + "/repos/actions/runner/releases/latest", OpRunnerVersion},
		// A known path with another method, and unknown paths.
		{"PUT", rss + "/7/sessions", OpOther},
		{"GET", api + "/orgs/acme", OpOther},
		{"GET", api + "/", OpOther},
		{"GET", api, OpOther},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if got := operationFor(tc.method, u); got != tc.want {
				t.Errorf("operationFor = %q, want %q", got, tc.want)
			}
		})
	}
	if got := operationFor("GET", nil); got != OpOther {
		t.Errorf("operationFor(nil URL) = %q, want %q", got, OpOther)
	}
}

// TestEveryExchangeIsMetered drives every kind of call, the library's
// own included (installation token, registration, scale sets), and checks
// that each exchange the fake saw was counted once, under a known
// operation and its status code.
func TestEveryExchangeIsMetered(t *testing.T) {
	f := newFake(t, func(c *actionsfake.Config) { c.Acquire = true })
	rec := newRecordingRecorder()
	p, _ := newProvider(t, f, func(c *Config) { c.Recorder = rec })
	ctx := testCtx(t)

	id := newScaleSet(t, p, "acme", "shoes-acme") // the library
	sess := sessionRoundTrip(t, f, p, id)
	if _, err := p.RunnerVersion(ctx, "acme", "latest"); err != nil {
		t.Fatal(err)
	}
	// A 502 the library retries: two exchanges.
	f.fault(t, actionsfake.Fault{Match: "GET " + scaleSetsPath + "$", Status: http.StatusBadGateway, Times: 1})
	if _, _, err := p.GetOrCreateScaleSet(ctx, "acme", "", "shoes-acme", []string{"self-hosted", "shoes-acme"}); err != nil {
		t.Fatal(err)
	}
	jit, err := p.GenerateJITConfig(ctx, "acme", id, "myshoes-a", "_work")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetRunnerStatus(ctx, "acme", int64(jit.Runner.ID)); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveRunner(ctx, "acme", int64(jit.Runner.ID)); err != nil {
		t.Fatal(err)
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatal(err)
	}

	got := rec.metered()
	n := 0
	var counted []string
	for k, c := range got {
		n += c
		counted = append(counted, fmt.Sprintf("%s ×%d", k, c))
	}
	slices.Sort(counted)
	if n != f.total() {
		t.Errorf("%d exchanges counted, the fake saw %d:\n%s", n, f.total(), strings.Join(counted, "\n"))
	}
	for _, want := range []string{
		OpAccessToken + " 201", OpRegistrationToken + " 201", OpRunnerRegistration + " 200",
		OpGetScaleSet + " 200", OpGetScaleSet + " 502", OpCreateScaleSet + " 200",
		OpCreateSession + " 200", OpRefreshSession + " 200", OpDeleteSession + " 204",
		OpGetMessage + " 401", OpGetMessage + " 200", OpAcquireJobs + " 200", OpAcknowledge + " 204",
		OpRunnerVersion + " 200", OpGenerateJITConfig + " 200", OpGetRunner + " 200", OpRemoveRunner + " 204",
	} {
		if got[want] == 0 {
			t.Errorf("no exchange %q counted; counted:\n%s", want, strings.Join(counted, "\n"))
		}
	}
	for k := range got {
		if strings.HasPrefix(k, OpOther+" ") || strings.Contains(k, "negative") {
			t.Errorf("exchange counted as %q; counted:\n%s", k, strings.Join(counted, "\n"))
		}
	}
	// The REST answers reported their budget, with the resource.
	if b := rec.budget("acme"); b.Resource != "core" || b.Limit == 0 || b.Remaining == 0 || b.Reset.IsZero() {
		t.Errorf("budget of acme = %+v; want resource core, a limit, a remaining budget and a reset", b)
	}
}

// TestTransportErrorIsMetered: an exchange that gets no answer is counted
// with code "error", by our own client and by the library's.
func TestTransportErrorIsMetered(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens there any more
	rec := newRecordingRecorder()
	p, err := New(Config{URL: base, Token: testPAT, RetryMax: -1, Timeout: 5 * time.Second, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.CloseIdleConnections)
	ctx := testCtx(t)
	if _, err := p.RunnerVersion(ctx, "acme", "latest"); err == nil {
		t.Fatal("RunnerVersion succeeded with nothing listening")
	}
	if _, _, err := p.GetOrCreateScaleSet(ctx, "acme", "", "shoes-acme", nil); err == nil {
		t.Fatal("GetOrCreateScaleSet succeeded with nothing listening")
	}
	got := rec.metered()
	for _, want := range []string{OpRunnerVersion + " " + CodeTransportError, OpRegistrationToken + " " + CodeTransportError} {
		if got[want] == 0 {
			t.Errorf("no %q counted; counted %v", want, got)
		}
	}
}

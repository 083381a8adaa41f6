package actionsfake

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/golang-jwt/jwt/v4"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

const testAppID = 12345

// appKey is the app's key, made once for the test binary.
func appKey(t testing.TB) *rsa.PrivateKey {
	k, _ := testkit.SharedKey(t)
	return k
}

type fake struct {
	srv *Server
	ts  *httptest.Server
	url string
}

// newFake serves a fake on 127.0.0.1 with short test timings.
func newFake(t *testing.T, mutate func(*Config)) *fake {
	t.Helper()
	cfg := Config{
		AppID:        testAppID,
		AppPublicKey: &appKey(t).PublicKey,
		Tokens:       []string{"test-pat"},
		PollHold:     200 * time.Millisecond,
		Uninstalled:  []string{"not-installed"},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(srv.Close) // runs first: releases long polls so ts.Close does not wait
	srv.SetBaseURL(ts.URL)
	return &fake{srv: srv, ts: ts, url: ts.URL}
}

// newClient serves a fake (see newFake) and returns it with the real
// client for org-a.
func newClient(t *testing.T, mutate func(*Config)) (*fake, *scaleset.Client) {
	t.Helper()
	f := newFake(t, mutate)
	return f, f.client(t, "org-a")
}

func signAppJWT(t *testing.T, key *rsa.PrivateKey, iss string, iat, exp time.Time) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    iss,
		IssuedAt:  jwt.NewNumericDate(iat),
		ExpiresAt: jwt.NewNumericDate(exp),
	}).SignedString(key)
	if err != nil {
		t.Fatalf("sign jwt: %v", err)
	}
	return tok
}

func goodAppJWT(t *testing.T) string {
	now := time.Now()
	return signAppJWT(t, appKey(t), fmt.Sprint(testAppID), now.Add(-time.Minute), now.Add(8*time.Minute))
}

// call does one raw request and decodes a JSON answer into out (if non-nil).
func call(t *testing.T, method, url, auth string, body any, out any) int {
	t.Helper()
	var b []byte // no body when nil
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatalf("encode body: %v", err)
		}
	}
	h := authHeader(auth)
	h.Set("Content-Type", "application/json")
	resp, raw := testkit.Fetch(t, method, url, bytes.NewReader(b), h)
	raw = bytes.TrimPrefix(raw, utf8BOM) // as clients do (Config.BOM)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, url, raw, err)
		}
	}
	return resp.StatusCode
}

// rawDo does one request and returns the answer with its whole body, BOM included.
func rawDo(t *testing.T, method, url, auth string) (*http.Response, []byte) {
	t.Helper()
	return testkit.Fetch(t, method, url, nil, authHeader(auth))
}

// authHeader is a header with Authorization: auth, unless auth is "".
func authHeader(auth string) http.Header {
	h := http.Header{}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	return h
}

// installationID looks the owner's installation up the way the sidecar does.
func (f *fake) installationID(t *testing.T, owner string) int64 {
	t.Helper()
	var in struct {
		ID      int64 `json:"id"`
		Account struct {
			Login string `json:"login"`
		} `json:"account"`
	}
	if st := call(t, "GET", f.url+"/api/v3/orgs/"+owner+"/installation", "Bearer "+goodAppJWT(t), nil, &in); st != http.StatusOK {
		t.Fatalf("installation of %s: status %d", owner, st)
	}
	if in.ID == 0 || in.Account.Login != owner {
		t.Fatalf("installation of %s: %+v", owner, in)
	}
	return in.ID
}

// client is the real scaleset client with GitHub App auth for scope.
func (f *fake) client(t *testing.T, scope string) *scaleset.Client {
	t.Helper()
	_, key := testkit.SharedKey(t)
	c, err := scaleset.NewClientWithGitHubApp(scaleset.ClientWithGitHubAppConfig{
		GitHubConfigURL: f.url + "/" + scope,
		GitHubAppAuth: scaleset.GitHubAppAuth{
			ClientID:       fmt.Sprint(testAppID),
			InstallationID: f.installationID(t, ownerOfScope(scope)),
			PrivateKey:     string(key),
		},
		SystemInfo: scaleset.SystemInfo{System: "actionsfake-test"},
	}, scaleset.WithRetryMax(1), scaleset.WithRetryWaitMax(50*time.Millisecond))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

// adminToken walks installation token -> registration token -> runner-registration.
func (f *fake) adminToken(t *testing.T, scope string) string {
	t.Helper()
	var it, rt struct {
		Token string `json:"token"`
	}
	id := f.installationID(t, ownerOfScope(scope))
	if st := call(t, "POST", fmt.Sprintf("%s/api/v3/app/installations/%d/access_tokens", f.url, id), "Bearer "+goodAppJWT(t), nil, &it); st != http.StatusCreated {
		t.Fatalf("access token: status %d", st)
	}
	if st := call(t, "POST", f.url+"/api/v3/orgs/"+scope+"/actions/runners/registration-token", "Bearer "+it.Token, nil, &rt); st != http.StatusCreated {
		t.Fatalf("registration token: status %d", st)
	}
	var conn struct {
		URL   string `json:"url"`
		Token string `json:"token"`
	}
	body := map[string]string{"url": f.url + "/" + scope, "runner_event": "register"}
	if st := call(t, "POST", f.url+"/api/v3/actions/runner-registration", "RemoteAuth "+rt.Token, body, &conn); st != http.StatusOK {
		t.Fatalf("runner-registration: status %d", st)
	}
	if conn.URL != f.url+"/_actions/" {
		t.Fatalf("admin url = %q", conn.URL)
	}
	return conn.Token
}

// actionsURL builds an Actions service URL with api-version.
func (f *fake) actionsURL(path string) string {
	return f.url + "/_actions/" + strings.TrimPrefix(path, "/") + "?api-version=6.0-preview"
}

// queue queues jobs, failing the test if the fake refuses them.
func (f *fake) queue(t *testing.T, req JobsRequest) JobsResult {
	t.Helper()
	res, err := f.srv.QueueJobs(req)
	if err != nil {
		t.Fatalf("queue %+v: %v", req, err)
	}
	return res
}

func (f *fake) violations() []Violation { return f.srv.State().Violations }

func (f *fake) requireNoViolations(t *testing.T) {
	t.Helper()
	if v := f.violations(); len(v) > 0 {
		t.Fatalf("violations: %+v", v)
	}
}

func (f *fake) requireViolation(t *testing.T, kind string) {
	t.Helper()
	for _, v := range f.violations() {
		if v.Kind == kind {
			return
		}
	}
	t.Fatalf("no %q violation in %+v", kind, f.violations())
}

func (f *fake) job(t *testing.T, id string) JobState {
	t.Helper()
	for _, j := range f.srv.State().Jobs {
		if j.ID == id {
			return j
		}
	}
	t.Fatalf("job %s not in state", id)
	return JobState{}
}

// rawMessage is a broker answer decoded without the library (it drops JobAvailable).
type rawMessage struct {
	MessageID   int        `json:"messageId"`
	MessageType string     `json:"messageType"`
	Body        string     `json:"body"`
	Statistics  Statistics `json:"statistics"`
	entries     []jobEntry
}

// poll does one raw broker poll reporting capacity 10; it returns the status and the message on 200.
func poll(t *testing.T, sess scaleset.RunnerScaleSetSession, lastID int) (int, *rawMessage) {
	t.Helper()
	return pollWith(t, sess, lastID, "10")
}

// pollWith is poll with an X-ScaleSetMaxCapacity header ("" for none).
// A 200 with an empty body gives a nil message.
func pollWith(t *testing.T, sess scaleset.RunnerScaleSetSession, lastID int, capacity string) (int, *rawMessage) {
	t.Helper()
	u := sess.MessageQueueURL
	if lastID > 0 {
		u += fmt.Sprintf("?lastMessageId=%d", lastID)
	}
	h := authHeader("Bearer " + sess.MessageQueueAccessToken)
	h.Set("Accept", "application/json; api-version=6.0-preview")
	if capacity != "" {
		h.Set("X-ScaleSetMaxCapacity", capacity)
	}
	resp, raw := testkit.Fetch(t, "GET", u, nil, h)
	raw = bytes.TrimPrefix(raw, utf8BOM)
	if resp.StatusCode != http.StatusOK || len(raw) == 0 {
		return resp.StatusCode, nil
	}
	var m rawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode message %q: %v", raw, err)
	}
	if err := json.Unmarshal([]byte(m.Body), &m.entries); err != nil {
		t.Fatalf("decode body %q: %v", m.Body, err)
	}
	return resp.StatusCode, &m
}

// newScaleSet creates a scale set with labels in the default group through the real client.
func newScaleSet(t *testing.T, c *scaleset.Client, name string, labels ...scaleset.Label) *scaleset.RunnerScaleSet {
	t.Helper()
	ss, err := c.CreateRunnerScaleSet(t.Context(), &scaleset.RunnerScaleSet{Name: name, RunnerGroupID: 1, Labels: labels})
	if err != nil {
		t.Fatalf("create scale set %q: %v", name, err)
	}
	return ss
}

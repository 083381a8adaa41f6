package sim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/golang-jwt/jwt/v4"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// rawRequest does one request and returns the status and the whole body, BOM included.
func rawRequest(t *testing.T, method, url, auth, body string) (int, []byte) {
	t.Helper()
	h := http.Header{}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	resp, b := testkit.Fetch(t, method, url, strings.NewReader(body), h)
	return resp.StatusCode, b
}

// appJWT signs a GitHub App JWT with the World's key.
func appJWT(t *testing.T, w *sim.World) string {
	t.Helper()
	key, err := jwt.ParseRSAPrivateKeyFromPEM(w.AppKeyPEM())
	if err != nil {
		t.Fatalf("parse app key: %v", err)
	}
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    fmt.Sprint(w.AppID()),
		IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(8 * time.Minute)),
	}).SignedString(key)
	if err != nil {
		t.Fatalf("sign app jwt: %v", err)
	}
	return "Bearer " + tok
}

// TestWorldPassesTheFakeKnobs checks that the World hands its knobs to the
// fake Actions service, installs the app for its targets' owners (and for
// the owners of targets added later), and serves the evict route.
func TestWorldPassesTheFakeKnobs(t *testing.T) {
	t.Parallel()
	w := startWorld(t, sim.Config{
		Targets:          []string{testScope, "owner-b/repo"},
		BOM:              true,
		DropCustomLabels: true,
		NoAckThrough:     true,
		SessionTTL:       2 * time.Second,
		ReofferInterval:  time.Hour,
	})
	bom := []byte{0xEF, 0xBB, 0xBF}
	installed := func() []string {
		t.Helper()
		st, body := rawRequest(t, "GET", w.GitHubURL()+"/api/v3/app/installations", appJWT(t, w), "")
		if st != http.StatusOK || !bytes.HasPrefix(body, bom) {
			t.Fatalf("GET /app/installations: status %d, body %q; want 200 with a BOM", st, body)
		}
		var list []struct {
			Account struct {
				Login string `json:"login"`
			} `json:"account"`
		}
		if err := json.Unmarshal(bytes.TrimPrefix(body, bom), &list); err != nil {
			t.Fatalf("decode installations: %v", err)
		}
		var owners []string
		for _, in := range list {
			owners = append(owners, in.Account.Login)
		}
		return owners
	}
	if got := installed(); !slices.Equal(got, []string{testScope, "owner-b"}) {
		t.Fatalf("installations before any lookup: %v", got)
	}
	st, body := rawRequest(t, "PUT", w.MyshoesURL()+"/_sim/targets", "", `[{"scope":"org-c"},{"scope":"owner-b/other"}]`)
	if st != http.StatusOK || bytes.HasPrefix(body, bom) {
		t.Fatalf("PUT /myshoes/_sim/targets: status %d, body %q; want 200 without a BOM", st, body)
	}
	if got := installed(); !slices.Equal(got, []string{testScope, "owner-b", "org-c"}) {
		t.Fatalf("installations after new targets: %v", got)
	}

	// DropCustomLabels and NoAckThrough reach the fake.
	ctx := t.Context()
	id, ok := w.Actions.InstallationID(testScope)
	if !ok {
		t.Fatal("no installation of the target's owner")
	}
	c, err := scaleset.NewClientWithGitHubApp(scaleset.ClientWithGitHubAppConfig{
		GitHubConfigURL: w.GitHubURL() + "/" + testScope,
		GitHubAppAuth:   scaleset.GitHubAppAuth{ClientID: fmt.Sprint(w.AppID()), InstallationID: id, PrivateKey: string(w.AppKeyPEM())},
	}, scaleset.WithRetryMax(0))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	set, err := c.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{Name: "ss", RunnerGroupID: 1, Labels: []scaleset.Label{{Name: "linux"}}})
	if err != nil || len(set.Labels) != 1 || set.Labels[0].Name != "ss" {
		t.Fatalf("create scale set: %+v, %v; want only the name as label", set, err)
	}
	sc, err := c.MessageSessionClient(ctx, set.ID, "host-1")
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	if _, err := w.Actions.QueueJobs(actionsfake.JobsRequest{Scope: testScope}); err != nil {
		t.Fatalf("queue: %v", err)
	}
	first, err := sc.GetMessage(ctx, 0, 10)
	if err != nil || first == nil {
		t.Fatalf("GetMessage: %+v, %v", first, err)
	}
	again, err := sc.GetMessage(ctx, first.MessageID, 10)
	if err != nil || again == nil || again.MessageID != first.MessageID {
		t.Fatalf("GetMessage naming %d as lastMessageId without a DELETE: %+v, %v; want it again", first.MessageID, again, err)
	}

	// SessionTTL: nobody polls, the session expires.
	testkit.Eventually(t, 10*time.Second, "the session to expire", func() bool {
		s := w.Actions.State().ScaleSets[0]
		return s.Session == nil && s.Evictions == 1
	})
	if st, body := rawRequest(t, "POST", w.URL()+"/_sim/sessions/evict", "", ""); st != http.StatusOK || string(bytes.TrimSpace(body)) != `{"evicted":0}` {
		t.Fatalf("POST /_sim/sessions/evict: status %d, body %q", st, body)
	}
}

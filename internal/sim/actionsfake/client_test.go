package actionsfake

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/google/uuid"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

func TestClientEndToEnd(t *testing.T) {
	f, c := newClient(t, nil)
	ctx := t.Context()

	group, err := c.GetRunnerGroupByName(ctx, scaleset.DefaultRunnerGroup)
	if err != nil {
		t.Fatalf("GetRunnerGroupByName: %v", err)
	}
	if group.ID != 1 || !group.IsDefault {
		t.Fatalf("group = %+v", group)
	}
	if _, err := c.GetRunnerGroupByName(ctx, "nope"); err == nil {
		t.Fatal("GetRunnerGroupByName(nope): want error")
	}

	created, err := c.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{
		Name:          "ss-a",
		RunnerGroupID: group.ID,
		Labels:        []scaleset.Label{{Name: "linux"}},
	})
	if err != nil {
		t.Fatalf("CreateRunnerScaleSet: %v", err)
	}
	if created.ID == 0 || created.Name != "ss-a" || created.Statistics == nil {
		t.Fatalf("created = %+v", created)
	}
	if len(created.Labels) != 1 || created.Labels[0] != (scaleset.Label{Type: "System", Name: "linux"}) {
		t.Fatalf("labels = %+v", created.Labels)
	}
	_, err = c.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{Name: "ss-a", RunnerGroupID: group.ID})
	if err == nil || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), "RunnerScaleSetExistsException") {
		t.Fatalf("duplicate create: err = %v", err)
	}

	byName, err := c.GetRunnerScaleSet(ctx, group.ID, "ss-a")
	if err != nil || byName == nil || byName.ID != created.ID {
		t.Fatalf("GetRunnerScaleSet = %+v, %v", byName, err)
	}
	if missing, err := c.GetRunnerScaleSet(ctx, group.ID, "missing"); err != nil || missing != nil {
		t.Fatalf("GetRunnerScaleSet(missing) = %+v, %v", missing, err)
	}
	byID, err := c.GetRunnerScaleSetByID(ctx, created.ID)
	if err != nil || byID.Name != "ss-a" || byID.RunnerGroupName == "" {
		t.Fatalf("GetRunnerScaleSetByID = %+v, %v", byID, err)
	}
	if _, err := c.GetRunnerScaleSetByID(ctx, 9999); err == nil || !strings.Contains(err.Error(), "NotFoundException") {
		t.Fatalf("GetRunnerScaleSetByID(9999): err = %v", err)
	}

	sc, err := c.MessageSessionClient(ctx, created.ID, "owner-1")
	if err != nil {
		t.Fatalf("MessageSessionClient: %v", err)
	}
	sess := sc.Session()
	switch {
	case sess.SessionID == uuid.Nil, sess.Statistics == nil, sess.OwnerName != "owner-1",
		sess.MessageQueueAccessToken == "", !strings.HasPrefix(sess.MessageQueueURL, f.url+"/_broker/"),
		sess.RunnerScaleSet == nil || sess.RunnerScaleSet.ID != created.ID:
		t.Fatalf("session = %+v", sess)
	}

	jit, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "r1"}, created.ID)
	if err != nil {
		t.Fatalf("GenerateJitRunnerConfig: %v", err)
	}
	if jit.Runner == nil || jit.Runner.ID == 0 || jit.Runner.Name != "r1" || jit.Runner.RunnerScaleSetID != created.ID || jit.EncodedJITConfig == "" {
		t.Fatalf("jit = %+v", jit)
	}
	if _, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "r1"}, created.ID); !errors.Is(err, scaleset.RunnerExistsError) {
		t.Fatalf("second jit r1: err = %v, want RunnerExistsError", err)
	}

	got, err := c.GetRunner(ctx, jit.Runner.ID)
	if err != nil || got.Name != "r1" {
		t.Fatalf("GetRunner = %+v, %v", got, err)
	}
	byRunnerName, err := c.GetRunnerByName(ctx, "r1")
	if err != nil || byRunnerName == nil || byRunnerName.ID != jit.Runner.ID {
		t.Fatalf("GetRunnerByName = %+v, %v", byRunnerName, err)
	}
	if none, err := c.GetRunnerByName(ctx, "zzz"); err != nil || none != nil {
		t.Fatalf("GetRunnerByName(zzz) = %+v, %v", none, err)
	}
	if err := c.RemoveRunner(ctx, int64(jit.Runner.ID)); err != nil {
		t.Fatalf("RemoveRunner: %v", err)
	}
	if _, err := c.GetRunner(ctx, jit.Runner.ID); !errors.Is(err, scaleset.RunnerNotFoundError) {
		t.Fatalf("GetRunner after remove: err = %v", err)
	}
	if err := c.RemoveRunner(ctx, int64(jit.Runner.ID)); !errors.Is(err, scaleset.RunnerNotFoundError) {
		t.Fatalf("RemoveRunner twice: err = %v", err)
	}

	updated, err := c.UpdateRunnerScaleSet(ctx, created.ID, &scaleset.RunnerScaleSet{
		Name: "ss-a", RunnerGroupID: group.ID,
		Labels: []scaleset.Label{{Name: "linux"}, {Name: "x64"}},
	})
	if err != nil || len(updated.Labels) != 2 || updated.Labels[1].Type != "System" {
		t.Fatalf("UpdateRunnerScaleSet = %+v, %v", updated, err)
	}

	// Another scope does not see this scale set.
	other := f.client(t, "org-b")
	if _, err := other.GetRunnerScaleSetByID(ctx, created.ID); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("org-b GetRunnerScaleSetByID: err = %v", err)
	}

	if err := sc.Close(ctx); err != nil {
		t.Fatalf("close session: %v", err)
	}
	if st := f.srv.State(); st.ScaleSets[0].Session != nil {
		t.Fatalf("session still open: %+v", st.ScaleSets[0].Session)
	}
	if err := c.DeleteRunnerScaleSet(ctx, created.ID); err != nil {
		t.Fatalf("DeleteRunnerScaleSet: %v", err)
	}
	if _, err := c.GetRunnerScaleSetByID(ctx, created.ID); err == nil {
		t.Fatal("GetRunnerScaleSetByID after delete: want error")
	}
	st := f.srv.State()
	if len(st.ScaleSets) != 0 {
		t.Fatalf("scale sets after delete: %+v", st.ScaleSets)
	}
	if n := st.Calls["POST /_actions/_apis/runtime/runnerscalesets/{id}/generatejitconfig"]; n != 2 {
		t.Fatalf("generatejitconfig calls = %d, want 2", n)
	}
	f.requireNoViolations(t)
}

func TestBadAppJWT(t *testing.T) {
	f := newFake(t, nil)
	id := f.installationID(t, "org-a")
	now := time.Now()
	foreign, foreignPEM := testkit.Key(t)

	c, err := scaleset.NewClientWithGitHubApp(scaleset.ClientWithGitHubAppConfig{
		GitHubConfigURL: f.url + "/org-a",
		GitHubAppAuth:   scaleset.GitHubAppAuth{ClientID: fmt.Sprint(testAppID), InstallationID: id, PrivateKey: string(foreignPEM)},
	}, scaleset.WithRetryMax(1), scaleset.WithRetryWaitMax(50*time.Millisecond))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	if _, err := c.GetRunnerGroupByName(t.Context(), "default"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("client with a foreign key: err = %v, want a 401 error", err)
	}

	tests := []struct {
		name string
		jwt  string
	}{
		{"foreign key", signAppJWT(t, foreign, fmt.Sprint(testAppID), now.Add(-time.Minute), now.Add(8*time.Minute))},
		{"expired", signAppJWT(t, appKey(t), fmt.Sprint(testAppID), now.Add(-20*time.Minute), now.Add(-10*time.Minute))},
		{"wrong iss", signAppJWT(t, appKey(t), "999", now.Add(-time.Minute), now.Add(8*time.Minute))},
		{"exp too far", signAppJWT(t, appKey(t), fmt.Sprint(testAppID), now, now.Add(time.Hour))},
		{"garbage", "not-a-jwt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body struct {
				Message string `json:"message"`
			}
			st := call(t, "POST", fmt.Sprintf("%s/api/v3/app/installations/%d/access_tokens", f.url, id), "Bearer "+tt.jwt, nil, &body)
			if st != http.StatusUnauthorized || body.Message == "" {
				t.Fatalf("status %d, body %+v; want 401 with a message", st, body)
			}
		})
	}
}

func TestSecondSessionConflict(t *testing.T) {
	f := newFake(t, nil)
	ctx := t.Context()
	c, ss, first := sessionFor(t, f)
	_, err := c.MessageSessionClient(ctx, ss.ID, "host-2")
	if err == nil || !strings.Contains(err.Error(), `status="409 Conflict"`) {
		t.Fatalf("second session: err = %v, want status 409", err)
	}
	st := f.srv.State()
	if got := st.ScaleSets[0]; got.Conflicts != 1 || got.Session == nil || got.Session.Owner != "host-1" {
		t.Fatalf("scale set state = %+v", got)
	}
	// After the first session is gone a new one is accepted.
	if err := first.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	second, err := c.MessageSessionClient(ctx, ss.ID, "host-2")
	if err != nil {
		t.Fatalf("session after close: %v", err)
	}
	if err := second.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	f.requireNoViolations(t)
}

func TestQueueTokenExpiryRefresh(t *testing.T) {
	f := newFake(t, func(c *Config) { c.QueueTokenTTL = 300 * time.Millisecond })
	ctx := t.Context()
	_, _, sc := sessionFor(t, f)
	firstToken := sc.Session().MessageQueueAccessToken

	const refreshRoute = "PATCH /_actions/_apis/runtime/runnerscalesets/{id}/sessions/{sid}"
	lastID, queued, assigned := 0, 0, 0
	deadline := time.Now().Add(15 * time.Second)
	for f.srv.State().Calls[refreshRoute] < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the session was never refreshed twice")
		}
		f.queue(t, JobsRequest{Scope: "org-a", DurationMS: 10})
		queued++
		// One poll that gets the job, then an empty one that holds the poll.
		for range 2 {
			msg, err := sc.GetMessage(ctx, lastID, 10)
			if err != nil {
				t.Fatalf("GetMessage: %v", err)
			}
			if msg == nil {
				continue
			}
			assigned += len(msg.JobAssignedMessages)
			lastID = msg.MessageID
			if err := sc.DeleteMessage(ctx, msg.MessageID); err != nil {
				t.Fatalf("DeleteMessage: %v", err)
			}
		}
	}
	if assigned != queued {
		t.Fatalf("JobAssigned seen %d, jobs queued %d", assigned, queued)
	}
	if sc.Session().MessageQueueAccessToken == firstToken {
		t.Fatal("the queue token did not change")
	}
	f.requireNoViolations(t)

	// The superseded first token is stale: 401 and a violation.
	stale := sc.Session()
	stale.MessageQueueAccessToken = firstToken
	if st, _ := poll(t, stale, 0); st != http.StatusUnauthorized {
		t.Fatalf("poll with a superseded token: status %d, want 401", st)
	}
	f.requireViolation(t, ViolationStaleToken)
	if err := sc.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	// A deleted session's queue answers 404.
	if st, _ := poll(t, sc.Session(), 0); st != http.StatusNotFound {
		t.Fatalf("poll on a deleted session: status %d, want 404", st)
	}
}

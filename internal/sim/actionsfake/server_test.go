package actionsfake

import (
	"bytes"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// With Config.BOM every GitHub API, Actions service and broker body starts
// with a UTF-8 BOM, error and fault bodies too; the control API never does.
// The real scaleset client trims it and works as before.
func TestBOM(t *testing.T) {
	f := newFake(t, func(c *Config) { c.BOM = true })
	ctx := t.Context()
	jwt := "Bearer " + goodAppJWT(t)
	admin := "Bearer " + f.adminToken(t, "org-a")
	if err := f.srv.AddFault(Fault{Match: "GET .*/runnergroups", Status: 503, Times: 1}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	if err := f.srv.AddFault(Fault{Match: "GET .*/downloads", Status: 200, EmptyBody: true, Times: 1}); err != nil {
		t.Fatalf("add fault: %v", err)
	}
	for _, tt := range []struct {
		name, url, auth string
		status          int
		bom             bool
	}{
		{"GitHub API", f.url + "/api/v3/orgs/org-a/installation", jwt, http.StatusOK, true},
		{"GitHub API error", f.url + "/api/v3/orgs/not-installed/installation", jwt, http.StatusNotFound, true},
		{"Actions fault", f.actionsURL("_apis/runtime/runnergroups/"), admin, http.StatusServiceUnavailable, true},
		{"Actions service", f.actionsURL("_apis/runtime/runnergroups/"), admin, http.StatusOK, true},
		{"Actions error", f.actionsURL("_apis/runtime/runnerscalesets/9999"), admin, http.StatusNotFound, true},
		{"broker error", f.url + "/_broker/1/00000000-0000-0000-0000-000000000000/messages", "Bearer x", http.StatusNotFound, true},
		{"empty body", f.url + "/api/v3/orgs/org-a/actions/runners/downloads", "Bearer test-pat", http.StatusOK, false},
		{"control API", f.url + "/_sim/state", "", http.StatusOK, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawDo(t, "GET", tt.url, tt.auth)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := bytes.HasPrefix(body, utf8BOM); got != tt.bom {
				t.Fatalf("body %q: BOM %t, want %t", body, got, tt.bom)
			}
			if tt.name == "empty body" && len(body) != 0 {
				t.Fatalf("empty body fault answered %q", body)
			}
		})
	}

	// The real client, end to end, with the library's sentinels.
	c := f.client(t, "org-a")
	ss := newScaleSet(t, c, "ss", scaleset.Label{Name: "linux"})
	sc, err := c.MessageSessionClient(ctx, ss.ID, "host-1")
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	res := f.queue(t, JobsRequest{Scope: "org-a", DurationMS: 60_000})
	msg, err := sc.GetMessage(ctx, 0, 10)
	if err != nil || msg == nil || len(msg.JobAssignedMessages) != 1 || msg.JobAssignedMessages[0].JobID != res.JobIDs[0] {
		t.Fatalf("GetMessage: %+v, %v", msg, err)
	}
	if err := sc.DeleteMessage(ctx, msg.MessageID); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	id, _ := connectRunner(t, f, c, ss.ID, "r1")
	testkit.Eventually(t, 5*time.Second, "the job to run", func() bool { return f.job(t, res.JobIDs[0]).State == "running" })
	if err := c.RemoveRunner(ctx, id); !errors.Is(err, scaleset.JobStillRunningError) {
		t.Fatalf("RemoveRunner busy: err = %v, want JobStillRunningError", err)
	}
	if _, err := c.GetRunner(ctx, 424242); !errors.Is(err, scaleset.RunnerNotFoundError) {
		t.Fatalf("GetRunner unknown: err = %v, want RunnerNotFoundError", err)
	}
	if got, err := c.GetRunnerByName(ctx, "r1"); err != nil || got == nil || got.ID != int(id) {
		t.Fatalf("GetRunnerByName: %+v, %v", got, err)
	}
	if err := sc.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	f.requireNoViolations(t)
}

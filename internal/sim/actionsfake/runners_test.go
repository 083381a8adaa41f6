package actionsfake

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/google/uuid"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// decodeFiles undoes the encodedJITConfig format by hand.
func decodeFiles(t *testing.T, encoded string) map[string][]byte {
	t.Helper()
	outer, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		t.Fatalf("outer base64: %v", err)
	}
	var files map[string]string
	if err := json.Unmarshal(outer, &files); err != nil {
		t.Fatalf("outer json: %v", err)
	}
	out := map[string][]byte{}
	for name, v := range files {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			t.Fatalf("%s base64: %v", name, err)
		}
		if !json.Valid(b) {
			t.Fatalf("%s is not JSON: %q", name, b)
		}
		out[name] = b
	}
	return out
}

func TestJITConfigAndRunnerConnect(t *testing.T) {
	f, c := newClient(t, nil)
	ctx := t.Context()
	ss := newScaleSet(t, c, "ss")
	jit, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "myshoes-1", WorkFolder: "/tmp/w"}, ss.ID)
	if err != nil {
		t.Fatalf("jit: %v", err)
	}

	files := decodeFiles(t, jit.EncodedJITConfig)
	var settings map[string]any
	if err := json.Unmarshal(files[".runner"], &settings); err != nil {
		t.Fatalf(".runner: %v", err)
	}
	want := map[string]any{
		"agentId": float64(jit.Runner.ID), "agentName": "myshoes-1", "poolId": float64(1), "scaleSetId": float64(ss.ID),
		"serverUrl": f.url + "/", "gitHubUrl": f.url + "/org-a", "workFolder": "/tmp/w", "ephemeral": true,
	}
	for k, v := range want {
		if settings[k] != v {
			t.Errorf(".runner %s = %v, want %v", k, settings[k], v)
		}
	}
	var creds struct {
		Scheme string            `json:"scheme"`
		Data   map[string]string `json:"data"`
	}
	if err := json.Unmarshal(files[".credentials"], &creds); err != nil || creds.Scheme != "OAuth" || creds.Data["token"] == "" {
		t.Fatalf(".credentials = %s (%v)", files[".credentials"], err)
	}
	if _, ok := files[".credentials_rsaparams"]; !ok {
		t.Fatal(".credentials_rsaparams missing")
	}
	cfg, err := DecodeJITConfig(jit.EncodedJITConfig)
	if err != nil || cfg.Token != creds.Data["token"] || cfg.Runner.AgentID != int64(jit.Runner.ID) {
		t.Fatalf("DecodeJITConfig = %+v, %v", cfg, err)
	}

	connect := f.url + "/_sim/runner/connect"
	me := map[string]any{"agentId": jit.Runner.ID, "agentName": "myshoes-1"}
	if st := call(t, "POST", connect, "Bearer wrong-token", me, nil); st != http.StatusUnauthorized {
		t.Fatalf("connect with a wrong token: status %d, want 401", st)
	}
	f.requireViolation(t, ViolationJITMismatch)
	imposter := map[string]any{"agentId": jit.Runner.ID, "agentName": "someone-else"}
	if st := call(t, "POST", connect, "Bearer "+cfg.Token, imposter, nil); st != http.StatusUnauthorized {
		t.Fatalf("connect with a wrong name: status %d, want 401", st)
	}

	var status runnerStatusJSON
	if st := call(t, "POST", connect, "Bearer "+cfg.Token, me, &status); st != http.StatusOK || status.State != "idle" {
		t.Fatalf("connect: status %d, %+v", st, status)
	}
	if st := call(t, "POST", connect, "Bearer "+cfg.Token, me, nil); st != http.StatusConflict {
		t.Fatalf("second connect: status %d, want 409", st)
	}
	f.requireViolation(t, ViolationDoubleConnect)
	if s := f.srv.State().ScaleSets[0]; s.Runners.Online != 1 || s.Statistics.TotalIdleRunners != 1 {
		t.Fatalf("scale set %+v", s)
	}

	// A long job makes it busy; removing it is refused while the job runs.
	res := f.queue(t, JobsRequest{Scope: "org-a", DurationMS: 60_000})
	wait := fmt.Sprintf("%s/_sim/runner/%d/wait?holdMs=5000&since=idle", f.url, jit.Runner.ID)
	if st := call(t, "GET", wait, "Bearer "+cfg.Token, nil, &status); st != http.StatusOK || status.State != "busy" || status.JobID != res.JobIDs[0] {
		t.Fatalf("wait: status %d, %+v", st, status)
	}
	if err := c.RemoveRunner(ctx, int64(jit.Runner.ID)); !errors.Is(err, scaleset.JobStillRunningError) {
		t.Fatalf("RemoveRunner while busy: err = %v, want JobStillRunningError", err)
	}
	if j := f.job(t, res.JobIDs[0]); j.State != "running" || j.RunnerName != "myshoes-1" {
		t.Fatalf("job %+v", j)
	}

	// An idle runner that gets removed sees "removed" and cannot connect again.
	jit2, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "myshoes-2"}, ss.ID)
	if err != nil {
		t.Fatalf("jit 2: %v", err)
	}
	cfg2, err := DecodeJITConfig(jit2.EncodedJITConfig)
	if err != nil {
		t.Fatalf("decode 2: %v", err)
	}
	me2 := map[string]any{"agentId": jit2.Runner.ID, "agentName": "myshoes-2"}
	if st := call(t, "POST", connect, "Bearer "+cfg2.Token, me2, nil); st != http.StatusOK {
		t.Fatalf("connect 2: status %d", st)
	}
	if err := c.RemoveRunner(ctx, int64(jit2.Runner.ID)); err != nil {
		t.Fatalf("RemoveRunner idle: %v", err)
	}
	wait2 := fmt.Sprintf("%s/_sim/runner/%d/wait?holdMs=5000&since=idle", f.url, jit2.Runner.ID)
	if st := call(t, "GET", wait2, "Bearer "+cfg2.Token, nil, &status); st != http.StatusOK || status.State != "removed" {
		t.Fatalf("wait 2: status %d, %+v", st, status)
	}
	if st := call(t, "POST", connect, "Bearer "+cfg2.Token, me2, nil); st != http.StatusGone {
		t.Fatalf("connect removed: status %d, want 410", st)
	}
}

func TestJobsWaitForAScaleSet(t *testing.T) {
	f := newFake(t, nil)
	ctx := t.Context()
	var res JobsResult
	body := map[string]any{"scope": "org-a/repo-1", "count": 2, "labels": []string{"gpu"}}
	if st := call(t, "POST", f.url+"/_sim/jobs", "", body, &res); st != http.StatusOK || len(res.JobIDs) != 2 {
		t.Fatalf("POST /_sim/jobs: status %d, %+v", st, res)
	}
	if st := f.srv.State(); st.ScopeQueued["org-a/repo-1"] != 2 {
		t.Fatalf("scope queue %+v", st.ScopeQueued)
	}
	c := f.client(t, "org-a")
	plain := newScaleSet(t, c, "plain")
	if j := f.job(t, res.JobIDs[0]); j.State != "queued" || j.ScaleSetID != 0 {
		t.Fatalf("job went to a scale set without the label: %+v", j)
	}
	// An org scale set with the label serves the repository's jobs.
	gpu := newScaleSet(t, c, "gpu-set", scaleset.Label{Name: "gpu"})
	for _, id := range res.JobIDs {
		if j := f.job(t, id); j.State != "assigned" || j.ScaleSetID != gpu.ID {
			t.Fatalf("job %+v, want assigned to %d", j, gpu.ID)
		}
	}
	sets := f.srv.State().ScaleSets
	if sets[0].ID != plain.ID || sets[0].Statistics.TotalAssignedJobs != 0 || sets[1].Statistics.TotalAssignedJobs != 2 {
		t.Fatalf("scale sets %+v", sets)
	}
	// Deleting the scale set sends its jobs back to the scope queue.
	if err := c.DeleteRunnerScaleSet(ctx, gpu.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if st := f.srv.State(); st.ScopeQueued["org-a/repo-1"] != 2 {
		t.Fatalf("scope queue after delete %+v", st.ScopeQueued)
	}
	for _, bad := range []JobsRequest{{Scope: ""}, {Scope: "a/b/c"}, {Scope: "a", Count: -1}, {Scope: "a", DurationMS: -1}} {
		if _, err := f.srv.QueueJobs(bad); err == nil {
			t.Errorf("QueueJobs(%+v): want error", bad)
		}
	}
}

// connectRunner registers a JIT runner named name and brings it online.
func connectRunner(t *testing.T, f *fake, c *scaleset.Client, ssID int, name string) (id int64, token string) {
	t.Helper()
	jit, err := c.GenerateJitRunnerConfig(t.Context(), &scaleset.RunnerScaleSetJitRunnerSetting{Name: name}, ssID)
	if err != nil {
		t.Fatalf("jit %s: %v", name, err)
	}
	cfg, err := DecodeJITConfig(jit.EncodedJITConfig)
	if err != nil {
		t.Fatalf("decode jit %s: %v", name, err)
	}
	me := map[string]any{"agentId": cfg.Runner.AgentID, "agentName": name}
	if st := call(t, "POST", f.url+"/_sim/runner/connect", "Bearer "+cfg.Token, me, nil); st != http.StatusOK {
		t.Fatalf("connect %s: status %d", name, st)
	}
	return cfg.Runner.AgentID, cfg.Token
}

// The agent object has status online, offline or busy and no busy boolean;
// errors carry the fully qualified type names the library's sentinels match.
func TestAgentStatusAndErrorTypes(t *testing.T) {
	f := newFake(t, nil)
	ctx := t.Context()
	c, ss, _ := sessionFor(t, f)
	admin := "Bearer " + f.adminToken(t, "org-a")
	agent := func(id int64) map[string]any {
		t.Helper()
		var raw map[string]any
		if st := call(t, "GET", f.actionsURL(fmt.Sprintf("_apis/distributedtask/pools/0/agents/%d", id)), admin, nil, &raw); st != http.StatusOK {
			t.Fatalf("get agent %d: status %d", id, st)
		}
		return raw
	}
	listed := func(name string) map[string]any {
		t.Helper()
		var list struct {
			Value []map[string]any `json:"value"`
		}
		if st := call(t, "GET", f.actionsURL("_apis/distributedtask/pools/0/agents")+"&agentName="+name, admin, nil, &list); st != http.StatusOK || len(list.Value) != 1 {
			t.Fatalf("list agent %s: status %d, %+v", name, st, list)
		}
		return list.Value[0]
	}

	jit, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "never-connected"}, ss.ID)
	if err != nil {
		t.Fatalf("jit: %v", err)
	}
	idleID, _ := connectRunner(t, f, c, ss.ID, "idle")
	f.queue(t, JobsRequest{Scope: "org-a", DurationMS: 60_000})
	// The job went to "idle"; a second runner stays idle.
	busyID := idleID
	idleID, _ = connectRunner(t, f, c, ss.ID, "idle-2")
	testkit.Eventually(t, 5*time.Second, "the first runner to be busy", func() bool { return agent(busyID)["status"] == "busy" })

	for _, tt := range []struct {
		id   int64
		name string
		want string
	}{
		{int64(jit.Runner.ID), "never-connected", "offline"},
		{idleID, "idle-2", "online"},
		{busyID, "idle", "busy"},
	} {
		for where, raw := range map[string]map[string]any{"get": agent(tt.id), "list": listed(tt.name)} {
			if raw["status"] != tt.want {
				t.Errorf("%s %s: status %v, want %s", where, tt.name, raw["status"], tt.want)
			}
			if _, ok := raw["busy"]; ok {
				t.Errorf("%s %s: has a busy field: %v", where, tt.name, raw)
			}
		}
	}

	// The library's sentinels match the qualified names.
	if err := c.RemoveRunner(ctx, busyID); !errors.Is(err, scaleset.JobStillRunningError) {
		t.Fatalf("RemoveRunner busy: err = %v, want JobStillRunningError", err)
	}
	if err := c.RemoveRunner(ctx, 424242); !errors.Is(err, scaleset.RunnerNotFoundError) {
		t.Fatalf("RemoveRunner unknown: err = %v, want RunnerNotFoundError", err)
	}
	if _, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "idle-2"}, ss.ID); !errors.Is(err, scaleset.RunnerExistsError) {
		t.Fatalf("jit of an existing name: err = %v, want RunnerExistsError", err)
	}

	// Raw bodies: typeName assembly-qualified, typeKey short.
	sid := uuid.Nil.String()
	for _, tt := range []struct {
		name, method, url string
		body              any
		status            int
		typeName          string
	}{
		{"session conflict", "POST", f.actionsURL(fmt.Sprintf("_apis/runtime/runnerscalesets/%d/sessions", ss.ID)),
			map[string]string{"sessionId": sid, "ownerName": "host-2"}, http.StatusConflict,
			"GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException, GitHub.Actions.Runtime.WebApi"},
		{"busy runner", "DELETE", f.actionsURL(fmt.Sprintf("_apis/distributedtask/pools/0/agents/%d", busyID)), nil, http.StatusBadRequest,
			"GitHub.DistributedTask.WebApi.JobStillRunningException, GitHub.DistributedTask.WebApi"},
		{"unknown runner", "GET", f.actionsURL("_apis/distributedtask/pools/0/agents/424242"), nil, http.StatusNotFound,
			"GitHub.DistributedTask.WebApi.AgentNotFoundException, GitHub.DistributedTask.WebApi"},
		{"existing runner", "POST", f.actionsURL(fmt.Sprintf("_apis/runtime/runnerscalesets/%d/generatejitconfig", ss.ID)),
			map[string]string{"name": "idle-2"}, http.StatusConflict,
			"GitHub.DistributedTask.WebApi.AgentExistsException, GitHub.DistributedTask.WebApi"},
		{"unknown scale set", "GET", f.actionsURL("_apis/runtime/runnerscalesets/9999"), nil, http.StatusNotFound,
			"GitHub.Actions.Runtime.WebApi.RunnerScaleSetNotFoundException, GitHub.Actions.Runtime.WebApi"},
		{"bad admin token", "GET", f.actionsURL("_apis/runtime/runnergroups/"), nil, http.StatusUnauthorized,
			"GitHub.Services.WebApi.VssUnauthorizedException, GitHub.Services.WebApi"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			auth := admin
			if tt.status == http.StatusUnauthorized {
				auth = "Bearer not-a-token"
			}
			var e actionsError
			if st := call(t, tt.method, tt.url, auth, tt.body, &e); st != tt.status || e.TypeName != tt.typeName || e.TypeKey != typeKey(tt.typeName) || e.Message == "" {
				t.Fatalf("status %d, %+v; want %d %s", st, e, tt.status, tt.typeName)
			}
		})
	}
	if got := typeKey(exSessionConflict); got != "RunnerScaleSetSessionConflictException" {
		t.Fatalf("typeKey = %q", got)
	}
}

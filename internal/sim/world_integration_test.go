package sim_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// TestRunnerRunsJobEndToEnd drives the real pieces together: the scaleset
// client makes a scale set and a JIT config, runnerscript renders the
// default setup script, the plugin host has the fake plugin run it, the
// sim runner comes online with the JIT config and runs a queued job.
func TestRunnerRunsJobEndToEnd(t *testing.T) {
	t.Parallel()
	w := startWorld(t, sim.Config{})
	fx := createScaleSet(t, w, 1)
	pl := newPlugin(t)

	name := runnerName()
	jit := fx.jit(t, name)
	script := render(t, "", runnerscript.Values{RunnerName: name, JITConfig: jit.EncodedJITConfig, Scope: testScope})
	inst := pl.add(t, name, script)

	queued, err := w.Actions.QueueJobs(actionsfake.JobsRequest{Scope: testScope, Count: 1, DurationMS: 200})
	if err != nil {
		t.Fatalf("queue job: %v", err)
	}
	if len(queued.JobIDs) != 1 {
		t.Fatalf("queued %v, want one job", queued.JobIDs)
	}
	jobID := queued.JobIDs[0]

	var job actionsfake.JobState
	testkit.Eventually(t, 30*time.Second, "the runner to come online and complete the job", func() bool {
		st := w.Actions.State()
		i := slices.IndexFunc(st.Jobs, func(j actionsfake.JobState) bool { return j.ID == jobID })
		if i < 0 {
			t.Fatalf("job %s missing from state", jobID)
		}
		job = st.Jobs[i]
		return job.State == "completed"
	})
	if job.RunnerName != name || job.Result != "succeeded" || job.ScaleSetID != fx.set.ID {
		t.Errorf("job = %+v; want completed (succeeded) on scale set %d by %s", job, fx.set.ID, name)
	}
	rn := runnerState(t, w, name)
	if rn.ConnectedAt.IsZero() {
		t.Errorf("runner %s never connected: %+v", name, rn)
	}
	if rn.ID != int64(jit.Runner.ID) || rn.ScaleSetID != fx.set.ID {
		t.Errorf("runner = %+v; want id %d on scale set %d", rn, jit.Runner.ID, fx.set.ID)
	}
	// The ephemeral runner is done after its job, so run.sh and the
	// setup script end cleanly.
	testkit.Eventually(t, 10*time.Second, "the runner to be done", func() bool { return runnerState(t, w, name).State == "done" })
	if ev := pl.scriptExit(t, inst.CloudID); ev.ExitCode != 0 {
		t.Errorf("setup script exit code %d, want 0; stderr tail:\n%s", ev.ExitCode, ev.StderrTail)
	}

	if err := pl.host.DeleteInstance(t.Context(), inst.CloudID, []string{"self-hosted"}); err != nil {
		t.Fatalf("DeleteInstance: %v", err)
	}
	if _, err := os.Stat(filepath.Join(pl.stateDir, inst.CloudID)); !os.IsNotExist(err) {
		t.Errorf("instance directory still exists after DeleteInstance (stat err %v)", err)
	}
	// Deleting it again is NotFound, which the host treats as success.
	if err := pl.host.DeleteInstance(t.Context(), inst.CloudID, nil); err != nil {
		t.Errorf("second DeleteInstance: %v", err)
	}
	var codes []string
	for _, c := range pl.calls(t, func(c shoesfake.Call) bool { return c.Method != "" }) {
		codes = append(codes, c.Method+":"+c.Code)
	}
	want := []string{"AddInstance:OK", "DeleteInstance:OK", "DeleteInstance:NotFound"}
	if !slices.Equal(codes, want) {
		t.Errorf("plugin calls = %v, want %v", codes, want)
	}
	if v := w.Actions.State().Violations; len(v) != 0 {
		t.Errorf("protocol violations: %+v", v)
	}
}

// TestBrokenSetupScriptsNeverBringARunnerOnline runs setup scripts that must
// fail; each would bring the runner online if the failure went unnoticed.
func TestBrokenSetupScriptsNeverBringARunnerOnline(t *testing.T) {
	t.Parallel()
	w := startWorld(t, sim.Config{})
	fx := createScaleSet(t, w, 1)
	pl := newPlugin(t)

	// A main template that installs the runner from url and runs it,
	// with the JIT config when withJIT.
	customTemplate := func(url string, withJIT bool) string {
		run := `exec ./run.sh --jitconfig {{ shellQuote .JITConfig }}`
		if !withJIT {
			run = `exec ./run.sh`
		}
		return `#!/bin/bash
set -euo pipefail
dir={{ shellQuote .RunnerBaseDirectory }}/{{ shellQuote .RunnerName }}
mkdir -p "$dir"
cd "$dir"
curl -fsSL -o runner.tar.gz ` + url + `
tar xzf runner.tar.gz
` + run + "\n"
	}
	const goodURL = "https://github.com/actions/runner/releases/download/v{{ .RunnerVersion }}/actions-runner-linux-x64-{{ .RunnerVersion }}.tar.gz"

	tests := []struct {
		name string
		// script renders the setup script for a runner with a valid JIT config.
		script func(t *testing.T, name, jit string) string
		// stderr must appear in the script's stderr tail.
		stderr string
		// jitMismatch: the service must report a "jit config mismatch" for the runner.
		jitMismatch bool
	}{
		{
			name: "altered credentials token",
			script: func(t *testing.T, name, jit string) string {
				orig, err := actionsfake.DecodeJITConfig(jit)
				if err != nil || orig.Token == "" || orig.Runner.AgentName != name {
					t.Fatalf("decode jit config: %+v, %v", orig.Runner, err)
				}
				jc, err := shoesfake.DecodeJITConfig(jit)
				if err != nil {
					t.Fatalf("shoesfake decode jit config: %v", err)
				}
				jc.Credentials.Data.Token = strings.Repeat("0", len(orig.Token))
				altered, err := shoesfake.EncodeJITConfig(jc)
				if err != nil {
					t.Fatal(err)
				}
				back, err := actionsfake.DecodeJITConfig(altered)
				if err != nil || back.Token == orig.Token || back.Runner.AgentID != orig.Runner.AgentID || back.Runner.ServerURL != orig.Runner.ServerURL {
					t.Fatalf("altered jit config decodes to %+v (token changed: %t), %v", back.Runner, back.Token != orig.Token, err)
				}
				return render(t, "", runnerscript.Values{RunnerName: name, JITConfig: altered})
			},
			stderr:      "connect",
			jitMismatch: true,
		},
		{
			name: "jit config not passed to run.sh",
			script: func(t *testing.T, name, _ string) string {
				return render(t, customTemplate(goodURL, false), runnerscript.Values{RunnerName: name, JITConfig: "unused"})
			},
			stderr: "--jitconfig is required",
		},
		{
			name: "jit config not a jit config",
			script: func(t *testing.T, name, _ string) string {
				return render(t, "", runnerscript.Values{RunnerName: name, JITConfig: "x"})
			},
			stderr: "decode jit config",
		},
		{
			name: "latest left in the download URL",
			script: func(t *testing.T, name, jit string) string {
				url := "https://github.com/actions/runner/releases/download/latest/actions-runner-linux-x64-latest.tar.gz"
				return render(t, customTemplate(url, true), runnerscript.Values{RunnerName: name, JITConfig: jit})
			},
			stderr: "curl shim: not a concrete actions-runner tarball URL: https://github.com/actions/runner/releases/download/latest/",
		},
		{
			name: "vlatest in the download URL",
			script: func(t *testing.T, name, jit string) string {
				url := "https://github.com/actions/runner/releases/download/vlatest/actions-runner-linux-x64-latest.tar.gz"
				return render(t, customTemplate(url, true), runnerscript.Values{RunnerName: name, JITConfig: jit})
			},
			stderr: "curl shim: not a concrete actions-runner tarball URL: https://github.com/actions/runner/releases/download/vlatest/",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := runnerName()
			jit := fx.jit(t, name)
			inst := pl.add(t, name, tc.script(t, name, jit.EncodedJITConfig))

			// Wait for the script to end, or the runner to come online.
			var ev shoesfake.Call
			testkit.Eventually(t, 30*time.Second, "the setup script to end", func() bool {
				if rn := runnerState(t, w, name); !rn.ConnectedAt.IsZero() {
					t.Fatalf("runner came online: %+v", rn)
				}
				var ok bool
				ev, ok = pl.exited(t, inst.CloudID)
				return ok
			})
			if ev.ExitCode == 0 {
				t.Errorf("setup script exit code 0, want a failure; stderr tail:\n%s", ev.StderrTail)
			}
			if !strings.Contains(ev.StderrTail, tc.stderr) {
				t.Errorf("stderr tail does not contain %q:\n%s", tc.stderr, ev.StderrTail)
			}
			// run.sh is exec'd by the script, so once the script has
			// ended no runner can still come online.
			if rn := runnerState(t, w, name); !rn.ConnectedAt.IsZero() || rn.State != "offline" {
				t.Errorf("runner came online: %+v", rn)
			}
			var mismatch bool
			for _, v := range w.Actions.State().Violations {
				if v.Kind == actionsfake.ViolationJITMismatch && strings.Contains(v.Detail, name) {
					mismatch = true
				}
			}
			if mismatch != tc.jitMismatch {
				t.Errorf("jit config mismatch reported for %s: %t, want %t (violations %+v)", name, mismatch, tc.jitMismatch, w.Actions.State().Violations)
			}
		})
	}
	if st := w.Actions.State(); st.ScaleSets[0].Runners.Online != 0 {
		t.Errorf("scale set has %d runners online, want 0", st.ScaleSets[0].Runners.Online)
	}
}

// TestFaultsThroughTheWorld injects faults with the control API and
// watches the real client run into them.
func TestFaultsThroughTheWorld(t *testing.T) {
	t.Parallel()
	w := startWorld(t, sim.Config{})
	fx := createScaleSet(t, w, -1) // no retries: every call is one request
	ctx := t.Context()
	// The provider may read the scale set back after creating it.
	const getRoute = "GET /_actions/_apis/runtime/runnerscalesets/{id}"
	getsBefore := w.Actions.State().Calls[getRoute]

	resp, err := http.Post(w.URL()+"/_sim/faults", "application/json",
		strings.NewReader(`{"match":"POST .*/generatejitconfig","status":500,"times":2}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /_sim/faults: %s, want 204", resp.Status)
	}

	names := []string{runnerName(), runnerName(), runnerName()}
	var errs []error
	for i, name := range names {
		_, err := fx.client.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: name}, fx.set.ID)
		errs = append(errs, err)
		// Other endpoints are not hit by the fault.
		switch i {
		case 0:
			if got, err := fx.client.GetRunnerScaleSetByID(ctx, fx.set.ID); err != nil || got.ID != fx.set.ID {
				t.Errorf("get scale set while the fault is active: %+v, %v", got, err)
			}
		case 1:
			if got, err := fx.client.GetRunnerByName(ctx, names[0]); err != nil || got != nil {
				t.Errorf("get runner %s while the fault is active: %+v, %v; want nil, nil", names[0], got, err)
			}
		}
	}
	if errs[0] == nil || errs[1] == nil || errs[2] != nil {
		t.Fatalf("generatejitconfig errors = %v; want failure, failure, success", errs)
	}
	for _, err := range errs[:2] {
		if !strings.Contains(err.Error(), "500") {
			t.Errorf("error %q does not mention the status 500", err)
		}
	}
	if rn, err := fx.client.GetRunnerByName(ctx, names[2]); err != nil || rn == nil || rn.Name != names[2] {
		t.Errorf("get runner %s: %+v, %v", names[2], rn, err)
	}

	// GET /_sim/state on the wire.
	resp, err = http.Get(w.URL() + "/_sim/state")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /_sim/state: %s, %v", resp.Status, err)
	}
	var st struct {
		Calls  map[string]int `json:"calls"`
		Faults []struct {
			Match  string `json:"match"`
			Status int    `json:"status"`
			Times  int    `json:"times"`
			Hits   int    `json:"hits"`
			Active bool   `json:"active"`
		} `json:"faults"`
		Runners []struct {
			Name string `json:"name"`
		} `json:"runners"`
		Violations []json.RawMessage `json:"violations"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("decode state: %v\n%s", err, body)
	}
	if len(st.Faults) != 1 {
		t.Fatalf("faults = %+v, want one", st.Faults)
	}
	if f := st.Faults[0]; f.Match != "POST .*/generatejitconfig" || f.Status != 500 || f.Times != 2 || f.Hits != 2 || f.Active {
		t.Errorf("fault = %+v; want 2 hits of 2, inactive", f)
	}
	const jitRoute = "POST /_actions/_apis/runtime/runnerscalesets/{id}/generatejitconfig"
	if n := st.Calls[jitRoute]; n != 3 {
		t.Errorf("%d generatejitconfig requests, want exactly 3 (calls %v)", n, st.Calls)
	}
	if n := st.Calls[getRoute] - getsBefore; n != 1 {
		t.Errorf("%d get scale set requests, want 1", n)
	}
	// The faulted requests never reached the handler: one runner only.
	if len(st.Runners) != 1 || st.Runners[0].Name != names[2] {
		t.Errorf("runners = %+v, want only %s", st.Runners, names[2])
	}
	if len(st.Violations) != 0 {
		t.Errorf("violations: %s", st.Violations)
	}
}

// TestMyshoesThroughTheWorld reads and replaces targets on the fake myshoes.
func TestMyshoesThroughTheWorld(t *testing.T) {
	t.Parallel()
	w := startWorld(t, sim.Config{ResourceType: "medium"})

	get := func() (int, string) {
		t.Helper()
		resp, b := testkit.Fetch(t, "GET", w.MyshoesURL()+"/target", nil, nil)
		return resp.StatusCode, string(b)
	}

	status, body := get()
	if status != http.StatusOK {
		t.Fatalf("GET /target: %d %s", status, body)
	}
	var targets []myshoes.Target
	if err := json.Unmarshal([]byte(body), &targets); err != nil {
		t.Fatalf("decode targets: %v\n%s", err, body)
	}
	if len(targets) != 1 {
		t.Fatalf("targets = %+v, want one", targets)
	}
	if tg := targets[0]; tg.Scope != testScope || tg.Status != "active" || tg.ResourceType != "medium" || tg.ID == "" || tg.CreatedAt.IsZero() {
		t.Errorf("target = %+v; want active org-a, medium, with id and created_at", tg)
	}

	req, err := http.NewRequest(http.MethodPut, w.MyshoesURL()+"/_sim/targets", strings.NewReader(`[]`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /_sim/targets: %s", resp.Status)
	}

	status, body = get()
	if status != http.StatusOK || strings.TrimSuffix(body, "\n") != "null" {
		t.Errorf("GET /target after emptying: %d %q, want 200 null", status, body)
	}
}

// TestGHESAcquireThroughTheWorld runs a message session in GHES mode: jobs
// stay available until the listener acquires them.
func TestGHESAcquireThroughTheWorld(t *testing.T) {
	t.Parallel()
	w := startWorld(t, sim.Config{Acquire: true})
	fx := createScaleSet(t, w, 1)
	ctx := t.Context()

	sess, err := fx.p.CreateSession(ctx, testScope, fx.set.ID, "sim-test")
	if err != nil {
		t.Fatalf("create session: %v", err)
	}
	t.Cleanup(func() { _ = sess.Close(t.Context()) })

	queued, err := w.Actions.QueueJobs(actionsfake.JobsRequest{Scope: testScope, Count: 1, DurationMS: 100})
	if err != nil {
		t.Fatalf("queue job: %v", err)
	}
	jobID := queued.JobIDs[0]

	// next polls until a message arrives, bounded by a deadline.
	var lastID int64
	next := func(what string) *github.Message {
		t.Helper()
		var msg *github.Message
		testkit.Eventually(t, 10*time.Second, what, func() bool {
			var err error
			if msg, err = sess.GetMessage(ctx, lastID, 5); err != nil {
				t.Fatalf("get message: %v", err)
			}
			return msg != nil
		})
		lastID = msg.ID
		return msg
	}

	msg := next("the JobAvailable message")
	if len(msg.Available) != 1 || len(msg.Assigned) != 0 || msg.Available[0].JobID != jobID {
		t.Fatalf("message %d: available %+v, assigned %+v; want job %s available only", msg.ID, msg.Available, msg.Assigned, jobID)
	}
	reqID := msg.Available[0].RunnerRequestID
	if msg.Statistics == nil || msg.Statistics.TotalAvailableJobs != 1 || msg.Statistics.TotalAssignedJobs != 0 {
		t.Errorf("statistics = %+v; want 1 available, 0 assigned", msg.Statistics)
	}
	if err := sess.DeleteMessage(ctx, msg.ID); err != nil {
		t.Fatalf("delete message: %v", err)
	}

	// Without acquisition nothing happens.
	for i := range 2 {
		m, err := sess.GetMessage(ctx, lastID, 5)
		if err != nil {
			t.Fatalf("poll %d: %v", i, err)
		}
		if m != nil {
			t.Fatalf("poll %d without acquiring: message %d (available %d, assigned %d), want none", i, m.ID, len(m.Available), len(m.Assigned))
		}
	}
	if js := jobState(t, w, jobID); js.State != "available" {
		t.Fatalf("job without acquisition is %q, want available", js.State)
	}

	got, err := sess.AcquireJobs(ctx, []int64{reqID})
	if err != nil {
		t.Fatalf("acquire jobs: %v", err)
	}
	if !slices.Equal(got, []int64{reqID}) {
		t.Fatalf("acquired %v, want [%d]", got, reqID)
	}
	msg = next("the JobAssigned message")
	if len(msg.Assigned) != 1 || msg.Assigned[0].RunnerRequestID != reqID || msg.Assigned[0].JobID != jobID {
		t.Fatalf("message %d: assigned %+v, want request %d", msg.ID, msg.Assigned, reqID)
	}
	if msg.Statistics == nil || msg.Statistics.TotalAssignedJobs != 1 || msg.Statistics.TotalAvailableJobs != 0 {
		t.Errorf("statistics = %+v; want 0 available, 1 assigned", msg.Statistics)
	}
	if js := jobState(t, w, jobID); js.State != "assigned" {
		t.Errorf("job after acquisition is %q, want assigned", js.State)
	}
	if v := w.Actions.State().Violations; len(v) != 0 {
		t.Errorf("protocol violations: %+v", v)
	}
}

func TestParseAppKey(t *testing.T) {
	t.Parallel()
	rsaKey, pkcs1 := testkit.Key(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, der []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	}
	must := func(der []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return der
	}

	tests := []struct {
		name     string
		pem      []byte
		wantPriv bool
		wantErr  bool
	}{
		{"PKCS#1 private", pkcs1, true, false},
		{"PKCS#8 private", pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(rsaKey))), true, false},
		{"PKIX public", pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))), false, false},
		{"PKCS#1 public", pemOf("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)), false, false},
		{"ECDSA PKCS#8 private", pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(ecKey))), false, true},
		{"ECDSA SEC1 private", pemOf("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(ecKey))), false, true},
		{"ECDSA PKIX public", pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&ecKey.PublicKey))), false, true},
		{"not PEM", []byte("garbage"), false, true},
		{"empty", nil, false, true},
		{"garbage private", pemOf("RSA PRIVATE KEY", []byte("garbage")), false, true},
		{"garbage public", pemOf("PUBLIC KEY", []byte("garbage")), false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			priv, pub, err := sim.ParseAppKey(tc.pem)
			if tc.wantErr {
				if err == nil || priv != nil || pub != nil {
					t.Fatalf("ParseAppKey = %v, %v, %v; want an error only", priv != nil, pub != nil, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAppKey: %v", err)
			}
			if pub == nil || !pub.Equal(&rsaKey.PublicKey) {
				t.Errorf("public key does not match")
			}
			if tc.wantPriv != (priv != nil) {
				t.Fatalf("private key returned: %t, want %t", priv != nil, tc.wantPriv)
			}
			if priv != nil && !priv.Equal(rsaKey) {
				t.Errorf("private key does not match")
			}
		})
	}

	// A World given only the public key verifies the app's JWTs but
	// cannot hand out the private key.
	t.Run("world with the public key only", func(t *testing.T) {
		_, pub, err := sim.ParseAppKey(pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey))))
		if err != nil {
			t.Fatal(err)
		}
		w := startWorld(t, sim.Config{AppPublicKey: pub})
		if k := w.AppKeyPEM(); k != nil {
			t.Fatalf("AppKeyPEM = %d bytes, want nil", len(k))
		}
		p, err := github.New(github.Config{
			URL:           w.GitHubURL(),
			AppID:         w.AppID(),
			PrivateKeyPEM: pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)),
			RetryMax:      -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.CloseIdleConnections)
		if _, _, err := p.GetOrCreateScaleSet(t.Context(), testScope, "", "pub-only", []string{"self-hosted"}); err != nil {
			t.Errorf("app auth with the matching private key: %v", err)
		}
	})
}

// TestWorldCloseAnswersHeldRunnerWaits closes a World while a sim runner is
// idle in a held wait: Close must release the wait, which is then answered
// "shutting down", instead of cutting the connection when Shutdown gives up.
func TestWorldCloseAnswersHeldRunnerWaits(t *testing.T) {
	t.Parallel()
	w, err := sim.Start(sim.Config{PollHold: 300 * time.Millisecond, Targets: []string{testScope}})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = w.Close()
		}
	})
	fx := createScaleSet(t, w, 1)
	pl := newPlugin(t)

	name := runnerName()
	jit := fx.jit(t, name)
	inst := pl.add(t, name, render(t, "", runnerscript.Values{RunnerName: name, JITConfig: jit.EncodedJITConfig}))
	// Online, and its wait request has reached the fake (where it is held).
	const waitRoute = "GET /_sim/runner/{id}/wait"
	testkit.Eventually(t, 30*time.Second, "the runner to come online and wait", func() bool {
		return !runnerState(t, w, name).ConnectedAt.IsZero() && w.Actions.State().Calls[waitRoute] > 0
	})

	closed = true
	if err := w.Close(); err != nil {
		t.Fatalf("close world: %v", err)
	}
	// The runner logs the answer to its held wait when it retries.
	logPath := filepath.Join(pl.stateDir, inst.CloudID, "script.log")
	testkit.Eventually(t, 20*time.Second, "the runner's wait to be answered 503", func() bool {
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Contains(b, []byte("503 Service Unavailable")) && bytes.Contains(b, []byte("the fake is shutting down"))
	})
}

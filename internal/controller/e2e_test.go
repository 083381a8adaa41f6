package controller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/myshoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

var threeTargets = []string{"org-a", "org-b", "owner-c/repo-c"}

// checkClean asserts the end state of a run in which every job completed,
// with the one invariant checker (scenario.Check: every instance created
// was deleted, no runner name provisioned twice, no protocol violation),
// and that the store holds no runner, jobs runners came online and jobs
// went to history as completed.
func (e *testEnv) checkClean(jobs int) {
	e.t.Helper()
	e.waitFor("every runner deleted", 60*time.Second, func() bool {
		runners, err := e.st.ListRunners(store.RunnerFilter{})
		return err == nil && len(runners) == 0
	})
	history, err := e.st.ListHistory(store.HistoryFilter{})
	if err != nil {
		e.t.Fatalf("history: %v", err)
	}
	st := e.state()
	// The controller still runs: its sessions are open.
	iv := scenario.Check(scenario.Inputs{State: st, Calls: e.calls(), History: history}, scenario.Options{SessionsOK: true})
	for _, p := range iv.Problems {
		e.t.Errorf("invariant: %s", p)
	}
	if iv.Created != jobs || iv.Completed != jobs {
		e.t.Errorf("%s; want %d instances and %d jobs completed", iv, jobs, jobs)
	}
	completed, online := 0, 0
	for _, h := range history {
		if h.Reason == "completed" {
			completed++
		}
	}
	for _, r := range st.Runners {
		if !r.ConnectedAt.IsZero() {
			online++
		}
	}
	if completed != jobs || online != jobs {
		e.t.Errorf("history has %d completed runners, %d runners came online; want %d each", completed, online, jobs)
	}
}

func TestE2EFullLoop(t *testing.T) {
	for _, tc := range []struct {
		name    string
		acquire bool
	}{
		{"github.com", false},
		{"ghes-acquire", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, envOptions{targets: threeTargets, acquire: tc.acquire})
			e.start()
			e.waitFor("a session on every scale set", 30*time.Second, func() bool {
				st := e.state()
				n := 0
				for _, ss := range st.ScaleSets {
					if ss.Session != nil {
						n++
					}
				}
				return n == len(threeTargets)
			})
			for _, scope := range threeTargets {
				e.queueJobs(scope, 10, 300*time.Millisecond)
			}
			e.waitFor("30 jobs completed", 120*time.Second, func() bool {
				return scenario.JobCounts(e.state())["completed"] == 30
			})
			e.checkClean(30)
			e.checkNoSecretsLogged()
		})
	}
}

// runnersIn returns the stored runners of a scope in the given states.
func (e *testEnv) runnersIn(scope string, states ...store.RunnerState) []store.Runner {
	e.t.Helper()
	rs, err := e.st.ListRunners(store.RunnerFilter{Scope: scope, States: states})
	if err != nil {
		e.t.Fatalf("list runners: %v", err)
	}
	return rs
}

// pollsSince reports whether the broker answered n more polls (counted
// through the call counts) since the first call.
func pollsSince(e *testEnv, n int) bool {
	e.t.Helper()
	key := "GET /_broker/{id}/{sid}/messages"
	start, ok := e.pollMark[key]
	now := e.state().Calls[key]
	if !ok {
		if e.pollMark == nil {
			e.pollMark = map[string]int{}
		}
		e.pollMark[key] = now
		return false
	}
	return now-start >= n
}

func TestE2EMaxRunnersCapsInstances(t *testing.T) {
	e := newTestEnv(t, envOptions{targets: []string{"org-a"}, maxRunners: 5, pluginLatency: 100 * time.Millisecond})
	e.start()
	e.queueJobs("org-a", 20, 400*time.Millisecond)
	peak := 0
	e.waitFor("20 jobs completed", 120*time.Second, func() bool {
		live := len(e.runnersIn("org-a"))
		peak = max(peak, e.liveInstances())
		_ = live
		return scenario.JobCounts(e.state())["completed"] == 20
	})
	e.checkClean(20)
	if peak > 5 {
		t.Errorf("peak concurrent instances = %d, want at most 5", peak)
	}
	if peak < 2 {
		t.Errorf("peak concurrent instances = %d: the test did not exercise concurrency", peak)
	}
	t.Logf("peak concurrent instances: %d", peak)
}

// liveInstances counts the instances the fake plugin created and has not
// deleted, from its call log.
func (e *testEnv) liveInstances() int { return len(scenario.LiveInstances(e.calls())) }

func TestE2EMyshoesDownKeepsListenersServing(t *testing.T) {
	e := newTestEnv(t, envOptions{targets: []string{"org-a"}})
	e.start()
	e.waitFor("session", 30*time.Second, func() bool {
		st := e.state()
		return len(st.ScaleSets) == 1 && st.ScaleSets[0].Session != nil
	})
	e.world.Myshoes.SetFault(myshoesfake.Fault{Status: 500})
	before := e.world.Myshoes.Requests("GET /target")
	e.waitFor("several failed target reads", 30*time.Second, func() bool {
		return e.world.Myshoes.Requests("GET /target") >= before+3
	})
	e.queueJobs("org-a", 3, 100*time.Millisecond)
	e.waitFor("jobs completed while myshoes is down", 60*time.Second, func() bool {
		return scenario.JobCounts(e.state())["completed"] == 3
	})
	if st := e.ctrl.Status(); st.Failures == 0 || st.LastError == "" {
		t.Errorf("sync status = %+v, want failures recorded", st)
	}
	e.world.Myshoes.SetFault(myshoesfake.Fault{})
	e.waitFor("sync recovers", 30*time.Second, func() bool { return e.ctrl.Status().Failures == 0 })
	e.checkClean(3)
}

func TestE2ERestartMidBurst(t *testing.T) {
	e := newTestEnv(t, envOptions{targets: threeTargets, pluginLatency: 200 * time.Millisecond})
	e.start()
	for _, scope := range threeTargets {
		e.queueJobs(scope, 8, 1500*time.Millisecond)
	}
	// Stop while some runners are busy and others still being provisioned.
	e.waitFor("a busy runner", 60*time.Second, func() bool {
		return len(e.runnersIn("", store.StateBusy)) > 0
	})
	e.stop()
	// A crash leaves the sessions open on GitHub and stored in the file;
	// make that so, then start again.
	stale := e.leaveStaleSessions()
	e.start()
	restarted := time.Now()
	e.waitFor("sessions on every scale set", 30*time.Second, func() bool {
		n := 0
		for _, ss := range e.state().ScaleSets {
			if ss.Session != nil {
				n++
			}
		}
		return n == len(threeTargets)
	})
	if d := time.Since(restarted); d > 10*time.Second {
		t.Errorf("sessions took %v after restart; want no 409 wait", d)
	}
	e.waitFor("24 jobs completed", 120*time.Second, func() bool { return scenario.JobCounts(e.state())["completed"] == 24 })
	e.checkClean(24)
	for _, ss := range e.state().ScaleSets {
		if ss.Conflicts != 0 {
			t.Errorf("scale set %s saw %d session conflicts", ss.Name, ss.Conflicts)
		}
		if ss.Session != nil && ss.Session.ID == stale[ss.ID] {
			t.Errorf("scale set %s still has the stale session %s", ss.Name, ss.Session.ID)
		}
	}
}

// leaveStaleSessions opens a session on every stored scale set and stores
// it, as a process killed while listening leaves them. It returns the
// session IDs by scale set ID.
func (e *testEnv) leaveStaleSessions() map[int]string {
	e.t.Helper()
	st, err := store.Open(store.Options{Path: e.statePath})
	if err != nil {
		e.t.Fatalf("open store: %v", err)
	}
	defer st.Close()
	gh, err := github.New(github.Config{URL: e.world.GitHubURL(), AppID: e.world.AppID(), PrivateKeyPEM: e.world.AppKeyPEM()})
	if err != nil {
		e.t.Fatalf("github: %v", err)
	}
	sets, err := st.ListScaleSets()
	if err != nil {
		e.t.Fatalf("list scale sets: %v", err)
	}
	out := map[int]string{}
	for _, ss := range sets {
		sess, err := gh.CreateSession(context.Background(), ss.Scope, ss.ScaleSetID, st.OwnerID())
		if err != nil {
			e.t.Fatalf("create session: %v", err)
		}
		if err := st.PutSession(store.Session{ScaleSetID: ss.ScaleSetID, TargetID: ss.TargetID, Scope: ss.Scope, SessionID: sess.ID(), OwnerName: st.OwnerID()}); err != nil {
			e.t.Fatalf("store session: %v", err)
		}
		out[ss.ScaleSetID] = sess.ID()
	}
	if len(out) == 0 {
		e.t.Fatal("no scale set stored")
	}
	return out
}

// checkNoSecretsLogged asserts that no JIT config, runner credential or
// app key issued during the test appears in the controller's logs.
func (e *testEnv) checkNoSecretsLogged() {
	e.t.Helper()
	logs := e.logs.String()
	secrets := e.world.Actions.Secrets()
	if len(secrets) == 0 {
		e.t.Fatal("the sim issued no secrets: the check would be empty")
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			e.t.Errorf("a secret issued by the sim appears in the logs: %.12s...", s)
		}
	}
	key := string(e.world.AppKeyPEM())
	for _, line := range strings.Split(key, "\n")[1:3] {
		if strings.Contains(logs, line) {
			e.t.Error("the app private key appears in the logs")
		}
	}
}

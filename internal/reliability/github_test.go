package reliability

// Behaving like the real GitHub (issue 10). Each scenario turns on, in the
// sim, one thing the real service does that our client once got wrong,
// and runs the real binary against it. They run without build tags, so
// `make test` runs them.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// Route patterns of the sim's request journal.
const (
	routePoll          = "GET /_broker/{id}/{sid}/messages"
	routeJIT           = "POST /_actions/_apis/runtime/runnerscalesets/{id}/generatejitconfig"
	routePatchScaleSet = "PATCH /_actions/_apis/runtime/runnerscalesets/{id}"
	routeDeleteSession = "DELETE /_actions/_apis/runtime/runnerscalesets/{id}/sessions/{sid}"
)

// TestSessionEvictionAtRuntime: GitHub evicts every session mid-burst.
// Each scale set polls again on a new session within 2 poll holds, every
// job completes, nothing is provisioned twice and nothing leaks.
func TestSessionEvictionAtRuntime(t *testing.T) {
	res := newResult(t, 18, "sessions evicted at runtime (issue 10)",
		"3 targets, 18 jobs; every session evicted mid-burst (poll 401, refresh 404, delete 400): new sessions within 2 poll holds, all jobs complete, 0 duplicates, 0 leaks")
	scopes := []string{"org-a", "org-b", "owner-c/repo-c"}
	hold := 2 * time.Second
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes, PollHold: hold}, runFlags("--poll-hold", hold.String(), "--max-runners", "10"))
	for _, sc := range scopes {
		s.sim.QueueJobs(sc, 6, 3*time.Second)
	}
	scenariotest.WaitFor(t, "jobs running on every scale set", 2*time.Minute, func() (bool, string) {
		d.Alive()
		st := s.sim.State()
		for _, ss := range st.ScaleSets {
			if ss.Jobs.Running == 0 {
				return false, scenario.SummarizeScaleSets(st)
			}
		}
		return len(st.ScaleSets) == len(scopes), scenario.SummarizeScaleSets(st)
	})

	evicted := time.Now()
	if n := s.sim.Evict(); n != len(scopes) {
		t.Fatalf("evicted %d sessions, want %d", n, len(scopes))
	}
	took := s.waitListening(d, evicted, scopes, time.Minute)
	res.addRecovery(took)
	note(t, res, "every scale set polling on a new session %.2fs after the eviction (poll hold %v)", took.Seconds(), hold)
	if took > 2*hold {
		t.Errorf("new sessions %v after the eviction, more than 2 poll holds (%v)", took, 2*hold)
	}

	s.settle(d, 3*time.Minute, scenario.Options{})
	for _, ss := range s.sim.State().ScaleSets {
		if ss.SessionsCreated != 2 || ss.Evictions != 1 {
			t.Errorf("scale set %s: %d sessions created and %d evicted, want 2 and 1", ss.Name, ss.SessionsCreated, ss.Evictions)
		}
	}
	if n := strings.Count(d.Log(), "message session expired or was evicted; opening a new one"); n != len(scopes) {
		t.Errorf("the log reports %d evicted sessions, want %d", n, len(scopes))
	}
}

// TestSessionExpiryAcrossRestart: run is killed, and GitHub expires the
// sessions it left while nobody polls them. At the next start the stored
// sessions answer 400 "expired" to their deletion: they count as gone,
// and every target is served within 5 s.
func TestSessionExpiryAcrossRestart(t *testing.T) {
	res := newResult(t, 19, "sessions expired across a restart (issue 10)",
		"kill -9, the stored sessions expire (session TTL 2s), start again: the stale deletes answer 400 and count as gone; every target served within 5s, jobs complete; again with every stale delete answering 500: served within 5s")
	scopes := []string{"org-a", "org-b"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes, SessionTTL: 2 * time.Second})
	// The sim sees a session as soon as it is created; run stores it just
	// after. A target has polled once its session is stored and open.
	scenariotest.WaitFor(t, "every target polling on a stored session", time.Minute, func() (bool, string) {
		sets, err := d.ScaleSets()
		polled := 0
		for _, ss := range sets {
			if !ss.LastPoll.IsZero() {
				polled++
			}
		}
		return err == nil && polled == len(scopes), fmt.Sprintf("%d of %d polled (%v)", polled, len(scopes), err)
	})
	d.Kill9()
	scenariotest.WaitFor(t, "GitHub expiring the sessions left behind", time.Minute, func() (bool, string) {
		st := s.sim.State()
		for _, ss := range st.ScaleSets {
			if ss.Session != nil || ss.Evictions == 0 {
				return false, scenario.SummarizeScaleSets(st)
			}
		}
		return true, ""
	})
	stored := 0
	for _, ss := range s.scaleSetsLs() {
		if ss.SessionID != "" {
			stored++
		}
	}
	if stored != len(scopes) {
		t.Fatalf("%d sessions stored after the kill, want %d: the scenario needs stale ones", stored, len(scopes))
	}

	restart := time.Now()
	d = s.startRun()
	took := s.waitListening(d, restart, scopes, time.Minute)
	res.addRecovery(took)
	note(t, res, "every target served %.2fs after the restart", took.Seconds())
	if took > 5*time.Second {
		t.Errorf("targets served %v after the restart, want within 5s", took)
	}
	expired := 0
	for _, r := range s.sim.Requests(routeDeleteSession) {
		if r.Status == http.StatusBadRequest {
			expired++
		}
	}
	if expired != len(scopes) {
		t.Errorf("%d deletes of stale sessions answered 400 (expired), want %d", expired, len(scopes))
	}
	for _, sc := range scopes {
		s.sim.QueueJobs(sc, 2, time.Second)
	}
	s.waitJobsDone(d, 2*time.Minute)

	// Again, and this time deleting the stale sessions fails for good:
	// that must not hold the targets down, the new sessions are created
	// anyway.
	d.Kill9()
	scenariotest.WaitFor(t, "GitHub expiring the sessions left behind", time.Minute, func() (bool, string) {
		st := s.sim.State()
		for _, ss := range st.ScaleSets {
			if ss.Session != nil {
				return false, scenario.SummarizeScaleSets(st)
			}
		}
		return true, ""
	})
	s.sim.AddFault(actionsfake.Fault{Match: "DELETE .*/sessions/", Status: http.StatusInternalServerError})
	restart = time.Now()
	d = s.startRun()
	took = s.waitListening(d, restart, scopes, time.Minute)
	note(t, res, "with every stale-session delete failing (500): every target served %.2fs after the restart", took.Seconds())
	if took > 5*time.Second {
		t.Errorf("targets served %v after the restart with failing deletes, want within 5s", took)
	}
	s.sim.ClearFaults()
	s.settle(d, 2*time.Minute, scenario.Options{})
}

// TestBOM: every answer of the GitHub API, the Actions service and the
// broker begins with a UTF-8 BOM; the whole loop still works, on
// github.com (jobs assigned) and on GHES (jobs acquired).
func TestBOM(t *testing.T) {
	res := newResult(t, 20, "answers with a UTF-8 BOM (issue 10)",
		"every answer BOM-prefixed, github.com style and GHES (acquire): 10 jobs each complete, no violation")
	for _, tc := range []struct {
		name    string
		acquire bool
	}{{"github.com", false}, {"GHES", true}} {
		t.Run(tc.name, func(t *testing.T) {
			scopes := []string{"org-a", "org-b"}
			s := newScenario(t, res, scenariotest.SimOptions{Targets: scopes, BOM: true, Acquire: tc.acquire})
			s.requireBOM()
			d := s.startListening(scopes)
			for _, sc := range scopes {
				s.sim.QueueJobs(sc, 5, time.Second)
			}
			iv := s.settle(d, 2*time.Minute, scenario.Options{})
			note(t, res, "%s: %d of %d jobs completed with BOM-prefixed answers", tc.name, iv.Completed, iv.Jobs)
		})
	}
}

// requireBOM checks that the sim does prefix its answers.
func (s *world) requireBOM() {
	s.t.Helper()
	resp, err := httpc.Get(s.sim.URL + "/api/v3/app/installations")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !bytes.HasPrefix(b, []byte("\xef\xbb\xbf")) {
		s.t.Fatalf("the sim's answer %q has no BOM", b)
	}
}

// TestRateLimits: a 429 with Retry-After: 2 on the poll and on an admin
// call (a JIT config): the next call of each comes no sooner than 2 s
// later, the metric counts both, and the jobs complete. Then a 403 with
// X-RateLimit-Remaining: 0 and X-RateLimit-Reset on the poll: the next
// poll waits until the reset.
func TestRateLimits(t *testing.T) {
	res := newResult(t, 21, "rate limits (issue 10)",
		"429 Retry-After: 2 on the poll and on generatejitconfig: next call ≥ 2s later, counted, jobs complete; 403 X-RateLimit-Remaining: 0 with X-RateLimit-Reset on the poll: next poll after the reset")
	s, d := listening(t, res, scenariotest.SimOptions{Targets: []string{"org-a"}})

	retryAfter := map[string]string{"Retry-After": "2"}
	s.sim.AddFault(actionsfake.Fault{Match: "GET .*/messages$", Status: http.StatusTooManyRequests, Times: 1, Headers: retryAfter})
	s.sim.AddFault(actionsfake.Fault{Match: "POST .*/generatejitconfig$", Status: http.StatusTooManyRequests, Times: 1, Headers: retryAfter})
	// One job: one JIT config, so the call after the faulted one is its retry.
	s.sim.QueueJobs("org-a", 1, time.Second)
	s.waitJobsDone(d, 2*time.Minute)
	for _, route := range []string{routePoll, routeJIT} {
		gap := s.gapAfterFault(route)
		note(t, res, "%s: next call %.2fs after the 429 (Retry-After: 2)", route, gap.Seconds())
		if gap < 2*time.Second {
			t.Errorf("%s: the call after the 429 came %v later, want ≥ 2s", route, gap)
		}
	}
	if n := d.metricSum("shoes_scaleset_github_rate_limited_total", map[string]string{"scope": "org-a"}); n != 2 {
		t.Errorf("github_rate_limited_total{scope=org-a} = %v, want 2", n)
	}

	s.sim.ClearFaults()
	reset := time.Now().Add(3 * time.Second).Truncate(time.Second)
	s.sim.AddFault(actionsfake.Fault{Match: "GET .*/messages$", Status: http.StatusForbidden, Times: 1, Headers: map[string]string{
		"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(reset.Unix(), 10),
	}})
	scenariotest.WaitFor(t, "the 403 answered", time.Minute, func() (bool, string) {
		st := s.sim.State()
		return len(st.Faults) == 1 && st.Faults[0].Hits == 1, fmt.Sprint(st.Faults)
	})
	s.sim.QueueJobs("org-a", 1, time.Second)
	s.waitJobsDone(d, 2*time.Minute)
	reqs := s.sim.Requests(routePoll)
	i := slices.IndexFunc(reqs, func(r actionsfake.Request) bool { return r.Status == http.StatusForbidden })
	if i < 0 || i+1 >= len(reqs) {
		t.Fatalf("no poll after the 403 in %d polls", len(reqs))
	}
	note(t, res, "next poll %.2fs after the 403, %.2fs after the reset", reqs[i+1].Start.Sub(reqs[i].End).Seconds(), reqs[i+1].Start.Sub(reset).Seconds())
	if reqs[i+1].Start.Before(reset) {
		t.Errorf("polled at %v, before the reset %v", reqs[i+1].Start, reset)
	}
	s.settle(d, time.Minute, scenario.Options{})
}

// gapAfterFault returns the time from the answer of the faulted request
// on route to the start of the next request on it.
func (s *world) gapAfterFault(route string) time.Duration {
	s.t.Helper()
	reqs := s.sim.Requests(route)
	i := slices.IndexFunc(reqs, func(r actionsfake.Request) bool { return r.Fault != "" })
	if i < 0 || i+1 >= len(reqs) {
		s.t.Fatalf("%s: no request after the faulted one in %d requests", route, len(reqs))
	}
	return reqs[i+1].Start.Sub(reqs[i].End)
}

// metricSum scrapes the daemon's /metrics and sums a metric's series that
// carry the given labels.
func (d *daemon) metricSum(name string, labels map[string]string) float64 {
	d.t.Helper()
	code, body, err := d.Get("/metrics")
	if err != nil || code != http.StatusOK {
		d.t.Fatalf("GET /metrics: %d %v", code, err)
	}
	v, _ := sum(parseMetrics(d.t, string(body)), name, labels)
	return v
}

// TestGHESLabelsDropped: a GHES without custom labels keeps only the
// scale set's name. One warning per process, no label update loop (the
// PATCHes are counted in the sim) across new sessions and a restart, and
// `scalesets ls` shows what GitHub kept and dropped.
func TestGHESLabelsDropped(t *testing.T) {
	res := newResult(t, 22, "GHES drops custom labels (issue 10)",
		"--drop-custom-labels, --labels gpu: one warning per process, 0 label PATCHes over 2 evictions and a restart, scalesets ls shows kept and dropped labels, jobs on the name complete")
	scopes := []string{"org-a"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes, DropLabels: true}, runFlags("--labels", "gpu"))
	for range 2 { // each new session ensures the scale set again
		since := time.Now()
		s.sim.Evict()
		s.waitListening(d, since, scopes, time.Minute)
	}
	s.sim.QueueJobs("org-a", 2, time.Second)
	s.waitJobsDone(d, 2*time.Minute)
	d.Stop()
	first := d.Log()
	d = s.startRun()
	s.waitListening(d, d.Started, scopes, time.Minute)
	out := runBinary(t, 30*time.Second, testkit.ChildEnv(), "scalesets", "ls", "--listen", d.Addr)
	if out.Code != 0 || !strings.Contains(out.Stdout, "myshoes-org-a (dropped by GitHub: self-hosted,gpu)") {
		t.Errorf("scalesets ls does not show the dropped labels:\n%s", out)
	}
	s.settle(d, time.Minute, scenario.Options{})

	st := s.sim.State()
	if n := st.Calls[routePatchScaleSet]; n != 0 {
		t.Errorf("the scale set's labels were updated %d times, want 0", n)
	}
	const warning = "GitHub dropped labels of the scale set"
	for i, l := range []string{first, d.Log()} {
		if n := strings.Count(l, warning); n != 1 {
			t.Errorf("run %d logged %q %d times, want once", i+1, warning, n)
		}
	}
	sets := s.scaleSetsLs()
	if len(sets) != 1 || !slices.Equal(sets[0].GitHubLabels, []string{"myshoes-org-a"}) || !slices.Equal(sets[0].DroppedLabels, []string{"self-hosted", "gpu"}) {
		t.Errorf("scalesets ls -o json: %+v; want GitHub labels [myshoes-org-a], dropped [self-hosted gpu]", sets)
	}
	note(t, res, "%d label PATCHes over 2 evictions and a restart", st.Calls[routePatchScaleSet])
}

// completedAfter is how long after t the last job completed.
func completedAfter(st actionsfake.State, t time.Time) time.Duration {
	var last time.Time
	for _, j := range st.Jobs {
		if j.CompletedAt.After(last) {
			last = j.CompletedAt
		}
	}
	return last.Sub(t)
}

// TestCapacity: with --max-runners 5 and 50 jobs queued, the sim never
// assigns the scale set more than the 5 it reports as its capacity.
func TestCapacity(t *testing.T) {
	res := newResult(t, 24, "capacity (issue 10)",
		"--max-runners 5, 50 jobs: X-ScaleSetMaxCapacity 5, never more than 5 jobs assigned at once, all complete")
	scopes := []string{"org-a"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes}, runFlags("--max-runners", "5"))
	scenariotest.WaitFor(t, "the capacity reported", time.Minute, func() (bool, string) {
		st := s.sim.State()
		return len(st.ScaleSets) == 1 && st.ScaleSets[0].MaxCapacity == 5, scenario.SummarizeScaleSets(st)
	})
	s.sim.QueueJobs("org-a", 50, 300*time.Millisecond)
	iv := s.settle(d, 4*time.Minute, scenario.Options{})
	ss := s.sim.State().ScaleSets[0]
	note(t, res, "%d jobs completed; at most %d assigned at once (capacity %d)", iv.Completed, ss.PeakAssigned, ss.MaxCapacity)
	if ss.PeakAssigned > 5 || ss.PeakAssigned == 0 {
		t.Errorf("at most %d jobs assigned at once, want 1..5", ss.PeakAssigned)
	}
}

// TestLostAckNoAckThrough: the sim no longer treats lastMessageId as an
// acknowledgement of the messages before it, and two acknowledgements
// fail: the messages come again, and none is handled twice. Three polls
// answer 200 with an empty body, which means no message.
func TestLostAckNoAckThrough(t *testing.T) {
	res := newResult(t, 25, "lost acknowledgements without ack-through (issue 10)",
		"--no-ack-through, 2 acknowledgements answered 400, 3 polls answered 200 with no body: the messages come again and are acknowledged, none handled twice, empty polls are no message, jobs complete")
	scopes := []string{"org-a"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes, NoAckThrough: true})
	s.sim.AddFault(actionsfake.Fault{Match: "DELETE .*/messages/[0-9]+$", Status: http.StatusBadRequest, Times: 2})
	// And polls answered 200 with no body, as GitHub sometimes does: no message.
	s.sim.AddFault(actionsfake.Fault{Match: "GET .*/messages$", Status: http.StatusOK, EmptyBody: true, Times: 3})
	s.sim.QueueJobs("org-a", 5, time.Second)
	s.settle(d, 2*time.Minute, scenario.Options{})

	st := s.sim.State()
	if st.Faults[0].Hits != 2 || st.Faults[1].Hits != 3 || st.ScaleSets[0].Messages.Redelivered == 0 {
		t.Fatalf("fault hits %d and %d, messages delivered again %d: the scenario did not happen", st.Faults[0].Hits, st.Faults[1].Hits, st.ScaleSets[0].Messages.Redelivered)
	}
	if strings.Contains(d.Log(), "get message; retrying") || st.ScaleSets[0].SessionsCreated != 1 {
		t.Errorf("an empty 200 poll was taken for a failure (%d sessions created)", st.ScaleSets[0].SessionsCreated)
	}
	handled := map[string]int{}
	re := regexp.MustCompile(`msg="message handled" .*message_id=(\d+)`)
	for _, m := range re.FindAllStringSubmatch(d.Log(), -1) {
		handled[m[1]]++
	}
	for id, n := range handled {
		if n > 1 {
			t.Errorf("message %s handled %d times", id, n)
		}
	}
	again := strings.Count(d.Log(), "message delivered again; acknowledging it again")
	note(t, res, "%d messages handled once each; %d deliveries again acknowledged without handling", len(handled), again)
	if again == 0 {
		t.Error("no message was acknowledged again")
	}
	// Every runner is in history once.
	names := map[string]int{}
	for _, h := range s.history() {
		names[h.Runner.Name]++
	}
	for n, c := range names {
		if c > 1 {
			t.Errorf("runner %s finished %d times", n, c)
		}
	}
}

// note records a figure for the report and logs it.
func note(t *testing.T, res *Result, format string, args ...any) {
	t.Helper()
	res.figure(format, args...)
	t.Logf(format, args...)
}

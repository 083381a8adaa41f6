package reliability

// The per-target policy file (issue 14): what each target gets, reloads
// on SIGHUP, a bad file refused on reload and at start.

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
)

// policyV1 gives org-a a max of 2, org-b a warm runner and a max of 3, and
// org-c the file's default max of 4.
const policyV1 = `defaults:
  max_runners: 4
rules:
  - name: small-a
    match: {scope: org-a}
    max_runners: 2
  - name: warm-b
    match: {scope: org-b}
    min_runners: 1
    max_runners: 3
`

// writePolicy writes text to the scenario's policy file and returns its path.
func (s *world) writePolicy(text string) string {
	s.t.Helper()
	p := filepath.Join(s.dir, "policy.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// capacities returns the X-ScaleSetMaxCapacity the sim last saw per scope,
// and the sessions created per scope.
func capacities(st actionsfake.State) (capacity, sessions map[string]int) {
	capacity, sessions = map[string]int{}, map[string]int{}
	for _, ss := range st.ScaleSets {
		capacity[ss.Scope], sessions[ss.Scope] = ss.MaxCapacity, ss.SessionsCreated
	}
	return capacity, sessions
}

// waitCapacities waits until the sim has seen want as each scope's
// capacity and returns the sessions created per scope then.
func (s *world) waitCapacities(what string, want map[string]int) map[string]int {
	s.t.Helper()
	var sessions map[string]int
	scenariotest.WaitFor(s.t, what, time.Minute, func() (bool, string) {
		var got map[string]int
		got, sessions = capacities(s.sim.State())
		return maps.Equal(got, want), fmt.Sprint(got)
	})
	return sessions
}

// waitPolicies waits until the daemon's scale sets, as scalesets ls
// shows them, have each scope's policy as "min-max rule".
func waitPolicies(t *testing.T, d *daemon, want map[string]string) {
	t.Helper()
	scenariotest.WaitFor(t, "scalesets ls showing the policies", 30*time.Second, func() (bool, string) {
		sets, err := d.ScaleSets()
		got := map[string]string{}
		for _, ss := range sets {
			got[ss.Scope] = fmt.Sprintf("%d-%d %s", ss.MinRunners, ss.MaxRunners, ss.PolicyRule)
		}
		return err == nil && maps.Equal(got, want), fmt.Sprint(got, err)
	})
}

// TestPolicy: two rules and the defaults give 3 targets their own min and
// max, as the sim sees in each scale set's capacity; a SIGHUP with a
// changed file raises one target's max without a new session anywhere;
// a bad file on reload is refused and the policy kept; a bad file at
// start exits 2 naming the file, the line and the key.
func TestPolicy(t *testing.T) {
	res := newResult(t, 47, "per-target policy file (issue 14)",
		"--config with 2 rules and defaults: the sim sees capacity 2, 3 and 4 on 3 targets, org-b keeps 1 warm runner; SIGHUP with org-a's max raised to 5: capacity 5, no new session on any target; a bad file on reload: refused, logged, counted, policy kept; a bad file at start: exit 2 naming file, line and key")
	scopes := []string{"org-a", "org-b", "org-c"}
	s := newScenario(t, res, scenariotest.SimOptions{Targets: scopes})
	path := s.writePolicy(policyV1)
	s.flags = []string{"--config", path}
	d := s.startListening(scopes)
	before := s.waitCapacities("capacities 2, 3 and 4", map[string]int{"org-a": 2, "org-b": 3, "org-c": 4})
	scenariotest.WaitFor(t, "org-b's warm runner online", time.Minute, func() (bool, string) {
		for _, ss := range s.sim.State().ScaleSets {
			if ss.Scope == "org-b" {
				return ss.Runners.Online == 1, fmt.Sprintf("%+v", ss.Runners)
			}
		}
		return false, "no org-b scale set"
	})

	waitPolicies(t, d, map[string]string{"org-a": "0-2 small-a", "org-b": "1-3 warm-b", "org-c": "0-4 defaults"})

	// SIGHUP with org-a's max raised.
	s.writePolicy(strings.Replace(policyV1, "max_runners: 2", "max_runners: 5", 1))
	d.Signal(syscall.SIGHUP)
	after := s.waitCapacities("org-a's capacity 5", map[string]int{"org-a": 5, "org-b": 3, "org-c": 4})
	if !maps.Equal(before, after) {
		t.Errorf("sessions created per scope went from %v to %v: a change of max runners must keep every session", before, after)
	}
	d.Alive() // SIGHUP never stops run
	if !strings.Contains(d.Log(), `msg="policy reloaded" component=policy reason=SIGHUP`) {
		t.Errorf("no log line of the SIGHUP reload:\n%s", d.Tail(20))
	}
	waitPolicies(t, d, map[string]string{"org-a": "0-5 small-a", "org-b": "1-3 warm-b", "org-c": "0-4 defaults"})
	res.figure("SIGHUP: org-a's capacity 2 -> 5; sessions created per scope unchanged (%v)", after)

	// A bad file on reload is refused; the running policy stays.
	s.writePolicy(strings.Replace(policyV1, "max_runners: 3", "max_runners: -3", 1))
	d.Signal(syscall.SIGHUP)
	scenariotest.WaitFor(t, "the refused reload counted", 30*time.Second, func() (bool, string) {
		d.Alive()
		return d.metricSum("shoes_scaleset_policy_reloads_total", map[string]string{"result": "error"}) >= 1, d.Tail(5)
	})
	if !strings.Contains(d.Log(), "policy reload refused; keeping the running policy") || !strings.Contains(d.Log(), "policy.yaml:10: rules[1].max_runners: must not be negative") {
		t.Errorf("the refused reload is not logged with the file, line and key:\n%s", d.Tail(20))
	}
	// Polls after the refusal still report the kept policy.
	s.waitCapacities("the kept capacities", map[string]int{"org-a": 5, "org-b": 3, "org-c": 4})
	if _, sessions := capacities(s.sim.State()); !maps.Equal(sessions, before) {
		t.Errorf("sessions created per scope went from %v to %v after a refused reload", before, sessions)
	}
	d.Stop()

	// A bad file at start: exit 2 naming the flag, its variable, the
	// file, the line and the key.
	r := runBinary(t, 30*time.Second, s.pluginEnvironment(), s.runArgs("127.0.0.1:0")...)
	if r.Code != 2 || !strings.Contains(r.Stderr, "--config (env SHOES_SCALESET_CONFIG)") || !strings.Contains(r.Stderr, "policy.yaml:10: rules[1].max_runners: must not be negative") {
		t.Errorf("run with a bad policy file: want exit 2 naming --config, its variable, the file, line 10 and the key\n%s", r)
	}
	res.figure("bad file at start: exit %d: %s", r.Code, firstLine(r.Stderr))
	s.checkInvariants(scenario.Options{})
}

package controller

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/shoes-scaleset/shoes-scaleset/internal/policy"
)

// testPolicy parses a policy file over the unit tests' flags (max 10).
func testPolicy(t *testing.T, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("policy.yaml", []byte(text), policy.Settings{MaxRunners: 10, RunnerGroup: "Default"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// withRuleA is a policy file with a default max of 5, org-a's rule
// (its name, and one setting written as YAML) and warm-b, which keeps one
// runner of org-b warm.
func withRuleA(name, setting string) string {
	return `
defaults:
  max_runners: 5
rules:
  - name: ` + name + `
    match: {scope: org-a}
    ` + setting + `
  - name: warm-b
    match: {scope: org-b}
    min_runners: 1
`
}

// threeTargets caps org-a at 2, keeps a warm runner of org-b, and leaves
// any other target the defaults.
var threeTargets = withRuleA("small-a", "max_runners: 2")

// withPolicy is a newUnit tune that gives the controller the policy text.
func withPolicy(t *testing.T, text string) func(*Config) {
	return func(c *Config) { c.Policy = testPolicy(t, text) }
}

// twoTargets is a unit serving org-a and org-b under threeTargets, with
// the session and the scale set ID of each.
type twoTargets struct {
	*unit
	sessA, sessB *fakeSession
	idA, idB     int
}

// startTwoTargets starts a unit on org-a and org-b under threeTargets and
// waits until both listen.
func startTwoTargets(t *testing.T) twoTargets {
	t.Helper()
	u := twoTargets{unit: newUnit(t, []string{"org-a", "org-b"}, withPolicy(t, threeTargets))}
	u.start()
	u.sessA, u.idA = u.listening("org-a")
	u.sessB, u.idB = u.listening("org-b")
	return u
}

// waitStoredPolicy waits until the scale set record of scope shows the
// policy, as scalesets ls reads it.
func (u *unit) waitStoredPolicy(scope string, minRunners, maxRunners int, rule string) {
	u.t.Helper()
	u.wait(scope+"'s policy stored", func() (bool, string) {
		ss, err := u.st.GetScaleSet(target(scope).ID)
		return err == nil && ss.MinRunners == minRunners && ss.MaxRunners == maxRunners && ss.PolicyRule == rule,
			fmt.Sprintf("%d..%d %q %v", ss.MinRunners, ss.MaxRunners, ss.PolicyRule, err)
	})
}

// TestPolicyPerTarget: two rules and the defaults give three targets
// their own bounds: org-a is capped at 2, org-b keeps 1 warm runner, and
// org-c gets the file's defaults.
func TestPolicyPerTarget(t *testing.T) {
	u := newUnit(t, []string{"org-a", "org-b", "org-c"}, withPolicy(t, threeTargets))
	u.start()
	sessA, idA := u.listening("org-a")
	_, idB := u.listening("org-b")
	sessC, idC := u.listening("org-c")
	u.waitStoredPolicy("org-a", 0, 2, "small-a")
	u.waitStoredPolicy("org-b", 1, 5, "warm-b")
	u.waitStoredPolicy("org-c", 0, 5, policy.DefaultsRule)

	u.wait("org-b's warm runner", func() (bool, string) { return len(u.runners(idB)) == 1, fmt.Sprint(u.states(idB)) })
	sessA.deliver(1, 9, nil)
	sessC.deliver(1, 9, nil)
	u.wait("org-a at its max of 2, org-c at 5", func() (bool, string) {
		return len(u.runners(idA)) == 2 && len(u.runners(idC)) == 5, fmt.Sprint(u.states(idA), u.states(idC))
	})
	if n := len(u.runners(idA)); n != 2 {
		t.Errorf("org-a has %d runners, want its rule's max of 2", n)
	}
}

// TestSetPolicyChangesBoundsInPlace: a new policy that changes org-a's max
// scales it on the same session; org-b's session is untouched.
func TestSetPolicyChangesBoundsInPlace(t *testing.T) {
	u := startTwoTargets(t)
	u.sessA.deliver(1, 9, nil)
	u.wait("org-a at 2", func() (bool, string) { return len(u.runners(u.idA)) == 2, fmt.Sprint(u.states(u.idA)) })

	u.c.SetPolicy(testPolicy(t, withRuleA("bigger-a", "max_runners: 4")))
	u.waitStoredPolicy("org-a", 0, 4, "bigger-a")
	u.wait("org-a at its new max of 4", func() (bool, string) { return len(u.runners(u.idA)) == 4, fmt.Sprint(u.states(u.idA)) })
	if u.sessA.isClosed() || u.sessB.isClosed() {
		t.Errorf("a change of max runners closed a session: org-a closed %v, org-b closed %v", u.sessA.isClosed(), u.sessB.isClosed())
	}
	if n := u.gh.sessionsOpened(u.idA); n != 1 {
		t.Errorf("org-a's scale set had %d sessions opened, want 1", n)
	}
}

// TestSetPolicyLabelsRestartTheTarget: new labels change the scale set,
// so its target restarts with them (a new session); the other target
// keeps its session.
func TestSetPolicyLabelsRestartTheTarget(t *testing.T) {
	u := startTwoTargets(t)
	u.c.SetPolicy(testPolicy(t, withRuleA("gpu-a", "labels: [gpu]")))
	u.wait("org-a's first session closed", func() (bool, string) { return u.sessA.isClosed(), "" })
	u.listening("org-a")
	u.wait("org-a's scale set stored with the gpu label", func() (bool, string) {
		ss, err := u.st.GetScaleSet(target("org-a").ID)
		return err == nil && slices.Contains(ss.Labels, "gpu") && ss.PolicyRule == "gpu-a", fmt.Sprint(ss.Labels, ss.PolicyRule, err)
	})
	if u.sessB.isClosed() {
		t.Error("org-b's session closed when org-a's labels changed")
	}
	if n := u.gh.sessionsOpened(u.idA); n != 2 {
		t.Errorf("org-a had %d sessions opened, want 2 (one restart)", n)
	}
}

// TestPolicyDisablesAndEnablesATarget: disabled, a target's session
// closes and its runners go as for a removed target; enabled again, it is
// served again. The other target is untouched throughout.
func TestPolicyDisablesAndEnablesATarget(t *testing.T) {
	u := startTwoTargets(t)
	u.wait("org-b's warm runner", func() (bool, string) { return len(u.runners(u.idB)) == 1, fmt.Sprint(u.states(u.idB)) })

	u.c.SetPolicy(testPolicy(t, `
rules:
  - name: off-b
    match: {scope: org-b}
    disabled: true
`))
	u.wait("org-b's session closed", func() (bool, string) { return u.sessB.isClosed(), "" })
	u.wait("org-b's runner removed", func() (bool, string) {
		u.c.wakeReaper()
		return len(u.runners(u.idB)) == 0, fmt.Sprint(u.states(u.idB))
	})
	if u.c.isServedTarget(target("org-b").ID) {
		t.Error("the disabled org-b is still served")
	}
	if u.sessA.isClosed() {
		t.Error("org-a's session closed when org-b was disabled")
	}
	if logs := u.logs.String(); !strings.Contains(logs, `msg="target disabled by the policy; not serving it"`) || !strings.Contains(logs, "rule=off-b") {
		t.Errorf("no log line says org-b was disabled by off-b:\n%s", u.logs.String())
	}

	u.c.SetPolicy(testPolicy(t, threeTargets))
	u.listening("org-b")
	u.wait("org-b's warm runner again", func() (bool, string) { return len(u.runners(u.idB)) == 1, fmt.Sprint(u.states(u.idB)) })
}

// sessionsOpened returns how many sessions were opened on scale set id.
func (g *fakeGitHub) sessionsOpened(id int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.opened[id]
}

// TestPolicyChangedWhileEnsuringTheScaleSet: a reload that comes while the
// target's scale set is being ensured on GitHub is not lost to the bounds
// read before it.
func TestPolicyChangedWhileEnsuringTheScaleSet(t *testing.T) {
	u := newUnit(t, []string{"org-a"}, withPolicy(t, threeTargets))
	u.gh.ensureGate = make(chan struct{})
	u.start()
	<-u.gh.ensureGate // EnsureScaleSet of org-a, with max 2, in flight
	u.c.SetPolicy(testPolicy(t, `
rules:
  - name: bigger-a
    match: {scope: org-a}
    max_runners: 4
`))
	u.wait("the new policy taken", func() (bool, string) {
		u.c.mu.Lock()
		w := u.c.workers[target("org-a").ID]
		u.c.mu.Unlock()
		return w != nil && w.policy().MaxRunners == 4, ""
	})
	u.gh.ensureGate <- struct{}{} // let it finish
	done := make(chan struct{})
	defer close(done)
	go func() { // later calls (a new session's) pass
		for {
			select {
			case <-u.gh.ensureGate:
				u.gh.ensureGate <- struct{}{}
			case <-done:
				return
			}
		}
	}()
	sess, id := u.listening("org-a")
	u.waitStoredPolicy("org-a", 0, 4, "bigger-a")
	sess.deliver(1, 9, nil)
	u.wait("org-a at its new max of 4", func() (bool, string) { return len(u.runners(id)) == 4, fmt.Sprint(u.states(id)) })
}

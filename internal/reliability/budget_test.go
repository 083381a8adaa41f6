package reliability

// The GitHub REST budget at start (issue 15): what run asks of GitHub's
// REST API (not the Actions service or its broker) to serve its targets.

import (
	"strings"
	"testing"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
)

// TestRESTCallsAtStart: 4 targets, 3 of them repositories of one owner
// (one installation), cost at start one installation token per
// installation, and one registration token and one runner-registration
// per scope: the actions/scaleset library's own chain is answered from
// run's caches, and nothing is asked twice.
func TestRESTCallsAtStart(t *testing.T) {
	res := newResult(t, 48, "REST calls at start (issue 15)",
		"4 targets (org-b, and 3 repositories of org-a): 2 access_tokens (one per installation), one registration-token and one runner-registration per scope, one installation lookup per scope")
	scopes := []string{"org-a/app", "org-a/web", "org-a/api", "org-b"}
	s, d := listening(t, res, scenariotest.SimOptions{Targets: scopes})
	calls := s.sim.State().Calls
	sum := func(match func(route string) bool) int {
		n := 0
		for route, c := range calls {
			if match(route) {
				n += c
			}
		}
		return n
	}
	suffix := func(sfx string) func(string) bool {
		return func(r string) bool { return strings.HasPrefix(r, "POST /api/v3/") && strings.HasSuffix(r, sfx) }
	}
	got := map[string]int{
		"access_tokens":       sum(suffix("/access_tokens")),
		"registration-token":  sum(suffix("/actions/runners/registration-token")),
		"runner-registration": sum(suffix("/actions/runner-registration")),
		"installation": sum(func(r string) bool {
			return strings.HasPrefix(r, "GET /api/v3/") && strings.HasSuffix(r, "/installation")
		}),
	}
	want := map[string]int{"access_tokens": 2, "registration-token": len(scopes), "runner-registration": len(scopes), "installation": len(scopes)}
	for k, w := range want {
		if got[k] > w {
			t.Errorf("%s called %d times at start for %d scopes of 2 installations, want at most %d", k, got[k], len(scopes), w)
		}
	}
	rest := sum(func(r string) bool { return strings.Contains(r, " /api/v3/") })
	res.figure("REST calls at start for 4 scopes, 2 installations: %d in all (%v)", rest, got)
	t.Logf("REST calls at start: %d in all; %v; every route: %v", rest, got, calls)
	d.Stop()
}

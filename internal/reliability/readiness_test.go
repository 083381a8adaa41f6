package reliability

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
)

// TestReadyWithinAPollHold: with a long poll hold (readinessPollHold:
// issue 14's 20s in `make reliability`), /readyz is 200 within 2s of the
// sim seeing the sessions open (a listener whose first long
// poll is on its way is ready; it does not wait the hold for the answer),
// and it stays 200 through the first poll hold and into the second: no
// flap when a long poll answers and the next is sent.
func TestReadyWithinAPollHold(t *testing.T) {
	const hold = readinessPollHold
	res := newResult(t, 46, fmt.Sprintf("readiness with a %s poll hold (issue 14)", hold),
		fmt.Sprintf("--poll-hold %[1]s, broker hold %[1]s: /readyz 200 within 2s of the sessions opening; 200 on every probe (every 100ms) for a poll hold and a half after", hold))
	scopes := []string{"org-a", "org-b"}
	s := newScenario(t, res, scenariotest.SimOptions{Targets: scopes, PollHold: hold})
	d := s.startRun("--poll-hold", hold.String())

	var readyAt time.Time
	scenariotest.WaitFor(t, "/readyz 200", time.Minute, func() (bool, string) {
		d.Alive()
		code, body, err := d.Get("/readyz")
		if err == nil && code == http.StatusOK {
			readyAt = time.Now()
			return true, ""
		}
		return false, fmt.Sprint(code, " ", string(body), " ", err)
	})
	opened := s.sim.WaitServed(scopes, nil, 10*time.Second, d.Alive)
	took := readyAt.Sub(opened)
	if took > 2*time.Second {
		t.Errorf("/readyz 200 %v after the last session opened, want within 2s (poll hold %s)", took.Round(time.Millisecond), hold)
	}

	// Every probe through the first hold and half of the second answers
	// 200: the first polls answer after the hold and the next go out.
	probes, failed := 0, 0
	var first string
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for end := opened.Add(hold * 3 / 2); time.Now().Before(end); <-tick.C {
		d.Alive()
		probes++
		if code, body, err := d.Get("/readyz"); err != nil || code != http.StatusOK {
			if failed++; first == "" {
				first = fmt.Sprint(code, " ", string(body), " ", err)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d probes over %s were not 200; the first: %s", failed, probes, hold*3/2, first)
	}
	t.Logf("ready %v after the last session opened; %d/%d probes 200", took.Round(time.Millisecond), probes-failed, probes)
	res.figure("ready %.2fs after the last session opened (poll hold %s); %d/%d probes 200 over the next %s",
		took.Seconds(), hold, probes-failed, probes, hold*3/2)
	s.settle(d, time.Minute, scenario.Options{})
}

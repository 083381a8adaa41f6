package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// invariantOptions tune checkInvariants for a scenario.
type invariantOptions struct {
	// lostOK accepts instances the plugin created but never reported (it
	// answered AddInstance with an empty cloud ID): the fake lies, and no
	// sidecar could delete what it was never told about. They are counted
	// in lost, not in leaked.
	lostOK bool
	// sessionsOK skips the "no session open" check, for a scenario whose
	// daemon did not stop cleanly last.
	sessionsOK bool
	// canceledOK accepts jobs canceled by the sim for good (no runner took
	// them within the assign timeout, three times); otherwise every job
	// must have completed.
	canceledOK bool
	// resolvedByName: the plugin is name-keyed, so no unknown-instance
	// record may be left, and no instance may be owned by one.
	resolvedByName bool
}

// invariants is what checkInvariants found; it feeds both the assertions
// and the report.
type invariants struct {
	Jobs, Completed, Canceled, Stuck int

	// Instances: created (the plugin answered AddInstance OK, or an
	// instance directory exists), deleted (gone), and the ones left,
	// split by who owns them.
	Created, Deleted int
	LiveOwned        int // owned by a live runner record (idle, busy, deleting)
	UnknownOwned     int // named after an unknown-instance record (the protocol's blind window)
	Lost             int // created by a plugin that answered an empty cloud ID (lostOK only)
	Leaked           int // anything else: a real leak

	UnknownRecords int // unknown-instance records, reported by runners ls
	GhostRecords   int // idle or busy records whose instance does not exist

	DuplicateNames int // runner names provisioned (AddInstance OK) twice, or registered twice on GitHub
	DuplicateJobs  int // jobs run by two runners, or runners given two jobs
	Violations     int
	OpenSessions   int

	problems []string
}

func (iv *invariants) problem(format string, args ...any) {
	iv.problems = append(iv.problems, fmt.Sprintf(format, args...))
}

// instanceDir is one instance directory of the fake plugin: an instance
// that exists.
type instanceDir struct {
	CloudID    string `json:"cloud_id"`
	RunnerName string `json:"runner_name"`
}

// instanceDirs lists the instances that exist, by cloud ID.
func (s *scenario) instanceDirs() map[string]instanceDir {
	out := map[string]instanceDir{}
	entries, _ := os.ReadDir(s.pluginDir)
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		in := instanceDir{CloudID: e.Name()}
		if b, err := os.ReadFile(filepath.Join(s.pluginDir, e.Name(), "instance.json")); err == nil {
			_ = json.Unmarshal(b, &in)
		}
		in.CloudID = e.Name()
		out[e.Name()] = in
	}
	return out
}

// checkInvariants checks, once the last daemon has stopped:
//  1. every job queued in the sim completed (or was canceled by the sim's
//     own rules, when canceledOK); none is stuck;
//  2. every instance is deleted or owned by a live record in the state
//     file; instances named after an unknown-instance record are
//     reported, not counted as leaks; created = deleted + left;
//  3. no runner name provisioned twice, no job run by two runners;
//  4. no session left open, no protocol violation;
//  5. the state file opens: runners ls and scalesets ls work on it.
//
// It fails the test for every broken invariant and records the figures
// in the scenario's result.
func (s *scenario) checkInvariants(o invariantOptions) invariants {
	s.t.Helper()
	var iv invariants
	st := s.sim.state()

	// 1. Jobs.
	for _, j := range st.Jobs {
		iv.Jobs++
		switch {
		case j.State == "completed":
			iv.Completed++
		case j.State == "canceled":
			iv.Canceled++
			if !o.canceledOK {
				iv.problem("job %s (%s) canceled by the sim after %d assignments: no runner took it", j.ID, j.Scope, j.Attempts)
			}
		default:
			iv.Stuck++
			iv.problem("job %s (%s) stuck in %s (attempts %d, runner %q)", j.ID, j.Scope, j.State, j.Attempts, j.RunnerName)
		}
	}

	// 5 (first, the rest needs it). The state file opens.
	live := s.runnersLs()
	_ = s.scaleSetsLs()
	history := s.history()

	// 2. Instances.
	calls := s.calls()
	created := map[string]shoesfake.Call{}
	provisioned := map[string]int{}
	for _, c := range calls {
		if c.Method == shoesfake.MethodAddInstance && c.Code == "OK" {
			if c.CloudID != "" {
				created[c.CloudID] = c
			}
			provisioned[c.RunnerName]++
		}
	}
	dirs := s.instanceDirs()
	all := map[string]string{} // cloud ID -> runner name
	for id, c := range created {
		all[id] = c.RunnerName
	}
	for id, d := range dirs {
		if all[id] == "" {
			all[id] = d.RunnerName
		}
	}
	owner := map[string]store.Runner{} // cloud ID -> live record
	unknown := map[string]bool{}       // runner names of unknown-instance records
	for _, r := range live {
		if r.State == store.StateUnknownInstance {
			iv.UnknownRecords++
			unknown[r.Name] = true
			continue
		}
		if r.CloudID != "" {
			owner[r.CloudID] = r
			if _, ok := dirs[r.CloudID]; !ok && (r.State == store.StateIdle || r.State == store.StateBusy) {
				iv.GhostRecords++
				iv.problem("runner %s is %s but its instance %s does not exist", r.Name, r.State, r.CloudID)
			}
		}
	}
	failedEmpty := map[string]bool{} // runners that failed on an empty cloud ID
	for _, h := range history {
		if strings.Contains(h.Runner.LastError, "empty cloud ID") || strings.Contains(h.Runner.LastError, "empty cloud_id") {
			failedEmpty[h.Runner.Name] = true
		}
	}
	iv.Created = len(all)
	ids := make([]string, 0, len(all))
	for id := range all {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		name := all[id]
		if _, exists := dirs[id]; !exists {
			iv.Deleted++
			continue
		}
		switch {
		case owner[id].Name != "":
			iv.LiveOwned++
		case unknown[name]:
			iv.UnknownOwned++
		case o.lostOK && failedEmpty[name]:
			iv.Lost++
		default:
			iv.Leaked++
			iv.problem("instance %s (runner %q) leaked: it exists and no live record owns it", id, name)
		}
	}
	if iv.Created != iv.Deleted+iv.LiveOwned+iv.UnknownOwned+iv.Lost+iv.Leaked {
		iv.problem("instances: created %d != deleted %d + live %d + unknown %d + lost %d + leaked %d",
			iv.Created, iv.Deleted, iv.LiveOwned, iv.UnknownOwned, iv.Lost, iv.Leaked)
	}

	if o.resolvedByName && (iv.UnknownRecords > 0 || iv.UnknownOwned > 0) {
		iv.problem("%d unknown-instance records and %d instances behind them left with a name-keyed plugin: they are deleted by name", iv.UnknownRecords, iv.UnknownOwned)
	}

	// 3. Duplicates.
	for name, n := range provisioned {
		if n > 1 {
			iv.DuplicateNames++
			iv.problem("runner %s provisioned %d times", name, n)
		}
	}
	simNames := map[string]int{}
	runnersOfJob := map[string][]string{}
	for _, r := range st.Runners {
		simNames[r.Name]++
		if r.JobID != "" {
			runnersOfJob[r.JobID] = append(runnersOfJob[r.JobID], r.Name)
		}
	}
	for name, n := range simNames {
		if n > 1 {
			iv.DuplicateNames++
			iv.problem("runner name %s registered %d times on GitHub", name, n)
		}
	}
	for job, names := range runnersOfJob {
		if len(names) > 1 {
			iv.DuplicateJobs++
			iv.problem("job %s ran on %d runners: %v", job, len(names), names)
		}
	}
	jobsOfRunner := map[string]int{}
	for _, j := range st.Jobs {
		if j.RunnerName != "" {
			jobsOfRunner[j.RunnerName]++
		}
	}
	for name, n := range jobsOfRunner {
		if n > 1 {
			iv.DuplicateJobs++
			iv.problem("runner %s was given %d jobs", name, n)
		}
	}

	// 4. Sessions and violations.
	iv.Violations = len(st.Violations)
	for _, v := range st.Violations {
		iv.problem("protocol violation %q: %s", v.Kind, v.Detail)
	}
	for _, ss := range st.ScaleSets {
		if ss.Session != nil {
			iv.OpenSessions++
			if !o.sessionsOK {
				iv.problem("scale set %s still has session %s (owner %s) after a clean shutdown", ss.Name, ss.Session.ID, ss.Session.Owner)
			}
		}
	}

	for _, p := range iv.problems {
		s.t.Errorf("invariant: %s", p)
	}
	s.res.addInvariants(s, iv)
	s.t.Logf("invariants: jobs %d completed %d canceled %d stuck %d; instances created %d deleted %d live %d unknown %d lost %d leaked %d; "+
		"unknown-instance records %d; duplicates %d/%d; violations %d; open sessions %d",
		iv.Jobs, iv.Completed, iv.Canceled, iv.Stuck, iv.Created, iv.Deleted, iv.LiveOwned, iv.UnknownOwned, iv.Lost, iv.Leaked,
		iv.UnknownRecords, iv.DuplicateNames, iv.DuplicateJobs, iv.Violations, iv.OpenSessions)
	return iv
}

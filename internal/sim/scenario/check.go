package scenario

import (
	"fmt"
	"slices"
	"strings"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// CodeOK is the call log's code of a plugin call that succeeded.
const CodeOK = "OK"

// Inputs is what a run is checked from, gathered once its last daemon
// stopped (the state file is then free to read).
type Inputs struct {
	// State is the fake Actions service's final state.
	State actionsfake.State
	// Calls is the fake plugin's call log.
	Calls []shoesfake.Call
	// Runners are the runner records left in the state file; History its
	// finished runners.
	Runners []store.Runner
	History []store.HistoryRecord
	// Instances are the instances that exist (shoesfake.ListInstances of
	// the plugin's state directory), when InstancesListed. Otherwise an
	// instance exists if an OK AddInstance created it and no OK
	// DeleteInstance deleted it (LiveInstances).
	Instances       []shoesfake.Instance
	InstancesListed bool
}

// Options says what a scenario accepts.
type Options struct {
	// Owners are the states of the runner records that own the instance
	// of their cloud ID: an instance so owned is counted in LiveOwned, not
	// as a leak. An unknown-instance record has no cloud ID; with
	// StateUnknownInstance listed it owns the instances named after its
	// runner (UnknownOwned: the shoes protocol's blind window).
	// EveryState is what a daemon keeps across a stop; the demo, which
	// waits until nothing is left, lists only idle (the runners it keeps
	// for --min-runners) or nothing.
	Owners []store.RunnerState
	// CanceledOK accepts jobs canceled by the sim for good (no runner took
	// them within the assign timeout, three times); otherwise every job
	// must have completed.
	CanceledOK bool
	// SessionsOK accepts sessions left open, for a run whose daemon did
	// not stop cleanly last.
	SessionsOK bool
	// LostOK accepts instances the plugin created but never reported (it
	// answered AddInstance with an empty cloud ID): no daemon could delete
	// what it was never told about. They are counted in Lost.
	LostOK bool
	// ResolvedByName: the plugin is name-keyed, so no unknown-instance
	// record may be left, nor an instance behind one.
	ResolvedByName bool
}

// EveryState lists every runner state: Options.Owners for a daemon that
// stopped with runners on their way in or out.
var EveryState = []store.RunnerState{
	store.StatePending, store.StateConfigured, store.StateIdle,
	store.StateBusy, store.StateDeleting, store.StateUnknownInstance,
}

// Invariants is what Check found: the figures of a run and, in Problems,
// every invariant it broke.
type Invariants struct {
	Jobs, Completed, Canceled, Stuck int

	// Instances: created (the plugin answered AddInstance OK, or the
	// instance exists), deleted (gone), and the ones left, split by who
	// owns them. Created = Deleted + LiveOwned + UnknownOwned + Lost + Leaked.
	Created, Deleted int
	LiveOwned        int // owned by a live runner record in one of Options.Owners
	UnknownOwned     int // named after an unknown-instance record
	Lost             int // created by a plugin that answered an empty cloud ID (LostOK only)
	Leaked           int // anything else: a real leak

	UnknownRecords int // unknown-instance records left
	GhostRecords   int // idle or busy records whose instance does not exist

	DuplicateNames int // runner names provisioned (AddInstance OK) twice, or registered twice on GitHub
	DuplicateJobs  int // jobs run by two runners, or runners given two jobs
	Violations     int // protocol violations the fake recorded
	OpenSessions   int // sessions still open on the fake

	// LeakedIDs are the cloud IDs of the leaked instances, sorted;
	// ProvisionedTwice the runner names of more than one OK AddInstance,
	// sorted; ViolationKinds the kinds of violations, as first seen.
	LeakedIDs        []string
	ProvisionedTwice []string
	ViolationKinds   []string

	// Problems says, one line each, what went wrong; none: every
	// invariant holds.
	Problems []string
}

func (iv *Invariants) problem(format string, args ...any) {
	iv.Problems = append(iv.Problems, fmt.Sprintf(format, args...))
}

// String is the one-line summary of the figures.
func (iv Invariants) String() string {
	return fmt.Sprintf("jobs %d completed %d canceled %d stuck %d; instances created %d deleted %d live %d unknown %d lost %d leaked %d; "+
		"unknown-instance records %d; duplicates %d/%d; violations %d; open sessions %d",
		iv.Jobs, iv.Completed, iv.Canceled, iv.Stuck, iv.Created, iv.Deleted, iv.LiveOwned, iv.UnknownOwned, iv.Lost, iv.Leaked,
		iv.UnknownRecords, iv.DuplicateNames, iv.DuplicateJobs, iv.Violations, iv.OpenSessions)
}

// Check checks a finished run:
//  1. every job queued in the sim completed (or was canceled by the sim's
//     own rules, with CanceledOK); none is stuck;
//  2. every instance is deleted or owned by a live record (see
//     Options.Owners); created = deleted + left; no idle or busy record
//     without its instance;
//  3. no runner name provisioned twice, no job run by two runners;
//  4. no session left open (unless SessionsOK), no protocol violation.
//
// Every driver of a whole loop (the demo, the reliability suite, the
// benchmarks, the cli tests) checks its runs with it.
func Check(in Inputs, o Options) Invariants {
	var iv Invariants

	// 1. Jobs.
	for _, j := range in.State.Jobs {
		iv.Jobs++
		switch j.State {
		case "completed":
			iv.Completed++
		case "canceled":
			iv.Canceled++
			if !o.CanceledOK {
				iv.problem("job %s (%s) canceled by the sim after %d assignments: no runner took it", j.ID, j.Scope, j.Attempts)
			}
		default:
			iv.Stuck++
			iv.problem("job %s (%s) stuck in %s (attempts %d, runner %q)", j.ID, j.Scope, j.State, j.Attempts, j.RunnerName)
		}
	}

	// 2. Instances.
	all := map[string]string{} // cloud ID -> runner name
	provisioned := map[string]int{}
	for _, c := range in.Calls {
		if c.Method == shoesfake.MethodAddInstance && c.Code == CodeOK {
			if c.CloudID != "" {
				all[c.CloudID] = c.RunnerName
			}
			provisioned[c.RunnerName]++
		}
	}
	exists := map[string]bool{}
	if in.InstancesListed {
		for _, inst := range in.Instances {
			exists[inst.CloudID] = true
			if all[inst.CloudID] == "" {
				all[inst.CloudID] = inst.RunnerName
			}
		}
	} else {
		exists = LiveInstances(in.Calls)
	}
	owns := map[store.RunnerState]bool{}
	for _, st := range o.Owners {
		owns[st] = true
	}
	owned := map[string]bool{}   // cloud IDs owned by a live record
	unknown := map[string]bool{} // runner names of owning unknown-instance records
	for _, r := range in.Runners {
		if r.State == store.StateUnknownInstance {
			iv.UnknownRecords++
			if owns[r.State] {
				unknown[r.Name] = true
			}
			continue
		}
		if r.CloudID == "" {
			continue
		}
		if owns[r.State] {
			owned[r.CloudID] = true
		}
		if !exists[r.CloudID] && (r.State == store.StateIdle || r.State == store.StateBusy) {
			iv.GhostRecords++
			iv.problem("runner %s is %s but its instance %s does not exist", r.Name, r.State, r.CloudID)
		}
	}
	failedEmpty := map[string]bool{} // runners that failed on an empty cloud ID
	for _, h := range in.History {
		if strings.Contains(h.Runner.LastError, "empty cloud ID") || strings.Contains(h.Runner.LastError, "empty cloud_id") {
			failedEmpty[h.Runner.Name] = true
		}
	}
	iv.Created = len(all)
	for _, id := range sortedKeys(all) {
		name := all[id]
		switch {
		case !exists[id]:
			iv.Deleted++
		case owned[id]:
			iv.LiveOwned++
		case unknown[name]:
			iv.UnknownOwned++
		case o.LostOK && failedEmpty[name]:
			iv.Lost++
		default:
			iv.Leaked++
			iv.LeakedIDs = append(iv.LeakedIDs, id)
			iv.problem("instance %s (runner %q) leaked: it exists and no live record owns it", id, name)
		}
	}
	if iv.Created != iv.Deleted+iv.LiveOwned+iv.UnknownOwned+iv.Lost+iv.Leaked {
		iv.problem("instances: created %d != deleted %d + live %d + unknown %d + lost %d + leaked %d",
			iv.Created, iv.Deleted, iv.LiveOwned, iv.UnknownOwned, iv.Lost, iv.Leaked)
	}
	if o.ResolvedByName && (iv.UnknownRecords > 0 || iv.UnknownOwned > 0) {
		iv.problem("%d unknown-instance records and %d instances behind them left with a name-keyed plugin: they are deleted by name", iv.UnknownRecords, iv.UnknownOwned)
	}

	// 3. Duplicates.
	for _, name := range sortedKeys(provisioned) {
		if n := provisioned[name]; n > 1 {
			iv.DuplicateNames++
			iv.ProvisionedTwice = append(iv.ProvisionedTwice, name)
			iv.problem("runner %s provisioned %d times", name, n)
		}
	}
	simNames := map[string]int{}
	runnersOfJob := map[string][]string{}
	for _, r := range in.State.Runners {
		simNames[r.Name]++
		if r.JobID != "" {
			runnersOfJob[r.JobID] = append(runnersOfJob[r.JobID], r.Name)
		}
	}
	for _, name := range sortedKeys(simNames) {
		if n := simNames[name]; n > 1 {
			iv.DuplicateNames++
			iv.problem("runner name %s registered %d times on GitHub", name, n)
		}
	}
	for _, job := range sortedKeys(runnersOfJob) {
		if names := runnersOfJob[job]; len(names) > 1 {
			iv.DuplicateJobs++
			iv.problem("job %s ran on %d runners: %v", job, len(names), names)
		}
	}
	jobsOfRunner := map[string]int{}
	for _, j := range in.State.Jobs {
		if j.RunnerName != "" {
			jobsOfRunner[j.RunnerName]++
		}
	}
	for _, name := range sortedKeys(jobsOfRunner) {
		if n := jobsOfRunner[name]; n > 1 {
			iv.DuplicateJobs++
			iv.problem("runner %s was given %d jobs", name, n)
		}
	}

	// 4. Violations and sessions.
	iv.Violations = len(in.State.Violations)
	for _, v := range in.State.Violations {
		if !slices.Contains(iv.ViolationKinds, v.Kind) {
			iv.ViolationKinds = append(iv.ViolationKinds, v.Kind)
		}
		iv.problem("protocol violation %q: %s", v.Kind, v.Detail)
	}
	for _, ss := range in.State.ScaleSets {
		if ss.Session != nil {
			iv.OpenSessions++
			if !o.SessionsOK {
				iv.problem("scale set %s still has session %s (owner %s) after a clean shutdown", ss.Name, ss.Session.ID, ss.Session.Owner)
			}
		}
	}
	return iv
}

// LiveInstances is the set of cloud IDs an OK AddInstance created and no
// OK DeleteInstance deleted, by the call log.
func LiveInstances(calls []shoesfake.Call) map[string]bool {
	live := map[string]bool{}
	for _, c := range calls {
		if c.Code != CodeOK || c.CloudID == "" {
			continue
		}
		switch c.Method {
		case shoesfake.MethodAddInstance:
			live[c.CloudID] = true
		case shoesfake.MethodDeleteInstance:
			delete(live, c.CloudID)
		}
	}
	return live
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

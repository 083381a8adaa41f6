package scenariotest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/replica"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/myshoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// SimOptions configure a `sim serve` process; a zero field leaves the
// flag of the same name at sim serve's default.
type SimOptions struct {
	// Targets are the scopes the fake myshoes lists at start (default
	// org-a).
	Targets []string
	// Acquire is GHES mode: jobs must be acquired.
	Acquire bool
	// PollHold is how long the broker holds an empty long-poll; a
	// scenario that sets it gives run the same --poll-hold.
	PollHold time.Duration
	// TokenTTL, AssignTimeout and SessionTTL are the flags of the same
	// names.
	TokenTTL, AssignTimeout, SessionTTL time.Duration
	// BOM, DropLabels and NoAckThrough are --bom, --drop-custom-labels and
	// --no-ack-through: BOM-prefixed answers, GHES 3.18–3.20 label
	// dropping, and lastMessageId no longer acknowledging earlier messages.
	BOM, DropLabels, NoAckThrough bool
	// AppKeyPEM is the GitHub App key the sim accepts, written to a file
	// for --app-key-file (default testkit.SharedKey).
	AppKeyPEM []byte
	// LogLevel is --log-level (default warn).
	LogLevel string
}

func (o SimOptions) args(keyFile string) []string {
	if len(o.Targets) == 0 {
		o.Targets = []string{"org-a"}
	}
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	args := []string{"sim", "serve", "--listen", "127.0.0.1:0", "--targets", strings.Join(o.Targets, ","),
		"--app-key-file", keyFile, "--log-level", o.LogLevel}
	for _, f := range []struct {
		flag string
		on   bool
	}{{"--acquire", o.Acquire}, {"--bom", o.BOM}, {"--drop-custom-labels", o.DropLabels}, {"--no-ack-through", o.NoAckThrough}} {
		if f.on {
			args = append(args, f.flag)
		}
	}
	for _, f := range []struct {
		flag string
		d    time.Duration
	}{{"--poll-hold", o.PollHold}, {"--token-ttl", o.TokenTTL}, {"--assign-timeout", o.AssignTimeout}, {"--session-ttl", o.SessionTTL}} {
		if f.d > 0 {
			args = append(args, f.flag, f.d.String())
		}
	}
	return args
}

// Sim is a `shoes-scaleset sim serve` process: the fake GitHub, Actions
// service and broker, and the fake myshoes. Its methods drive its control
// API and fail the test on an error; Client returns errors instead (for
// a goroutine, which must not fail the test).
type Sim struct {
	*Proc
	Client *scenario.SimClient
	// URL is where it listens (http://127.0.0.1:PORT); the others are
	// what it printed for run.
	URL, GitHubURL, MyshoesURL, AppID, KeyPath string
}

// StartSim starts `sim serve` on a free loopback port, logging to
// dir/sim-serve.log, and reads the address and the flags for run that it
// prints.
func StartSim(t testing.TB, bin, dir string, o SimOptions) *Sim {
	t.Helper()
	key := o.AppKeyPEM
	if key == nil {
		_, key = testkit.SharedKey(t)
	}
	keyFile := filepath.Join(dir, "app-key.pem")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Sim{Proc: Start(t, bin, filepath.Join(dir, "sim-serve.log"), testkit.ChildEnv(), o.args(keyFile)...)}
	announced := map[string]*string{
		"listening on ":              &s.URL,
		"--github-url=":              &s.GitHubURL,
		"--myshoes-url=":             &s.MyshoesURL,
		"--github-app-id=":           &s.AppID,
		"--github-private-key-path=": &s.KeyPath,
	}
	WaitFor(t, "sim serve to print its address and flags", 30*time.Second, func() (bool, string) {
		if s.Exited() {
			t.Fatalf("sim serve exited early:\n%s", s.Tail(40))
		}
		log := s.Log()
		for line := range strings.Lines(log) {
			for prefix, v := range announced {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
					*v = rest
				}
			}
		}
		for _, v := range announced {
			if *v == "" {
				return false, testkit.Tail(log, 40)
			}
		}
		return true, ""
	})
	s.URL = "http://" + s.URL
	s.Client = scenario.NewSimClient(s.URL)
	return s
}

// Peers is what `run` needs to reach the simulated peers.
func (s *Sim) Peers() Peers {
	return Peers{GitHubURL: s.GitHubURL, MyshoesURL: s.MyshoesURL, AppID: s.AppID, KeyPath: s.KeyPath}
}

// Peers is what `run` needs to reach simulated peers: their URLs, the
// GitHub App's ID and its key file.
type Peers struct {
	GitHubURL, MyshoesURL, AppID, KeyPath string
}

// WorldPeers are the Peers of a World started in the test's process; it
// writes the App's key to dir/app-key.pem.
func WorldPeers(t testing.TB, w *sim.World, dir string) Peers {
	t.Helper()
	keyPath := filepath.Join(dir, "app-key.pem")
	if err := os.WriteFile(keyPath, w.AppKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return Peers{GitHubURL: w.GitHubURL(), MyshoesURL: w.MyshoesURL(), AppID: strconv.FormatInt(w.AppID(), 10), KeyPath: keyPath}
}

// Do sends a request to the control API with body as JSON (nil: none),
// requires the status want and decodes the answer into out (nil: ignored).
func (s *Sim) Do(method, path string, body any, want int, out any) {
	s.t.Helper()
	if err := s.Client.Do(s.t.Context(), method, path, body, want, out); err != nil {
		s.t.Fatal(err)
	}
}

// State is the fake Actions service's state.
func (s *Sim) State() actionsfake.State {
	s.t.Helper()
	st, err := s.Client.State()
	if err != nil {
		s.t.Fatal(err)
	}
	return st
}

// QueueJobs queues count jobs of the given duration on scope and returns
// their IDs.
func (s *Sim) QueueJobs(scope string, count int, duration time.Duration) []string {
	s.t.Helper()
	out, err := s.Client.QueueJobs(actionsfake.JobsRequest{Scope: scope, Count: count, DurationMS: int(duration.Milliseconds())})
	if err != nil {
		s.t.Fatal(err)
	}
	return out.JobIDs
}

// AddFault registers a fault of the fake GitHub.
func (s *Sim) AddFault(f actionsfake.Fault) {
	s.t.Helper()
	if err := s.Client.AddFault(f); err != nil {
		s.t.Fatal(err)
	}
}

// ClearFaults removes the faults of the fake GitHub.
func (s *Sim) ClearFaults() {
	s.t.Helper()
	if err := s.Client.ClearFaults(); err != nil {
		s.t.Fatal(err)
	}
}

// Evict evicts the live sessions of the given scale sets (none: all), as
// GitHub does on its side, and returns how many.
func (s *Sim) Evict(ids ...int) int {
	s.t.Helper()
	n, err := s.Client.EvictSessions(ids...)
	if err != nil {
		s.t.Fatal(err)
	}
	return n
}

// Requests returns the requests the sim answered on route, oldest first.
func (s *Sim) Requests(route string) []actionsfake.Request {
	s.t.Helper()
	out, err := s.Client.Requests(route)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// SetTargets replaces the fake myshoes's targets.
func (s *Sim) SetTargets(ts []scenario.Target) {
	s.t.Helper()
	if err := s.Client.SetTargets(ts); err != nil {
		s.t.Fatal(err)
	}
}

// Targets returns the fake myshoes's targets, of every status.
func (s *Sim) Targets() []scenario.Target {
	s.t.Helper()
	out, err := s.Client.Targets()
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// MyshoesFault sets the fake myshoes's fault; the zero Fault clears it.
func (s *Sim) MyshoesFault(f myshoesfake.Fault) {
	s.t.Helper()
	if err := s.Client.MyshoesFault(f); err != nil {
		s.t.Fatal(err)
	}
}

// WaitListening waits until every scope has a scale set with a session
// created after since (zero: any session), and returns how long that took
// from since: the "listening again" time after a (re)start. With a run,
// it fails at once if the run exits.
func (s *Sim) WaitListening(run *Run, since time.Time, scopes []string, timeout time.Duration) time.Duration {
	s.t.Helper()
	var took time.Duration
	WaitFor(s.t, "a new session on the scale sets of "+strings.Join(scopes, ", "), timeout, func() (bool, string) {
		if run != nil {
			run.Alive()
		}
		ok, seen := scenario.Listening(s.State(), scopes, since)
		took = time.Since(since)
		return ok, seen
	})
	return took
}

// WaitJobsDone waits until every job queued in the sim is completed or
// canceled. With a run, it fails at once if the run exits.
func (s *Sim) WaitJobsDone(run *Run, timeout time.Duration) {
	s.t.Helper()
	WaitFor(s.t, "every job completed", timeout, func() (bool, string) {
		if run != nil {
			run.Alive()
		}
		st := s.State()
		return scenario.JobsFinal(st), fmt.Sprintf("jobs %v\n%s", scenario.JobCounts(st), scenario.SummarizeScaleSets(st))
	})
}

// SessionOwners returns the owner name of the open session of each
// scope's scale set (with replicas on etcd, the replica ID).
func (s *Sim) SessionOwners() map[string]string {
	out := map[string]string{}
	for _, ss := range s.State().ScaleSets {
		if ss.Session != nil {
			out[ss.Scope] = ss.Session.Owner
		}
	}
	return out
}

// WaitServed waits until each of scopes has an open session whose owner
// is one of owners (nil: anyone), calling alive first at each look (a
// process that exited fails the test there), and returns when the last of
// those sessions was created, by the sim's clock (this machine's).
func (s *Sim) WaitServed(scopes, owners []string, timeout time.Duration, alive func()) time.Time {
	s.t.Helper()
	var last time.Time
	WaitFor(s.t, fmt.Sprintf("a session on each of %d scopes, owned by %v", len(scopes), owners), timeout, func() (bool, string) {
		alive()
		st := s.State()
		open := map[string]time.Time{}
		for _, ss := range st.ScaleSets {
			if ss.Session != nil && (owners == nil || slices.Contains(owners, ss.Session.Owner)) {
				open[ss.Scope] = ss.Session.CreatedAt
			}
		}
		last = time.Time{}
		for _, sc := range scopes {
			at, ok := open[sc]
			if !ok {
				return false, fmt.Sprintf("%s not served by %v\n%s", sc, owners, scenario.SummarizeScaleSets(st))
			}
			if at.After(last) {
				last = at
			}
		}
		return true, ""
	})
	return last
}

// Assignment is the owner rendezvous hashing gives each scope among the
// replica IDs, by the fake myshoes's target IDs: where the targets settle.
func (s *Sim) Assignment(ids []string) map[string]string {
	out := map[string]string{}
	for _, tg := range s.Targets() {
		out[tg.Scope] = replica.Assign(tg.ID, ids)
	}
	return out
}

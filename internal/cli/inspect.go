package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/replica"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// inspectOptions are shared by the commands that read the daemon's state:
// from its local API while it runs, else from the state file, read-only.
// With --store etcd they read etcd, which holds every replica's state (a
// daemon's API shows only the targets it owns).
type inspectOptions struct {
	StateFile string
	Listen    string
	Output    string
	backend   backendOptions
	env       *envBinding
	// outputs are the values --output accepts, the default first.
	outputs []string
	// apiTimeout bounds each answer of the daemon, lockTimeout the wait
	// for the state file's lock; completion shortens both (quick).
	apiTimeout, lockTimeout time.Duration
}

// The waits of the inspection commands, and the shorter ones of shell
// completion, which must never keep the shell waiting long.
const (
	inspectAPITimeout     = 3 * time.Second
	inspectLockTimeout    = 2 * time.Second
	completionAPITimeout  = time.Second
	completionLockTimeout = 300 * time.Millisecond
	completionEtcdTimeout = time.Second
)

func (o *inspectOptions) addFlags(cmd *cobra.Command, lookup lookupEnvFunc, outputs ...string) {
	o.outputs = outputs
	o.apiTimeout, o.lockTimeout = inspectAPITimeout, inspectLockTimeout
	f := cmd.Flags()
	f.StringVar(&o.StateFile, "state-file", defaultStateFile, "bbolt state file, read when no daemon answers")
	f.StringVar(&o.Listen, "listen", defaultListen, "address of the running daemon's HTTP API")
	f.StringVarP(&o.Output, "output", "o", outputs[0], "output format: "+orList(outputs))
	o.backend.addFlags(f)
	o.env = newEnvBinding(f, nil, lookup)
	completeFixed(cmd, "output", outputs...)
	completeFixed(cmd, "store", backendBolt, backendEtcd)
}

// checkOutput refuses an --output the command does not have.
func (o *inspectOptions) checkOutput() error {
	if !slices.Contains(o.outputs, o.Output) {
		return o.env.flagError("output", "unknown output %q: want %s", o.Output, orList(o.outputs))
	}
	return nil
}

// quick makes the waits short, for shell completion.
func (o *inspectOptions) quick() {
	o.apiTimeout, o.lockTimeout = completionAPITimeout, completionLockTimeout
	o.backend.EtcdDialTimeout = min(o.backend.EtcdDialTimeout, completionEtcdTimeout)
}

// etcd reports whether the state is read from etcd (--store etcd).
func (o *inspectOptions) etcd() bool { return o.backend.Store == backendEtcd }

// daemonGet fetches path from the daemon's API into v. ok is false when no
// daemon answers at the address.
func (o *inspectOptions) daemonGet(ctx context.Context, path string, v any) (ok bool, err error) {
	if o.Listen == "" {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, o.apiTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+o.Listen+path, nil)
	if err != nil {
		return false, fmt.Errorf("daemon request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return true, fmt.Errorf("daemon at %s answered %s: %s", o.Listen, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return true, fmt.Errorf("decode daemon answer: %w", err)
	}
	return true, nil
}

// openStore opens the state file read-only, for when no daemon runs, or
// the state in etcd. close releases what it opened.
func (o *inspectOptions) openStore() (st *store.Store, close func(), err error) {
	cfg, err := o.backend.validate(o.env)
	if err != nil {
		return nil, nil, err
	}
	if cfg != nil {
		c, err := dialEtcd(cfg)
		if err != nil {
			return nil, nil, err
		}
		st, err := etcdStore(c, o.backend.EtcdPrefix, "inspect", nil, store.DefaultOptions())
		if err != nil {
			_ = c.Close()
			return nil, nil, err
		}
		return st, func() { _ = st.Close(); _ = c.Close() }, nil
	}
	st, err = store.Open(store.Options{Path: o.StateFile, ReadOnly: true, LockTimeout: o.lockTimeout})
	if errors.Is(err, store.ErrLocked) {
		return nil, nil, fmt.Errorf("%w; a daemon holds it but did not answer at --listen %s", err, o.Listen)
	}
	if err != nil {
		return nil, nil, err
	}
	return st, func() { _ = st.Close() }, nil
}

// owners returns the replica owning each target (--store etcd), else nil.
func (o *inspectOptions) owners(ctx context.Context) (map[string]string, error) {
	cfg, err := o.backend.validate(o.env)
	if err != nil || cfg == nil {
		return nil, err
	}
	c, err := dialEtcd(cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return replica.Owners(ctx, c, o.backend.EtcdPrefix)
}

// stateSource is where an inspection command reads the state: the
// daemon's API while it answers at --listen, else the store (the state
// file, read-only, or etcd). Nothing it does writes.
type stateSource struct {
	o    *inspectOptions
	live bool                        // the daemon answered
	sets []controller.ScaleSetStatus // the daemon's, when live
	st   *store.Store                // when not live
	done func()                      // closes st
}

// open finds the state: the daemon, asked for its scale sets (which every
// command shows or needs), else the store.
func (o *inspectOptions) open(ctx context.Context) (*stateSource, error) {
	src := &stateSource{o: o, done: func() {}}
	if !o.etcd() {
		var sr httpapi.ScaleSetsResponse
		live, err := o.daemonGet(ctx, "/api/v1/scalesets", &sr)
		if err != nil {
			return nil, err
		}
		if live {
			src.live, src.sets = true, sr.ScaleSets
			return src, nil
		}
	}
	st, done, err := o.openStore()
	if err != nil {
		return nil, err
	}
	src.st, src.done = st, done
	return src, nil
}

// Close releases the store, if one was opened.
func (s *stateSource) Close() { s.done() }

// get asks the running daemon; it must still answer.
func (s *stateSource) get(ctx context.Context, path string, v any) error {
	ok, err := s.o.daemonGet(ctx, path, v)
	if err == nil && !ok {
		err = fmt.Errorf("the daemon at %s stopped answering", s.o.Listen)
	}
	return err
}

// scaleSets returns the status of every scale set.
func (s *stateSource) scaleSets() ([]controller.ScaleSetStatus, error) {
	if s.live {
		return s.sets, nil
	}
	return controller.ScaleSetsFromStore(s.st, nil)
}

// runners returns the runners f selects (one state at most), never nil.
func (s *stateSource) runners(ctx context.Context, f store.RunnerFilter) ([]store.Runner, error) {
	var runners []store.Runner
	if s.live {
		q := url.Values{}
		if f.Scope != "" {
			q.Set("scope", f.Scope)
		}
		if len(f.States) > 0 {
			q.Set("state", string(f.States[0]))
		}
		var rr httpapi.RunnersResponse
		if err := s.get(ctx, "/api/v1/runners?"+q.Encode(), &rr); err != nil {
			return nil, err
		}
		runners = rr.Runners
	} else {
		var err error
		if runners, err = s.st.ListRunners(f); err != nil {
			return nil, fmt.Errorf("list runners: %w", err)
		}
	}
	if runners == nil {
		runners = []store.Runner{}
	}
	return runners, nil
}

// historyQuery selects finished runners, newest first: of Scope and with
// Reason when they are set, at most Limit of them (0: all).
type historyQuery struct {
	Scope  string
	Reason string
	Limit  int
}

// history returns the finished runners q selects, never nil. The daemon's
// API and the store filter by scope and limit; the reason is filtered
// here, so with a reason the whole history of the scope is read.
func (s *stateSource) history(ctx context.Context, q historyQuery) ([]store.HistoryRecord, error) {
	f := store.HistoryFilter{Scope: q.Scope, Limit: q.Limit}
	if q.Reason != "" {
		f.Limit = 0
	}
	var recs []store.HistoryRecord
	if s.live {
		v := url.Values{}
		if f.Scope != "" {
			v.Set("scope", f.Scope)
		}
		if f.Limit > 0 {
			v.Set("limit", strconv.Itoa(f.Limit))
		}
		var hr httpapi.HistoryResponse
		if err := s.get(ctx, "/api/v1/history?"+v.Encode(), &hr); err != nil {
			return nil, err
		}
		recs = hr.History
	} else {
		var err error
		if recs, err = s.st.ListHistory(f); err != nil {
			return nil, err
		}
	}
	if q.Reason != "" {
		recs = slices.DeleteFunc(recs, func(r store.HistoryRecord) bool { return r.Reason != q.Reason })
		if q.Limit > 0 && len(recs) > q.Limit {
			recs = recs[:q.Limit]
		}
	}
	if recs == nil {
		recs = []store.HistoryRecord{}
	}
	return recs, nil
}

// scopes returns the scopes of the scale sets and runners in the state,
// sorted, and with a history query those of the finished runners it
// selects too.
func (s *stateSource) scopes(ctx context.Context, history *historyQuery) ([]string, error) {
	seen := map[string]bool{}
	sets, err := s.scaleSets()
	if err != nil {
		return nil, err
	}
	for _, ss := range sets {
		seen[ss.Scope] = true
	}
	runners, err := s.runners(ctx, store.RunnerFilter{})
	if err != nil {
		return nil, err
	}
	for _, r := range runners {
		seen[r.Scope] = true
	}
	if history != nil {
		recs, err := s.history(ctx, *history)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			seen[r.Runner.Scope] = true
		}
	}
	delete(seen, "")
	return slices.Sorted(maps.Keys(seen)), nil
}

// checkScope refuses a --scope nothing in the state has (scopes, as
// scopes returns them), naming the scopes there are. what says what was
// looked at, for the message.
func (o *inspectOptions) checkScope(scope string, scopes []string, what string) error {
	if scope == "" || slices.Contains(scopes, scope) {
		return nil
	}
	if len(scopes) == 0 {
		return o.env.flagError("scope", "unknown scope %q: the state holds no %s of any scope yet", scope, what)
	}
	return o.env.flagError("scope", "unknown scope %q: no %s has it; the scopes in the state are %s", scope, what, strings.Join(scopes, ", "))
}

// runnerStateNames are the values of runners ls --state.
func runnerStateNames() []string {
	var names []string
	for _, s := range store.RunnerStates() {
		names = append(names, string(s))
	}
	return names
}

// orList joins values as "a, b or c".
func orList(values []string) string {
	if len(values) < 2 {
		return strings.Join(values, "")
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}

type runnersLsOptions struct {
	inspectOptions
	Scope string
	State string
}

func newRunnersCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runners",
		Short: "Inspect the runners shoes-scaleset manages",
		Example: `  shoes-scaleset runners ls
  shoes-scaleset runners history --reason failed
  shoes-scaleset runners rm myshoes-0b5c3f9e-2d1a-4c4e-9f3b-7a6d5e4c3b2a`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newRunnersLsCmd(s, lookup), newRunnersHistoryCmd(s, lookup), newRunnersRmCmd(s, lookup))
	return cmd
}

func newRunnersLsCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	opts := &runnersLsOptions{}
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List runners, from the running daemon or the state file",
		Long: `List the runners in the state: name, scope, scale set, state, cloud ID, age
and job. It asks the daemon at --listen while it runs, and reads the state
file read-only otherwise. Finished runners are in "runners history".

An unknown --state, or a --scope no scale set or runner has, is refused
(exit code 2) with the values there are.`,
		Example: `  # Every runner, from the daemon while it runs, else the state file
  shoes-scaleset runners ls

  # The busy runners of one scope, with IP, runner ID and last error
  shoes-scaleset runners ls --scope my-org --state busy -o wide

  # The full records, for jq
  shoes-scaleset runners ls -o json | jq -r '.[] | select(.last_error != null) | .name'

  # With replicas: the runners of every replica, from etcd
  shoes-scaleset runners ls --store etcd --etcd-endpoints http://10.0.0.1:2379`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.env.apply(); err != nil {
				return err
			}
			return runRunnersLs(cmd.Context(), s, opts)
		},
	}
	opts.addFlags(cmd, lookup, "table", "wide", "json")
	cmd.Flags().StringVar(&opts.Scope, "scope", "", "only runners of this scope")
	cmd.Flags().StringVar(&opts.State, "state", "", "only runners in this state ("+strings.Join(runnerStateNames(), ", ")+")")
	completeFixed(cmd, "state", runnerStateNames()...)
	completeFromState(cmd, "scope", &opts.inspectOptions, completeScopes(false))
	return cmd
}

func runRunnersLs(ctx context.Context, s streams, o *runnersLsOptions) error {
	if err := o.checkOutput(); err != nil {
		return err
	}
	if o.State != "" && !store.RunnerState(o.State).Valid() {
		return o.env.flagError("state", "unknown state %q: want one of %s", o.State, strings.Join(runnerStateNames(), ", "))
	}
	src, err := o.open(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	f := store.RunnerFilter{Scope: o.Scope}
	if o.State != "" {
		f.States = []store.RunnerState{store.RunnerState(o.State)}
	}
	runners, err := src.runners(ctx, f)
	if err != nil {
		return err
	}
	if len(runners) == 0 && o.Scope != "" {
		scopes, err := src.scopes(ctx, nil)
		if err != nil {
			return err
		}
		if err := o.checkScope(o.Scope, scopes, "scale set or runner"); err != nil {
			return err
		}
	}
	if o.Output == "json" {
		return writeIndentedJSON(s.Out, runners)
	}
	sets, err := src.scaleSets()
	if err != nil {
		return err
	}
	names := scaleSetNames(sets)
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	header := "NAME\tSCOPE\tSCALE SET\tSTATE\tCLOUD ID\tAGE\tJOB"
	if o.Output == "wide" {
		header += "\tIP\tRUNNER ID\tLAST ERROR"
	}
	fmt.Fprintln(tw, header)
	now := time.Now()
	for _, r := range runners {
		line := strings.Join([]string{r.Name, r.Scope, names(r.ScaleSetID), string(r.State), dash(r.CloudID), age(now, r.CreatedAt), dash(r.JobID)}, "\t")
		if o.Output == "wide" {
			line += "\t" + strings.Join([]string{dash(r.IPAddress), fmt.Sprint(r.RunnerID), dash(oneLine(r.LastError))}, "\t")
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// scaleSetNames returns the name of a scale set ID, else the ID.
func scaleSetNames(sets []controller.ScaleSetStatus) func(id int) string {
	names := make(map[int]string, len(sets))
	for _, ss := range sets {
		names[ss.ScaleSetID] = ss.ScaleSet
	}
	return func(id int) string {
		if n := names[id]; n != "" {
			return n
		}
		return fmt.Sprint(id)
	}
}

func newScaleSetsCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "scalesets",
		Short:   "Inspect the scale sets shoes-scaleset serves",
		Example: "  shoes-scaleset scalesets ls",
		Args:    cobra.NoArgs,
	}
	opts := &inspectOptions{}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List targets with their scale set, session, desired count and runners",
		Example: `  # Every target, from the daemon while it runs, else the state file
  shoes-scaleset scalesets ls

  # With replicas: every target and the replica that owns it, from etcd
  shoes-scaleset scalesets ls --store etcd --etcd-endpoints http://10.0.0.1:2379

  # The targets with an error
  shoes-scaleset scalesets ls -o json | jq -r '.[] | select(.error != null) | .scope'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.env.apply(); err != nil {
				return err
			}
			return runScaleSetsLs(cmd.Context(), s, opts)
		},
	}
	opts.addFlags(ls, lookup, "table", "json")
	cmd.AddCommand(ls)
	return cmd
}

func runScaleSetsLs(ctx context.Context, s streams, o *inspectOptions) error {
	if err := o.checkOutput(); err != nil {
		return err
	}
	src, err := o.open(ctx)
	if err != nil {
		return err
	}
	sets, err := src.scaleSets()
	live := src.live
	src.Close()
	if err != nil {
		return err
	}
	owners, err := o.owners(ctx)
	if err != nil {
		return err
	}
	for i := range sets {
		sets[i].Owner = owners[sets[i].TargetID]
	}
	if o.Output == "json" {
		return writeIndentedJSON(s.Out, sets)
	}
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	owner := func(ss controller.ScaleSetStatus) string { return "" }
	header := "SCOPE\tSCALE SET\tID\tLABELS\tPOLICY\tSESSION\tDESIRED\tRUNNERS\tLAST POLL\tSTATUS"
	if o.etcd() {
		header += "\tOWNER"
		owner = func(ss controller.ScaleSetStatus) string { return "\t" + dash(ss.Owner) }
	}
	fmt.Fprintln(tw, header)
	now := time.Now()
	for _, ss := range sets {
		status := ss.TargetStatus
		if ss.TargetStatusDescription != "" {
			status += ": " + ss.TargetStatusDescription
		}
		if !ss.Serving && live {
			status += " (not served)"
		}
		if ss.Error != "" {
			status += " error: " + oneLine(ss.Error)
		}
		if ss.AcquireError != "" {
			status += " " + oneLine(ss.AcquireError)
		}
		desired := "-"
		if live && ss.Serving {
			desired = fmt.Sprint(ss.Desired)
		}
		lastPoll := "-"
		if !ss.LastPoll.IsZero() {
			lastPoll = age(now, ss.LastPoll) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s%s\n", ss.Scope, dash(ss.ScaleSet), ss.ScaleSetID,
			dash(labelsString(ss)), policyString(ss), dash(ss.SessionID), desired, countsString(ss.Runners), lastPoll, dash(status), owner(ss))
	}
	return tw.Flush()
}

// labelsString shows the scale set's labels; when GitHub dropped some
// (GHES 3.18–3.20 without custom labels), the ones it kept and, in
// parentheses, the ones workflows cannot use.
// policyString is a target's policy as "min-max rule", e.g. "0-10
// defaults"; "-" for a record written before policies.
func policyString(ss controller.ScaleSetStatus) string {
	if ss.MaxRunners == 0 {
		return "-"
	}
	return fmt.Sprintf("%d-%d %s", ss.MinRunners, ss.MaxRunners, dash(ss.PolicyRule))
}

func labelsString(ss controller.ScaleSetStatus) string {
	if len(ss.DroppedLabels) == 0 {
		return strings.Join(ss.Labels, ",")
	}
	return strings.Join(ss.GitHubLabels, ",") + " (dropped by GitHub: " + strings.Join(ss.DroppedLabels, ",") + ")"
}

func countsString(m map[store.RunnerState]int) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k, v := range m {
		keys = append(keys, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine fits an error message on one table line. A long one keeps its
// start (what failed) and its end (the cause, e.g. "401 Unauthorized: ..."),
// which the wrapping in between would otherwise push out.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if r := []rune(s); len(r) > 160 {
		s = string(r[:40]) + " ... " + string(r[len(r)-115:])
	}
	return s
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
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
}

func (o *inspectOptions) addFlags(cmd *cobra.Command, lookup lookupEnvFunc, outputs string) {
	f := cmd.Flags()
	f.StringVar(&o.StateFile, "state-file", defaultStateFile, "bbolt state file, read when no daemon answers")
	f.StringVar(&o.Listen, "listen", defaultListen, "address of the running daemon's HTTP API")
	f.StringVarP(&o.Output, "output", "o", "table", "output format: "+outputs)
	o.backend.addFlags(f)
	o.env = newEnvBinding(f, nil, lookup)
}

// etcd reports whether the state is read from etcd (--store etcd).
func (o *inspectOptions) etcd() bool { return o.backend.Store == backendEtcd }

// daemonGet fetches path from the daemon's API into v. ok is false when no
// daemon answers at the address.
func (o *inspectOptions) daemonGet(ctx context.Context, path string, v any) (ok bool, err error) {
	if o.Listen == "" {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
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
	st, err = store.Open(store.Options{Path: o.StateFile, ReadOnly: true, LockTimeout: 2 * time.Second})
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

type runnersLsOptions struct {
	inspectOptions
	Scope string
	State string
}

func newRunnersCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runners",
		Short: "Inspect the runners shoes-scaleset manages",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newRunnersLsCmd(s, lookup), newRunnersRmCmd(s, lookup))
	return cmd
}

func newRunnersLsCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	opts := &runnersLsOptions{}
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List runners, from the running daemon or the state file",
		Long: `List the runners in the state: name, scope, scale set, state, cloud ID, age
and job. It asks the daemon at --listen while it runs, and reads the state
file read-only otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.env.apply(); err != nil {
				return err
			}
			return runRunnersLs(cmd.Context(), s, opts)
		},
	}
	opts.addFlags(cmd, lookup, "table, wide or json")
	cmd.Flags().StringVar(&opts.Scope, "scope", "", "only runners of this scope")
	cmd.Flags().StringVar(&opts.State, "state", "", "only runners in this state (pending, configured, idle, busy, deleting, unknown-instance)")
	return cmd
}

func runRunnersLs(ctx context.Context, s streams, o *runnersLsOptions) error {
	switch o.Output {
	case "table", "wide", "json":
	default:
		return o.env.flagError("output", "unknown output %q: want table, wide or json", o.Output)
	}
	runners, sets, err := o.load(ctx)
	if err != nil {
		return err
	}
	if o.Output == "json" {
		return writeIndentedJSON(s.Out, runners)
	}
	names := make(map[int]string, len(sets))
	for _, ss := range sets {
		names[ss.ScaleSetID] = ss.ScaleSet
	}
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	header := "NAME\tSCOPE\tSCALE SET\tSTATE\tCLOUD ID\tAGE\tJOB"
	if o.Output == "wide" {
		header += "\tIP\tRUNNER ID\tLAST ERROR"
	}
	fmt.Fprintln(tw, header)
	now := time.Now()
	for _, r := range runners {
		set := names[r.ScaleSetID]
		if set == "" {
			set = fmt.Sprint(r.ScaleSetID)
		}
		line := strings.Join([]string{r.Name, r.Scope, set, string(r.State), dash(r.CloudID), age(now, r.CreatedAt), dash(r.JobID)}, "\t")
		if o.Output == "wide" {
			line += "\t" + strings.Join([]string{dash(r.IPAddress), fmt.Sprint(r.RunnerID), dash(oneLine(r.LastError))}, "\t")
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// load reads the runners and scale sets from the daemon, else the file.
func (o *runnersLsOptions) load(ctx context.Context) ([]store.Runner, []controller.ScaleSetStatus, error) {
	q := url.Values{}
	if o.Scope != "" {
		q.Set("scope", o.Scope)
	}
	if o.State != "" {
		q.Set("state", o.State)
	}
	var rr httpapi.RunnersResponse
	ok := false
	var err error
	if !o.etcd() {
		if ok, err = o.daemonGet(ctx, "/api/v1/runners?"+q.Encode(), &rr); err != nil {
			return nil, nil, err
		}
	}
	if ok {
		var sr httpapi.ScaleSetsResponse
		if _, err := o.daemonGet(ctx, "/api/v1/scalesets", &sr); err != nil {
			return nil, nil, err
		}
		return rr.Runners, sr.ScaleSets, nil
	}
	st, closeStore, err := o.openStore()
	if err != nil {
		return nil, nil, err
	}
	defer closeStore()
	f := store.RunnerFilter{Scope: o.Scope}
	if o.State != "" {
		f.States = []store.RunnerState{store.RunnerState(o.State)}
	}
	runners, err := st.ListRunners(f)
	if err != nil {
		return nil, nil, fmt.Errorf("list runners: %w", err)
	}
	sets, err := controller.ScaleSetsFromStore(st, nil)
	if err != nil {
		return nil, nil, err
	}
	if runners == nil {
		runners = []store.Runner{}
	}
	return runners, sets, nil
}

func newScaleSetsCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scalesets",
		Short: "Inspect the scale sets shoes-scaleset serves",
		Args:  cobra.NoArgs,
	}
	opts := &inspectOptions{}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List targets with their scale set, session, desired count and runners",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.env.apply(); err != nil {
				return err
			}
			return runScaleSetsLs(cmd.Context(), s, opts)
		},
	}
	opts.addFlags(ls, lookup, "table or json")
	cmd.AddCommand(ls)
	return cmd
}

func runScaleSetsLs(ctx context.Context, s streams, o *inspectOptions) error {
	if o.Output != "table" && o.Output != "json" {
		return o.env.flagError("output", "unknown output %q: want table or json", o.Output)
	}
	var sr httpapi.ScaleSetsResponse
	live := false
	if !o.etcd() {
		var err error
		if live, err = o.daemonGet(ctx, "/api/v1/scalesets", &sr); err != nil {
			return err
		}
	}
	sets := sr.ScaleSets
	if !live {
		st, closeStore, err := o.openStore()
		if err != nil {
			return err
		}
		sets, err = controller.ScaleSetsFromStore(st, nil)
		closeStore()
		if err != nil {
			return err
		}
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
	header := "SCOPE\tSCALE SET\tID\tLABELS\tSESSION\tDESIRED\tRUNNERS\tLAST POLL\tSTATUS"
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
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s%s\n", ss.Scope, dash(ss.ScaleSet), ss.ScaleSetID,
			dash(labelsString(ss)), dash(ss.SessionID), desired, countsString(ss.Runners), lastPoll, dash(status), owner(ss))
	}
	return tw.Flush()
}

// labelsString shows the scale set's labels; when GitHub dropped some
// (GHES 3.18–3.20 without custom labels), the ones it kept and, in
// parentheses, the ones workflows cannot use.
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

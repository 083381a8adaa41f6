package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// defaultHistoryLimit is how many finished runners runners history shows
// unless told.
const defaultHistoryLimit = 50

type runnersHistoryOptions struct {
	inspectOptions
	Scope  string
	Reason string
	Limit  int
}

func newRunnersHistoryCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	opts := &runnersHistoryOptions{}
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List finished runners, newest first, with the reason they finished",
		Long: `List the finished runners the history keeps (--history-max-age and
--history-max-count of run): name, scope, scale set, the reason it finished
(completed, failed, bootstrap-timeout, idle-ttl, scale-down, delete-failed,
removed, ...), when it was created and finished, how long it lived, and its
job. Newest first, at most --limit. It asks the daemon at --listen while it
runs, and reads the state file read-only otherwise.

A --scope no scale set, runner or finished runner has is refused (exit
code 2) with the scopes there are.`,
		Example: `  # The last 50 finished runners
  shoes-scaleset runners history

  # Why did the runners of one scope fail? Their last error, from the newest
  shoes-scaleset runners history --scope my-org --reason failed -o wide

  # Every finished runner kept, as JSON
  shoes-scaleset runners history --limit 0 -o json | jq -r '.[] | [.runner.name, .reason] | @tsv'

  # With replicas: the history of every replica, from etcd
  shoes-scaleset runners history --store etcd --etcd-endpoints http://10.0.0.1:2379`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.env.apply(); err != nil {
				return err
			}
			return runRunnersHistory(cmd.Context(), s, opts)
		},
	}
	opts.addFlags(cmd, lookup, "table", "wide", "json")
	f := cmd.Flags()
	f.StringVar(&opts.Scope, "scope", "", "only finished runners of this scope")
	f.StringVar(&opts.Reason, "reason", "", "only finished runners with this reason (completed, failed, bootstrap-timeout, ...)")
	f.IntVar(&opts.Limit, "limit", defaultHistoryLimit, "show at most this many, the newest; 0 shows all")
	completeFromState(cmd, "scope", &opts.inspectOptions, completeScopes(true))
	completeFromState(cmd, "reason", &opts.inspectOptions, completeReasons)
	return cmd
}

func runRunnersHistory(ctx context.Context, s streams, o *runnersHistoryOptions) error {
	if err := o.checkOutput(); err != nil {
		return err
	}
	if o.Limit < 0 {
		return o.env.flagError("limit", "must not be negative, got %d", o.Limit)
	}
	src, err := o.open(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	recs, err := src.history(ctx, historyQuery{Scope: o.Scope, Reason: o.Reason, Limit: o.Limit})
	if err != nil {
		return err
	}
	if len(recs) == 0 && o.Scope != "" {
		scopes, err := src.scopes(ctx, &historyQuery{})
		if err != nil {
			return err
		}
		if err := o.checkScope(o.Scope, scopes, "scale set, runner or finished runner"); err != nil {
			return err
		}
	}
	if o.Output == "json" {
		return writeIndentedJSON(s.Out, recs)
	}
	sets, err := src.scaleSets()
	if err != nil {
		return err
	}
	names := scaleSetNames(sets)
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	header := "NAME\tSCOPE\tSCALE SET\tREASON\tCREATED\tFINISHED\tDURATION\tJOB"
	if o.Output == "wide" {
		header += "\tCLOUD ID\tREPOSITORY\tJOB RESULT\tLAST ERROR"
	}
	fmt.Fprintln(tw, header)
	for _, h := range recs {
		r := h.Runner
		line := strings.Join([]string{r.Name, r.Scope, names(r.ScaleSetID), h.Reason,
			timestamp(r.CreatedAt), timestamp(h.FinishedAt), lifetime(r.CreatedAt, h.FinishedAt), dash(r.JobID)}, "\t")
		if o.Output == "wide" {
			line += "\t" + strings.Join([]string{dash(r.CloudID), dash(r.Repository), dash(r.JobResult), dash(oneLine(r.LastError))}, "\t")
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// timestamp shows a time in UTC, to the second, "-" if unknown.
func timestamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// lifetime is how long a runner lived, to the second, "-" if unknown.
func lifetime(created, finished time.Time) string {
	if created.IsZero() || finished.IsZero() || finished.Before(created) {
		return "-"
	}
	return finished.Sub(created).Round(time.Second).String()
}

package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoes-scaleset/shoes-scaleset/internal/buildinfo"
	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/policy"
)

// configCheckOptions are config check's: the policy file, the run flags
// the policy applies over, and where myshoes is.
type configCheckOptions struct {
	File           string
	MyshoesURL     string
	RunnerGroup    string
	ScaleSetPrefix string
	Labels         []string
	MinRunners     int
	MaxRunners     int
	Output         string
	env            *envBinding
}

func newConfigCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check a policy file (--config of run)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newConfigCheckCmd(s, lookup))
	return cmd
}

func newConfigCheckCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	o := &configCheckOptions{}
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a policy file and show what each myshoes target would get",
		Long: `Check validates a policy file as run --config reads it, over the same flags
(--min-runners, --max-runners, --labels, --runner-group, --scale-set-prefix and
their variables). An invalid file is reported with its line and key, and exit
code 2. With --myshoes-url (or its variable), it lists myshoes's targets and
prints what each would get: the rule that matches, min and max runners,
labels, runner group and scale set name, or that it is disabled.`,
		Example: `  shoes-scaleset config check /etc/shoes-scaleset/policy.yaml
  shoes-scaleset config check policy.yaml --myshoes-url http://127.0.0.1:8080
  shoes-scaleset config check policy.yaml --myshoes-url http://127.0.0.1:8080 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.env.apply(); err != nil {
				return err
			}
			o.File = args[0]
			return runConfigCheck(cmd.Context(), s, o)
		},
	}
	ctrl := controller.DefaultConfig()
	f := cmd.Flags()
	f.StringVar(&o.MyshoesURL, "myshoes-url", "", "base URL of myshoes's REST API; with it, each target's policy is shown")
	f.StringVar(&o.RunnerGroup, "runner-group", ctrl.RunnerGroup, "runner group of the scale sets (run's flag)")
	f.StringVar(&o.ScaleSetPrefix, "scale-set-prefix", ctrl.ScaleSetPrefix, "scale set names are <prefix>-<scope> (run's flag)")
	f.StringSliceVar(&o.Labels, "labels", ctrl.Labels, "extra scale set labels (run's flag)")
	f.IntVar(&o.MinRunners, "min-runners", ctrl.MinRunners, "idle runners kept per scale set (run's flag)")
	f.IntVar(&o.MaxRunners, "max-runners", ctrl.MaxRunners, "maximum runners per scale set (run's flag)")
	f.StringVarP(&o.Output, "output", "o", "table", "output format: table or json")
	o.env = newEnvBinding(f, myshoesEnv(), lookup)
	o.env.skip = map[string]bool{"output": true}
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// targetPolicy is one target and what the policy gives it.
type targetPolicy struct {
	TargetID     string `json:"target_id"`
	Scope        string `json:"scope"`
	ResourceType string `json:"resource_type"`
	ScaleSetName string `json:"scale_set_name"`
	policy.Effective
}

func runConfigCheck(ctx context.Context, s streams, o *configCheckOptions) error {
	if o.Output != "table" && o.Output != "json" {
		return usageErrorf("--output: %q: want table or json", o.Output)
	}
	base := policy.Settings{MinRunners: o.MinRunners, MaxRunners: o.MaxRunners, Labels: o.Labels, RunnerGroup: o.RunnerGroup}
	if err := base.Validate(); err != nil {
		// The keys are the file's; the flags have the same names.
		return usageErrorf("the flags' settings: --%v", strings.ReplaceAll(err.Error(), "_", "-"))
	}
	p, err := policy.Load(o.File, base)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if o.MyshoesURL == "" {
		if o.Output == "json" {
			return writeIndentedJSON(s.Out, map[string]any{"file": o.File, "valid": true, "rules": len(p.Rules), "defaults": p.Defaults})
		}
		fmt.Fprintf(s.Out, "%s: valid: %d rules; defaults: %s\n", o.File, len(p.Rules), settingsString(p.Defaults))
		fmt.Fprintln(s.Out, "(give --myshoes-url to see what each target gets)")
		return nil
	}
	targets, err := o.listTargets(ctx)
	if err != nil {
		return err
	}
	slices.SortFunc(targets, func(a, b myshoes.Target) int { return strings.Compare(a.Scope, b.Scope) })
	out := make([]targetPolicy, 0, len(targets))
	for _, t := range targets {
		eff := p.For(t.Scope, t.ResourceType)
		name := github.ScaleSetName(o.ScaleSetPrefix, t.Scope)
		if eff.ScaleSetName != "" {
			name = github.ScaleSetName("", eff.ScaleSetName)
		}
		out = append(out, targetPolicy{TargetID: t.ID, Scope: t.Scope, ResourceType: t.ResourceType, ScaleSetName: name, Effective: eff})
	}
	if o.Output == "json" {
		return writeIndentedJSON(s.Out, out)
	}
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tRESOURCE\tRULE\tMIN\tMAX\tLABELS\tRUNNER GROUP\tSCALE SET")
	for _, t := range out {
		minS, maxS := strconv.Itoa(t.MinRunners), strconv.Itoa(t.MaxRunners)
		if t.Disabled {
			minS, maxS = "-", "-"
		}
		name := t.ScaleSetName
		if t.Disabled {
			name = "(disabled)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Scope, dash(t.ResourceType), t.Rule, minS, maxS,
			dash(strings.Join(t.Labels, ",")), t.RunnerGroup, name)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(s.Out, "%s: valid: %d rules, %d targets\n", o.File, len(p.Rules), len(out))
	return nil
}

func settingsString(s policy.Settings) string {
	return fmt.Sprintf("min_runners %d, max_runners %d, labels [%s], runner_group %q", s.MinRunners, s.MaxRunners, strings.Join(s.Labels, ","), s.RunnerGroup)
}

// listTargets reads myshoes's target list once.
func (o *configCheckOptions) listTargets(ctx context.Context) ([]myshoes.Target, error) {
	cfg := myshoes.Config{BaseURL: o.MyshoesURL, UserAgent: "shoes-scaleset/" + buildinfo.Version()}
	if err := cfg.Validate(); err != nil {
		return nil, o.env.flagError("myshoes-url", "%v", err)
	}
	ms, err := myshoes.New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	targets, err := ms.ListTargets(ctx)
	if err != nil {
		return nil, fmt.Errorf("read targets from myshoes: %w", err)
	}
	return targets, nil
}

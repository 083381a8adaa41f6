package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// Shell completion of flag values and arguments (`shoes-scaleset
// completion bash` and the hidden __complete command behind it). Values
// that come from the state are read the way the inspection commands read
// it, the daemon's API else the store read-only, with short waits
// (inspectOptions.quick): a completion never writes the state and never
// keeps the shell waiting on a locked file. When the state cannot be
// read, it completes nothing.

// completionTimeout bounds the daemon's answers to one completion, which
// may ask more than once (each answer is bounded by completionAPITimeout).
const completionTimeout = 2 * time.Second

// completionHistoryDepth is how many of the newest finished runners the
// completion of runners history's --scope and --reason looks at.
const completionHistoryDepth = 500

// completeFixed completes flag with values.
func completeFixed(cmd *cobra.Command, flag string, values ...string) {
	mustCompleteFlag(cmd, flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}

// stateValues lists the values a flag or argument may take, read from the
// state.
type stateValues func(ctx context.Context, src *stateSource) ([]cobra.Completion, error)

// completeFromState completes flag with values read from the state
// through o.
func completeFromState(cmd *cobra.Command, flag string, o *inspectOptions, values stateValues) {
	mustCompleteFlag(cmd, flag, func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return completeState(cmd, o, values, toComplete)
	})
}

// completeState reads the values from the state and keeps those that
// start with toComplete.
func completeState(cmd *cobra.Command, o *inspectOptions, values stateValues, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	const directive = cobra.ShellCompDirectiveNoFileComp
	if err := o.env.apply(); err != nil {
		cobra.CompErrorln(err.Error())
		return nil, directive
	}
	o.quick()
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	src, err := o.open(ctx)
	if err != nil {
		cobra.CompErrorln(err.Error())
		return nil, directive
	}
	defer src.Close()
	all, err := values(ctx, src)
	if err != nil {
		cobra.CompErrorln(err.Error())
		return nil, directive
	}
	var out []cobra.Completion
	for _, c := range all {
		if strings.HasPrefix(c, toComplete) {
			out = append(out, c)
		}
	}
	return out, directive
}

// mustCompleteFlag registers fn for flag. It fails only for a flag the
// command does not have, or one registered twice: a mistake in this
// package, which every test that builds the commands finds.
func mustCompleteFlag(cmd *cobra.Command, flag string, fn cobra.CompletionFunc) {
	if err := cmd.RegisterFlagCompletionFunc(flag, fn); err != nil {
		panic(fmt.Sprintf("complete --%s of %q: %v", flag, cmd.Name(), err))
	}
}

// completeScopes lists the scopes of the scale sets and runners, and with
// history those of the newest finished runners too.
func completeScopes(history bool) stateValues {
	return func(ctx context.Context, src *stateSource) ([]cobra.Completion, error) {
		if history {
			return src.scopes(ctx, &historyQuery{Limit: completionHistoryDepth})
		}
		return src.scopes(ctx, nil)
	}
}

// completeReasons lists the reasons of the newest finished runners.
func completeReasons(ctx context.Context, src *stateSource) ([]cobra.Completion, error) {
	recs, err := src.history(ctx, historyQuery{Limit: completionHistoryDepth})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.Reason] = true
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

// completeRunnerNames lists the runners, each with its state and scope as
// the description.
func completeRunnerNames(ctx context.Context, src *stateSource) ([]cobra.Completion, error) {
	runners, err := src.runners(ctx, store.RunnerFilter{})
	if err != nil {
		return nil, err
	}
	out := make([]cobra.Completion, 0, len(runners))
	for _, r := range runners {
		out = append(out, cobra.CompletionWithDesc(r.Name, string(r.State)+", "+r.Scope))
	}
	slices.Sort(out)
	return out, nil
}

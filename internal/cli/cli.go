// Package cli holds the cobra commands of shoes-scaleset. It is the only
// package that reads flags and environment variables; it turns them into
// the Config values of the components it wires together.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoes-scaleset/shoes-scaleset/internal/buildinfo"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks bad usage or bad configuration: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// streams are the standard streams a command writes to.
type streams struct {
	Out io.Writer
	Err io.Writer
}

// Main runs the command line and returns the process exit code. stop
// releases the signal handling of ctx, so that a second signal terminates
// the process at once.
func Main(ctx context.Context, stop context.CancelFunc, args []string, stdout, stderr io.Writer) int {
	io := streams{Out: stdout, Err: stderr}
	root := newRootCmd(io, stop)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

func newRootCmd(io streams, stop context.CancelFunc) *cobra.Command {
	var showVersion bool
	root := &cobra.Command{
		Use:   "shoes-scaleset",
		Short: "Run GitHub Actions runner scale sets on myshoes shoes plugins",
		Long: `shoes-scaleset runs next to an unmodified myshoes. It reads the targets from
myshoes's REST API, holds one runner scale set and one message session per
target on GitHub, and starts ephemeral just-in-time runners through the
shoes plugin myshoes uses.`,
		Example: `  # Run next to myshoes, with myshoes's variables (GITHUB_*, PLUGIN, RUNNER_*)
  # in the environment, e.g. from systemd's EnvironmentFile=/etc/myshoes/myshoes.env
  shoes-scaleset run --myshoes-url http://127.0.0.1:8080

  # What runs now, and what finished
  shoes-scaleset runners ls
  shoes-scaleset runners history

  # Try the whole loop on simulated peers
  shoes-scaleset demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if showVersion {
				fmt.Fprintln(io.Out, versionLine(buildinfo.Read()))
				return nil
			}
			return cmd.Help()
		},
	}
	root.Flags().BoolVar(&showVersion, "version", false, "print the version (as the version command does)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{err: err}
	})
	root.AddGroup(
		&cobra.Group{ID: groupMain, Title: "Commands:"},
		&cobra.Group{ID: groupSim, Title: "Development tools (a simulated GitHub, myshoes and plugin):"},
	)
	root.AddCommand(
		newRunCmd(io, nil),
		newRunnersCmd(io, nil),
		newScaleSetsCmd(io, nil),
		newStateCmd(io, nil),
		newConfigCmd(io, nil),
		newVersionCmd(io),
		newDemoCmd(io),
	)
	for _, c := range root.Commands() {
		c.GroupID = groupMain
	}
	sim := newSimCmd(io)
	sim.GroupID = groupSim
	root.AddCommand(sim)
	root.SetHelpCommandGroupID(groupMain)
	root.SetCompletionCommandGroupID(groupMain)
	// cobra adds help and completion when it executes; here, so that they
	// get their examples and argument errors like every command.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	addExamples(root)
	usageArgs(root)
	return root
}

const (
	groupMain = "main"
	groupSim  = "sim"
)

// usageArgs makes every argument error of c and its subcommands a usage
// error (exit code 2). A word that is not a subcommand of a command that
// has some is an unknown command, with cobra's suggestions ("Did you
// mean this?"), at every level.
func usageArgs(c *cobra.Command) {
	inner := c.Args
	if c.HasSubCommands() {
		if c.Run == nil && c.RunE == nil {
			// Runnable, so that an unknown subcommand is an argument error.
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
		inner = unknownCommand
	}
	if inner != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := inner(cmd, args); err != nil {
				return &usageError{err: err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
}

// unknownCommand refuses any argument of a command that has subcommands,
// suggesting those with a name close to it.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return errors.New(msg + "\n\nRun '" + cmd.CommandPath() + " --help' for usage.")
}

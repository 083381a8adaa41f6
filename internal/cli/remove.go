package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
)

type runnersRmOptions struct {
	Listen    string
	StateFile string
	Force     bool
	env       *envBinding
}

func newRunnersRmCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	opts := &runnersRmOptions{}
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Ask the running daemon to remove one runner",
		Long: `Ask the running daemon to remove a runner the way the reaper does: the
runner is removed from GitHub first, then its instance is deleted and the
record moves to the history with reason "removed". A busy runner is left
alone unless --force is given, which removes it even while its job runs.

The daemon accepts the request only with the API token it wrote at start
next to its state file (<state file>.api-token, mode 0600): give the
daemon's --state-file, and run this as a user who can read that file.`,
		Example: `  # Remove an idle runner (its name from "runners ls")
  sudo -u shoes-scaleset shoes-scaleset runners rm myshoes-0b5c3f9e-2d1a-4c4e-9f3b-7a6d5e4c3b2a

  # A runner stuck in its job: remove it while the job runs
  shoes-scaleset runners rm --force myshoes-0b5c3f9e-2d1a-4c4e-9f3b-7a6d5e4c3b2a

  # A daemon with another state file
  shoes-scaleset runners rm --state-file /srv/shoes/state.db --listen 127.0.0.1:9781 myshoes-0b5c3f9e-2d1a-4c4e-9f3b-7a6d5e4c3b2a`,
		Args: cobra.ExactArgs(1),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			// The variables first, so that inspect copies them; the
			// second apply, in completeState, finds nothing left to set.
			if err := opts.env.apply(); err != nil {
				cobra.CompErrorln(err.Error())
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return completeState(cmd, opts.inspect(), completeRunnerNames, toComplete)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.env.apply(); err != nil {
				return err
			}
			return runRunnersRm(cmd.Context(), s, opts, args[0])
		},
	}
	cmd.Flags().StringVar(&opts.Listen, "listen", defaultListen, "address of the running daemon's HTTP API")
	cmd.Flags().StringVar(&opts.StateFile, "state-file", defaultStateFile, "the daemon's state file; its API token is read from <state file>.api-token")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "remove the runner even if it is running a job")
	opts.env = newEnvBinding(cmd.Flags(), nil, lookup)
	// Forcing is a decision per call, never a setting in the environment.
	opts.env.skip = map[string]bool{"force": true}
	return cmd
}

// inspect returns options that read the runners the way runners ls does,
// from the daemon at --listen else the state file, for the completion of
// runner names. rm has no --store: it asks the daemon, which knows the
// runners it may remove.
func (o *runnersRmOptions) inspect() *inspectOptions {
	return &inspectOptions{
		StateFile: o.StateFile, Listen: o.Listen, env: o.env,
		backend:    backendOptions{Store: backendBolt},
		apiTimeout: inspectAPITimeout, lockTimeout: inspectLockTimeout,
	}
}

func runRunnersRm(ctx context.Context, s streams, o *runnersRmOptions, name string) error {
	tokenFile := httpapi.TokenFile(o.StateFile)
	token, err := httpapi.ReadTokenFile(tokenFile)
	if err != nil {
		return fmt.Errorf("remove runner: %w (give the daemon's --state-file, as a user who may read it)", err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	u := fmt.Sprintf("http://%s/api/v1/runners/%s/remove?force=%t", o.Listen, url.PathEscape(name), o.Force)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("remove runner: %w", err)
	}
	httpapi.SetToken(req.Header, token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("remove runner: no daemon answered at --listen %s: %w", o.Listen, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusUnauthorized {
			msg = fmt.Sprintf("the daemon at %s refused the token of %s: is that its state file? (%s)", o.Listen, tokenFile, msg)
		}
		return fmt.Errorf("remove runner %s: %s", name, msg)
	}
	fmt.Fprintf(s.Out, "runner %s is being removed\n", name)
	return nil
}

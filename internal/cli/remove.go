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
)

type runnersRmOptions struct {
	Listen string
	Force  bool
	env    *envBinding
}

func newRunnersRmCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	opts := &runnersRmOptions{}
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Ask the running daemon to remove one runner",
		Long: `Ask the running daemon to remove a runner the way the reaper does: the
runner is removed from GitHub first, then its instance is deleted and the
record moves to the history with reason "removed". A busy runner is left
alone unless --force is given, which removes it even while its job runs.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.env.apply(); err != nil {
				return err
			}
			return runRunnersRm(cmd.Context(), s, opts, args[0])
		},
	}
	cmd.Flags().StringVar(&opts.Listen, "listen", defaultListen, "address of the running daemon's HTTP API")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "remove the runner even if it is running a job")
	opts.env = newEnvBinding(cmd.Flags(), nil, lookup)
	// Forcing is a decision per call, never a setting in the environment.
	opts.env.skip = map[string]bool{"force": true}
	return cmd
}

func runRunnersRm(ctx context.Context, s streams, o *runnersRmOptions, name string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	u := fmt.Sprintf("http://%s/api/v1/runners/%s/remove?force=%t", o.Listen, url.PathEscape(name), o.Force)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("remove runner: %w", err)
	}
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
		return fmt.Errorf("remove runner %s: %s", name, msg)
	}
	fmt.Fprintf(s.Out, "runner %s is being removed\n", name)
	return nil
}

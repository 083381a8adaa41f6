package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
)

func newSimCmd(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulated GitHub, myshoes and shoes plugin, for development and tests",
		Long: `The sim commands run the simulated peers shoes-scaleset is tested against:
a fake GitHub and Actions service, a fake myshoes REST API, and a fake shoes
plugin that runs the setup script under bash the way cloud-init would. They
serve on loopback only.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newSimServeCmd(s), newSimPluginCmd(), newSimRunnerCmd(s))
	return cmd
}

type simServeOptions struct {
	Listen           string
	Acquire          bool
	PollHold         time.Duration
	TokenTTL         time.Duration
	AssignTimeout    time.Duration
	SessionTTL       time.Duration
	ReofferInterval  time.Duration
	BOM              bool
	DropCustomLabels bool
	NoAckThrough     bool
	Targets          []string
	ResourceType     string
	AppID            int64
	AppKeyFile       string
	LogLevel         string
}

func newSimServeCmd(s streams) *cobra.Command {
	opts := &simServeOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the fake GitHub/Actions service and the fake myshoes on one loopback address",
		Long: `Serve the fake GitHub (API at /api/v3), Actions service and broker, and the
fake myshoes (at /myshoes) on one address, with the control API at /_sim:
  POST   /_sim/jobs {"scope","count","duration_ms","labels"}   queue jobs
  POST   /_sim/faults {"match":"<METHOD> <path regex>","status","times","delay_ms",
                       "drop","headers":{"Retry-After":"5"},"empty_body"}
         the next "times" matching calls (0: until cleared) are delayed, then
         dropped, or answered "status" with the headers and an error body, or
         with no body at all ("empty_body")
  DELETE /_sim/faults                                         clear the faults
  POST   /_sim/sessions/evict [{"scale_set_ids":[1,2]}]       evict message sessions
         (none given: every live one) as GitHub does -> {"evicted":N}
  GET    /_sim/state                                          jobs, sessions, runners, violations
  GET    /_sim/requests[?route=<pattern>&since=<RFC 3339>]    answered requests: route, status, times
  PUT    /myshoes/_sim/targets [{"scope","resource_type","status"}]  replace the targets
The GitHub App is installed for the targets' owners, also for targets added
later. It prints the --github-url and --myshoes-url to give shoes-scaleset
run, and the key file to give it as --github-private-key-path. Without
--app-key-file that file is in a new temporary directory, deleted when sim
serve stops (SIGINT or SIGTERM).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSimServe(cmd.Context(), s, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Listen, "listen", "127.0.0.1:0", "loopback address to serve on; port 0 picks a free port")
	f.BoolVar(&opts.Acquire, "acquire", false, "GHES mode: jobs are offered as JobAvailable and must be acquired")
	f.DurationVar(&opts.PollHold, "poll-hold", actionsfake.DefaultPollHold, "how long the broker holds an empty long-poll")
	f.DurationVar(&opts.TokenTTL, "token-ttl", actionsfake.DefaultQueueTokenTTL, "lifetime of message-queue tokens")
	f.DurationVar(&opts.AssignTimeout, "assign-timeout", actionsfake.DefaultAssignTimeout, "an assigned job with no runner for this long is canceled and queued again")
	f.DurationVar(&opts.SessionTTL, "session-ttl", actionsfake.DefaultSessionTTL, "a message session nobody polls for this long expires, as GitHub's do; negative: never")
	f.DurationVar(&opts.ReofferInterval, "reoffer-interval", actionsfake.DefaultReofferInterval, "with --acquire, how often a job offered and not acquired is offered again")
	f.BoolVar(&opts.BOM, "bom", false, "start every GitHub API, Actions service and broker body with a UTF-8 BOM, as the Actions service may")
	f.BoolVar(&opts.DropCustomLabels, "drop-custom-labels", false, "GHES 3.18-3.20 without the DistributedTask.AllowRunnerScaleSetCustomLabels feature flag: a scale set keeps only its name as label")
	f.BoolVar(&opts.NoAckThrough, "no-ack-through", false, "lastMessageId=N on a poll does not ack messages up to N; only DELETE acks")
	f.StringSliceVar(&opts.Targets, "targets", []string{"org-a"}, "scopes myshoes lists at start: org or owner/repo, comma-separated")
	f.StringVar(&opts.ResourceType, "resource-type", "small", "resource type of the initial targets")
	f.Int64Var(&opts.AppID, "app-id", 4242, "GitHub App ID the fake accepts")
	f.StringVar(&opts.AppKeyFile, "app-key-file", "", "the app's PEM key, private or public; empty generates a private key and writes it to a file")
	f.StringVar(&opts.LogLevel, "log-level", "warn", "log level of the fakes")
	return cmd
}

func runSimServe(ctx context.Context, s streams, o *simServeOptions) error {
	logger, err := newLogger(s.Err, o.LogLevel, "text")
	if err != nil {
		return usageErrorf("--log-level: %v", err)
	}
	cfg := sim.Config{
		Listen:           o.Listen,
		AppID:            o.AppID,
		Acquire:          o.Acquire,
		PollHold:         o.PollHold,
		QueueTokenTTL:    o.TokenTTL,
		AssignTimeout:    o.AssignTimeout,
		SessionTTL:       o.SessionTTL,
		ReofferInterval:  o.ReofferInterval,
		BOM:              o.BOM,
		DropCustomLabels: o.DropCustomLabels,
		NoAckThrough:     o.NoAckThrough,
		Targets:          o.Targets,
		ResourceType:     o.ResourceType,
		Logger:           logger,
	}
	keyFile := o.AppKeyFile
	if keyFile != "" {
		data, err := os.ReadFile(keyFile)
		if err != nil {
			return usageErrorf("--app-key-file: %v", err)
		}
		if cfg.AppKey, cfg.AppPublicKey, err = sim.ParseAppKey(data); err != nil {
			return usageErrorf("--app-key-file %s: %v", keyFile, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return usageErrorf("%v", err)
	}
	w, err := sim.Start(cfg)
	if err != nil {
		return err
	}
	defer w.Close()
	if keyFile == "" {
		dir, err := os.MkdirTemp("", "shoes-scaleset-sim-")
		if err != nil {
			return fmt.Errorf("key directory: %w", err)
		}
		// Ours: it goes when sim serve stops (a signal ends ctx).
		defer os.RemoveAll(dir)
		keyFile = filepath.Join(dir, "app-key.pem")
		if err := os.WriteFile(keyFile, w.AppKeyPEM(), 0o600); err != nil {
			return fmt.Errorf("write app key: %w", err)
		}
	}
	fmt.Fprintf(s.Out, "listening on %s\n", strings.TrimPrefix(w.URL(), "http://"))
	fmt.Fprintf(s.Out, "--github-url=%s\n", w.GitHubURL())
	fmt.Fprintf(s.Out, "--myshoes-url=%s\n", w.MyshoesURL())
	fmt.Fprintf(s.Out, "--github-app-id=%d\n", w.AppID())
	fmt.Fprintf(s.Out, "--github-private-key-path=%s\n", keyFile)
	<-ctx.Done()
	return nil
}

func newSimPluginCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "plugin",
		Short: "Serve the fake shoes plugin (started by a plugin host, not by hand)",
		Long: `Serve the fake shoes plugin over go-plugin gRPC. A plugin host starts it;
its knobs come from the environment: SIM_PLUGIN_LATENCY, SIM_PLUGIN_FAIL_CODE,
SIM_PLUGIN_FAIL_RATE, SIM_PLUGIN_FAIL_METHOD, SIM_PLUGIN_FAIL_TIMES,
SIM_PLUGIN_CRASH_ON_CALL, SIM_PLUGIN_HANG, SIM_PLUGIN_HANG_RESOURCE_TYPE, SIM_PLUGIN_CALL_LOG,
SIM_PLUGIN_STATE_DIR, SIM_PLUGIN_NO_RUNNER, SIM_PLUGIN_EMPTY_CLOUD_ID,
SIM_PLUGIN_HUGE_IP, SIM_PLUGIN_UNKNOWN_RESOURCE_TYPE,
SIM_PLUGIN_FAIL_START_IF (a file: while it exists, the plugin exits before
its handshake), SIM_PLUGIN_RUNNER_MODE (script, the default, or inprocess) and
SIM_PLUGIN_CLOUD_IDS (opaque, the default: a new fake-<uuid> per
AddInstance, as shoes-aws and shoes-openstack; or name: the instance is
named after the runner and its cloud ID is the runner name, as shoes-lxd,
so an AddInstance of an existing name returns that instance, started again
if stopped, and DeleteInstance of an unknown name answers NotFound).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			oneProc(os.LookupEnv)
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find own executable: %w", err)
			}
			err = shoesfake.ServeFromEnv([]string{self, "sim", "runner"})
			if errors.Is(err, shoesfake.ErrBadKnob) {
				return usageErrorf("%v", err)
			}
			return err
		},
	}
}

// oneProc gives the fake plugin's process one P (GOMAXPROCS 1) unless
// GOMAXPROCS is set. A plugin process serves one call at a time, and a
// burst runs 128 to 256 of them beside the controller: with one P per
// core each, their schedulers spun looking for work and their collectors
// ran on both cores, 13 % and 21 % of the plugins' CPU in a profile of a
// C = 128, L = 200 ms burst, taken from the controller under test. With
// one P that burst was 1.41 times the bound instead of 1.58.
func oneProc(lookup lookupEnvFunc) {
	if _, ok := lookup("GOMAXPROCS"); !ok {
		runtime.GOMAXPROCS(1)
	}
}

func newSimRunnerCmd(s streams) *cobra.Command {
	var jit string
	cmd := &cobra.Command{
		Use:   "runner",
		Short: "The sim runner: what the fake runner tarball's run.sh starts",
		Long: `The sim runner decodes a JIT config issued by the fake Actions service,
comes online there, waits for its one job to finish, and exits, as an
ephemeral runner does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if jit == "" {
				return usageErrorf("--jitconfig is required")
			}
			logger := slog.New(slog.NewTextHandler(s.Err, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: replaceAttr}))
			err := shoesfake.RunRunner(cmd.Context(), jit, logger)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringVar(&jit, "jitconfig", "", "the encoded JIT config")
	return cmd
}

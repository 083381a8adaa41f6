package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/demo"
	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

type demoOptions struct {
	Jobs                 int
	Targets              int
	PluginLatency        time.Duration
	JobDuration          time.Duration
	ProvisionConcurrency int
	PluginPoolSize       int
	PluginMode           string
	MinRunners           int
	MaxRunners           int
	Acquire              bool
	StateFile            string
	WorkDir              string
	JSON                 bool
	Timeout              time.Duration
	PluginBinary         string
	// backend holds run's --etcd-* flags: with --etcd-endpoints the
	// state is kept in etcd, under a prefix of this demo's own.
	backend backendOptions
	// env reads the --etcd-* flags from their variables too, as run
	// does; the demo's other flags are read from the command line only.
	env *envBinding
	// etcd is the etcd client's configuration with --etcd-endpoints,
	// else nil; etcdKept says --etcd-prefix was given (the state then
	// outlives the demo).
	etcd     *clientv3.Config
	etcdKept bool
	// etcdState is the demo's prefix in etcd while the demo runs.
	etcdState *demoEtcdState
}

func newDemoCmd(s streams) *cobra.Command {
	opts := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole loop on a simulated GitHub, myshoes and plugin; no account needed",
		Long: `Demo runs the real controller, as "shoes-scaleset run" does, against simulated
peers on loopback: a fake GitHub and Actions service and a fake myshoes in this
process, listing the targets demo-org-1 ... demo-org-N (resource type small),
and a fake shoes plugin that this binary serves as its own plugin processes.
Each instance it "boots" runs the runner setup script locally, with a sim
runner that takes one job from the fake Actions service. No GitHub account
and no cloud are needed.

Once a scale set listens on every target (with --min-runners: and that many
idle runners per target are online, a warm pool), it queues --jobs jobs
round-robin over the targets and shows their progress: redrawn in place on a terminal,
else a line every 2s when something changed. After the jobs it waits (up to
60s) until every instance was deleted (with --min-runners: until only the
idle runners it keeps are left), stops the controller cleanly, and prints a
summary: jobs completed, instances created and deleted, leaked instances
(created, never deleted), runner names provisioned twice, protocol violations
seen by the fake GitHub, wall time (first job queued to last job completed),
provision time (runner pending to idle) and job start time (queued to
started) at p50 and p99.

It also reports how long it took until all instances were up: all_up_seconds,
from the first job queued until the N-th AddInstance (N = --jobs) returned OK
(all_idle_seconds: until the N-th runner was stored idle), against the bound
no controller can beat, bound_seconds = ceil(N / --provision-concurrency) x
--plugin-latency, as ratio_to_bound.

--plugin-mode script (the default) boots each instance by running the setup
script under bash, whose run.sh starts the sim runner as a process: the whole
path. --plugin-mode inprocess runs no script: the fake plugin takes the JIT
config out of the setup script and runs the sim runner as a goroutine of the
plugin process, so hundreds of instances cost little; for benchmarks. Its
instance directories then go to a new directory in memory, under /dev/shm
when that is a tmpfs with 64 MiB free, so that creating and deleting them
does not take the CPU from the controller; the header names it, and it is
deleted like the rest.

With --json nothing else is printed: the report is one JSON object with the
keys jobs, jobs_completed, instances_created, instances_deleted,
leaked_instances, duplicate_runners, protocol_violations, wall_seconds,
provision_p50_ms, provision_p99_ms, job_start_p50_ms, job_start_p99_ms,
all_up_seconds, all_idle_seconds, bound_seconds, ratio_to_bound, plugin_mode,
log_file with --work-dir, and state_file with --state-file.

With --etcd-endpoints the controller keeps its state in etcd, as "run
--store etcd" does (one replica), instead of a bbolt file; the other
--etcd-* flags reach etcd as for run, and all of them are also read from
their SHOES_SCALESET_ETCD_* variables. Each demo uses a new prefix,
/shoes-scaleset-demo/<random>/, deleted at the end; with --etcd-prefix the
demo uses that prefix instead, which must hold no key, and keeps the state
there for "runners history --store etcd". The report is read back from
etcd.

The demo works in a new temporary directory, under $TMPDIR (else /tmp). The
controller logs there at debug level (controller.log) and the fake plugin
records its calls there (calls.jsonl). The directory is deleted when the
demo ends, whether it passed, failed or was interrupted (SIGINT or SIGTERM;
a second signal exits at once and may leave it). With --work-dir DIR the
demo works in DIR instead (created if need be; it must be empty) and keeps
both logs there; everything else it made is deleted. The state file is
deleted too unless --state-file is given. The controller's API listens on a
free loopback port, printed at start, so "shoes-scaleset runners ls --listen
ADDR" works while the demo runs.

Exit status: 0 if every job completed and nothing leaked (no leaked instance,
no duplicate runner, no protocol violation); 1 otherwise, with the reason,
also on --timeout or an interrupt; 2 on bad flags.`,
		Example: `  shoes-scaleset demo
  shoes-scaleset demo --jobs 100 --targets 5 --plugin-latency 2s --max-runners 20
  shoes-scaleset demo --acquire --json
  shoes-scaleset demo --json --jobs 500 --targets 10 --plugin-latency 1s \
    --provision-concurrency 64 --max-runners 100 --plugin-mode inprocess

  # The state in etcd instead of a bbolt file
  shoes-scaleset demo --etcd-endpoints http://127.0.0.1:2379`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.NoArgs(cmd, args); err != nil {
				return &usageError{err: err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.env.apply(); err != nil {
				return err
			}
			if err := opts.validate(cmd.Flags()); err != nil {
				return err
			}
			return runDemo(cmd.Context(), s, opts)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Jobs, "jobs", 20, "jobs to queue, round-robin over the targets")
	f.IntVar(&opts.Targets, "targets", 3, "targets myshoes lists: demo-org-1 ... demo-org-N")
	f.DurationVar(&opts.PluginLatency, "plugin-latency", 500*time.Millisecond, "delay of every AddInstance and DeleteInstance of the fake plugin")
	f.DurationVar(&opts.JobDuration, "job-duration", 2*time.Second, "how long each job runs once a runner takes it")
	d := controller.DefaultConfig()
	f.IntVar(&opts.ProvisionConcurrency, "provision-concurrency", d.ProvisionConcurrency, "runners provisioned at once, over all scale sets")
	f.IntVar(&opts.PluginPoolSize, "plugin-pool-size", 0, "maximum number of plugin processes; each serves one call at a time (0: twice --provision-concurrency, as for run)")
	f.StringVar(&opts.PluginMode, "plugin-mode", demo.PluginModeScript, "how the fake plugin runs a runner: script (the setup script under bash) or inprocess (a goroutine; for benchmarks)")
	f.IntVar(&opts.MinRunners, "min-runners", d.MinRunners, "idle runners kept per scale set")
	f.IntVar(&opts.MaxRunners, "max-runners", d.MaxRunners, "maximum runners per scale set")
	f.BoolVar(&opts.Acquire, "acquire", false, "GHES mode: jobs are offered as JobAvailable and must be acquired")
	f.StringVar(&opts.StateFile, "state-file", "", "keep the state in this new file, for runners ls after the demo (default: a temporary file, deleted)")
	f.StringVar(&opts.WorkDir, "work-dir", "", "work in this empty directory and keep the controller log and the plugin call log there (default: a temporary directory, deleted)")
	f.BoolVar(&opts.JSON, "json", false, "print only the final report, as one JSON object")
	f.DurationVar(&opts.Timeout, "timeout", 5*time.Minute, "give up if the jobs have not all completed this long after the start")
	f.StringVar(&opts.PluginBinary, "plugin-binary", "", "shoes-scaleset binary serving the fake plugin (default: this executable)")
	_ = f.MarkHidden("plugin-binary")
	addDemoEtcdFlags(f, &opts.backend)
	opts.env = newEnvBinding(f, nil, nil)
	// Only the --etcd-* flags come from the environment.
	opts.env.skip = map[string]bool{}
	f.VisitAll(func(fl *pflag.Flag) {
		if !demoEtcdFlag(fl.Name) {
			opts.env.skip[fl.Name] = true
		}
	})
	return cmd
}

// addDemoEtcdFlags adds run's --etcd-* flags (the same definitions, see
// backendOptions.addEtcdFlags) with what they mean for the demo:
// --etcd-endpoints chooses etcd, and --etcd-prefix defaults to a new
// prefix per demo.
func addDemoEtcdFlags(f *pflag.FlagSet, o *backendOptions) {
	o.addEtcdFlags(f)
	endpoints := f.Lookup("etcd-endpoints")
	endpoints.Usage = "keep the state in etcd, not a bbolt file: its endpoints, comma-separated, e.g. http://127.0.0.1:2379"
	prefix := f.Lookup("etcd-prefix")
	_ = prefix.Value.Set("")
	prefix.DefValue = ""
	prefix.Usage = "key prefix of the demo's state in etcd; it must hold no key, and the state is kept (default: a new " + demoEtcdPrefixRoot + "<random>/, deleted at the end)"
}

// demoEtcdFlag reports whether a demo flag is one of run's --etcd-*.
func demoEtcdFlag(name string) bool { return strings.HasPrefix(name, "etcd-") }

// demoEtcdPrefixRoot holds the prefixes the demos make up, one per run.
const demoEtcdPrefixRoot = "/shoes-scaleset-demo/"

// newDemoEtcdPrefix returns a prefix no other demo uses.
func newDemoEtcdPrefix() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("etcd prefix: %w", err)
	}
	return demoEtcdPrefixRoot + time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b) + "/", nil
}

// validate checks the demo's flags with the Validate of the component each
// sets (the controller, the plugin host, the demo), so their ranges are
// stated once; an error names the flag.
func (o *demoOptions) validate(fs *pflag.FlagSet) error {
	flagError := func(flag, format string, args ...any) error {
		if demoEtcdFlag(flag) { // it has variables too: name them
			return o.env.flagError(flag, format, args...)
		}
		return usageErrorf("--%s: %s", flag, fmt.Sprintf(format, args...))
	}
	if err := refuseZeros(fs, nil, flagError); err != nil {
		return err
	}
	if o.PluginBinary == "" { // this executable serves the fake plugin
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find own executable: %w", err)
		}
		o.PluginBinary = self
	}
	named := func(err error, flags map[string]string) error {
		if flag, ok := flags[setting.FieldOf(err)]; ok {
			return flagError(flag, "%v", err)
		}
		return usageErrorf("%v", err)
	}
	ctl := controller.Config{MinRunners: o.MinRunners, MaxRunners: o.MaxRunners, ProvisionConcurrency: o.ProvisionConcurrency}
	if err := ctl.Validate(); err != nil {
		return named(err, map[string]string{"MinRunners": "min-runners", "MaxRunners": "max-runners", "ProvisionConcurrency": "provision-concurrency"})
	}
	if err := (shoes.Config{Path: "plugin", PoolSize: o.PluginPoolSize}).Validate(); err != nil {
		return named(err, map[string]string{"PoolSize": "plugin-pool-size"})
	}
	if err := o.validateEtcd(); err != nil {
		return err
	}
	cfg := o.config()
	if err := cfg.Validate(); err != nil {
		return named(err, map[string]string{"Jobs": "jobs", "Targets": "targets", "PluginLatency": "plugin-latency",
			"JobDuration": "job-duration", "PluginMode": "plugin-mode", "Timeout": "timeout", "StateFile": "state-file",
			"WorkDir": "work-dir"})
	}
	return nil
}

// validateEtcd checks the --etcd-* flags with run's own checks
// (backendOptions.validate) when --etcd-endpoints is given, and makes up
// the demo's prefix when --etcd-prefix is not. Without --etcd-endpoints
// the others, given on the command line, are refused: they would do
// nothing.
func (o *demoOptions) validateEtcd() error {
	e := o.env
	if len(o.backend.EtcdEndpoints) == 0 {
		var err error
		e.flags.VisitAll(func(f *pflag.Flag) {
			if err == nil && demoEtcdFlag(f.Name) && e.onCommandLine(f.Name) {
				err = e.flagError(f.Name, "is set, but --etcd-endpoints is not; give --etcd-endpoints to keep the state in etcd")
			}
		})
		return err
	}
	if o.StateFile != "" {
		return usageErrorf("--state-file and --etcd-endpoints (env %s): the state is kept in a file or in etcd; give either",
			strings.Join(e.envNames("etcd-endpoints"), " or "))
	}
	o.etcdKept = o.backend.EtcdPrefix != ""
	if !o.etcdKept {
		prefix, err := newDemoEtcdPrefix()
		if err != nil {
			return err
		}
		o.backend.EtcdPrefix = prefix
	}
	o.backend.Store = backendEtcd
	cfg, err := o.backend.validate(e)
	if err != nil {
		return err
	}
	o.etcd = cfg
	return nil
}

// config is the demo's Config from the flags.
func (o *demoOptions) config() demo.Config {
	return demo.Config{
		Jobs:                 o.Jobs,
		Targets:              o.Targets,
		JobDuration:          o.JobDuration,
		PluginLatency:        o.PluginLatency,
		Acquire:              o.Acquire,
		MinRunners:           o.MinRunners,
		MaxRunners:           o.MaxRunners,
		ProvisionConcurrency: o.ProvisionConcurrency,
		PluginPoolSize:       o.PluginPoolSize,
		PluginMode:           o.PluginMode,
		PluginPath:           o.PluginBinary,
		StateFile:            o.StateFile,
		WorkDir:              o.WorkDir,
		Timeout:              o.Timeout,
		Etcd:                 o.demoEtcd(),
		OpenState:            o.openState(),
		RunController:        runDemoController,
	}
}

// openState is the demo's OpenState: the state in etcd, through the
// client runDemo holds; nil (the bbolt file) without --etcd-endpoints.
func (o *demoOptions) openState() demo.StateOpener {
	if o.etcd == nil {
		return nil
	}
	return func() (*store.Store, func(), error) {
		if o.etcdState == nil {
			return nil, nil, errors.New("not connected to etcd")
		}
		return o.etcdState.open()
	}
}

// demoEtcd is the demo's Etcd from the --etcd-* flags; nil without
// --etcd-endpoints.
func (o *demoOptions) demoEtcd() *demo.Etcd {
	if len(o.backend.EtcdEndpoints) == 0 {
		return nil
	}
	b := o.backend
	return &demo.Etcd{
		Endpoints: b.EtcdEndpoints, Prefix: b.EtcdPrefix,
		CAFile: b.EtcdCAFile, CertFile: b.EtcdCertFile, KeyFile: b.EtcdKeyFile,
		Username: b.EtcdUsername, Password: b.EtcdPassword,
		DialTimeout: b.EtcdDialTimeout, Kept: o.etcdKept,
	}
}

// demoEtcdState is the demo's prefix in etcd while the demo runs.
type demoEtcdState struct {
	c      *clientv3.Client
	prefix string
	kept   bool
}

// openDemoEtcd connects to etcd and checks that the demo's prefix holds
// no key: a demo starts from an empty state, and two demos never share
// one. A prefix in use is a usage error (exit 2); an etcd out of reach
// is not (exit 1).
func (o *demoOptions) openDemoEtcd(ctx context.Context) (*demoEtcdState, error) {
	c, err := dialEtcd(o.etcd)
	if err != nil {
		return nil, err
	}
	prefix := o.backend.EtcdPrefix
	getCtx, cancel := context.WithTimeout(ctx, o.etcd.DialTimeout)
	defer cancel()
	resp, err := c.Get(getCtx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	switch {
	case err != nil:
		_ = c.Close()
		return nil, fmt.Errorf("read etcd prefix %s: %w", prefix, err)
	case resp.Count > 0:
		_ = c.Close()
		return nil, o.env.flagError("etcd-prefix", "%s holds %d keys in etcd: the demo starts from an empty state; choose another prefix, or leave --etcd-prefix out for a new one", prefix, resp.Count)
	}
	return &demoEtcdState{c: c, prefix: prefix, kept: o.etcdKept}, nil
}

// open opens the state the stopped controller kept, read-only (no fencer,
// no write): for the demo's report.
func (s *demoEtcdState) open() (*store.Store, func(), error) {
	st, err := etcdStore(s.c, s.prefix, "demo-report", nil, store.DefaultOptions())
	if err != nil {
		return nil, nil, err
	}
	return st, func() { _ = st.Close() }, nil
}

// close deletes the prefix unless it is kept (--etcd-prefix), as a
// temporary state file is deleted, also after an interrupt, and closes
// the client.
func (s *demoEtcdState) close(ctx context.Context) error {
	defer s.c.Close()
	if s.kept {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.c.Delete(ctx, s.prefix, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("delete the demo's state in etcd (etcdctl del --prefix %s): %w", s.prefix, err)
	}
	return nil
}

func runDemo(ctx context.Context, s streams, o *demoOptions) (err error) {
	cfg := o.config()
	if !o.JSON {
		cfg.Out = s.Out
		f, ok := s.Out.(*os.File)
		cfg.TTY = ok && isatty.IsTerminal(f.Fd())
	}
	if o.etcd != nil {
		warnSecretFlags(slog.New(slog.NewTextHandler(s.Err, nil)), o.env)
		es, err := o.openDemoEtcd(ctx)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, es.close(ctx)) }()
		o.etcdState = es
	}
	rep, err := demo.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if o.JSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(s.Out, "%s\n", b); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(s.Out)
		if err := rep.WriteText(s.Out); err != nil {
			return err
		}
	}
	if problems := rep.Problems(); len(problems) > 0 {
		return errors.New("demo failed: " + strings.Join(problems, "; "))
	}
	return nil
}

// runDemoController runs the daemon, as `run` does, with the options the
// demo's fakes need. Its logs go to setup.Log.
func runDemoController(ctx context.Context, setup demo.ControllerSetup) error {
	return runRun(ctx, streams{Out: setup.Log, Err: setup.Log}, demoRunOptions(setup))
}

// demoRunOptions are run's options for the demo: run's defaults, except
// for what the fakes need and shorter intervals, so that a demo of a few
// seconds shows the whole lifecycle.
func demoRunOptions(setup demo.ControllerSetup) *runOptions {
	o := defaultRunOptions()
	o.MyshoesURL = setup.MyshoesURL
	o.GitHubURL = setup.GitHubURL
	o.GitHubAppID = setup.AppID
	o.GitHubPrivateKeyPath = setup.AppKeyFile
	o.Plugin = setup.PluginPath
	o.PluginPoolSize = setup.PluginPoolSize
	o.StateFile = setup.StateFile
	if e := setup.Etcd; e != nil {
		o.backend = backendOptions{Store: backendEtcd, EtcdEndpoints: e.Endpoints, EtcdPrefix: e.Prefix,
			EtcdCAFile: e.CAFile, EtcdCertFile: e.CertFile, EtcdKeyFile: e.KeyFile,
			EtcdUsername: e.Username, EtcdPassword: e.Password, EtcdDialTimeout: e.DialTimeout}
		// One replica, which owns every target at once.
		o.replica.ID = "demo"
	}
	o.Listen = setup.Listen
	o.MinRunners = setup.MinRunners
	o.MaxRunners = setup.MaxRunners
	o.ProvisionConcurrency = setup.ProvisionConcurrency
	o.RunnerBaseDirectory = setup.RunnerBaseDirectory
	o.HistoryMaxCount = setup.HistoryMaxCount
	o.PollHold = setup.PollHold
	o.pluginArgs = setup.PluginArgs
	o.pluginEnv = setup.PluginEnv
	// The demo's world is small and fast: poll and retry at its pace.
	o.SyncInterval = time.Second
	o.ShutdownTimeout = 10 * time.Second
	o.LogLevel = "debug"
	o.GitHubRetryWaitMax = 2 * time.Second
	o.JanitorInterval = time.Second
	o.RetryBackoff = 200 * time.Millisecond
	o.ScaleDownGrace = 5 * time.Second
	o.ReaperInterval = time.Second
	return o
}

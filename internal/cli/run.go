package cli

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/actions/scaleset"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/shoes-scaleset/shoes-scaleset/internal/buildinfo"
	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/ghadapter"
	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/metrics"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// Defaults shared by the commands that find the daemon or its state.
const (
	defaultStateFile = "/var/lib/shoes-scaleset/state.db"
	defaultListen    = "127.0.0.1:9780"
)

// myshoesEnv maps run flags to the variables myshoes reads for the same
// setting.
func myshoesEnv() map[string]string {
	return map[string]string{
		"github-url":                "GITHUB_URL",
		"github-app-id":             "GITHUB_APP_ID",
		"github-private-key-base64": "GITHUB_PRIVATE_KEY_BASE64",
		"plugin":                    "PLUGIN",
		"runner-user":               "RUNNER_USER",
		"runner-version":            "RUNNER_VERSION",
		"runner-base-directory":     "RUNNER_BASE_DIRECTORY",
	}
}

type runOptions struct {
	MyshoesURL           string
	GitHubURL            string
	GitHubAppID          int64
	GitHubPrivateKeyPath string
	GitHubPrivateKeyB64  string
	GitHubToken          string
	GitHubCAFile         string
	Plugin               string
	PluginPoolSize       int
	PluginWarmProcesses  int
	PluginIdleTimeout    time.Duration
	PluginAddTimeout     time.Duration
	PluginDeleteTimeout  time.Duration
	PluginSHA256         string
	StateFile            string
	Listen               string
	RunnerGroup          string
	ScaleSetPrefix       string
	Labels               []string
	MinRunners           int
	MaxRunners           int
	ProvisionConcurrency int
	SyncInterval         time.Duration
	RunnerVersion        string
	RunnerUser           string
	RunnerBaseDirectory  string
	SetupScriptTemplate  string
	ShutdownTimeout      time.Duration
	LogLevel             string
	LogFormat            string
	GitHubRetryMax       int
	GitHubRetryWaitMax   time.Duration
	JanitorInterval      time.Duration
	RetryBackoff         time.Duration
	HistoryMaxAge        time.Duration
	BootstrapTimeout     time.Duration
	IdleRunnerTTL        time.Duration
	ScaleDownGrace       time.Duration
	DeleteGiveUp         time.Duration
	ReaperInterval       time.Duration
	ReaperMaxRemovals    int
	DeleteScaleSets      bool
	PollHold             time.Duration
	HistoryMaxCount      int
	Config               string
	backend              backendOptions
	replica              replicaOptions
	pluginArgs           []string // set by demo, which re-executes itself
	pluginEnv            []string // set by demo: the fake plugin's knobs
	env                  *envBinding
}

func newRunCmd(s streams, lookup lookupEnvFunc) *cobra.Command {
	opts := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the scale set controller next to myshoes",
		Long: `Run reads the targets from myshoes's REST API, holds one runner scale set and
one message session per target, and provisions ephemeral just-in-time runners
through the shoes plugin.

Every flag can also be set as SHOES_SCALESET_<FLAG> (upper case, dashes as
underscores). Flags that myshoes also has fall back to myshoes's own variable:
GITHUB_URL, GITHUB_APP_ID, GITHUB_PRIVATE_KEY_BASE64, PLUGIN, RUNNER_USER,
RUNNER_VERSION and RUNNER_BASE_DIRECTORY, so myshoes's env file works as is.
Precedence: flag, SHOES_SCALESET_*, myshoes variable, default.

The Go runtime's GOGC is 50 for run unless GOGC is set in the environment
(see docs/configuration.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.env.apply(); err != nil {
				return err
			}
			tuneGC(lookup)
			return runRun(cmd.Context(), s, opts)
		},
	}
	opts.addFlags(cmd.Flags(), lookup)
	return cmd
}

// defaultGCPercent is run's GOGC when the environment sets none. Nearly
// all of the daemon's heap lives as long as its targets do (a scale set,
// a session and a long poll each), and garbage comes slowly while they
// are idle; Go's default of 100 lets the heap grow to twice the live one,
// and the stacks' size, before it collects, which at 1,000 idle targets
// held the process above 100 MiB (issue 15). Prometheus lowered its
// default for the same reason (75 since v2.53.0,
// prometheus/prometheus#14288).
const defaultGCPercent = 50

// tuneGC applies defaultGCPercent unless GOGC is set: the Go runtime has
// applied that one already.
func tuneGC(lookup lookupEnvFunc) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if _, ok := lookup("GOGC"); !ok {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// defaultRunOptions returns the options run has when no flag and no
// variable is set; the demo starts from them.
func defaultRunOptions() *runOptions {
	o := &runOptions{}
	o.addFlags(pflag.NewFlagSet("run", pflag.ContinueOnError), func(string) (string, bool) { return "", false })
	return o
}

// addFlags registers run's flags on f, with their defaults, and binds them
// to their environment variables. The defaults are the components' own
// (see runSettings), except for the flags only run has.
func (opts *runOptions) addFlags(f *pflag.FlagSet, lookup lookupEnvFunc) {
	ctrl, gh, host, st := controller.DefaultConfig(), github.DefaultConfig(), shoes.DefaultConfig(), store.DefaultOptions()
	f.StringVar(&opts.MyshoesURL, "myshoes-url", "", "base URL of myshoes's REST API (required), e.g. http://127.0.0.1:8080")
	f.StringVar(&opts.GitHubURL, "github-url", gh.URL, "GitHub URL; anything but github.com is GitHub Enterprise Server")
	f.Int64Var(&opts.GitHubAppID, "github-app-id", 0, "GitHub App ID")
	f.StringVar(&opts.GitHubPrivateKeyPath, "github-private-key-path", "", "path to the GitHub App private key (PEM, PKCS#1 or PKCS#8)")
	f.StringVar(&opts.GitHubPrivateKeyB64, "github-private-key-base64", "", "the GitHub App private key PEM, base64-encoded")
	f.StringVar(&opts.GitHubToken, "github-token", "", "a personal access token, instead of a GitHub App")
	f.StringVar(&opts.GitHubCAFile, "github-ca-file", "", "PEM file of extra CA certificates for GitHub")
	f.StringVar(&opts.Plugin, "plugin", "", "shoes plugin: a path to the binary, or an http(s) URL to download it from")
	f.IntVar(&opts.PluginPoolSize, "plugin-pool-size", 0, "maximum number of plugin processes; each serves one call at a time (0: twice --provision-concurrency, room for as many deletes as provisions)")
	f.IntVar(&opts.PluginWarmProcesses, "plugin-warm-processes", 0, "plugin processes kept started ahead of demand, so that a burst does not wait for process starts (0: as many as --provision-concurrency, at most the pool size)")
	f.DurationVar(&opts.PluginIdleTimeout, "plugin-idle-timeout", host.IdleTimeout, "a plugin process idle this long, beyond the warm ones, is stopped")
	f.DurationVar(&opts.PluginAddTimeout, "plugin-add-timeout", host.AddTimeout, "deadline of one AddInstance call; past it the outcome is unknown")
	f.DurationVar(&opts.PluginDeleteTimeout, "plugin-delete-timeout", host.DeleteTimeout, "deadline of one DeleteInstance call; past it the delete is retried")
	f.StringVar(&opts.PluginSHA256, "plugin-sha256", "", "expected sha256 of the plugin executable (hex), checked against the file, the download or the cached copy")
	f.StringVar(&opts.StateFile, "state-file", defaultStateFile, "bbolt state file")
	f.StringVar(&opts.Listen, "listen", defaultListen, "address of the HTTP server for /metrics, /healthz and the state API")
	f.StringVar(&opts.RunnerGroup, "runner-group", ctrl.RunnerGroup, "runner group of the scale sets")
	f.StringVar(&opts.ScaleSetPrefix, "scale-set-prefix", ctrl.ScaleSetPrefix, "scale set names are <prefix>-<scope>")
	f.StringSliceVar(&opts.Labels, "labels", ctrl.Labels, "extra scale set labels, comma-separated")
	f.IntVar(&opts.MinRunners, "min-runners", ctrl.MinRunners, "idle runners kept per scale set")
	f.IntVar(&opts.MaxRunners, "max-runners", ctrl.MaxRunners, "maximum runners per scale set")
	f.IntVar(&opts.ProvisionConcurrency, "provision-concurrency", ctrl.ProvisionConcurrency, "runners provisioned at once, over all scale sets")
	f.DurationVar(&opts.SyncInterval, "sync-interval", ctrl.SyncInterval, "how often the target list is read from myshoes")
	f.StringVar(&opts.RunnerVersion, "runner-version", ctrl.RunnerVersion, `runner version, "latest" or vX.Y.Z; latest is resolved per scope daily`)
	f.StringVar(&opts.RunnerUser, "runner-user", ctrl.RunnerUser, "user the runner runs as")
	f.StringVar(&opts.RunnerBaseDirectory, "runner-base-directory", ctrl.RunnerBaseDirectory, "directory the runner is installed under")
	f.StringVar(&opts.SetupScriptTemplate, "setup-script-template", "", "file with a Go template replacing the main setup script")
	f.DurationVar(&opts.ShutdownTimeout, "shutdown-timeout", ctrl.ShutdownTimeout, "how long in-flight provisioning may take on shutdown")
	f.StringVar(&opts.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&opts.LogFormat, "log-format", "text", "log format: text or json")
	f.IntVar(&opts.GitHubRetryMax, "github-retry-max", gh.RetryMax, "retries of a GitHub call answered 5xx or 429")
	f.DurationVar(&opts.GitHubRetryWaitMax, "github-retry-wait-max", gh.RetryWaitMax, "longest wait between GitHub retries")
	f.DurationVar(&opts.JanitorInterval, "janitor-interval", ctrl.JanitorInterval, "how often failed deletes are retried and runner counts reconciled")
	f.DurationVar(&opts.RetryBackoff, "retry-backoff", ctrl.RetryBackoff, "first wait after a failing target, session or delete; doubles up to 5m")
	f.DurationVar(&opts.HistoryMaxAge, "history-max-age", st.HistoryMaxAge, "finished runners are kept in the history this long")
	f.IntVar(&opts.HistoryMaxCount, "history-max-count", st.HistoryMaxCount, "at most this many finished runners are kept in the history")
	f.DurationVar(&opts.BootstrapTimeout, "runner-bootstrap-timeout", ctrl.BootstrapTimeout, "a runner that has not come online this long after it was created is removed")
	f.DurationVar(&opts.IdleRunnerTTL, "idle-runner-ttl", ctrl.IdleTTL, "remove runners idle for longer than this; 0 keeps them")
	f.DurationVar(&opts.ScaleDownGrace, "scale-down-grace", ctrl.ScaleDownGrace, "a runner must have been idle this long before a scale-down removes it")
	f.DurationVar(&opts.DeleteGiveUp, "delete-give-up", ctrl.DeleteGiveUp, "how long a failing DeleteInstance is retried before the runner goes to history as delete-failed")
	f.DurationVar(&opts.ReaperInterval, "reaper-interval", ctrl.ReaperInterval, "how often the reaper looks for runners to remove")
	f.IntVar(&opts.ReaperMaxRemovals, "reaper-max-removals", ctrl.ReaperMaxRemovals, "at most this many runners are removed per reaper pass")
	f.BoolVar(&opts.DeleteScaleSets, "delete-scale-sets-on-target-removal", ctrl.DeleteScaleSetsOnTargetRemoval, "delete a removed target's scale set on GitHub once its runners are gone")
	f.DurationVar(&opts.PollHold, "poll-hold", ctrl.PollHold, "how long GitHub holds an empty message long-poll; /readyz wants a poll within two holds")
	f.StringVar(&opts.Config, "config", "", "policy file (YAML): per-target min and max runners, labels, runner group, scale set name, disabled; reloaded on SIGHUP and when it changes (docs/policy.md)")
	opts.backend.addFlags(f)
	opts.replica.addFlags(f)
	opts.env = newEnvBinding(f, myshoesEnv(), lookup)
}

// runConfig is what runOptions validate into.
type runConfig struct {
	logger *slog.Logger
	// level is the logger's level, which SIGHUP may change; flagLevel
	// is --log-level's.
	level     *slog.LevelVar
	flagLevel slog.Level
	// policy is --config's, nil without one.
	policy   *loadedPolicy
	github   github.Config
	myshoes  myshoes.Config
	shoes    shoes.Config
	store    store.Options
	template string
	ctrl     controller.Config
	// etcd is the etcd client's configuration with --store etcd, else nil.
	etcd       *clientv3.Config
	etcdPrefix string
	replica    replicaOptions
}

// validate checks every option and builds the component configs. The
// ranges of the settings are the components' to check: their Validate
// errors are reported as errors about the flag that set the field
// (settingError). Each error names the flag and its variables.
func (o *runOptions) validate(logOut io.Writer) (runConfig, error) {
	var rc runConfig
	e := o.env
	if err := rc.flagLevel.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return rc, e.flagError("log-level", "unknown log level %q: want debug, info, warn or error", o.LogLevel)
	}
	// Built to log everything, then filtered by a level SIGHUP can change.
	logger, err := newLogger(logOut, "debug", o.LogFormat)
	if err != nil {
		return rc, e.flagError("log-format", "%v", err)
	}
	logger, rc.level = withLevelVar(logger, rc.flagLevel)
	rc.logger = logger
	if err := o.checkZeroValues(); err != nil {
		return rc, err
	}
	if err := o.missingRequired(); err != nil {
		return rc, err
	}

	if o.MyshoesURL == "" {
		return rc, e.flagError("myshoes-url", "required")
	}
	rc.myshoes = myshoes.Config{BaseURL: o.MyshoesURL, UserAgent: "shoes-scaleset/" + buildinfo.Version(), Logger: logger.With("component", "myshoes")}
	if err := rc.myshoes.Validate(); err != nil {
		// BaseURL is the only field of myshoes.Config a flag sets.
		return rc, e.flagError("myshoes-url", "%v", err)
	}

	gh := github.Config{
		URL:          o.GitHubURL,
		RetryMax:     retryMax(o.GitHubRetryMax),
		RetryWaitMax: o.GitHubRetryWaitMax,
		SystemInfo:   scaleset.SystemInfo{System: "shoes-scaleset", Version: buildinfo.Version(), Subsystem: "controller"},
		Logger:       logger,
	}
	keyFlag := "" // the flag the app key came from
	switch {
	case o.GitHubToken != "" && (o.GitHubAppID != 0 || o.GitHubPrivateKeyPath != "" || o.GitHubPrivateKeyB64 != ""):
		return rc, e.flagError("github-token", "give either a token or a GitHub App (--github-app-id and a key), not both")
	case o.GitHubToken != "":
		gh.Token = o.GitHubToken
	default:
		if o.GitHubAppID <= 0 {
			return rc, e.flagError("github-app-id", "required (a positive GitHub App ID), unless --github-token is given")
		}
		gh.AppID = o.GitHubAppID
		key, flag, err := o.privateKey()
		if err != nil {
			return rc, e.flagError(flag, "%v", err)
		}
		gh.PrivateKeyPEM, keyFlag = key, flag
	}
	if o.GitHubCAFile != "" {
		pem, err := os.ReadFile(o.GitHubCAFile)
		if err != nil {
			return rc, e.flagError("github-ca-file", "%v", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return rc, e.flagError("github-ca-file", "no PEM certificate in %s", o.GitHubCAFile)
		}
		gh.RootCAs = pool
	}
	if o.GitHubRetryMax < 0 {
		return rc, e.flagError("github-retry-max", "must not be negative (0: no retries)")
	}
	if err := gh.Validate(); err != nil {
		if setting.FieldOf(err) == "PrivateKeyPEM" && keyFlag != "" {
			return rc, e.flagError(keyFlag, "%v", err)
		}
		return rc, o.settingError(componentGitHub, err)
	}
	rc.github = gh

	if o.PluginPoolSize < 0 {
		return rc, e.flagError("plugin-pool-size", "must not be negative (0: twice --provision-concurrency)")
	}
	if o.PluginWarmProcesses < 0 {
		return rc, e.flagError("plugin-warm-processes", "must not be negative (0: as many as --provision-concurrency)")
	}
	poolSize := pluginPoolSize(o.PluginPoolSize, o.ProvisionConcurrency)
	rc.shoes = shoes.Config{Path: o.Plugin, Args: o.pluginArgs, Env: o.pluginEnv, PoolSize: poolSize,
		WarmProcesses: pluginWarmProcesses(o.PluginWarmProcesses, o.ProvisionConcurrency, poolSize), IdleTimeout: o.PluginIdleTimeout,
		AddTimeout: o.PluginAddTimeout, DeleteTimeout: o.PluginDeleteTimeout, Logger: logger.With("component", "plugin"),
		SHA256: o.PluginSHA256, DropEnv: pluginEnvDrop()}
	if err := rc.shoes.Validate(); err != nil {
		return rc, o.settingError(componentShoes, err)
	}
	rc.store = store.Options{Path: o.StateFile, HistoryMaxAge: o.HistoryMaxAge, HistoryMaxCount: o.HistoryMaxCount}
	if err := rc.store.Validate(); err != nil {
		return rc, o.settingError(componentStore, err)
	}
	if rc.etcd, err = o.backend.validate(e); err != nil {
		return rc, err
	}
	if rc.etcd != nil {
		if err := o.replica.validate(e); err != nil {
			return rc, err
		}
		rc.etcdPrefix, rc.replica = o.backend.EtcdPrefix, o.replica
	}
	// The API's token is made at start (newAPI); the address is checked now.
	if err := (httpapi.Config{Listen: o.Listen}).Validate(); err != nil {
		return rc, o.settingError(componentAPI, err)
	}

	if o.SetupScriptTemplate != "" {
		b, err := os.ReadFile(o.SetupScriptTemplate)
		if err != nil {
			return rc, e.flagError("setup-script-template", "%v", err)
		}
		rc.template = string(b)
	}
	if _, err := runnerscript.New(rc.template); err != nil {
		return rc, e.flagError("setup-script-template", "%v", err)
	}

	rc.ctrl = controller.Config{
		RunnerGroup:          o.RunnerGroup,
		ScaleSetPrefix:       o.ScaleSetPrefix,
		Labels:               o.Labels,
		MinRunners:           o.MinRunners,
		MaxRunners:           o.MaxRunners,
		ProvisionConcurrency: o.ProvisionConcurrency,
		SyncInterval:         o.SyncInterval,
		RunnerVersion:        o.RunnerVersion,
		RunnerUser:           o.RunnerUser,
		RunnerBaseDirectory:  o.RunnerBaseDirectory,
		ShutdownTimeout:      o.ShutdownTimeout,
		AddTimeout:           o.PluginAddTimeout,
		PluginID:             o.Plugin,
		JanitorInterval:      o.JanitorInterval,
		RetryBackoff:         o.RetryBackoff,
		BootstrapTimeout:     o.BootstrapTimeout,
		IdleTTL:              o.IdleRunnerTTL,
		ScaleDownGrace:       o.ScaleDownGrace,
		DeleteGiveUp:         o.DeleteGiveUp,
		ReaperInterval:       o.ReaperInterval,
		ReaperMaxRemovals:    o.ReaperMaxRemovals,
		PollHold:             o.PollHold,
		Logger:               logger,

		DeleteScaleSetsOnTargetRemoval: o.DeleteScaleSets,
	}
	if err := rc.ctrl.Validate(); err != nil {
		return rc, o.settingError(componentController, err)
	}
	if rc.policy, err = o.loadPolicy(); err != nil {
		return rc, err
	}
	if rc.policy != nil {
		rc.ctrl.Policy = rc.policy.policy
		if lv := rc.policy.policy.LogLevel; lv != "" {
			var l slog.Level
			_ = l.UnmarshalText([]byte(lv)) // Parse checked it
			rc.level.Set(l)
		}
	}
	return rc, nil
}

// missingRequired reports, in one error, every required setting left
// unset when there are several, so that a first configuration is fixed
// in one try rather than one per setting. A single one is left to its
// own check, which says more about it.
func (o *runOptions) missingRequired() error {
	var missing []string
	if o.MyshoesURL == "" {
		missing = append(missing, "myshoes-url")
	}
	app := o.GitHubToken == ""
	if app && o.GitHubAppID == 0 {
		missing = append(missing, "github-app-id")
	}
	if app && o.GitHubPrivateKeyPath == "" && o.GitHubPrivateKeyB64 == "" {
		missing = append(missing, "github-private-key-path")
	}
	if o.Plugin == "" {
		missing = append(missing, "plugin")
	}
	if len(missing) < 2 {
		return nil
	}
	parts := make([]string, len(missing))
	for i, flag := range missing {
		parts[i] = fmt.Sprintf("--%s (env %s)", flag, strings.Join(o.env.envNames(flag), " or "))
	}
	msg := "missing required settings: " + strings.Join(parts, ", ")
	if app && (o.GitHubAppID == 0 || o.GitHubPrivateKeyPath == "" && o.GitHubPrivateKeyB64 == "") {
		msg += "; a GitHub App needs --github-app-id and a key (--github-private-key-path or --github-private-key-base64), or give --github-token instead"
	}
	return usageErrorf("%s", msg)
}

// pluginEnvDrop names our own secrets, which plugin processes must not
// inherit (shoes.Config.DropEnv): the GitHub App key and webhook secret
// myshoes's env file holds, a token, every SHOES_SCALESET_GITHUB_*
// variable and the etcd password. Everything else, the plugin's own
// settings included, is kept.
func pluginEnvDrop() []string {
	return []string{"GITHUB_PRIVATE_KEY*", "GITHUB_APP_SECRET", "GITHUB_TOKEN", envPrefix + "GITHUB_*", envPrefix + "ETCD_PASSWORD"}
}

// pluginError turns an error of shoes.New into run's error: a plugin that
// cannot be used as configured (or a --plugin-sha256 it does not match) is
// a usage error, exit 2; anything else, such as a download that kept
// failing, is a runtime failure, exit 1, which a restart may fix.
func (o *runOptions) pluginError(err error) error {
	switch {
	case errors.Is(err, shoes.ErrChecksumMismatch):
		return o.env.flagError("plugin-sha256", "%v", err)
	case errors.Is(err, shoes.ErrConfig):
		return o.env.flagError("plugin", "%v", err)
	}
	return fmt.Errorf("plugin: %w", err)
}

// pluginPoolSize is --plugin-pool-size, where 0 means twice the
// provisioning concurrency: provisions and deletes are each bounded by
// it, so neither waits for a plugin process the other holds.
func pluginPoolSize(flag, provisionConcurrency int) int {
	if flag == 0 {
		return 2 * max(provisionConcurrency, 1)
	}
	return flag
}

// pluginWarmProcesses is --plugin-warm-processes, where 0 means as many
// as the provisioning concurrency: a burst's first AddInstance calls all
// find a process started. It is at most the pool size.
func pluginWarmProcesses(flag, provisionConcurrency, poolSize int) int {
	if flag == 0 {
		flag = max(provisionConcurrency, 1)
	}
	return min(flag, poolSize)
}

// privateKey returns the app key PEM and the flag it came from.
func (o *runOptions) privateKey() ([]byte, string, error) {
	switch {
	case o.GitHubPrivateKeyPath != "" && o.GitHubPrivateKeyB64 != "":
		return nil, "github-private-key-path", errors.New("give either --github-private-key-path or --github-private-key-base64, not both")
	case o.GitHubPrivateKeyPath != "":
		b, err := os.ReadFile(o.GitHubPrivateKeyPath)
		if err != nil {
			return nil, "github-private-key-path", fmt.Errorf("read key: %w", err)
		}
		return b, "github-private-key-path", nil
	case o.GitHubPrivateKeyB64 != "":
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(o.GitHubPrivateKeyB64))
		if err != nil {
			return nil, "github-private-key-base64", errors.New("not valid base64")
		}
		return b, "github-private-key-base64", nil
	default:
		return nil, "github-private-key-path", errors.New("a GitHub App needs a private key: --github-private-key-path or --github-private-key-base64")
	}
}

// runRun wires the components and runs them until ctx ends. Shutdown is
// the reverse of start: the controller stops polling, finishes in-flight
// work and deletes its sessions; then the plugin processes stop, the HTTP
// server closes, and the store closes last.
func runRun(ctx context.Context, s streams, o *runOptions) error {
	rc, err := o.validate(s.Err)
	if err != nil {
		return err
	}
	// SIGHUP reloads the policy and the log level; it never stops run.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log := rc.logger
	// "stopped" is the last line: logged once everything has stopped,
	// the deferred steps below included (plugin processes, state file).
	stopped := false
	defer func() {
		if stopped {
			log.Info("shoes-scaleset stopped")
		}
	}()
	warnSecretFlags(log, o.env)
	reg := prometheus.NewRegistry()
	rec := metrics.New(reg, nil)
	rc.shoes.Recorder = rec
	rc.ctrl.Recorder = rec
	rc.github.Recorder = rec
	// The plugin is checked before the state file is touched: a bad
	// --plugin is a configuration error (exit 2) whatever the state file.
	host, err := shoes.New(ctx, rc.shoes)
	if err != nil {
		return o.pluginError(err)
	}
	reg.MustRegister(metrics.NewPoolCollector(host))
	// One plugin process must start and complete its handshake: a plugin
	// that cannot is a configuration error too (ErrConfig: exit 2).
	if err := host.Check(ctx); err != nil {
		host.Close()
		return o.pluginError(err)
	}
	host.Warm()
	// The directory also holds the API token, with --store etcd too.
	if err := os.MkdirAll(filepath.Dir(o.StateFile), 0o750); err != nil {
		host.Close()
		return fmt.Errorf("create state directory: %w", err)
	}
	rs, err := openRunState(ctx, rc, log)
	if err != nil {
		host.Close()
		return fmt.Errorf("open state: %w", err)
	}
	st := rs.store
	defer rs.close()
	defer host.Close() // runs before rs.close: the store closes last
	if rs.owners != nil {
		rc.ctrl.Ownership = rs.owners
	}
	// The lease is renewed until the controller has stopped: its
	// shutdown writes (sessions forgotten) are fenced on it.
	replicaCtx, stopReplica := context.WithCancel(context.WithoutCancel(ctx))
	replicaDone := make(chan struct{})
	go func() {
		defer close(replicaDone)
		rs.run(replicaCtx)
	}()
	defer func() {
		stopReplica()
		<-replicaDone
	}()
	stopWatching := exitOnSecondSignal(ctx, st, log)
	defer stopWatching()
	if rs.replica != nil {
		reg.MustRegister(metrics.NewStoreCollector(st, rs.replica.Owns), metrics.NewReplicaCollector(rs.replica, nil))
	} else {
		reg.MustRegister(metrics.NewStoreCollector(st, nil))
	}

	gh, err := github.New(rc.github)
	if err != nil {
		return fmt.Errorf("github client: %w", err)
	}
	ms, err := myshoes.New(rc.myshoes)
	if err != nil {
		return fmt.Errorf("myshoes client: %w", err)
	}
	script, err := runnerscript.New(rc.template)
	if err != nil {
		return fmt.Errorf("setup script: %w", err)
	}
	ctrl, err := controller.New(st, ms, ghadapter.New(gh), host, script, rc.ctrl)
	if err != nil {
		return err
	}

	api, removeToken, err := newAPI(o, httpapi.Deps{Runners: st, ScaleSets: ctrl, Readiness: replicaReadiness{ctrl, rs.replica}, Gatherer: reg, Remover: ctrl}, log)
	if err != nil {
		return err
	}
	defer removeToken()
	var ln net.Listener
	if o.Listen != "" {
		ln, err = net.Listen("tcp", o.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", o.Listen, err)
		}
	}
	if rs.replica != nil {
		log.Info("shoes-scaleset starting", "version", buildinfo.Version(), "store", backendEtcd, "etcd_endpoints", strings.Join(o.backend.EtcdEndpoints, ","),
			"etcd_prefix", o.backend.EtcdPrefix, "replica", rs.replica.ID(), "replica_ttl", o.replica.TTL, "listen", o.Listen, o.settingsAttr(), o.settingsFromAttr())
	} else {
		log.Info("shoes-scaleset starting", "version", buildinfo.Version(), "state_file", o.StateFile, "listen", o.Listen, "owner", st.OwnerID(), o.settingsAttr(), o.settingsFromAttr())
	}

	g, gctx := errgroup.WithContext(ctx)
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	if ln != nil {
		g.Go(func() error {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http server: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer func() {
			shutCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutCtx)
		}()
		return ctrl.Run(gctx)
	})
	g.Go(func() error { return pruneHistory(gctx, st, rs.leader, log) })
	reloader := &policyReloader{path: o.Config, base: o.policyFlagBase(), ctrl: ctrl, rec: rec, level: rc.level, flagLevel: rc.flagLevel,
		log: log.With("component", "policy"), now: time.Now, interval: policyWatchInterval}
	if rc.policy != nil {
		reloader.running, reloader.stamp = rc.policy.text, rc.policy.stamp
	}
	g.Go(func() error {
		reloader.run(gctx, hup)
		return nil
	})
	err = g.Wait()
	// The sessions are closed: hand the targets over now.
	rs.leave()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	stopped = true
	return nil
}

// pruneHistory trims the runner history hourly; with replicas, only the
// leader does.
func pruneHistory(ctx context.Context, st *store.Store, leader func() bool, log *slog.Logger) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if !leader() {
			// Another replica prunes.
		} else if n, err := st.PruneHistory(); err != nil {
			log.Warn("prune runner history", "err", err)
		} else if n > 0 {
			log.Debug("pruned runner history", "removed", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// exitOnSecondSignal makes a second SIGINT or SIGTERM, received while the
// first one's shutdown runs, exit at once; the state file is still closed
// first (bounded, so a stuck write cannot hold the exit). The returned
// function stops watching.
func exitOnSecondSignal(ctx context.Context, st *store.Store, log *slog.Logger) func() {
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sig)
		select {
		case s := <-sig:
			log.Warn("second signal: exiting now without waiting for in-flight work", "signal", s.String())
			closed := make(chan struct{})
			go func() { _ = st.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
			}
			os.Exit(exitFailure)
		case <-done:
		}
	}()
	return func() { close(done) }
}

// retryMax maps --github-retry-max to github.Config.RetryMax, where 0
// means the default and a negative number no retry.
func retryMax(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

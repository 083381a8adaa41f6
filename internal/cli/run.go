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
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/actions/scaleset"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/shoes-scaleset/shoes-scaleset/internal/buildinfo"
	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/ghadapter"
	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/metrics"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
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
Precedence: flag, SHOES_SCALESET_*, myshoes variable, default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.env.apply(); err != nil {
				return err
			}
			return runRun(cmd.Context(), s, opts)
		},
	}
	opts.addFlags(cmd.Flags(), lookup)
	return cmd
}

// defaultRunOptions returns the options run has when no flag and no
// variable is set; the demo starts from them.
func defaultRunOptions() *runOptions {
	o := &runOptions{}
	o.addFlags(pflag.NewFlagSet("run", pflag.ContinueOnError), func(string) (string, bool) { return "", false })
	return o
}

// addFlags registers run's flags on f, with their defaults, and binds them
// to their environment variables.
func (opts *runOptions) addFlags(f *pflag.FlagSet, lookup lookupEnvFunc) {
	f.StringVar(&opts.MyshoesURL, "myshoes-url", "", "base URL of myshoes's REST API (required), e.g. http://127.0.0.1:8080")
	f.StringVar(&opts.GitHubURL, "github-url", "https://github.com", "GitHub URL; anything but github.com is GitHub Enterprise Server")
	f.Int64Var(&opts.GitHubAppID, "github-app-id", 0, "GitHub App ID")
	f.StringVar(&opts.GitHubPrivateKeyPath, "github-private-key-path", "", "path to the GitHub App private key (PEM, PKCS#1 or PKCS#8)")
	f.StringVar(&opts.GitHubPrivateKeyB64, "github-private-key-base64", "", "the GitHub App private key PEM, base64-encoded")
	f.StringVar(&opts.GitHubToken, "github-token", "", "a personal access token, instead of a GitHub App")
	f.StringVar(&opts.GitHubCAFile, "github-ca-file", "", "PEM file of extra CA certificates for GitHub")
	f.StringVar(&opts.Plugin, "plugin", "", "shoes plugin: a path to the binary, or an http(s) URL to download it from")
	f.IntVar(&opts.PluginPoolSize, "plugin-pool-size", 0, "maximum number of plugin processes; each serves one call at a time (0: twice --provision-concurrency, room for as many deletes as provisions)")
	f.DurationVar(&opts.PluginAddTimeout, "plugin-add-timeout", 5*time.Minute, "deadline of one AddInstance call; past it the outcome is unknown")
	f.DurationVar(&opts.PluginDeleteTimeout, "plugin-delete-timeout", 3*time.Minute, "deadline of one DeleteInstance call; past it the delete is retried")
	f.StringVar(&opts.PluginSHA256, "plugin-sha256", "", "expected sha256 of the plugin executable (hex), checked against the file, the download or the cached copy")
	f.StringVar(&opts.StateFile, "state-file", defaultStateFile, "bbolt state file")
	f.StringVar(&opts.Listen, "listen", defaultListen, "address of the HTTP server for /metrics, /healthz and the state API")
	f.StringVar(&opts.RunnerGroup, "runner-group", scaleset.DefaultRunnerGroup, "runner group of the scale sets")
	f.StringVar(&opts.ScaleSetPrefix, "scale-set-prefix", "myshoes", "scale set names are <prefix>-<scope>")
	f.StringSliceVar(&opts.Labels, "labels", nil, "extra scale set labels, comma-separated")
	f.IntVar(&opts.MinRunners, "min-runners", 0, "idle runners kept per scale set")
	f.IntVar(&opts.MaxRunners, "max-runners", 10, "maximum runners per scale set")
	f.IntVar(&opts.ProvisionConcurrency, "provision-concurrency", 16, "runners provisioned at once, over all scale sets")
	f.DurationVar(&opts.SyncInterval, "sync-interval", 30*time.Second, "how often the target list is read from myshoes")
	f.StringVar(&opts.RunnerVersion, "runner-version", "latest", `runner version, "latest" or vX.Y.Z; latest is resolved per scope daily`)
	f.StringVar(&opts.RunnerUser, "runner-user", "runner", "user the runner runs as")
	f.StringVar(&opts.RunnerBaseDirectory, "runner-base-directory", "/tmp", "directory the runner is installed under")
	f.StringVar(&opts.SetupScriptTemplate, "setup-script-template", "", "file with a Go template replacing the main setup script")
	f.DurationVar(&opts.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight provisioning may take on shutdown")
	f.StringVar(&opts.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&opts.LogFormat, "log-format", "text", "log format: text or json")
	f.IntVar(&opts.GitHubRetryMax, "github-retry-max", 4, "retries of a GitHub call answered 5xx or 429")
	f.DurationVar(&opts.GitHubRetryWaitMax, "github-retry-wait-max", 30*time.Second, "longest wait between GitHub retries")
	f.DurationVar(&opts.JanitorInterval, "janitor-interval", 5*time.Second, "how often failed deletes are retried and runner counts reconciled")
	f.DurationVar(&opts.RetryBackoff, "retry-backoff", time.Second, "first wait after a failing target, session or delete; doubles up to 5m")
	f.DurationVar(&opts.HistoryMaxAge, "history-max-age", 7*24*time.Hour, "finished runners are kept in the history this long")
	f.IntVar(&opts.HistoryMaxCount, "history-max-count", 10000, "at most this many finished runners are kept in the history")
	f.DurationVar(&opts.BootstrapTimeout, "runner-bootstrap-timeout", 20*time.Minute, "a runner that has not come online this long after it was created is removed")
	f.DurationVar(&opts.IdleRunnerTTL, "idle-runner-ttl", 0, "remove runners idle for longer than this; 0 keeps them")
	f.DurationVar(&opts.ScaleDownGrace, "scale-down-grace", 2*time.Minute, "a runner must have been idle this long before a scale-down removes it")
	f.DurationVar(&opts.DeleteGiveUp, "delete-give-up", 24*time.Hour, "how long a failing DeleteInstance is retried before the runner goes to history as delete-failed")
	f.DurationVar(&opts.ReaperInterval, "reaper-interval", time.Minute, "how often the reaper looks for runners to remove")
	f.IntVar(&opts.ReaperMaxRemovals, "reaper-max-removals", 20, "at most this many runners are removed per reaper pass")
	f.BoolVar(&opts.DeleteScaleSets, "delete-scale-sets-on-target-removal", false, "delete a removed target's scale set on GitHub once its runners are gone")
	f.DurationVar(&opts.PollHold, "poll-hold", 50*time.Second, "how long GitHub holds an empty message long-poll; /readyz wants a poll within two holds")
	opts.env = newEnvBinding(f, myshoesEnv(), lookup)
}

// runConfig is what runOptions validate into.
type runConfig struct {
	logger   *slog.Logger
	github   github.Config
	myshoes  myshoes.Config
	shoes    shoes.Config
	template string
	ctrl     controller.Config
}

// validate checks every option and builds the component configs. Each
// error names the flag and its variables.
func (o *runOptions) validate(logOut io.Writer) (runConfig, error) {
	var rc runConfig
	e := o.env
	logger, err := newLogger(logOut, o.LogLevel, o.LogFormat)
	if err != nil {
		flag := "log-level"
		if strings.Contains(err.Error(), "format") {
			flag = "log-format"
		}
		return rc, e.flagError(flag, "%v", err)
	}
	rc.logger = logger

	if o.MyshoesURL == "" {
		return rc, e.flagError("myshoes-url", "required")
	}
	if err := checkHTTPURL(o.MyshoesURL); err != nil {
		return rc, e.flagError("myshoes-url", "%v", err)
	}
	rc.myshoes = myshoes.Config{BaseURL: o.MyshoesURL, UserAgent: "shoes-scaleset/" + buildinfo.Version(), Logger: logger.With("component", "myshoes")}

	if err := checkHTTPURL(o.GitHubURL); err != nil {
		return rc, e.flagError("github-url", "%v", err)
	}
	if u, _ := url.Parse(o.GitHubURL); strings.Trim(u.Path, "/") != "" {
		return rc, e.flagError("github-url", "%q has a path; give the server only, e.g. https://github.example.com", o.GitHubURL)
	}
	gh := github.Config{
		URL:          strings.TrimRight(o.GitHubURL, "/"),
		RetryMax:     retryMax(o.GitHubRetryMax),
		RetryWaitMax: o.GitHubRetryWaitMax,
		SystemInfo:   scaleset.SystemInfo{System: "shoes-scaleset", Version: buildinfo.Version(), Subsystem: "controller"},
		Logger:       logger,
	}
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
		if _, err := github.ParsePrivateKey(key); err != nil {
			return rc, e.flagError(flag, "%v", err)
		}
		gh.PrivateKeyPEM = key
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
		return rc, e.flagError("github-retry-max", "must not be negative")
	}
	rc.github = gh

	if o.Plugin == "" {
		return rc, e.flagError("plugin", "required: the path or URL of the shoes plugin")
	}
	rc.shoes = shoes.Config{Path: o.Plugin, Args: o.pluginArgs, Env: o.pluginEnv, PoolSize: pluginPoolSize(o.PluginPoolSize, o.ProvisionConcurrency),
		AddTimeout: o.PluginAddTimeout, DeleteTimeout: o.PluginDeleteTimeout, Logger: logger.With("component", "plugin"),
		SHA256: o.PluginSHA256, DropEnv: pluginEnvDrop()}
	if o.PluginPoolSize < 0 {
		return rc, e.flagError("plugin-pool-size", "must not be negative (0: twice --provision-concurrency)")
	}
	if o.PluginAddTimeout <= 0 {
		return rc, e.flagError("plugin-add-timeout", "must be positive")
	}
	if o.PluginDeleteTimeout <= 0 {
		return rc, e.flagError("plugin-delete-timeout", "must be positive")
	}
	// rc.shoes is checked by shoes.New, after its defaults (the RPC
	// timeouts) are filled in; Validate alone rejects their zero values.
	if o.StateFile == "" {
		return rc, e.flagError("state-file", "required")
	}
	if o.Listen != "" {
		if _, _, err := net.SplitHostPort(o.Listen); err != nil {
			return rc, e.flagError("listen", "%v", err)
		}
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
	if err := github.CheckRunnerVersion(o.RunnerVersion); err != nil {
		return rc, e.flagError("runner-version", "%v", err)
	}
	if o.RunnerUser == "" {
		return rc, e.flagError("runner-user", "must not be empty")
	}
	if err := runnerscript.CheckRunnerBaseDirectory(o.RunnerBaseDirectory); err != nil {
		return rc, e.flagError("runner-base-directory", "%v", err)
	}
	if strings.TrimSpace(o.RunnerGroup) == "" {
		return rc, e.flagError("runner-group", "must not be empty")
	}
	if strings.TrimSpace(o.ScaleSetPrefix) == "" {
		return rc, e.flagError("scale-set-prefix", "must not be empty")
	}

	checks := []struct {
		flag string
		bad  bool
		msg  string
	}{
		{"min-runners", o.MinRunners < 0, "must not be negative"},
		{"max-runners", o.MaxRunners < 1, "must be at least 1"},
		{"min-runners", o.MinRunners > o.MaxRunners, fmt.Sprintf("must not exceed --max-runners (%d > %d)", o.MinRunners, o.MaxRunners)},
		{"provision-concurrency", o.ProvisionConcurrency < 1, "must be at least 1"},
		{"sync-interval", o.SyncInterval < time.Second, "must be at least 1s"},
		{"shutdown-timeout", o.ShutdownTimeout <= 0, "must be positive"},
		{"janitor-interval", o.JanitorInterval <= 0, "must be positive"},
		{"retry-backoff", o.RetryBackoff <= 0, "must be positive"},
		{"history-max-age", o.HistoryMaxAge <= 0, "must be positive"},
		{"history-max-count", o.HistoryMaxCount < 1, "must be at least 1"},
		{"runner-bootstrap-timeout", o.BootstrapTimeout <= 0, "must be positive"},
		{"idle-runner-ttl", o.IdleRunnerTTL < 0, "must not be negative"},
		{"scale-down-grace", o.ScaleDownGrace <= 0, "must be positive"},
		{"delete-give-up", o.DeleteGiveUp <= 0, "must be positive"},
		{"reaper-interval", o.ReaperInterval <= 0, "must be positive"},
		{"reaper-max-removals", o.ReaperMaxRemovals < 1, "must be at least 1"},
		{"poll-hold", o.PollHold <= 0, "must be positive"},
	}
	for _, c := range checks {
		if c.bad {
			return rc, e.flagError(c.flag, "%s", c.msg)
		}
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
		return rc, usageErrorf("%v", err)
	}
	return rc, nil
}

// pluginEnvDrop names our own secrets, which plugin processes must not
// inherit (shoes.Config.DropEnv): the GitHub App key and webhook secret
// myshoes's env file holds, a token, and every SHOES_SCALESET_GITHUB_*
// variable. Everything else, the plugin's own settings included, is kept.
func pluginEnvDrop() []string {
	return []string{"GITHUB_PRIVATE_KEY*", "GITHUB_APP_SECRET", "GITHUB_TOKEN", envPrefix + "GITHUB_*"}
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

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("malformed URL %q: %v", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q: give a plain base URL, without query, fragment or user info", s)
	}
	return nil
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
	log := rc.logger
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
	if err := os.MkdirAll(dirOf(o.StateFile), 0o750); err != nil {
		host.Close()
		return fmt.Errorf("create state directory: %w", err)
	}
	st, err := store.Open(store.Options{Path: o.StateFile, HistoryMaxAge: o.HistoryMaxAge, HistoryMaxCount: o.HistoryMaxCount})
	if err != nil {
		host.Close()
		return fmt.Errorf("open state: %w", err)
	}
	defer st.Close()
	defer host.Close() // runs before st.Close: the store closes last
	stopWatching := exitOnSecondSignal(ctx, st, log)
	defer stopWatching()
	reg.MustRegister(metrics.NewStoreCollector(st))

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

	api, removeToken, err := newAPI(o, httpapi.Deps{Runners: st, ScaleSets: ctrl, Readiness: ctrl, Gatherer: reg, Remover: ctrl}, log)
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
	log.Info("shoes-scaleset starting", "version", buildinfo.Version(), "state_file", o.StateFile, "listen", o.Listen, "owner", st.OwnerID())

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
	g.Go(func() error { return pruneHistory(gctx, st, log) })
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("shoes-scaleset stopped")
	return nil
}

// pruneHistory trims the runner history hourly.
func pruneHistory(ctx context.Context, st *store.Store, log *slog.Logger) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := st.PruneHistory(); err != nil {
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

func dirOf(path string) string {
	if i := strings.LastIndex(path, "/"); i > 0 {
		return path[:i]
	}
	return "."
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

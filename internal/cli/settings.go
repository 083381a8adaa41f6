package cli

import (
	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
	"github.com/spf13/pflag"
)

// Each component states the default and the valid range of its settings
// once: in its DefaultConfig (store: DefaultOptions) and its Validate.
// run's flags take their defaults from there, and run reports a
// component's *FieldError as a usage error about the flag that set the
// field, through runSettings. What only the command line has (which of
// three flags gave the GitHub key, a flag value run translates before it
// reaches a field) is checked here, in cli.

// The components whose Config run's flags set.
const (
	componentController = "controller"
	componentShoes      = "shoes"
	componentGitHub     = "github"
	componentStore      = "store"
	componentAPI        = "httpapi"
	componentReplica    = "replica"
)

// flagField ties a run flag to the Config field it sets.
type flagField struct {
	flag      string
	component string
	field     string // the Go name of the field in the component's Config
	// own: the flag has a default of its own, which run translates into
	// the field (--plugin-pool-size 0: twice --provision-concurrency), or
	// the component has none (--state-file, --listen).
	own bool
	// zeroMeans is what the flag's zero value means, for the flags whose
	// zero is not the component's "use the default" (see checkZeroValues).
	zeroMeans string
}

// runSettings lists every run flag that sets a field of a component's
// Config. A flag may set a field of two components.
func runSettings() []flagField {
	return []flagField{
		{flag: "github-url", component: componentGitHub, field: "URL"},
		{flag: "github-app-id", component: componentGitHub, field: "AppID"},
		{flag: "github-token", component: componentGitHub, field: "Token"},
		{flag: "github-retry-max", component: componentGitHub, field: "RetryMax", zeroMeans: "no retries"},
		{flag: "github-retry-wait-max", component: componentGitHub, field: "RetryWaitMax"},
		{flag: "plugin", component: componentShoes, field: "Path"},
		{flag: "plugin", component: componentController, field: "PluginID"},
		{flag: "plugin-pool-size", component: componentShoes, field: "PoolSize", own: true},
		{flag: "plugin-warm-processes", component: componentShoes, field: "WarmProcesses", own: true},
		{flag: "plugin-idle-timeout", component: componentShoes, field: "IdleTimeout"},
		{flag: "plugin-add-timeout", component: componentShoes, field: "AddTimeout"},
		{flag: "plugin-add-timeout", component: componentController, field: "AddTimeout"},
		{flag: "plugin-delete-timeout", component: componentShoes, field: "DeleteTimeout"},
		{flag: "plugin-sha256", component: componentShoes, field: "SHA256"},
		{flag: "state-file", component: componentStore, field: "Path", own: true},
		{flag: "history-max-age", component: componentStore, field: "HistoryMaxAge"},
		{flag: "history-max-count", component: componentStore, field: "HistoryMaxCount"},
		{flag: "listen", component: componentAPI, field: "Listen", own: true, zeroMeans: "no HTTP server"},
		{flag: "runner-group", component: componentController, field: "RunnerGroup"},
		{flag: "scale-set-prefix", component: componentController, field: "ScaleSetPrefix"},
		{flag: "labels", component: componentController, field: "Labels"},
		{flag: "min-runners", component: componentController, field: "MinRunners"},
		{flag: "max-runners", component: componentController, field: "MaxRunners"},
		{flag: "provision-concurrency", component: componentController, field: "ProvisionConcurrency"},
		{flag: "sync-interval", component: componentController, field: "SyncInterval"},
		{flag: "runner-version", component: componentController, field: "RunnerVersion"},
		{flag: "runner-user", component: componentController, field: "RunnerUser"},
		{flag: "runner-base-directory", component: componentController, field: "RunnerBaseDirectory"},
		{flag: "shutdown-timeout", component: componentController, field: "ShutdownTimeout"},
		{flag: "janitor-interval", component: componentController, field: "JanitorInterval"},
		{flag: "retry-backoff", component: componentController, field: "RetryBackoff"},
		{flag: "runner-bootstrap-timeout", component: componentController, field: "BootstrapTimeout"},
		{flag: "idle-runner-ttl", component: componentController, field: "IdleTTL"},
		{flag: "scale-down-grace", component: componentController, field: "ScaleDownGrace"},
		{flag: "delete-give-up", component: componentController, field: "DeleteGiveUp"},
		{flag: "reaper-interval", component: componentController, field: "ReaperInterval"},
		{flag: "reaper-max-removals", component: componentController, field: "ReaperMaxRemovals"},
		{flag: "delete-scale-sets-on-target-removal", component: componentController, field: "DeleteScaleSetsOnTargetRemoval"},
		{flag: "poll-hold", component: componentController, field: "PollHold"},
		{flag: "replica-ttl", component: componentReplica, field: "TTL"},
	}
}

// runOnlyZeroMeans names the flags that set no component's field and
// whose zero value means something of their own.
func runOnlyZeroMeans() map[string]string {
	return map[string]string{"replica-join-delay": "no join delay"}
}

// settingError reports err, from the Validate of component's Config, as a
// usage error naming the flag that set the field it is about. An error
// about a field no flag sets is still a configuration error.
func (o *runOptions) settingError(component string, err error) error {
	if field := setting.FieldOf(err); field != "" {
		for _, s := range runSettings() {
			if s.component == component && s.field == field {
				return o.env.flagError(s.flag, "%v", err)
			}
		}
	}
	return usageErrorf("%s config: %w", component, err)
}

// checkZeroValues rejects the zero value (0, 0s, an empty string) of a
// flag whose default is not zero. A component reads a zero setting as
// "use the default", so --max-runners=0 would quietly run with 10; the
// ranges themselves are the components' to check. A flag whose zero means
// something of its own (--listen "": no HTTP server) is exempt.
func (o *runOptions) checkZeroValues() error {
	zeroMeans := map[string]bool{}
	for flag := range runOnlyZeroMeans() {
		zeroMeans[flag] = true
	}
	for _, s := range runSettings() {
		if s.zeroMeans != "" {
			zeroMeans[s.flag] = true
		}
	}
	return refuseZeros(o.env.flags, zeroMeans, o.env.flagError)
}

// refuseZeros rejects, through flagError, the zero value of a flag of fs
// whose default is not zero, except the flags in exempt.
func refuseZeros(fs *pflag.FlagSet, exempt map[string]bool, flagError func(flag, format string, args ...any) error) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		zero, known := zeroText(f.Value.Type())
		if err != nil || !known || exempt[f.Name] || f.Value.String() != zero || f.DefValue == zero {
			return
		}
		if zero == "" {
			err = flagError(f.Name, "must not be empty (default %q)", f.DefValue)
			return
		}
		err = flagError(f.Name, "must not be %s (default %s)", zero, f.DefValue)
	})
	return err
}

// zeroText returns how a flag of pflag type typ prints its zero value;
// known is false for a type run has no flag of.
func zeroText(typ string) (zero string, known bool) {
	switch typ {
	case "string":
		return "", true
	case "int", "int64":
		return "0", true
	case "duration":
		return "0s", true
	case "bool":
		return "false", true
	case "stringSlice":
		return "[]", true
	}
	return "", false
}

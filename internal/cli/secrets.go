package cli

import (
	"log/slog"
	"sort"
	"strings"
)

// secretFlags are the run flags that carry a secret, each with the flag
// that gives the same secret without putting it on the command line ("" if
// none but the variables).
func secretFlags() map[string]string {
	return map[string]string{
		"github-private-key-base64": "github-private-key-path",
		"github-token":              "",
		"etcd-password":             "",
	}
}

// warnSecretFlags logs a warning for every secret given as a flag: the
// command line of a process is readable by every user of the host (ps,
// /proc/PID/cmdline). The warning names the flag and the variables to use
// instead, never the value.
func warnSecretFlags(log *slog.Logger, env *envBinding) {
	flags := secretFlags()
	names := make([]string, 0, len(flags))
	for name := range flags {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := env.flags.Lookup(name)
		if f == nil || f.Value.String() == "" || !env.onCommandLine(name) {
			continue
		}
		instead := env.envNames(name)
		if alt := flags[name]; alt != "" {
			instead = append(instead, "--"+alt)
		}
		log.Warn("a secret was given on the command line, where every user of this host can read it (ps, /proc/PID/cmdline); give it in the environment instead",
			"flag", "--"+name, "instead", strings.Join(instead, " or "))
	}
}

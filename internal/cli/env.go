package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// envPrefix prefixes the environment variable of every flag:
// --max-runners is SHOES_SCALESET_MAX_RUNNERS.
const envPrefix = "SHOES_SCALESET_"

// lookupEnvFunc reads one environment variable; tests replace os.LookupEnv.
type lookupEnvFunc func(string) (string, bool)

// envBinding fills flags that were not given on the command line from the
// environment: SHOES_SCALESET_<FLAG>, then the variable myshoes reads for
// the same setting, so that myshoes's own env file configures us too.
type envBinding struct {
	flags   *pflag.FlagSet
	myshoes map[string]string // flag name -> myshoes variable
	lookup  lookupEnvFunc
	// skip names flags never read from the environment.
	skip map[string]bool
	// fromEnv names the flags apply set, with the variable each came
	// from: their Changed is true too, but they are not on the command
	// line.
	fromEnv map[string]string
}

func newEnvBinding(flags *pflag.FlagSet, myshoes map[string]string, lookup lookupEnvFunc) *envBinding {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return &envBinding{flags: flags, myshoes: myshoes, lookup: lookup}
}

// envName returns the SHOES_SCALESET_ variable of a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// envNames returns every variable a flag is read from, highest first.
func (b *envBinding) envNames(flag string) []string {
	names := []string{envName(flag)}
	if m, ok := b.myshoes[flag]; ok {
		names = append(names, m)
	}
	return names
}

// apply sets every flag that was not changed on the command line from the
// first of its variables that is set and non-empty.
func (b *envBinding) apply() error {
	var err error
	b.flags.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" || b.skip[f.Name] {
			return
		}
		for _, name := range b.envNames(f.Name) {
			v, ok := b.lookup(name)
			if !ok || v == "" {
				continue
			}
			if setErr := b.flags.Set(f.Name, v); setErr != nil {
				err = usageErrorf("invalid value %q for --%s (from %s): %v", redactIfSecret(f.Name, v), f.Name, name, setErr)
				return
			}
			if b.fromEnv == nil {
				b.fromEnv = map[string]string{}
			}
			b.fromEnv[f.Name] = name
			return
		}
	})
	return err
}

// flagError is a usage error about one flag; it names the flag and every
// variable it can come from.
func (b *envBinding) flagError(flag, format string, args ...any) error {
	return usageErrorf("--%s (env %s): %s", flag, strings.Join(b.envNames(flag), " or "), fmt.Sprintf(format, args...))
}

// redactIfSecret hides the values of the flags that carry secrets.
func redactIfSecret(flag, v string) string {
	if _, secret := secretFlags()[flag]; secret {
		return "<redacted>"
	}
	return v
}

// onCommandLine reports whether the flag was given on the command line,
// as opposed to its default or a variable.
func (b *envBinding) onCommandLine(flag string) bool {
	f := b.flags.Lookup(flag)
	_, env := b.fromEnv[flag]
	return f != nil && f.Changed && !env
}

package cli

import (
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// settingsAttr is the attribute of run's start line that shows its
// effective configuration: every flag's value, from the command line,
// the environment or the default, as "settings". Values that are not the
// default also say where they came from, in "settings_from" (see
// settingsFromAttr). A secret is never shown: its value is "<redacted>"
// when it is set, "" when it is not.
func (o *runOptions) settingsAttr() slog.Attr {
	values, _ := settings(o.env)
	return slog.Group("settings", values...)
}

// settingsFromAttr says where each setting that is not the default came
// from: "flag", or the variable's name.
func (o *runOptions) settingsFromAttr() slog.Attr {
	_, from := settings(o.env)
	return slog.Group("settings_from", from...)
}

func settings(env *envBinding) (values, from []any) {
	env.flags.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		v := f.Value.String()
		if isSecretFlag(f.Name) && v != "" {
			v = "<redacted>"
		}
		values = append(values, slog.String(f.Name, v))
		switch src, fromEnv := env.fromEnv[f.Name]; {
		case fromEnv:
			from = append(from, slog.String(f.Name, src))
		case f.Changed:
			from = append(from, slog.String(f.Name, "flag"))
		}
	})
	return values, from
}

// isSecretFlag reports whether a flag's value is a secret: the flags of
// secretFlags, and, should one be added without being listed there, any
// flag whose name says it holds a password, a token, a secret or a key.
func isSecretFlag(name string) bool {
	if _, ok := secretFlags()[name]; ok {
		return true
	}
	for _, s := range []string{"password", "token", "secret", "key-base64"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

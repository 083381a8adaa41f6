package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// newLogger builds the process logger. Attributes whose key names a secret
// are redacted whatever their value, as a second line of defence: the
// components never log secrets in the first place. Durations are logged
// as Go durations ("95ms", "1m0s"), in JSON too (replaceAttr).
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("unknown log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: replaceAttr}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("unknown log format %q: want text or json", format)
	}
}

// replaceAttr is the ReplaceAttr of every logger of the binary: it
// redacts secrets (redactAttr) and writes a duration as its String, as
// the text handler does, where the JSON handler would write nanoseconds.
func replaceAttr(groups []string, a slog.Attr) slog.Attr {
	a = redactAttr(groups, a)
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

func redactAttr(_ []string, a slog.Attr) slog.Attr {
	k := strings.ToLower(a.Key)
	for _, secret := range []string{"token", "jit", "private_key", "privatekey", "password", "authorization", "secret", "setup_script"} {
		if strings.Contains(k, secret) {
			return slog.String(a.Key, "<redacted>")
		}
	}
	return a
}

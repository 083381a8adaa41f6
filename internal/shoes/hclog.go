package shoes

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes go-plugin's hclog output, including the lines a
// plugin writes to its stderr, into slog at debug level. The original hclog
// level is kept as the "plugin_level" attribute.
type hclogAdapter struct {
	l       *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHCLogAdapter(l *slog.Logger) *hclogAdapter {
	return &hclogAdapter{l: l}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level == hclog.Trace {
		return
	}
	ctx := context.Background()
	if !a.l.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := make([]any, 0, 4+len(a.implied)+len(args))
	attrs = append(attrs, "plugin_level", level.String())
	if a.name != "" {
		attrs = append(attrs, "logger", a.name)
	}
	attrs = append(attrs, a.implied...)
	attrs = append(attrs, args...)
	a.l.Log(ctx, slog.LevelDebug, msg, attrs...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) IsTrace() bool { return false }
func (a *hclogAdapter) IsDebug() bool { return a.l.Enabled(context.Background(), slog.LevelDebug) }
func (a *hclogAdapter) IsInfo() bool  { return a.IsDebug() }
func (a *hclogAdapter) IsWarn() bool  { return a.IsDebug() }
func (a *hclogAdapter) IsError() bool { return a.IsDebug() }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	b := *a
	b.implied = append(append([]any(nil), a.implied...), args...)
	return &b
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	b := *a
	if b.name != "" {
		b.name += "." + name
	} else {
		b.name = name
	}
	return &b
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	b := *a
	b.name = name
	return &b
}

// SetLevel is ignored: the slog handler decides what is kept.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

func (a *hclogAdapter) GetLevel() hclog.Level {
	if a.IsDebug() {
		return hclog.Debug
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineWriter{log: func(line string) { a.Log(hclog.Debug, line) }}
}

// lineWriter calls log once per complete line written to it.
type lineWriter struct {
	mu  sync.Mutex
	buf strings.Builder
	log func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	s := w.buf.String()
	last := strings.LastIndexByte(s, '\n')
	if last < 0 {
		return len(p), nil
	}
	for line := range strings.SplitSeq(s[:last], "\n") {
		w.log(line)
	}
	w.buf.Reset()
	w.buf.WriteString(s[last+1:])
	return len(p), nil
}

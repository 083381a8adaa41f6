package shoes

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes go-plugin's own hclog output into slog at debug
// level. The original hclog level is kept as the "plugin_level"
// attribute. The lines a plugin writes to its stderr are not its to log:
// go-plugin hands them to the logger named after the plugin's file,
// which quietFor turns off, and copies them to ClientConfig.Stderr, where
// pluginStderr logs them.
type hclogAdapter struct {
	l       *slog.Logger
	name    string
	implied []any
	// stderrName is the name of the plugin's stderr logger; off is set on
	// that logger.
	stderrName string
	off        bool
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHCLogAdapter(l *slog.Logger) *hclogAdapter {
	return &hclogAdapter{l: l}
}

// quietFor returns the adapter with the stderr logger of the plugin at
// path turned off. go-plugin then does not parse the plugin's lines
// itself (its parser panics on a JSON line whose "@message" is not a
// string) and leaves them to pluginStderr.
func (a *hclogAdapter) quietFor(path string) *hclogAdapter {
	b := *a
	b.stderrName = filepath.Base(path)
	return &b
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if a.off || level == hclog.Off || level == hclog.Trace {
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
func (a *hclogAdapter) IsDebug() bool {
	return !a.off && a.l.Enabled(context.Background(), slog.LevelDebug)
}
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
	if b.name == "" && b.stderrName != "" && name == b.stderrName {
		b.off = true
	}
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

// pluginStderr logs what one plugin process writes to its stderr, a
// record per line (go-plugin copies each line to ClientConfig.Stderr),
// and keeps the last lines for the error of a start that fails.
//
// A line that is one JSON object (hclog's JSON format, slog's, or any
// other) becomes one record whose attributes are its keys: its message
// ("@message", "msg" or "message") is the record's message, its level
// ("@level", "level" or "severity") the record's level, and its time
// ("@timestamp", "time", "timestamp" or "ts") the attribute plugin_time.
// Any other line is logged as it is, at debug level.
type pluginStderr struct {
	log *slog.Logger

	mu   sync.Mutex
	line []byte // the line being written
	cut  bool   // it was too long: the rest of it is dropped
	tail []string
}

// Bounds of what is kept of a plugin's stderr.
const (
	maxPluginLine   = 64 << 10
	stderrTailLines = 3
	maxTailLine     = 256
)

func newPluginStderr(log *slog.Logger) *pluginStderr { return &pluginStderr{log: log} }

func (w *pluginStderr) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		chunk, rest, complete := bytes.Cut(p, []byte{'\n'})
		if !w.cut {
			if room := maxPluginLine - len(w.line); len(chunk) > room {
				chunk, w.cut = chunk[:room], true
			}
			w.line = append(w.line, chunk...)
		}
		if !complete {
			break
		}
		w.emit()
		p = rest
	}
	return n, nil
}

// emit logs the line written so far and starts the next.
func (w *pluginStderr) emit() {
	line := strings.TrimRight(string(w.line), "\r")
	if w.cut {
		line = strings.ToValidUTF8(line, "") + "...(truncated)"
	}
	w.line, w.cut = w.line[:0], false
	if strings.TrimSpace(line) == "" {
		return
	}
	if len(w.tail) == stderrTailLines {
		w.tail = append(w.tail[:0], w.tail[1:]...)
	}
	w.tail = append(w.tail, truncate(line, maxTailLine))
	logPluginLine(w.log, line)
}

// lastLines returns the last lines the process wrote, joined by " | ".
func (w *pluginStderr) lastLines() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.tail, " | ")
}

// truncate cuts s to at most n bytes, on a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// logPluginLine logs one line of a plugin's stderr.
func logPluginLine(log *slog.Logger, line string) {
	ctx := context.Background()
	level, msg, attrs, ok := parsePluginJSON(line)
	if !ok {
		level, msg, attrs = slog.LevelDebug, line, nil
	}
	if log.Enabled(ctx, level) {
		log.LogAttrs(ctx, level, msg, attrs...)
	}
}

// The keys of a JSON line that make the record's message, level and
// time, in the order they are looked for.
var (
	messageKeys = []string{"@message", "msg", "message"}
	levelKeys   = []string{"@level", "level", "severity"}
	timeKeys    = []string{"@timestamp", "time", "timestamp", "ts"}
)

// reservedKeys are the keys of our own records (or of the plugin
// logger's attributes): a plugin's key of the same name is logged as
// plugin_<key>.
var reservedKeys = map[string]bool{
	"time": true, "level": true, "msg": true, "source": true, "scope": true, "component": true,
	"logger": true, "plugin_time": true, "plugin_level": true,
}

// parsePluginJSON reads a line that is one JSON object; ok is false for
// any other line.
func parsePluginJSON(line string) (level slog.Level, msg string, attrs []slog.Attr, ok bool) {
	trimmed := strings.TrimSpace(line)
	if !strings.HasPrefix(trimmed, "{") || !strings.HasSuffix(trimmed, "}") {
		return 0, "", nil, false
	}
	dec := json.NewDecoder(strings.NewReader(trimmed))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || dec.More() {
		return 0, "", nil, false
	}
	take := func(keys []string, want func(any) bool) (string, any, bool) {
		for _, k := range keys {
			if v, found := obj[k]; found && want(v) {
				delete(obj, k)
				return k, v, true
			}
		}
		return "", nil, false
	}
	isString := func(v any) bool { _, s := v.(string); return s }
	level = slog.LevelDebug
	if _, v, found := take(messageKeys, isString); found {
		msg = v.(string)
	}
	if _, v, found := take(levelKeys, isString); found {
		lv, known := pluginLevel(v.(string))
		level = lv
		if !known {
			attrs = append(attrs, slog.String("plugin_level", v.(string)))
		}
	}
	if _, v, found := take(timeKeys, func(any) bool { return true }); found {
		attrs = append(attrs, slog.Any("plugin_time", v))
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := strings.TrimPrefix(k, "@")
		if name == "" || reservedKeys[name] {
			name = "plugin_" + name
		}
		attrs = append(attrs, pluginAttr(name, obj[k], 0))
	}
	return level, msg, attrs, true
}

// pluginAttr is one field of a plugin's JSON log line. A nested object
// becomes a group, key by key, so that the logger's redaction of secret
// keys (a "token" or "setup_script" inside {"req": {...}}) sees every key;
// deeper than a few levels it is left out.
func pluginAttr(name string, v any, depth int) slog.Attr {
	obj, ok := v.(map[string]any)
	if !ok {
		return slog.Any(name, v)
	}
	if depth >= 4 {
		return slog.String(name, "(nested too deep; left out)")
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]any, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, pluginAttr(k, obj[k], depth+1))
	}
	return slog.Group(name, attrs...)
}

// pluginLevel maps a plugin's level name to slog's; known is false for a
// name it does not know, which is logged at debug level.
func pluginLevel(name string) (level slog.Level, known bool) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "trace":
		return slog.LevelDebug - 4, true
	case "debug":
		return slog.LevelDebug, true
	case "info", "notice":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error", "err", "fatal", "panic", "critical", "crit", "alert", "emergency":
		return slog.LevelError, true
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(name)); err == nil {
		return lv, true // slog's own, e.g. INFO+2
	}
	return slog.LevelDebug, false
}

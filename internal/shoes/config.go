package shoes

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
)

// Config configures a Host.
type Config struct {
	// Path is the plugin executable, or an http(s) URL to download it from
	// (myshoes's PLUGIN).
	Path string
	// Args are passed to the plugin executable (e.g. "sim", "plugin").
	Args []string
	// PoolSize is the maximum number of plugin processes (default 4).
	PoolSize int
	// WarmProcesses are kept started ahead of demand once Warm is called,
	// so that a burst of calls does not wait for process starts (at most
	// PoolSize; default 0: processes start on demand).
	WarmProcesses int
	// IdleTimeout stops a process idle for longer, beyond WarmProcesses
	// (default 5m): the pool shrinks back after a burst.
	IdleTimeout time.Duration
	// AddTimeout bounds one AddInstance RPC (default 5m).
	AddTimeout time.Duration
	// DeleteTimeout bounds one DeleteInstance RPC (default 3m).
	DeleteTimeout time.Duration
	// StartTimeout bounds the start and handshake of one plugin process
	// (default 1m).
	StartTimeout time.Duration
	// CacheDir holds downloaded plugins (default
	// os.UserCacheDir()/shoes-scaleset/plugins).
	CacheDir string
	// Env is appended to our own environment for plugin processes.
	Env []string
	// DropEnv names variables of our own environment that plugin processes
	// must not inherit, such as our secrets: an exact name, or a prefix
	// ending in "*" ("GITHUB_PRIVATE_KEY*"). Env is added after them and is
	// not filtered. Default: nothing is dropped.
	DropEnv []string
	// SHA256 is the expected sha256 of the plugin executable, in hex; it
	// is checked against the local file or the download. Empty checks
	// nothing.
	SHA256 string
	// DownloadAttempts bounds the tries of a download that fails for a
	// reason that may pass: no connection, a timeout, a 5xx, 408 or 429
	// answer, a cut body (default 5).
	DownloadAttempts int
	// DownloadBackoff is the wait after the first failed try; it doubles
	// after each further one, with jitter, up to 15s (default 2s: about
	// 30s over the 5 tries).
	DownloadBackoff time.Duration
	// Logger receives host logs; go-plugin's own logs go to it at debug
	// level. Nil discards.
	Logger *slog.Logger
	// Recorder observes every plugin call. Nil records nothing.
	Recorder Recorder
	// HTTPClient downloads a plugin given by URL (default: a client with a
	// 5 minute timeout).
	HTTPClient *http.Client
}

// Recorder observes plugin calls, e.g. for metrics.
type Recorder interface {
	// ObservePluginCall is called once per AddInstance or DeleteInstance
	// with the outcome label from Code and the call's duration.
	ObservePluginCall(method, code string, d time.Duration)
	// PluginStartFailed is called once per plugin process that did not
	// complete its start, with one of the StartFailure* reasons.
	PluginStartFailed(reason string)
}

// Reasons given to Recorder.PluginStartFailed.
const (
	// StartFailureTimeout: the handshake did not complete within
	// Config.StartTimeout.
	StartFailureTimeout = "timeout"
	// StartFailureHandshake: the process exited, or wrote something else
	// than a go-plugin handshake.
	StartFailureHandshake = "handshake"
	// StartFailureExec: the executable could not be run at all.
	StartFailureExec = "exec"
	// StartFailureCanceled: the call gave up, or the host closed, while
	// the process was starting.
	StartFailureCanceled = "canceled"
)

// DefaultConfig returns the settings a zero Config gets: a zero field of
// Config means its value here. It is the one place these defaults are
// stated; the run command's flags take theirs from it. CacheDir, Logger,
// Recorder and HTTPClient are left zero: their defaults are built when
// the Config is used (the user cache directory, discard, no-op, a client
// with a 5 minute timeout).
func DefaultConfig() Config {
	return Config{
		PoolSize:         4,
		AddTimeout:       5 * time.Minute,
		DeleteTimeout:    3 * time.Minute,
		StartTimeout:     time.Minute,
		IdleTimeout:      5 * time.Minute,
		DownloadAttempts: 5,
		DownloadBackoff:  2 * time.Second,
	}
}

func (c *Config) defaults() {
	d := DefaultConfig()
	if c.PoolSize == 0 {
		c.PoolSize = d.PoolSize
	}
	if c.AddTimeout == 0 {
		c.AddTimeout = d.AddTimeout
	}
	if c.DeleteTimeout == 0 {
		c.DeleteTimeout = d.DeleteTimeout
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = d.StartTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.CacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		c.CacheDir = filepath.Join(base, "shoes-scaleset", "plugins")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Recorder == nil {
		c.Recorder = nopRecorder{}
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 5 * time.Minute}
	}
	if c.DownloadAttempts == 0 {
		c.DownloadAttempts = d.DownloadAttempts
	}
	if c.DownloadBackoff == 0 {
		c.DownloadBackoff = d.DownloadBackoff
	}
}

// FieldError is an invalid setting of this package's Config; Field names
// the Config field.
type FieldError = setting.FieldError

// Validate reports the first invalid field, as a *FieldError. It judges
// c as New uses it: a zero field stands for its default (c itself is not
// changed).
func (c Config) Validate() error {
	c.defaults()
	bad := setting.Invalid
	switch {
	case c.Path == "":
		return bad("Path", "plugin path is empty")
	case c.PoolSize < 1:
		return bad("PoolSize", "plugin pool size %d: must be at least 1", c.PoolSize)
	case c.AddTimeout <= 0:
		return bad("AddTimeout", "plugin add timeout %s: must be positive", c.AddTimeout)
	case c.DeleteTimeout <= 0:
		return bad("DeleteTimeout", "plugin delete timeout %s: must be positive", c.DeleteTimeout)
	case c.StartTimeout <= 0:
		return bad("StartTimeout", "plugin start timeout %s: must be positive", c.StartTimeout)
	case c.WarmProcesses < 0 || c.WarmProcesses > c.PoolSize:
		return bad("WarmProcesses", "warm plugin processes %d: must be from 0 to the pool size, %d", c.WarmProcesses, c.PoolSize)
	case c.IdleTimeout <= 0:
		return bad("IdleTimeout", "plugin idle timeout %s: must be positive", c.IdleTimeout)
	case c.DownloadAttempts < 1:
		return bad("DownloadAttempts", "plugin download attempts %d: must be at least 1", c.DownloadAttempts)
	case c.DownloadBackoff < 0:
		return bad("DownloadBackoff", "plugin download backoff %s: must not be negative", c.DownloadBackoff)
	}
	if c.SHA256 != "" {
		if b, err := hex.DecodeString(c.SHA256); err != nil || len(b) != sha256.Size {
			return bad("SHA256", "plugin sha256 %q: %w: want 64 hex digits", c.SHA256, ErrChecksumMismatch)
		}
	}
	for _, name := range c.DropEnv {
		if name == "" || strings.ContainsRune(strings.TrimSuffix(name, "*"), '*') || strings.Contains(name, "=") {
			return bad("DropEnv", "plugin environment filter %q: want a variable name or a prefix ending in *", name)
		}
	}
	return nil
}

type nopRecorder struct{}

func (nopRecorder) ObservePluginCall(string, string, time.Duration) {}
func (nopRecorder) PluginStartFailed(string)                        {}

// filterEnv returns env without the variables drop names: exactly, or by
// a prefix when the entry ends in "*".
func filterEnv(env, drop []string) []string {
	if len(drop) == 0 {
		return env
	}
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(drop, func(d string) bool {
			if prefix, ok := strings.CutSuffix(d, "*"); ok {
				return strings.HasPrefix(name, prefix)
			}
			return name == d
		}) {
			out = append(out, kv)
		}
	}
	return out
}

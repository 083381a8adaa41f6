package shoes

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"
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
}

func (c *Config) defaults() {
	if c.PoolSize == 0 {
		c.PoolSize = 4
	}
	if c.AddTimeout == 0 {
		c.AddTimeout = 5 * time.Minute
	}
	if c.DeleteTimeout == 0 {
		c.DeleteTimeout = 3 * time.Minute
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = time.Minute
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
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.Path == "":
		return errors.New("plugin path is empty")
	case c.PoolSize < 1:
		return fmt.Errorf("plugin pool size %d: must be at least 1", c.PoolSize)
	case c.AddTimeout <= 0:
		return fmt.Errorf("plugin add timeout %s: must be positive", c.AddTimeout)
	case c.DeleteTimeout <= 0:
		return fmt.Errorf("plugin delete timeout %s: must be positive", c.DeleteTimeout)
	case c.StartTimeout <= 0:
		return fmt.Errorf("plugin start timeout %s: must be positive", c.StartTimeout)
	}
	return nil
}

type nopRecorder struct{}

func (nopRecorder) ObservePluginCall(string, string, time.Duration) {}

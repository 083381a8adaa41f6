package github

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/actions/scaleset"
	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
)

// Defaults applied by Config.defaults.
const (
	DefaultURL          = "https://github.com"
	DefaultRetryMax     = 4
	DefaultRetryWaitMax = 30 * time.Second
	DefaultTimeout      = time.Minute
	// DefaultPollTimeout bounds one long-poll of the message queue. The broker
	// holds a poll for about 50 s, so this must stay well above that.
	DefaultPollTimeout = 70 * time.Second
)

// Config configures a Provider. Exactly one of (AppID, PrivateKeyPEM) or
// Token must be set.
type Config struct {
	// URL is GITHUB_URL: https://github.com, https://<tenant>.ghe.com, or a
	// GHES base such as https://ghes.example (API at URL/api/v3). It must have
	// no path. Empty means https://github.com.
	URL string

	// AppID and PrivateKeyPEM authenticate as a GitHub App. The key may be
	// PKCS#1 ("RSA PRIVATE KEY") or PKCS#8 ("PRIVATE KEY").
	AppID         int64
	PrivateKeyPEM []byte

	// Token is a personal access token, used instead of an app.
	Token string

	// RootCAs, when set, replaces the system roots for every request.
	RootCAs *x509.CertPool

	// RetryMax is the number of retries of a request that failed with a
	// transport error, 5xx or 429 (0 means DefaultRetryMax, < 0 means none).
	// The message-queue poll is never retried.
	RetryMax int
	// RetryWaitMax caps the wait between two retries (0 means DefaultRetryWaitMax).
	RetryWaitMax time.Duration

	// Timeout bounds one HTTP request (0 means DefaultTimeout).
	Timeout time.Duration
	// PollTimeout bounds one message-queue long-poll (0 means DefaultPollTimeout).
	PollTimeout time.Duration

	// SystemInfo is handed to the scaleset library (User-Agent).
	SystemInfo scaleset.SystemInfo

	// Logger receives debug lines and rate-limit warnings; nil discards them.
	Logger *slog.Logger
	// Recorder receives rate-limit observations; nil records nothing.
	Recorder Recorder
}

func (c *Config) defaults() {
	if strings.TrimSpace(c.URL) == "" {
		c.URL = DefaultURL
	}
	c.URL = strings.TrimRight(strings.TrimSpace(c.URL), "/")
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.RetryMax < 0 {
		c.RetryMax = -1
	}
	if c.RetryWaitMax == 0 {
		c.RetryWaitMax = DefaultRetryWaitMax
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.PollTimeout == 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Recorder == nil {
		c.Recorder = nopRecorder{}
	}
}

// retries is the effective retry count (never negative).
func (c *Config) retries() int {
	if c.RetryMax < 0 {
		return 0
	}
	return c.RetryMax
}

// DefaultConfig returns the settings a zero Config gets: a zero field of
// Config means its value here, from the Default constants. The run
// command's flags take their defaults from it. Logger and Recorder are
// left nil (discard, no-op).
func DefaultConfig() Config {
	return Config{
		URL:          DefaultURL,
		RetryMax:     DefaultRetryMax,
		RetryWaitMax: DefaultRetryWaitMax,
		Timeout:      DefaultTimeout,
		PollTimeout:  DefaultPollTimeout,
	}
}

// FieldError is an invalid setting of this package's Config; Field names
// the Config field.
type FieldError = setting.FieldError

// Validate reports the first problem with the configuration, as a
// *FieldError, judged with defaults applied (c itself is not changed).
func (c Config) Validate() error {
	c.defaults()
	bad := func(field string, err error) error { return &FieldError{Field: field, Err: err} }
	u, err := url.Parse(c.URL)
	if err != nil {
		return bad("URL", fmt.Errorf("github url %q: %w", c.URL, err))
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return bad("URL", fmt.Errorf("github url %q: scheme must be http or https", c.URL))
	}
	if u.Host == "" {
		return bad("URL", fmt.Errorf("github url %q: missing host", c.URL))
	}
	if u.User != nil {
		return bad("URL", fmt.Errorf("github url %q: user info is not supported", u.Redacted()))
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		return bad("URL", fmt.Errorf("github url %q: must be the server root, without a path, e.g. https://github.example.com", c.URL))
	}

	app := c.AppID != 0 || len(c.PrivateKeyPEM) > 0
	switch {
	case app && c.Token != "":
		return bad("Token", errors.New("github auth: set either a GitHub App (app ID and private key) or a token, not both"))
	case !app && c.Token == "":
		return bad("AppID", errors.New("github auth: set a GitHub App (app ID and private key) or a token"))
	case app && c.AppID <= 0:
		return bad("AppID", errors.New("github app: app ID must be a positive number"))
	case app && len(c.PrivateKeyPEM) == 0:
		return bad("PrivateKeyPEM", errors.New("github app: private key is required"))
	case app:
		if _, err := ParsePrivateKey(c.PrivateKeyPEM); err != nil {
			return bad("PrivateKeyPEM", fmt.Errorf("github app: %w", err))
		}
	}

	if c.RetryWaitMax < 0 {
		return bad("RetryWaitMax", errors.New("github retry wait max must not be negative"))
	}
	if c.Timeout < 0 {
		return bad("Timeout", errors.New("github timeouts must not be negative"))
	}
	if c.PollTimeout < 0 {
		return bad("PollTimeout", errors.New("github timeouts must not be negative"))
	}
	return nil
}

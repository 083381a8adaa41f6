package actionsfake

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Config configures a Server. The zero value of every duration means "use the default".
type Config struct {
	// AppID is the GitHub App ID accepted as the JWT "iss" claim (also in its string form).
	AppID int64
	// ClientID is an optional GitHub App client ID, also accepted as "iss".
	ClientID string
	// AppPublicKey verifies app JWTs (RS256). Nil disables GitHub App auth.
	AppPublicKey *rsa.PublicKey
	// Tokens are PATs accepted as Bearer for registration-token and downloads calls, for any scope.
	Tokens []string
	// Acquire enables GHES mode: jobs are offered as JobAvailable and only
	// assigned after the listener acquires them with acquirejobs.
	Acquire bool
	// PollHold is how long a broker poll is held when there is nothing to send. Default 50s.
	PollHold time.Duration
	// SessionTTL is how long a message session may go unpolled before it
	// expires, as GitHub's do: a poll in progress counts as polling, and the
	// time runs from the end of the last poll (or from creation). Zero means
	// the default, 10m; negative means sessions never expire.
	SessionTTL time.Duration
	// QueueTokenTTL is the lifetime of a message-queue token. After it the
	// queue answers 401 until the session is refreshed. Default 1h.
	QueueTokenTTL time.Duration
	// AdminTokenTTL is the lifetime of the admin JWT handed out by runner-registration. Default 1h.
	AdminTokenTTL time.Duration
	// AssignTimeout is how long an assigned job may wait for a runner before
	// it is completed as canceled and queued again. Default 5m.
	AssignTimeout time.Duration
	// MaxAssignAttempts is how many times a job is assigned before a timeout
	// cancels it for good. Default 3.
	MaxAssignAttempts int
	// ReofferInterval (GHES mode) is how often a job offered as
	// JobAvailable and not acquired is offered again. Default 30s.
	ReofferInterval time.Duration
	// BOM starts every body of the GitHub API, the Actions service and the
	// broker with the UTF-8 byte order mark, as the Actions service does
	// (actions/scaleset and ARC trim it before decoding).
	BOM bool
	// DropCustomLabels is GHES 3.18-3.20 without the
	// DistributedTask.AllowRunnerScaleSetCustomLabels feature flag: a scale
	// set keeps only its name as its label, whatever labels were sent
	// (the actions/scaleset README, on GHES labels).
	DropCustomLabels bool
	// NoAckThrough stops lastMessageId=N on a poll from acking the messages
	// up to N: only DELETE acks, and an unacked message comes back.
	NoAckThrough bool
	// RunnerVersion is served by the runner downloads API. Default "2.330.0".
	RunnerVersion string
	// RunnerGroups names runner groups besides the default one (ID 1);
	// they get IDs 2, 3, ... in this order, in every scope.
	RunnerGroups []string
	// Uninstalled lists owners (org, user or enterprise) where the app is not installed.
	Uninstalled []string
	// Installations lists owners where the app is installed from the start,
	// so GET /app/installations lists them before anyone looked them up.
	// Other owners are installed when first looked up (unless Uninstalled).
	Installations []string
	// Logger receives debug logs. Default: discard.
	Logger *slog.Logger
	// Now is the clock used for timestamps and token expiry. Default time.Now.
	// Timers (job durations, assign timeouts, poll holds) always use real time.
	Now func() time.Time
}

// Defaults of the Config durations, exported so that flags show the same values.
const (
	DefaultPollHold        = 50 * time.Second
	DefaultQueueTokenTTL   = time.Hour
	DefaultAssignTimeout   = 5 * time.Minute
	DefaultSessionTTL      = 10 * time.Minute
	DefaultReofferInterval = 30 * time.Second
)

const (
	defaultAdminTokenTTL     = time.Hour
	defaultMaxAssignAttempts = 3
	defaultRunnerVersion     = "2.330.0"

	installationTokenTTL = time.Hour
	registrationTokenTTL = time.Hour
	// coalesceWindow is how long a woken poll waits for more entries before it sends a message.
	coalesceWindow = 5 * time.Millisecond
	// maxRunnerWaitHold caps the hold of a runner wait call.
	maxRunnerWaitHold = 5 * time.Minute
	// maxEntriesPerMessage is how many job entries one broker message carries at most.
	maxEntriesPerMessage = 50
)

func (c *Config) defaults() {
	if c.PollHold == 0 {
		c.PollHold = DefaultPollHold
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.ReofferInterval == 0 {
		c.ReofferInterval = DefaultReofferInterval
	}
	if c.QueueTokenTTL == 0 {
		c.QueueTokenTTL = DefaultQueueTokenTTL
	}
	if c.AdminTokenTTL == 0 {
		c.AdminTokenTTL = defaultAdminTokenTTL
	}
	if c.AssignTimeout == 0 {
		c.AssignTimeout = DefaultAssignTimeout
	}
	if c.MaxAssignAttempts == 0 {
		c.MaxAssignAttempts = defaultMaxAssignAttempts
	}
	if c.RunnerVersion == "" {
		c.RunnerVersion = defaultRunnerVersion
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate applies defaults and reports the first invalid field.
func (c *Config) Validate() error {
	c.defaults()
	if c.AppPublicKey == nil && len(c.Tokens) == 0 {
		return errors.New("either AppPublicKey or Tokens is required")
	}
	if c.AppPublicKey != nil && c.AppID <= 0 && c.ClientID == "" {
		return errors.New("AppID or ClientID is required with AppPublicKey")
	}
	for _, g := range c.RunnerGroups {
		if g == "" || strings.EqualFold(g, defaultGroupName) {
			return fmt.Errorf("RunnerGroups: %q is not a name for another runner group", g)
		}
	}
	for _, t := range c.Tokens {
		if t == "" {
			return errors.New("Tokens must not contain an empty token")
		}
	}
	switch {
	case c.PollHold < 0:
		return errors.New("PollHold must not be negative")
	case c.QueueTokenTTL < 0:
		return errors.New("QueueTokenTTL must not be negative")
	case c.AdminTokenTTL < 0:
		return errors.New("AdminTokenTTL must not be negative")
	case c.AssignTimeout < 0:
		return errors.New("AssignTimeout must not be negative")
	case c.MaxAssignAttempts < 0:
		return errors.New("MaxAssignAttempts must not be negative")
	case c.ReofferInterval < 0:
		return errors.New("ReofferInterval must not be negative")
	}
	return nil
}

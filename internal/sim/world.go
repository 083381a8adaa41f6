// Package sim assembles the simulated peers of shoes-scaleset on one
// loopback address: the fake GitHub and Actions service (actionsfake), the
// fake myshoes REST API (myshoesfake), and a control API. Tests, `sim
// serve` and `demo` all start the same World. The fake shoes plugin
// (shoesfake) runs as its own process.
package sim

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/myshoesfake"
)

// Config configures a World.
type Config struct {
	// Listen is the loopback address to serve on; port 0 picks a free one.
	Listen string
	// AppID is the GitHub App ID the fake accepts.
	AppID int64
	// AppKey is the app's key; nil generates one. AppPublicKey alone is
	// enough to verify JWTs when the private key stays with the controller.
	AppKey       *rsa.PrivateKey
	AppPublicKey *rsa.PublicKey
	// Tokens are accepted as personal access tokens.
	Tokens []string
	// Acquire is GHES mode: jobs must be acquired.
	Acquire bool
	// PollHold, QueueTokenTTL and AssignTimeout tune the fake broker.
	PollHold, QueueTokenTTL, AssignTimeout time.Duration
	// MaxAssignAttempts is how often a job is assigned before an assign
	// timeout cancels it for good (default 3, as GitHub).
	MaxAssignAttempts int
	// SessionTTL, ReofferInterval, BOM, DropCustomLabels and NoAckThrough
	// are those of actionsfake.Config.
	SessionTTL, ReofferInterval         time.Duration
	BOM, DropCustomLabels, NoAckThrough bool
	// Targets are the scopes myshoes lists at start.
	Targets []string
	// ResourceType of the initial targets (default "small").
	ResourceType string
	// Logger receives the fakes' logs.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:0"
	}
	if c.AppID == 0 {
		c.AppID = 4242
	}
	if c.ResourceType == "" {
		c.ResourceType = "small"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate fills in defaults and checks the config.
func (c *Config) Validate() error {
	c.defaults()
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", c.Listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("listen address %q: the simulation serves on loopback only", c.Listen)
	}
	for _, s := range c.Targets {
		if err := myshoes.ValidScope(s); err != nil {
			return fmt.Errorf("target %q: %w", s, err)
		}
	}
	return nil
}

// World is a running simulation.
type World struct {
	Actions *actionsfake.Server
	Myshoes *myshoesfake.Server

	appID int64
	key   *rsa.PrivateKey
	url   string
	srv   *http.Server
	done  chan error
}

// Start starts a World serving on cfg.Listen.
func Start(cfg Config) (*World, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key, pub := cfg.AppKey, cfg.AppPublicKey
	if key == nil && pub == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, fmt.Errorf("generate app key: %w", err)
		}
	}
	if pub == nil {
		pub = &key.PublicKey
	}
	// GitHub lists every installation of the app: the targets' owners are
	// installed from the start, and those of targets added later when they
	// are added.
	owners := make([]string, 0, len(cfg.Targets))
	for _, scope := range cfg.Targets {
		owners = append(owners, myshoes.Target{Scope: scope}.Owner())
	}
	actions, err := actionsfake.New(actionsfake.Config{
		AppID:             cfg.AppID,
		AppPublicKey:      pub,
		Tokens:            cfg.Tokens,
		Acquire:           cfg.Acquire,
		PollHold:          cfg.PollHold,
		QueueTokenTTL:     cfg.QueueTokenTTL,
		AssignTimeout:     cfg.AssignTimeout,
		MaxAssignAttempts: cfg.MaxAssignAttempts,
		SessionTTL:        cfg.SessionTTL,
		ReofferInterval:   cfg.ReofferInterval,
		BOM:               cfg.BOM,
		DropCustomLabels:  cfg.DropCustomLabels,
		NoAckThrough:      cfg.NoAckThrough,
		Installations:     owners,
		Logger:            cfg.Logger.With("fake", "actions"),
	})
	if err != nil {
		return nil, fmt.Errorf("fake actions service: %w", err)
	}
	ms := myshoesfake.New(cfg.Logger.With("fake", "myshoes"))
	for _, scope := range cfg.Targets {
		ms.AddTarget(scope, cfg.ResourceType)
	}
	ms.OnTargetsChanged(func(targets []myshoes.Target) {
		owners := make([]string, 0, len(targets))
		for _, t := range targets {
			owners = append(owners, t.Owner())
		}
		actions.Install(owners...)
	})

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		actions.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	w := &World{
		Actions: actions,
		Myshoes: ms,
		appID:   cfg.AppID,
		key:     key,
		url:     "http://" + ln.Addr().String(),
		done:    make(chan error, 1),
	}
	actions.SetBaseURL(w.url)

	mux := http.NewServeMux()
	mux.Handle("/myshoes/", http.StripPrefix("/myshoes", ms.Handler()))
	mux.Handle("/", actions.Handler())
	w.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { w.done <- w.srv.Serve(ln) }()
	return w, nil
}

// URL is the base URL of the World, e.g. http://127.0.0.1:PORT.
func (w *World) URL() string { return w.url }

// GitHubURL is what the controller takes as --github-url.
func (w *World) GitHubURL() string { return w.url }

// MyshoesURL is what the controller takes as --myshoes-url.
func (w *World) MyshoesURL() string { return w.url + "/myshoes" }

// AppID is the GitHub App ID the fake accepts.
func (w *World) AppID() int64 { return w.appID }

// AppKeyPEM returns the app's private key as PKCS#1 PEM, or nil when the
// World was given only the public key.
func (w *World) AppKeyPEM() []byte {
	if w.key == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(w.key)})
}

// shutdownGrace bounds how long Close waits for requests in flight.
const shutdownGrace = 250 * time.Millisecond

// Close stops serving and the fakes' timers.
func (w *World) Close() error {
	// Release the fake's long polls (broker polls, runner waits) first:
	// Shutdown waits for active requests, and those are held for up to
	// PollHold or the runner's holdMs.
	w.Actions.Close()
	// A short grace for the requests in flight: a simulator has nothing
	// worth waiting for, and a request held by a handler that ignores the
	// release (a runner's long wait at C=128) would make every demo end
	// with seconds of silence. What is left is cut by Close.
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := w.srv.Shutdown(ctx)
	if err != nil {
		err = w.srv.Close()
	}
	if serveErr := <-w.done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	return err
}

// ParseAppKey reads an app key PEM: a private key (PKCS#1 or PKCS#8), or
// just a public key (PKIX or PKCS#1), which is enough to verify JWTs.
func ParseAppKey(data []byte) (*rsa.PrivateKey, *rsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, nil, errors.New("no PEM block found")
	}
	switch {
	case strings.Contains(block.Type, "PRIVATE"):
		if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			return k, &k.PublicKey, nil
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("parse private key: %w", err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, nil, errors.New("not an RSA key")
		}
		return rk, &rk.PublicKey, nil
	default:
		if k, err := x509.ParsePKCS1PublicKey(block.Bytes); err == nil {
			return nil, k, nil
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("parse public key: %w", err)
		}
		rk, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, nil, errors.New("not an RSA key")
		}
		return nil, rk, nil
	}
}

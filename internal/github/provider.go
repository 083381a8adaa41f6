// Package github talks to GitHub for shoes-scaleset: GitHub App auth
// (installation lookup and tokens), a scaleset.Client per scope, the runner
// version lookup, and the few Actions service calls that
// github.com/actions/scaleset v0.2.0 does not expose (the admin connection,
// a message session that keeps JobAvailable, acquirejobs, and deleting a
// session by ID).
package github

import (
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/actions/scaleset"
	"github.com/bradleyfalzon/ghinstallation/v2"
)

const (
	// maxIdleConnsPerHost is how many idle connections the transport
	// keeps per host (see New).
	maxIdleConnsPerHost = 64
	// connBufferSize is the size of each HTTP/1 connection's read and
	// write buffers (see New).
	connBufferSize = 2 << 10

	installationTTL  = time.Hour
	runnerVersionTTL = 24 * time.Hour
	// adminTokenLeeway: the admin token is renewed this long before its
	// exp. More than the scaleset library's 60 s: the library is handed
	// this connection (libraryAuth), which must not be due for renewal
	// in its eyes already.
	adminTokenLeeway = 2 * time.Minute
)

// Provider is the GitHub side of shoes-scaleset. It is safe for concurrent
// use. Its caches are guarded by mu, which is never held across a network call.
type Provider struct {
	cfg       Config
	log       *slog.Logger
	libLog    *slog.Logger // for the scaleset library: Info lowered to Debug
	base      string       // GitHub base URL without a trailing slash
	api       string       // REST API root without a trailing slash
	key       *rsa.PrivateKey
	keyPEM    string // PKCS#1 PEM of key, for the scaleset library
	userAgent string

	transport *http.Transport
	gated     http.RoundTripper // transport behind the meter and the rate-limit gate, BOMs trimmed
	gates     *rateGates
	httpc     *http.Client // one request, cfg.Timeout, our retries on top
	pollc     *pollSender  // the long-poll: never retried; cfg.PollTimeout through request.timeout
	appc      *http.Client // signs each request with a fresh app JWT

	now func() time.Time

	mu        sync.Mutex
	installs  map[string]cachedInstallation
	instTrans map[int64]*ghinstallation.Transport
	admins    map[string]adminConn
	clients   map[string]*cachedClient
	// sweep drops the library clients unused for clientIdleTimeout; it
	// is armed while any is cached.
	sweep    *time.Timer
	versions map[string]cachedVersion
}

type cachedInstallation struct {
	id      int64
	expires time.Time
}

type cachedClient struct {
	client         *scaleset.Client
	installationID int64
	lastUse        time.Time
}

// clientIdleTimeout is how long a scope's library client is kept unused.
// A target uses it at start (its scale set) and then seldom (removing a
// runner, a label change), and each one holds a few KB (its HTTP client
// and retry settings, its logger, its copy of the admin token): 4.7 MiB of
// live heap at 1,000 idle targets, kept for nothing (issue 15's profile).
// Building one again makes no REST call: libraryAuth answers its
// authentication from the provider's caches.
const clientIdleTimeout = time.Minute

type cachedVersion struct {
	version string
	expires time.Time
}

// New validates cfg (after applying defaults) and returns a Provider. It
// makes no network call.
func New(cfg Config) (*Provider, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("github config: %w", err)
	}
	base, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("github config: %w", err)
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs}
	// Every target's long poll goes to the same host (the broker), and
	// their answers come in bursts (sessions opened together are held
	// the same 50 s). With the default of 2 idle connections per host,
	// most connections that polls handed back in a burst were closed and
	// the next polls dialled new ones: at 1,000 idle targets over HTTP/1,
	// 250 to 650 new connections a minute for 1,200 polls (issue 15).
	// Idle connections still close after IdleConnTimeout.
	transport.MaxIdleConns = 0 // no overall cap; the per-host one holds
	transport.MaxIdleConnsPerHost = maxIdleConnsPerHost
	// Over HTTP/1 every target's long poll holds a connection of its own,
	// and with it a read and a write buffer: 4 KiB each by default, 8 MiB
	// of live heap at 1,000 targets, twice that in RSS at GOGC=100
	// (issue 15's profile). Our requests and the answers' headers fit in
	// 2 KiB; a longer header line or body is still read whole, in more
	// reads.
	transport.ReadBufferSize = connBufferSize
	transport.WriteBufferSize = connBufferSize

	gates := newRateGates(cfg.Recorder, cfg.Logger, time.Now)
	gated := &gateTransport{base: &meterTransport{base: transport, rec: cfg.Recorder}, gates: gates}
	p := &Provider{
		cfg:       cfg,
		log:       cfg.Logger,
		libLog:    slog.New(quietHandler{cfg.Logger.Handler()}),
		base:      cfg.URL,
		api:       apiBaseURL(base),
		userAgent: userAgent(cfg.SystemInfo),
		transport: transport,
		gated:     gated,
		gates:     gates,
		httpc:     &http.Client{Transport: gated, Timeout: cfg.Timeout},
		pollc:     &pollSender{rt: gated}, // each poll bounded by request.timeout
		now:       time.Now,
		installs:  map[string]cachedInstallation{},
		instTrans: map[int64]*ghinstallation.Transport{},
		admins:    map[string]adminConn{},
		clients:   map[string]*cachedClient{},
		versions:  map[string]cachedVersion{},
	}

	if cfg.Token == "" {
		key, err := ParsePrivateKey(cfg.PrivateKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("github config: %w", err)
		}
		p.key = key
		p.keyPEM = pkcs1PEM(key)
		apps := ghinstallation.NewAppsTransportFromPrivateKey(gated, cfg.AppID, key)
		apps.BaseURL = p.api
		p.appc = &http.Client{Transport: apps, Timeout: cfg.Timeout}
	}
	return p, nil
}

// Forget drops everything cached for scope (installation, admin connection,
// library client, runner version), so that the next call starts afresh.
func (p *Provider) Forget(scope string) {
	sc, err := parseScope(scope)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.installs, sc.raw)
	delete(p.admins, sc.raw)
	delete(p.clients, sc.raw)
	delete(p.versions, sc.raw)
}

// CloseIdleConnections releases pooled connections (for shutdown and tests).
func (p *Provider) CloseIdleConnections() {
	p.transport.CloseIdleConnections()
}

func userAgent(si scaleset.SystemInfo) string {
	system, version := si.System, si.Version
	if system == "" {
		system = "shoes-scaleset"
	}
	if version == "" {
		version = "devel"
	}
	ua := system + "/" + version
	if si.Subsystem != "" {
		ua += " (" + si.Subsystem + ")"
	}
	return ua
}

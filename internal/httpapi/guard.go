package httpapi

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
)

// minTokenLen is the shortest token Config accepts; NewToken makes 64
// hex characters.
const minTokenLen = 32

// Config says who may call the API. The API is meant for the host it runs
// on: a browser page from elsewhere must not reach it, neither by sending
// a cross-site request (CSRF) nor by pointing a name of its own at the
// listen address (DNS rebinding).
type Config struct {
	// Listen is the address the API listens on, host:port. Besides
	// localhost and loopback addresses, a request's Host may name this host
	// (the listen address of a daemon that listens on a non-loopback
	// address), or the address the request arrived on. Empty: loopback
	// names and the arrival address only.
	Listen string
	// Token is the per-start secret a mutating request (any method but GET
	// and HEAD) must carry as "Authorization: Bearer <Token>". Empty
	// refuses every mutating request.
	Token string
	// Logger logs refused requests at debug level. Default: discard.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// FieldError is an invalid setting of this package's Config; Field names
// the Config field.
type FieldError = setting.FieldError

// Validate reports whether the config can build the handler; an invalid
// setting is a *FieldError.
func (c Config) Validate() error {
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return &FieldError{Field: "Listen", Err: fmt.Errorf("api listen address %q: %w", c.Listen, err)}
		}
	}
	if c.Token != "" && len(c.Token) < minTokenLen {
		return &FieldError{Field: "Token", Err: fmt.Errorf("api token: shorter than %d characters", minTokenLen)}
	}
	if strings.ContainsAny(c.Token, " \t\r\n") {
		return &FieldError{Field: "Token", Err: errors.New("api token: contains white space")}
	}
	return nil
}

// guard refuses, before any route sees them:
//   - a request whose Host is not this API's (403): a page that rebinds a
//     name of its own to the listen address sends that name;
//   - a mutating request with an Origin header (403): browsers send one
//     with every cross-site POST, curl and the CLI never do;
//   - a mutating request without the token (401).
//
// GET and HEAD need no token: the CLI's inspection commands, probes and
// Prometheus keep working with the Host check alone.
type guard struct {
	listenHost string // the host of Config.Listen, lower case, no brackets
	token      []byte
	next       http.Handler
	log        *slog.Logger
}

func newGuard(cfg Config, next http.Handler) *guard {
	g := &guard{token: []byte(cfg.Token), next: next, log: cfg.Logger}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if ip, perr := netip.ParseAddr(host); err == nil && (perr != nil || !ip.IsUnspecified()) {
		// 0.0.0.0 or [::] names no host: the arrival address stands in.
		g.listenHost = strings.ToLower(host)
	}
	return g
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.hostAllowed(r) {
		g.refuse(w, r, http.StatusForbidden, "the Host header does not name this API: use its listen address, localhost or a loopback address")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if r.Header.Get("Origin") != "" {
			g.refuse(w, r, http.StatusForbidden, "cross-origin requests may not change anything")
			return
		}
		if !g.tokenOK(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoes-scaleset"`)
			g.refuse(w, r, http.StatusUnauthorized, "this request needs the daemon's API token (Authorization: Bearer, from the token file next to the state file); shoes-scaleset runners rm sends it")
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

func (g *guard) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	// The Host is the client's; bound what reaches the log.
	g.log.Debug("api: request refused", "method", r.Method, "path", r.URL.Path, "host", clip(r.Host, 100), "status", status)
	writeError(w, status, errors.New(msg))
}

// hostAllowed reports whether the request's Host, with or without its
// port, is localhost, a loopback address, the listen host, or the local
// address the request arrived on.
func (g *guard) hostAllowed(r *http.Request) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	host = strings.ToLower(host)
	switch {
	case host == "":
		return false
	case host == "localhost":
		return true
	case host == g.listenHost:
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false // a name that is neither localhost nor the listen host
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return true
	}
	// An address literal cannot be a rebound name: accept the one the
	// request arrived on (a daemon listening on 0.0.0.0 or a LAN address,
	// scraped at http://<that address>:9780).
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(local.String()); err == nil && ap.Addr().Unmap().WithZone("") == ip.WithZone("") {
			return true
		}
	}
	return false
}

// tokenOK reports whether the request carries the token.
func (g *guard) tokenOK(r *http.Request) bool {
	if len(g.token) == 0 {
		return false
	}
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), g.token) == 1
}

// SetToken puts the API token on a request, as the guard wants it.
func SetToken(h http.Header, token string) {
	h.Set("Authorization", "Bearer "+token)
}

// clip bounds s to n bytes, for log lines.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "?") + "..."
}

package myshoes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

const (
	defaultTimeout      = 10 * time.Second
	defaultUserAgent    = "shoes-scaleset"
	defaultMaxBodyBytes = 16 << 20

	// errorSnippetBytes bounds how much of an unexpected body an error quotes.
	errorSnippetBytes = 200
	// errorBodyBytes bounds how much of a non-200 body is read.
	errorBodyBytes = 4 << 10
)

// Config configures a Client.
type Config struct {
	// BaseURL is the myshoes API root, an absolute http(s) URL that may carry
	// a path prefix, e.g. "http://127.0.0.1:8080" or "http://host/myshoes".
	BaseURL string
	// Timeout bounds each request, including reading the body. Default 10s.
	Timeout time.Duration
	// HTTPClient sends the requests. Default: a new client on
	// http.DefaultTransport.
	HTTPClient *http.Client
	// UserAgent is sent on every request. Default "shoes-scaleset".
	UserAgent string
	// MaxBodyBytes bounds a response body; a longer body is an error.
	// Default 16 MiB.
	MaxBodyBytes int64
	// Logger logs the targets ListTargets skips. Default: discard.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.UserAgent == "" {
		c.UserAgent = defaultUserAgent
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = defaultMaxBodyBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports whether the config can build a Client.
func (c Config) Validate() error {
	if c.BaseURL == "" {
		return errors.New("myshoes base URL is empty")
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return fmt.Errorf("myshoes base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("myshoes base URL %q: scheme must be http or https", c.BaseURL)
	}
	if u.Host == "" {
		return fmt.Errorf("myshoes base URL %q: no host", c.BaseURL)
	}
	if u.User != nil {
		return fmt.Errorf("myshoes base URL %q: user info is not supported", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("myshoes base URL %q: query and fragment are not supported", c.BaseURL)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("myshoes timeout %v is negative", c.Timeout)
	}
	if c.MaxBodyBytes < 0 {
		return fmt.Errorf("myshoes max body bytes %d is negative", c.MaxBodyBytes)
	}
	return nil
}

// Client talks to the myshoes REST API. It is safe for concurrent use.
type Client struct {
	base    string // no trailing slash
	http    *http.Client
	timeout time.Duration
	ua      string
	maxBody int64
	log     *slog.Logger
	// skips counts the lists that had targets to skip, to rate-limit the
	// warning about them.
	skips atomic.Int64
}

// New builds a Client from cfg.
func New(cfg Config) (*Client, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("myshoes base URL: %w", err)
	}
	return &Client{
		base:    strings.TrimRight(base.String(), "/"),
		http:    cfg.HTTPClient,
		timeout: cfg.Timeout,
		ua:      cfg.UserAgent,
		maxBody: cfg.MaxBodyBytes,
		log:     cfg.Logger,
	}, nil
}

// APIError is a response whose status is not the expected one. A 5xx is
// never "not found": myshoes answers an unknown target ID with 500.
type APIError struct {
	Method     string
	URL        string
	StatusCode int
	// Message is the "error" field of a JSON error body, if there was one.
	Message string
	// Snippet is the start of the body (at most ~200 bytes), for diagnosis.
	Snippet string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Snippet
	}
	s := fmt.Sprintf("%s %s: status %d %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if msg != "" {
		s += fmt.Sprintf(": %q", msg)
	}
	return s
}

// ListTargets returns the targets myshoes lists on GET /target: those that
// can receive jobs (active, running, error), newest first. myshoes's literal
// null is an empty, non-nil slice.
//
// Anything but a well-formed 200 JSON array is an error, so the caller can
// keep the targets it had. A target with an empty or duplicate ID makes the
// whole answer malformed. A target whose ID is longer than MaxIDBytes is
// left out, with a warning. A target with an invalid scope is returned for
// the caller to judge (see Target.Validate).
//
// The string fields of every target are bounded (see MaxFieldBytes and
// MaxStatusDescriptionBytes): a longer value is cut, with a marker, so that
// nothing downstream (state file, API, logs) holds it whole. A cut scope
// is always invalid.
func (c *Client) ListTargets(ctx context.Context) ([]Target, error) {
	var targets []Target
	if err := c.getJSON(ctx, "/target", &targets); err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	seen := make(map[string]struct{}, len(targets))
	out := make([]Target, 0, len(targets))
	var skipped []string // the first few, cut
	nSkipped := 0
	for i, t := range targets {
		if t.ID == "" {
			return nil, fmt.Errorf("list targets: target %d of %d has no id", i+1, len(targets))
		}
		if len(t.ID) > MaxIDBytes {
			if nSkipped++; len(skipped) < 3 {
				skipped = append(skipped, truncateTo(t.ID, 40))
			}
			continue
		}
		if _, dup := seen[t.ID]; dup {
			return nil, fmt.Errorf("list targets: target id %s appears twice", t.ID)
		}
		seen[t.ID] = struct{}{}
		out = append(out, t.bounded())
	}
	if nSkipped > 0 {
		if n := c.skips.Add(1); n == 1 || n%10 == 0 {
			c.log.Warn("skip targets whose id is too long to be a myshoes target id",
				"skipped", nSkipped, "ids", skipped, "max_bytes", MaxIDBytes, "lists", n)
		}
	}
	return out, nil
}

// GetTarget returns one target of any status. myshoes answers a malformed ID
// with 400 and an unknown one with 500; both are an *APIError.
func (c *Client) GetTarget(ctx context.Context, id string) (Target, error) {
	if id == "" {
		return Target{}, errors.New("get target: id is empty")
	}
	var t Target
	if err := c.getJSON(ctx, "/target/"+url.PathEscape(id), &t); err != nil {
		return Target{}, fmt.Errorf("get target %s: %w", id, err)
	}
	if t.ID == "" {
		return Target{}, fmt.Errorf("get target %s: answer has no id", id)
	}
	if len(t.ID) > MaxIDBytes {
		return Target{}, fmt.Errorf("get target %s: answer has an id longer than %d bytes", id, MaxIDBytes)
	}
	return t.bounded(), nil
}

// Health checks GET /healthz.
func (c *Client) Health(ctx context.Context) error {
	var h struct {
		Health string `json:"health"`
	}
	if err := c.getJSON(ctx, "/healthz", &h); err != nil {
		return fmt.Errorf("myshoes health: %w", err)
	}
	if h.Health != "ok" {
		return fmt.Errorf("myshoes health: %q", h.Health)
	}
	return nil
}

// getJSON GETs path (relative to the base URL), expects a 200 JSON answer
// and decodes it into v. Errors name the method and URL.
func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	u := c.url(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)

	resp, err := c.http.Do(req)
	if err != nil {
		return err // *url.Error already names the method and URL
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		// Only the start of an error body is worth reading.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyBytes))
		return newAPIError(req, resp.StatusCode, body)
	}
	body, err := c.readBody(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: read body: %w", u, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return fmt.Errorf("GET %s: content type %q is not JSON: %q", u, ct, snippet(body))
		}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decode %d bytes: %w: %q", u, len(body), err, snippet(body))
	}
	return nil
}

// readBody reads at most maxBody bytes; a longer body is an error.
func (c *Client) readBody(r io.Reader) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, c.maxBody+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > c.maxBody {
		return nil, fmt.Errorf("body exceeds %d bytes", c.maxBody)
	}
	return body, nil
}

// url joins the base URL and an already escaped path.
func (c *Client) url(path string) string {
	return c.base + path
}

func newAPIError(req *http.Request, code int, body []byte) *APIError {
	e := &APIError{
		Method:     req.Method,
		URL:        req.URL.String(),
		StatusCode: code,
		Snippet:    snippet(body),
	}
	var eb struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		e.Message = truncate(eb.Error)
	}
	return e
}

// snippet is the start of body, trimmed and made valid UTF-8, for error
// messages that must not dump whole bodies.
func snippet(body []byte) string {
	return truncate(strings.TrimSpace(string(body)))
}

func truncate(s string) string {
	return truncateTo(s, errorSnippetBytes)
}

// TruncatedMarker ends a string that was cut.
const TruncatedMarker = "...(truncated)"

// truncateTo returns s as valid UTF-8, cut to at most max bytes on a rune
// boundary and then marked with TruncatedMarker if it is longer.
func truncateTo(s string, max int) string {
	if len(s) <= max {
		return strings.ToValidUTF8(s, "?")
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(s[:cut], "?") + TruncatedMarker
}

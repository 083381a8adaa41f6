package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Definite outcomes. Each is wrapped with context; match with errors.Is.
// Any other error (transport failure, timeout, 5xx, 429, an unexpected
// answer) is transient: see IsTransient.
var (
	// ErrNotInstalled: the GitHub App has no installation for the scope.
	ErrNotInstalled = errors.New("github app is not installed for this scope")
	// ErrUnauthorized: GitHub refused the credentials (bad key, wrong app,
	// revoked token), or a refreshed message-queue token was refused again.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrNotFound: the server answered that the resource does not exist.
	ErrNotFound = errors.New("not found")
	// ErrSessionConflict: another message session holds the scale set (409).
	ErrSessionConflict = errors.New("message session already exists")
	// ErrSessionGone: GitHub no longer knows the message session: it
	// expired (nobody polled it) or was evicted server-side. Its refresh
	// answers 404; a new session must be created.
	ErrSessionGone = errors.New("message session expired or was evicted")
	// ErrRunnerGroupNotFound: no runner group has the requested name.
	ErrRunnerGroupNotFound = errors.New("runner group not found")
	// ErrInvalidScope: a scope is not "org", "owner/repo" or "enterprises/e".
	ErrInvalidScope = errors.New("invalid scope")
	// ErrInvalidRunnerVersion: RUNNER_VERSION is neither "latest" nor X.Y.Z.
	ErrInvalidRunnerVersion = errors.New("invalid runner version")
)

// IsTransient reports whether err may go away if the same call is retried
// later unchanged: transport errors, timeouts, 5xx, 429 and unexpected
// answers. It is false for nil, context.Canceled, the definite sentinels
// above (the caller decides what each means), an UnsupportedMessageError and
// other 4xx answers.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	for _, definite := range []error{
		ErrNotInstalled, ErrUnauthorized, ErrNotFound, ErrSessionConflict, ErrSessionGone,
		ErrRunnerGroupNotFound, ErrInvalidScope, ErrInvalidRunnerVersion,
	} {
		if errors.Is(err, definite) {
			return false
		}
	}
	var um *UnsupportedMessageError
	if errors.As(err, &um) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.retryable()
	}
	return true
}

// IsRateLimited reports whether err is a rate-limited answer (429, or 403
// with no budget left). Such a call is retried once GitHub's wait is over;
// it says nothing about the health of the session or the scale set.
func IsRateLimited(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.rateLimited
}

// StatusError is an unexpected HTTP answer. URL carries no query string.
type StatusError struct {
	Method     string
	URL        string
	StatusCode int
	// TypeName and Message come from the error body when it has them
	// (Actions service {"typeName","message"}, GitHub {"message"}).
	TypeName string
	Message  string

	rateLimited bool
}

func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.TypeName != "" {
		b.WriteString(": " + e.TypeName)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// Is maps 404 to ErrNotFound and 401 to ErrUnauthorized.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	}
	return false
}

func (e *StatusError) retryable() bool {
	switch {
	case e.StatusCode >= 500, e.StatusCode == http.StatusTooManyRequests,
		e.StatusCode == http.StatusRequestTimeout, e.rateLimited:
		return true
	}
	return false
}

// UnsupportedMessageError is returned by GetMessage for a message whose type
// is not RunnerScaleSetJobMessages. The caller may acknowledge MessageID so
// the message is not delivered again.
type UnsupportedMessageError struct {
	MessageID   int64
	MessageType string
}

func (e *UnsupportedMessageError) Error() string {
	return fmt.Sprintf("unsupported message type %q (message %d)", e.MessageType, e.MessageID)
}

const maxErrorMessage = 512

func newStatusError(req *http.Request, resp *response) *StatusError {
	e := &StatusError{
		Method:     req.Method,
		URL:        redactURL(req.URL.String()),
		StatusCode: resp.status,
	}
	e.rateLimited = isRateLimited(resp.status, resp.header)
	var body struct {
		TypeName string `json:"typeName"`
		Message  string `json:"message"`
	}
	if json.Unmarshal(resp.body, &body) == nil && (body.TypeName != "" || body.Message != "") {
		e.TypeName, e.Message = body.TypeName, truncate(body.Message)
	} else {
		e.Message = truncate(strings.TrimSpace(string(resp.body)))
	}
	return e
}

func truncate(s string) string {
	if len(s) <= maxErrorMessage {
		return s
	}
	s = s[:maxErrorMessage]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// redactURL drops the query and any user info so that an error or log line
// never carries a credential.
func redactURL(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		if at := strings.Index(rest, "@"); at >= 0 && (strings.Index(rest, "/") < 0 || at < strings.Index(rest, "/")) {
			raw = raw[:i+3] + rest[at+1:]
		}
	}
	return raw
}

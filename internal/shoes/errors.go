package shoes

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// ErrPermanent marks a failure that will never succeed on retry, such as
	// InvalidArgument from AddInstance.
	ErrPermanent = errors.New("permanent plugin failure")
	// ErrRetryable marks a failure that may succeed on retry: any plugin
	// error other than a permanent one, including a crashed or hung plugin.
	ErrRetryable = errors.New("retryable plugin failure")
	// ErrBadResponse marks a call the plugin answered with an unusable
	// response (for example an empty cloud ID). It also wraps ErrRetryable;
	// an instance may exist that we cannot name.
	ErrBadResponse = errors.New("bad plugin response")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("plugin host closed")
	// ErrNotSent marks a call aborted before it was sent, by an error of
	// AddInstanceRequest.BeforeSend.
	ErrNotSent = errors.New("plugin call not sent")
	// ErrConfig marks an error of New that retrying cannot fix: an invalid
	// Config, a plugin path that is not an executable, a URL answered 404
	// or with something that is not an executable, a checksum mismatch;
	// and an error of Check: a plugin process that did not start.
	// Any other error of New (a download that kept failing for a reason
	// that may pass) is a runtime failure.
	ErrConfig = errors.New("plugin configuration error")
	// ErrChecksumMismatch marks a plugin executable whose sha256 is not
	// Config.SHA256, or a Config.SHA256 that is not one. It comes with
	// ErrConfig.
	ErrChecksumMismatch = errors.New("plugin checksum mismatch")
)

// configError marks err as a configuration error (ErrConfig) without
// changing its message.
type configError struct{ err error }

func (e *configError) Error() string   { return e.err.Error() }
func (e *configError) Unwrap() []error { return []error{ErrConfig, e.err} }

// asConfigError marks a non-nil err with ErrConfig.
func asConfigError(err error) error {
	if err == nil || errors.Is(err, ErrConfig) {
		return err
	}
	return &configError{err: err}
}

// Codes reported by Code besides the gRPC code names.
const (
	CodeOK          = "OK"
	CodeCrash       = "Crash"       // the plugin process died during the call
	CodeStartFailed = "StartFailed" // the plugin process could not be started
	CodeBadResponse = "BadResponse" // the plugin answered with an unusable response
	CodeClosed      = "Closed"      // the host was closed
)

// CallError is a failed plugin call.
type CallError struct {
	Method    string // "AddInstance" or "DeleteInstance"
	Code      string // gRPC code name or one of the Code* constants
	Permanent bool
	Err       error
}

func (e *CallError) Error() string {
	msg := e.Err.Error()
	if s, ok := status.FromError(e.Err); ok {
		msg = s.Message()
	}
	return fmt.Sprintf("plugin %s: %s: %s", e.Method, e.Code, msg)
}

// Unwrap exposes the cause and ErrPermanent or ErrRetryable.
func (e *CallError) Unwrap() []error {
	kind := ErrRetryable
	if e.Permanent {
		kind = ErrPermanent
	}
	return []error{kind, e.Err}
}

// Code returns a short label for the outcome of a plugin call, suitable as a
// metrics label: "OK" for nil, the gRPC code name ("InvalidArgument",
// "Unavailable", "DeadlineExceeded", ...) or one of the Code* constants.
func Code(err error) string {
	if err == nil {
		return CodeOK
	}
	if ce, ok := errors.AsType[*CallError](err); ok {
		return ce.Code
	}
	switch {
	case errors.Is(err, ErrClosed):
		return CodeClosed
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded.String()
	case errors.Is(err, context.Canceled):
		return codes.Canceled.String()
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	return codes.Unknown.String()
}

// isTransport reports whether a call error means the process can no longer
// be trusted with another call: it crashed, closed the connection, stopped
// answering, or may still be working on an abandoned call.
func isTransport(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

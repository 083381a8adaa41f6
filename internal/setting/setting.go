// Package setting holds the error every component's Validate returns for
// an invalid setting, so that a caller can name the setting its own way:
// the run command names the flag and the environment variable that set it.
package setting

import (
	"errors"
	"fmt"
)

// FieldError is an invalid setting. Field is the Go name of the field in
// the component's Config (or Options).
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Invalid returns a *FieldError about field.
func Invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// FieldOf returns the field err is about, "" if err is not a *FieldError.
func FieldOf(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

package setting

import (
	"errors"
	"fmt"
	"testing"
)

func TestInvalidIsAFieldError(t *testing.T) {
	err := fmt.Errorf("controller config: %w", Invalid("MaxRunners", "must be at least %d", 1))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "MaxRunners" || fe.Error() != "must be at least 1" {
		t.Fatalf("errors.As(%v) = %+v", err, fe)
	}
}

func TestFieldOf(t *testing.T) {
	if got := FieldOf(fmt.Errorf("x: %w", Invalid("Path", "required"))); got != "Path" {
		t.Errorf("FieldOf = %q, want Path", got)
	}
	if got := FieldOf(errors.New("plain")); got != "" {
		t.Errorf("FieldOf(plain error) = %q, want empty", got)
	}
}

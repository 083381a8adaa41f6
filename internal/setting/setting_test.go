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

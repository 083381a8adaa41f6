package httpapi_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
)

// TestValidateNamesTheField: an invalid setting is a *FieldError naming
// the Config field.
func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		cfg   httpapi.Config
		field string
	}{
		{httpapi.Config{Listen: "127.0.0.1"}, "Listen"},
		{httpapi.Config{Token: "short"}, "Token"},
		{httpapi.Config{Token: strings.Repeat("a", 40) + " b"}, "Token"},
	}
	for _, tt := range tests {
		var fe *httpapi.FieldError
		if err := tt.cfg.Validate(); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("Validate(%+v) = %v, want a *FieldError about %s", tt.cfg, err, tt.field)
		}
	}
}

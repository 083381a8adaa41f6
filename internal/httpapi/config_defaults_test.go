package httpapi_test

import (
	"strings"
	"testing"

	"github.com/shoes-scaleset/shoes-scaleset/internal/httpapi"
	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
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
		if err := tt.cfg.Validate(); setting.FieldOf(err) != tt.field {
			t.Errorf("Validate(%+v) = %v, want an error about %s", tt.cfg, err, tt.field)
		}
	}
}

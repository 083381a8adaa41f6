package shoes

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// TestDefaultConfigIsWhatZeroGets: defaults fills a zero Config from
// DefaultConfig, the one statement of each default.
func TestDefaultConfigIsWhatZeroGets(t *testing.T) {
	c := Config{Path: "x"}
	c.defaults()
	testkit.SameSettings(t, c, DefaultConfig())
}

// TestValidateNamesTheField: Validate judges a Config as New uses it (a
// zero field is its default), and an invalid setting is a *FieldError
// naming the field.
func TestValidateNamesTheField(t *testing.T) {
	if err := (Config{Path: "x"}).Validate(); err != nil {
		t.Fatalf("Validate of a Config with zero settings: %v", err)
	}
	tests := []struct {
		cfg   Config
		field string
	}{
		{Config{}, "Path"},
		{Config{Path: "x", PoolSize: -1}, "PoolSize"},
		{Config{Path: "x", AddTimeout: -time.Second}, "AddTimeout"},
		{Config{Path: "x", DeleteTimeout: -time.Second}, "DeleteTimeout"},
		{Config{Path: "x", StartTimeout: -time.Second}, "StartTimeout"},
		{Config{Path: "x", DownloadAttempts: -1}, "DownloadAttempts"},
		{Config{Path: "x", DownloadBackoff: -time.Second}, "DownloadBackoff"},
		{Config{Path: "x", SHA256: "abc"}, "SHA256"},
		{Config{Path: "x", DropEnv: []string{"A*B"}}, "DropEnv"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			err := tt.cfg.Validate()
			if got := setting.FieldOf(err); got != tt.field {
				t.Fatalf("Validate = %v (about %q), want an error about %s", err, got, tt.field)
			}
			if !strings.Contains(err.Error(), "plugin") {
				t.Errorf("Validate = %q, want a message naming the plugin setting", err)
			}
		})
	}
	if err := (Config{Path: "x", SHA256: "abc"}).Validate(); !errors.Is(err, ErrChecksumMismatch) {
		t.Errorf("Validate of a bad SHA256 = %v, want ErrChecksumMismatch", err)
	}
}

package github

import (
	"testing"

	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// TestConfigDefaultsAndFields: defaults fills a zero Config from
// DefaultConfig, and an invalid setting is a *setting.FieldError naming
// the Config field.
func TestConfigDefaultsAndFields(t *testing.T) {
	c := Config{Token: "x"}
	c.defaults()
	testkit.SameSettings(t, c, DefaultConfig())
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"no scheme", Config{Token: "x", URL: "github.com"}, "URL"},
		{"path", Config{Token: "x", URL: "https://ghes.example/api/v3"}, "URL"},
		{"user info", Config{Token: "x", URL: "https://u:p@ghes.example"}, "URL"},
		{"no auth", Config{}, "AppID"},
		{"app and token", Config{Token: "x", AppID: 1}, "Token"},
		{"negative app ID", Config{AppID: -1, PrivateKeyPEM: []byte("k")}, "AppID"},
		{"no key", Config{AppID: 1}, "PrivateKeyPEM"},
		{"key not PEM", Config{AppID: 1, PrivateKeyPEM: []byte("not pem")}, "PrivateKeyPEM"},
		{"negative retry wait", Config{Token: "x", RetryWaitMax: -1}, "RetryWaitMax"},
		{"negative timeout", Config{Token: "x", Timeout: -1}, "Timeout"},
		{"negative poll timeout", Config{Token: "x", PollTimeout: -1}, "PollTimeout"},
	}
	for _, tt := range tests {
		if got := setting.FieldOf(tt.cfg.Validate()); got != tt.field {
			t.Errorf("%s: Validate is about %q, want %s", tt.name, got, tt.field)
		}
	}
}

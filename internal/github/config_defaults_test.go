package github

import (
	"errors"
	"testing"
)

// TestDefaultConfigIsWhatZeroGets: defaults fills a zero field with
// DefaultConfig's value.
func TestDefaultConfigIsWhatZeroGets(t *testing.T) {
	c := Config{Token: "x"}
	c.defaults()
	d := DefaultConfig()
	if c.URL != d.URL || c.RetryMax != d.RetryMax || c.RetryWaitMax != d.RetryWaitMax || c.Timeout != d.Timeout || c.PollTimeout != d.PollTimeout {
		t.Errorf("defaults() = %+v, DefaultConfig() = %+v", c, d)
	}
}

// TestValidateNamesTheField: an invalid setting is a *FieldError naming
// the Config field.
func TestValidateNamesTheField(t *testing.T) {
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
		t.Run(tt.name, func(t *testing.T) {
			var fe *FieldError
			if err := tt.cfg.Validate(); !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Validate = %v, want a *FieldError about %s", err, tt.field)
			}
		})
	}
}

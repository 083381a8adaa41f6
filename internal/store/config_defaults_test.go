package store

import (
	"errors"
	"testing"
)

// TestDefaultOptionsIsWhatZeroGets: defaults fills a zero field with
// DefaultOptions's value, the one statement of each default.
func TestDefaultOptionsIsWhatZeroGets(t *testing.T) {
	o := Options{Path: "x"}
	o.defaults()
	d := DefaultOptions()
	if o.LockTimeout != d.LockTimeout || o.HistoryMaxAge != d.HistoryMaxAge || o.HistoryMaxCount != d.HistoryMaxCount {
		t.Errorf("defaults() = %+v, DefaultOptions() = %+v", o, d)
	}
	if d.LockTimeout == 0 || d.HistoryMaxAge == 0 || d.HistoryMaxCount == 0 {
		t.Errorf("DefaultOptions() has a zero setting: %+v", d)
	}
}

// TestValidateNamesTheField: an invalid setting is a *FieldError naming
// the Options field.
func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		opts  Options
		field string
	}{
		{Options{}, "Path"},
		{Options{Path: "x", LockTimeout: -1}, "LockTimeout"},
		{Options{Path: "x", HistoryMaxAge: -1}, "HistoryMaxAge"},
		{Options{Path: "x", HistoryMaxCount: -1}, "HistoryMaxCount"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			var fe *FieldError
			if err := tt.opts.Validate(); !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Validate = %v, want a *FieldError about %s", err, tt.field)
			}
		})
	}
}

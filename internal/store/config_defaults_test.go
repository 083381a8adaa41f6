package store

import (
	"testing"

	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// TestOptionsDefaultsAndFields: defaults fills zero Options from
// DefaultOptions, the one statement of each default, and an invalid
// setting is a *setting.FieldError naming the Options field.
func TestOptionsDefaultsAndFields(t *testing.T) {
	o := Options{Path: "x"}
	o.defaults()
	testkit.SameSettings(t, o, DefaultOptions())
	for opts, field := range map[*Options]string{
		{}:                               "Path",
		{Path: "x", LockTimeout: -1}:     "LockTimeout",
		{Path: "x", HistoryMaxAge: -1}:   "HistoryMaxAge",
		{Path: "x", HistoryMaxCount: -1}: "HistoryMaxCount",
	} {
		if got := setting.FieldOf(opts.Validate()); got != field {
			t.Errorf("Validate(%+v) is about %q, want %s", *opts, got, field)
		}
	}
}

package store

import (
	"regexp"
	"slices"
	"testing"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// TestRunnerStatesAreAll: RunnerStates lists every RunnerState constant
// of the package once, and each is Valid; a made-up one is not.
func TestRunnerStatesAreAll(t *testing.T) {
	declared := testkit.GrepSource(t, ".", regexp.MustCompile(`\bState[A-Za-z]+\s+RunnerState\s*=\s*"([^"]+)"`))
	if len(declared) == 0 {
		t.Fatal("found no RunnerState constant in the source: the pattern of this test is out of date")
	}
	var listed []string
	for _, s := range RunnerStates() {
		if !s.Valid() {
			t.Errorf("RunnerStates lists %q, which is not Valid", s)
		}
		listed = append(listed, string(s))
	}
	slices.Sort(listed)
	// GrepSource's names are sorted and distinct: a state listed twice
	// differs too.
	if !slices.Equal(listed, declared) {
		t.Errorf("RunnerStates() = %q, the declared states are %q", listed, declared)
	}
	if RunnerState("idel").Valid() {
		t.Error(`"idel" is Valid`)
	}
}

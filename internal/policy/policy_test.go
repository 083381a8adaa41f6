package policy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var base = Settings{MinRunners: 0, MaxRunners: 10, RunnerGroup: "Default", Labels: []string{"flag-label"}}

const example = `log_level: debug
defaults:
  max_runners: 6
  labels: [linux]
rules:
  - name: gpu
    match: {scope: "GPU-org", resource_type: large}
    min_runners: 1
    max_runners: 4
    labels: [gpu]
    runner_group: gpu
    scale_set_name: "gpu-{scope}"
  - match:
      scope: "legacy-org/*"
    disabled: true
  - match: {scope: "*"}
    min_runners: 2
`

func TestFor(t *testing.T) {
	p, err := Parse("policy.yaml", []byte(example), base)
	if err != nil {
		t.Fatal(err)
	}
	if p.LogLevel != "debug" {
		t.Errorf("LogLevel = %q, want debug", p.LogLevel)
	}
	tests := []struct {
		scope, rt string
		want      Effective
	}{
		// Scope compared without case; the first match wins over the
		// catch-all after it.
		{"gpu-org", "large", Effective{Rule: "gpu", Settings: Settings{MinRunners: 1, MaxRunners: 4, Labels: []string{"gpu"}, RunnerGroup: "gpu", ScaleSetName: "gpu-gpu-org"}}},
		// The resource type must match too: the catch-all takes it.
		{"gpu-org", "small", Effective{Rule: "rules[2]", Settings: Settings{MinRunners: 2, MaxRunners: 6, Labels: []string{"linux"}, RunnerGroup: "Default"}}},
		{"legacy-org/app", "small", Effective{Rule: "rules[1]", Settings: Settings{MaxRunners: 6, Labels: []string{"linux"}, RunnerGroup: "Default", Disabled: true}}},
		// "*" stays within one segment: a repository is not an org.
		{"other-org/repo", "", Effective{Rule: DefaultsRule, Settings: Settings{MaxRunners: 6, Labels: []string{"linux"}, RunnerGroup: "Default"}}},
	}
	for _, tt := range tests {
		got := p.For(tt.scope, tt.rt)
		if got.Rule != tt.want.Rule || got.MinRunners != tt.want.MinRunners || got.MaxRunners != tt.want.MaxRunners ||
			!slices.Equal(got.Labels, tt.want.Labels) || got.RunnerGroup != tt.want.RunnerGroup ||
			got.ScaleSetName != tt.want.ScaleSetName || got.Disabled != tt.want.Disabled {
			t.Errorf("For(%q, %q) = %+v, want %+v", tt.scope, tt.rt, got, tt.want)
		}
	}
	// For's labels are a copy: changing them changes no other target.
	p.For("gpu-org", "large").Labels[0] = "changed"
	if l := p.For("gpu-org", "large").Labels[0]; l != "gpu" {
		t.Errorf("a caller changed the policy's labels to %q", l)
	}
}

func TestStaticAndEmptyFile(t *testing.T) {
	for name, p := range map[string]*Policy{"static": Static(base), "empty file": mustParse(t, "")} {
		got := p.For("org", "nano")
		if got.Rule != DefaultsRule || got.MaxRunners != 10 || !slices.Equal(got.Labels, []string{"flag-label"}) {
			t.Errorf("%s: For = %+v, want the flags' settings from %q", name, got, DefaultsRule)
		}
	}
}

func mustParse(t *testing.T, text string) *Policy {
	t.Helper()
	p, err := Parse("p.yaml", []byte(text), base)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestParseErrors: every error names the file, the line and the key.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"unknown top key", "default:\n  max_runners: 3\n", "p.yaml:1: default: unknown key (want log_level, defaults or rules)"},
		{"unknown settings key", "defaults:\n  max_runner: 3\n", "p.yaml:2: defaults.max_runner: unknown key (want min_runners, max_runners, labels, runner_group, scale_set_name or disabled)"},
		{"unknown rule key", "rules:\n  - match: {scope: a}\n    maxrunners: 3\n", "p.yaml:3: rules[0].maxrunners: unknown key (want name, match, min_runners"},
		{"unknown match key", "rules:\n  - match: {scope: a, type: large}\n", "p.yaml:2: rules[0].match.type: unknown key (want scope or resource_type)"},
		{"not a number", "defaults:\n  max_runners: ten\n", `p.yaml:2: defaults.max_runners: want a whole number, got "ten"`},
		{"negative", "rules:\n  - match: {scope: a}\n    min_runners: -1\n", "p.yaml:3: rules[0].min_runners: must not be negative"},
		{"max zero", "defaults:\n  max_runners: 0\n", "p.yaml:2: defaults.max_runners: must be at least 1"},
		{"min over max of the defaults", "defaults:\n  max_runners: 3\nrules:\n  - match: {scope: a}\n    min_runners: 5\n", "p.yaml:5: rules[0].min_runners: must not exceed max_runners (5 > 3)"},
		{"min over max of the flags", "defaults:\n  min_runners: 11\n", "p.yaml:2: defaults.min_runners: must not exceed max_runners (11 > 10)"},
		{"no match", "rules:\n  - max_runners: 3\n", "p.yaml:2: rules[0].match: missing"},
		{"empty match", "rules:\n  - match: {}\n", "p.yaml:2: rules[0].match: empty"},
		{"bad glob", "rules:\n  - match: {scope: \"org[\"}\n", `p.yaml:2: rules[0].match.scope: bad glob "org["`},
		{"unknown resource type", "rules:\n  - match: {resource_type: huge}\n", `p.yaml:2: rules[0].match.resource_type: unknown resource type "huge"`},
		{"blank group", "defaults:\n  runner_group: \" \"\n", "p.yaml:2: defaults.runner_group: must not be blank"},
		{"label with a comma", "defaults:\n  labels: [\"a,b\"]\n", "p.yaml:2: defaults.labels[0]: a label must not contain a comma"},
		{"labels not a list", "defaults:\n  labels: gpu\n", "p.yaml:2: defaults.labels: want a list"},
		{"disabled not a bool", "rules:\n  - match: {scope: a}\n    disabled: maybe\n", "p.yaml:3: rules[0].disabled: want true or false"},
		{"repeated key", "defaults:\n  max_runners: 3\n  max_runners: 4\n", "p.yaml:3: defaults.max_runners: repeated key"},
		{"repeated rule name", "rules:\n  - {name: x, match: {scope: a}}\n  - {name: x, match: {scope: b}}\n", `p.yaml:3: rules[1].name: "x" is the name of rules[0] too`},
		{"bad log level", "log_level: loud\n", `p.yaml:1: log_level: unknown log level "loud"`},
		{"rules not a list", "rules:\n  a: 1\n", "p.yaml:2: rules: want a list of rules"},
		{"not a mapping", "- a\n", "p.yaml:1: want a mapping"},
		{"bad YAML", "defaults:\n  max_runners: [\n", "p.yaml:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.text), base)
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse = %v, want an *Error", err)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Parse error = %q, want it to start with %q", err, tt.want)
			}
		})
	}
}

func TestYAMLSyntaxErrorHasALine(t *testing.T) {
	_, err := Parse("p.yaml", []byte("defaults:\n  max_runners: 3\n labels: [a]\n"), base)
	var pe *Error
	if !errors.As(err, &pe) || pe.Line == 0 || !strings.Contains(err.Error(), "not valid YAML") {
		t.Fatalf("Parse = %v, want a YAML error with a line", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(good, base)
	if err != nil || p.Source != good || len(p.Rules) != 3 {
		t.Fatalf("Load = %+v, %v; want 3 rules from %s", p, err, good)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), base); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load of a missing file = %v, want an error naming it", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("#"+strings.Repeat("x", maxFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big, base); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load of a huge file = %v, want a size error", err)
	}
}

func TestSameScaleSet(t *testing.T) {
	a := Settings{MinRunners: 1, MaxRunners: 2, Labels: []string{"x"}, RunnerGroup: "g", ScaleSetName: "n"}
	for name, change := range map[string]func(*Settings){
		"labels": func(s *Settings) { s.Labels = []string{"y"} },
		"group":  func(s *Settings) { s.RunnerGroup = "h" },
		"name":   func(s *Settings) { s.ScaleSetName = "m" },
	} {
		b := a
		b.Labels = slices.Clone(a.Labels)
		change(&b)
		if SameScaleSet(a, b) {
			t.Errorf("a change of %s keeps the same scale set", name)
		}
	}
	b := a
	b.MinRunners, b.MaxRunners = 0, 9
	if !SameScaleSet(a, b) {
		t.Error("a change of min and max runners changes the scale set")
	}
}

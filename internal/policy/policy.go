// Package policy owns the per-target policy: the scale set settings each
// myshoes target gets (min and max runners, labels, runner group, scale
// set name, disabled), from the run flags and an optional YAML file of
// defaults and rules. It parses and validates the file, and answers
// "what does this target get, and which rule gave it". Reloading and
// applying a policy are the daemon's and the controller's.
package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Settings are what a policy gives one target.
type Settings struct {
	MinRunners int      `json:"min_runners"`
	MaxRunners int      `json:"max_runners"`
	Labels     []string `json:"labels,omitempty"`
	// RunnerGroup is the runner group the scale set is created in.
	RunnerGroup string `json:"runner_group"`
	// ScaleSetName is the scale set's name; "" is the default,
	// <prefix>-<scope>. Effective resolves "{scope}" in it.
	ScaleSetName string `json:"scale_set_name,omitempty"`
	// Disabled targets are not served: their scale set and runners go as
	// if the target had left myshoes's list.
	Disabled bool `json:"disabled,omitempty"`
}

// Effective is what one target gets, and where it came from.
type Effective struct {
	Settings
	// Rule names the rule that matched: its name, or "rules[i]" for a
	// rule without one; "defaults" when none matched.
	Rule string `json:"rule"`
}

// DefaultsRule is the Rule of a target no rule matched.
const DefaultsRule = "defaults"

// Match selects targets. An empty field matches every target.
type Match struct {
	// Scope is a glob (path.Match) over the target's scope, compared
	// without case as GitHub compares owners and repositories: "*"
	// matches within one segment, so "org/*" is every repository of org
	// and "*" every organization.
	Scope string
	// ResourceType is a myshoes resource type ("nano" … "4xlarge").
	ResourceType string
}

// Matches reports whether the target of scope and resourceType matches.
func (m Match) Matches(scope, resourceType string) bool {
	if m.ResourceType != "" && !strings.EqualFold(m.ResourceType, strings.TrimSpace(resourceType)) {
		return false
	}
	if m.Scope == "" {
		return true
	}
	ok, err := path.Match(strings.ToLower(m.Scope), strings.ToLower(scope))
	return err == nil && ok
}

// Override is a set of settings a rule (or the file's defaults) changes;
// a nil field is left as it was.
type Override struct {
	MinRunners, MaxRunners    *int
	Labels                    *[]string
	RunnerGroup, ScaleSetName *string
	Disabled                  *bool
}

func (o Override) apply(s Settings) Settings {
	if o.MinRunners != nil {
		s.MinRunners = *o.MinRunners
	}
	if o.MaxRunners != nil {
		s.MaxRunners = *o.MaxRunners
	}
	if o.Labels != nil {
		s.Labels = slices.Clone(*o.Labels)
	}
	if o.RunnerGroup != nil {
		s.RunnerGroup = *o.RunnerGroup
	}
	if o.ScaleSetName != nil {
		s.ScaleSetName = *o.ScaleSetName
	}
	if o.Disabled != nil {
		s.Disabled = *o.Disabled
	}
	return s
}

// Rule is one rule of the file: the targets it matches and what it sets.
type Rule struct {
	// Name identifies the rule in scalesets ls and the logs; "" is
	// "rules[i]".
	Name  string
	Match Match
	Set   Override
}

// Policy is a whole policy: the defaults every target gets (the run
// flags, then the file's defaults over them) and the rules, matched in
// order; the first that matches a target wins.
type Policy struct {
	// Source is the file the policy was read from; "" for the flags alone.
	Source   string
	Defaults Settings
	Rules    []Rule
	// LogLevel is the file's log_level ("" keeps the flag's).
	LogLevel string
}

// Static is the policy of the flags alone: every target gets base.
func Static(base Settings) *Policy {
	return &Policy{Defaults: base}
}

// For returns what the target of scope and resourceType gets.
func (p *Policy) For(scope, resourceType string) Effective {
	s, rule := p.Defaults, DefaultsRule
	for i, r := range p.Rules {
		if r.Match.Matches(scope, resourceType) {
			s, rule = r.Set.apply(s), r.label(i)
			break
		}
	}
	s.Labels = slices.Clone(s.Labels)
	s.ScaleSetName = strings.ReplaceAll(s.ScaleSetName, "{scope}", scope)
	return Effective{Settings: s, Rule: rule}
}

func (r Rule) label(i int) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("rules[%d]", i)
}

// SameScaleSet reports whether a and b give a target the same scale set
// on GitHub: a change of name, labels or runner group means the scale
// set must change, while min and max runners change in place.
func SameScaleSet(a, b Settings) bool {
	return a.ScaleSetName == b.ScaleSetName && a.RunnerGroup == b.RunnerGroup && slices.Equal(a.Labels, b.Labels)
}

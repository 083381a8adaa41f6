package policy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
)

// The policy file, in YAML:
//
//	log_level: info          # optional; reloaded with the policy
//	defaults:                # over the run flags
//	  min_runners: 0
//	  max_runners: 10
//	  labels: [linux]
//	  runner_group: Default
//	rules:                   # in order; the first match wins
//	  - name: gpu-org
//	    match: {scope: "gpu-org", resource_type: large}
//	    max_runners: 4
//	    scale_set_name: "gpu-{scope}"
//	  - match: {scope: "legacy-org/*"}
//	    disabled: true
//
// Unknown keys are refused, so a misspelt key is an error rather than a
// setting quietly ignored.

// maxFileSize bounds what Load reads: a policy is a few kilobytes.
const maxFileSize = 1 << 20

// Error is an invalid policy file. Its text names the file, the line and
// the key: "policy.yaml:7: rules[0].max_runners: must be at least 1".
type Error struct {
	File string
	Line int    // 0 when the error is about the whole file
	Key  string // the key's path, "" for the whole file
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and validates the policy file at name over base, the
// settings of the run flags.
func Load(name string, base Settings) (*Policy, error) {
	data, err := ReadFile(name)
	if err != nil {
		return nil, err
	}
	return Parse(name, data, base)
}

// ReadFile reads the policy file at name, refusing one larger than a
// policy can reasonably be (1 MiB).
func ReadFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read policy file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read policy file %s: %w", name, err)
	}
	if len(data) > maxFileSize {
		return nil, &Error{File: name, Msg: fmt.Sprintf("larger than %d bytes", maxFileSize)}
	}
	return data, nil
}

// Parse validates data, the text of the policy file name, over base.
// Every error is an *Error.
func Parse(name string, data []byte, base Settings) (*Policy, error) {
	p := &parser{file: name}
	pol := &Policy{Source: name, Defaults: base}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, p.yamlError(err)
	}
	if len(doc.Content) == 0 {
		return pol, nil // an empty file: the flags alone
	}
	root := doc.Content[0]
	if err := p.mapping(root, "", func(key string, k, v *yaml.Node) error {
		switch key {
		case "log_level":
			lv, err := p.str(v, key)
			if err != nil {
				return err
			}
			var l slog.Level
			if err := l.UnmarshalText([]byte(lv)); err != nil {
				return p.errAt(v, key, "unknown log level %q: want debug, info, warn or error", lv)
			}
			pol.LogLevel = lv
		case "defaults":
			o, err := p.override(v, key, nil)
			if err != nil {
				return err
			}
			pol.Defaults = o.apply(pol.Defaults)
			if err := p.check(v, key, pol.Defaults); err != nil {
				return err
			}
		case "rules":
			if v.Kind != yaml.SequenceNode {
				return p.errAt(v, key, "want a list of rules")
			}
			for i, rn := range v.Content {
				pol.Rules = append(pol.Rules, Rule{})
				if err := p.rule(rn, fmt.Sprintf("rules[%d]", i), &pol.Rules[i]); err != nil {
					return err
				}
			}
		default:
			return p.errAt(k, key, "unknown key (want log_level, defaults or rules)")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	// A rule is checked over the final defaults: min_runners: 5 in a rule
	// is invalid over defaults of max_runners: 3 unless it sets both.
	names := map[string]string{}
	for i, r := range pol.Rules {
		key := fmt.Sprintf("rules[%d]", i)
		if err := p.check(p.ruleNodes[i], key, r.Set.apply(pol.Defaults)); err != nil {
			return nil, err
		}
		if r.Name == "" {
			continue
		}
		if prev, ok := names[r.Name]; ok {
			return nil, p.errAt(p.ruleNodes[i], key+".name", "%q is the name of %s too", r.Name, prev)
		}
		names[r.Name] = key
	}
	return pol, nil
}

// parser walks the YAML nodes of one file, keeping their lines for the
// errors.
type parser struct {
	file      string
	ruleNodes []*yaml.Node
}

func (p *parser) errAt(n *yaml.Node, key, format string, args ...any) error {
	return &Error{File: p.file, Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

// yamlError turns a YAML syntax error ("yaml: line 3: …") into an *Error.
func (p *parser) yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, tail
			}
		}
	}
	return &Error{File: p.file, Line: line, Msg: "not valid YAML: " + msg}
}

// mapping calls f for each key of the mapping n, refusing repeated keys.
func (p *parser) mapping(n *yaml.Node, at string, f func(key string, k, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		if at == "" {
			return &Error{File: p.file, Line: n.Line, Msg: "want a mapping of log_level, defaults and rules"}
		}
		return p.errAt(n, at, "want a mapping")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := join(at, k.Value)
		if seen[k.Value] {
			return p.errAt(k, key, "repeated key")
		}
		seen[k.Value] = true
		if err := f(key, k, v); err != nil {
			return err
		}
	}
	return nil
}

func join(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

// override reads the settings keys of the mapping n; extra handles the
// other keys of a rule (nil: none is allowed).
func (p *parser) override(n *yaml.Node, at string, extra func(name, key string, k, v *yaml.Node) (bool, error)) (Override, error) {
	var o Override
	err := p.mapping(n, at, func(key string, k, v *yaml.Node) error {
		var err error
		switch k.Value {
		case "min_runners":
			o.MinRunners, err = p.count(v, key)
		case "max_runners":
			o.MaxRunners, err = p.count(v, key)
		case "labels":
			o.Labels, err = p.labels(v, key)
		case "runner_group":
			o.RunnerGroup, err = p.nonBlank(v, key)
		case "scale_set_name":
			o.ScaleSetName, err = p.nonBlank(v, key)
		case "disabled":
			var b bool
			if v.Kind != yaml.ScalarNode || v.Decode(&b) != nil {
				return p.errAt(v, key, "want true or false")
			}
			o.Disabled = &b
		default:
			if extra != nil {
				if ok, err := extra(k.Value, key, k, v); ok || err != nil {
					return err
				}
			}
			return p.errAt(k, key, "unknown key (want %s)", p.known(extra != nil))
		}
		return err
	})
	return o, err
}

func (p *parser) known(rule bool) string {
	keys := "min_runners, max_runners, labels, runner_group, scale_set_name or disabled"
	if rule {
		keys = "name, match, " + keys
	}
	return keys
}

func (p *parser) rule(n *yaml.Node, at string, r *Rule) error {
	p.ruleNodes = append(p.ruleNodes, n)
	hasMatch := false
	o, err := p.override(n, at, func(name, key string, k, v *yaml.Node) (bool, error) {
		switch name {
		case "name":
			s, err := p.nonBlank(v, key)
			if err != nil {
				return true, err
			}
			r.Name = *s
			return true, nil
		case "match":
			hasMatch = true
			return true, p.match(v, key, &r.Match)
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	if !hasMatch {
		return p.errAt(n, at+".match", "missing: a rule needs a match (scope, resource_type or both)")
	}
	r.Set = o
	return nil
}

func (p *parser) match(n *yaml.Node, at string, m *Match) error {
	if err := p.mapping(n, at, func(key string, k, v *yaml.Node) error {
		switch k.Value {
		case "scope":
			s, err := p.nonBlank(v, key)
			if err != nil {
				return err
			}
			if _, err := path.Match(*s, ""); err != nil {
				return p.errAt(v, key, "bad glob %q: %v", *s, err)
			}
			m.Scope = *s
		case "resource_type":
			s, err := p.nonBlank(v, key)
			if err != nil {
				return err
			}
			if shoes.ParseResourceType(*s) == shoes.ResourceUnknown {
				return p.errAt(v, key, "unknown resource type %q (want nano, micro, small, medium, large, xlarge, 2xlarge, 3xlarge or 4xlarge)", *s)
			}
			m.ResourceType = strings.ToLower(strings.TrimSpace(*s))
		default:
			return p.errAt(k, key, "unknown key (want scope or resource_type)")
		}
		return nil
	}); err != nil {
		return err
	}
	if m.Scope == "" && m.ResourceType == "" {
		return p.errAt(n, at, "empty: name a scope, a resource_type or both")
	}
	return nil
}

func (p *parser) str(n *yaml.Node, key string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", p.errAt(n, key, "want a string")
	}
	return n.Value, nil
}

func (p *parser) nonBlank(n *yaml.Node, key string) (*string, error) {
	s, err := p.str(n, key)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(s) == "" {
		return nil, p.errAt(n, key, "must not be blank")
	}
	return &s, nil
}

func (p *parser) count(n *yaml.Node, key string) (*int, error) {
	var v int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		return nil, p.errAt(n, key, "want a whole number, got %q", n.Value)
	}
	if v < 0 {
		return nil, p.errAt(n, key, "must not be negative")
	}
	return &v, nil
}

func (p *parser) labels(n *yaml.Node, key string) (*[]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, p.errAt(n, key, "want a list of labels, like [linux, gpu]")
	}
	out := []string{}
	for i, ln := range n.Content {
		at := fmt.Sprintf("%s[%d]", key, i)
		s, err := p.nonBlank(ln, at)
		if err != nil {
			return nil, err
		}
		if strings.Contains(*s, ",") {
			return nil, p.errAt(ln, at, "a label must not contain a comma")
		}
		out = append(out, strings.TrimSpace(*s))
	}
	return &out, nil
}

// check validates the settings a key gives a target, after the overlay.
func (p *parser) check(n *yaml.Node, key string, s Settings) error {
	if err := s.Validate(); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			at := join(key, fe.key)
			if kn := findKey(n, fe.key); kn != nil {
				return p.errAt(kn, at, "%s", fe.msg)
			}
			return p.errAt(n, at, "%s", fe.msg)
		}
		return p.errAt(n, key, "%v", err)
	}
	return nil
}

// findKey returns the value node of key in the mapping n, if it is there.
func findKey(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// fieldError is an invalid setting, named by its key in the file.
type fieldError struct{ key, msg string }

func (e *fieldError) Error() string { return e.key + ": " + e.msg }

// Validate reports the first invalid setting of s, naming its key.
func (s Settings) Validate() error {
	switch {
	case s.MinRunners < 0:
		return &fieldError{"min_runners", "must not be negative"}
	case s.MaxRunners < 1:
		return &fieldError{"max_runners", "must be at least 1"}
	case s.MinRunners > s.MaxRunners:
		return &fieldError{"min_runners", fmt.Sprintf("must not exceed max_runners (%d > %d)", s.MinRunners, s.MaxRunners)}
	case strings.TrimSpace(s.RunnerGroup) == "":
		return &fieldError{"runner_group", "must not be blank"}
	}
	return nil
}

package metrics_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// The shipped monitoring files (monitoring/alerts.yaml and
// monitoring/grafana-dashboard.json) must only use metrics this package
// defines, and the dashboard must show every one of them: a metric
// renamed or added without them fails here. monitoring/check.sh checks the
// rules with promtool.

const monitoringDir = "../../monitoring"

var (
	// monitoringMetricRE finds metric names in PromQL.
	monitoringMetricRE = regexp.MustCompile(`shoes_scaleset_[a-z0-9_]*[a-z0-9]`)
	// monitoringVarRE finds Grafana variables in a dashboard expression.
	monitoringVarRE = regexp.MustCompile(`\$(__[a-z_]+|\{[A-Za-z0-9_]+\}|[A-Za-z_][A-Za-z0-9_]*)`)
)

// definedMetrics are the metric names this package's source defines.
func definedMetrics(t *testing.T) []string {
	t.Helper()
	names := testkit.GrepSource(t, ".", regexp.MustCompile(`"(shoes_scaleset_[a-z0-9_]+)"`))
	if len(names) < 10 {
		t.Fatalf("found %d metric names in the source: the pattern of this test is out of date", len(names))
	}
	return names
}

// metricsIn returns the distinct metric names exprs use, a histogram's
// _bucket, _sum and _count series named by their histogram.
func metricsIn(exprs []string, defined []string) []string {
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, name := range monitoringMetricRE.FindAllString(e, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(defined, base) {
					name = base
				}
			}
			seen[name] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

func TestMetricsInFindsUndefinedNames(t *testing.T) {
	defined := []string{"shoes_scaleset_a_total", "shoes_scaleset_b_seconds"}
	got := metricsIn([]string{
		`rate(shoes_scaleset_a_total[5m]) / shoes_scaleset_bogus`,
		`histogram_quantile(0.9, rate(shoes_scaleset_b_seconds_bucket[5m])) + shoes_scaleset_b_seconds_count`,
		`shoes_scaleset_c_count`, // not a histogram we know: kept as is
	}, defined)
	want := []string{"shoes_scaleset_a_total", "shoes_scaleset_b_seconds", "shoes_scaleset_bogus", "shoes_scaleset_c_count"}
	if !slices.Equal(got, want) {
		t.Fatalf("metricsIn = %v, want %v", got, want)
	}
}

// alertRules is the part of a Prometheus rule file the checks read.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// loadAlertExprs reads monitoring/alerts.yaml, checks the shape of each
// alert, and returns their expressions.
func loadAlertExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	var exprs []string
	names := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			where := fmt.Sprintf("alerts.yaml group %q alert %q", g.Name, r.Alert)
			switch {
			case r.Alert == "":
				t.Errorf("%s: a rule that is not an alert (record %q)", where, r.Record)
			case names[r.Alert]:
				t.Errorf("%s: a second alert of that name", where)
			}
			names[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" || r.For == "" {
				t.Errorf("%s: want an expr and a for", where)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("%s: severity %q, want critical, warning or info", where, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: want a summary and a description", where)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs) == 0 {
		t.Fatal("alerts.yaml has no alert")
	}
	return exprs
}

// loadDashboardExprs reads monitoring/grafana-dashboard.json, checks the
// shape of its panels and variables, and returns the PromQL of its
// targets and variable queries.
func loadDashboardExprs(t *testing.T) (targets, variables []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	}
	type panel struct {
		ID         int             `json:"id"`
		Type       string          `json:"type"`
		Title      string          `json:"title"`
		Datasource json.RawMessage `json:"datasource"`
		GridPos    struct{ X, Y, W, H int }
		Targets    []target `json:"targets"`
	}
	var dash struct {
		Title         string  `json:"title"`
		UID           string  `json:"uid"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || dash.SchemaVersion == 0 {
		t.Errorf("dashboard: title %q, uid %q, schemaVersion %d: want all three", dash.Title, dash.UID, dash.SchemaVersion)
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID == 0 || ids[p.ID] {
			t.Errorf("%s: want a distinct, non-zero id", where)
		}
		ids[p.ID] = true
		if p.Title == "" || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: want a title and a place in the 24-column grid, got %+v", where, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 || len(p.Datasource) == 0 {
			t.Errorf("%s: want targets and a data source", where)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: target %+v: want an expr and a distinct refId", where, tg)
			}
			refs[tg.RefID] = true
			targets = append(targets, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil || q.Query == "" {
			t.Errorf("variable %s: query %s: want an object with a query", v.Name, v.Query)
			continue
		}
		variables = append(variables, q.Query)
	}
	if len(targets) == 0 {
		t.Fatal("the dashboard has no query")
	}
	return targets, variables
}

// TestMonitoringFilesUseDefinedMetrics: the alerts and the dashboard name
// only metrics this package defines, and the dashboard shows every one.
func TestMonitoringFilesUseDefinedMetrics(t *testing.T) {
	defined := definedMetrics(t)
	alerts := loadAlertExprs(t)
	targets, variables := loadDashboardExprs(t)
	for what, exprs := range map[string][]string{
		"alerts.yaml":                      alerts,
		"grafana-dashboard.json":           targets,
		"grafana-dashboard.json variables": variables,
	} {
		used := metricsIn(exprs, defined)
		if len(used) == 0 {
			t.Errorf("%s uses no shoes_scaleset_ metric", what)
		}
		for _, name := range used {
			if !slices.Contains(defined, name) {
				t.Errorf("%s uses %s, which internal/metrics does not define", what, name)
			}
		}
	}
	shown := metricsIn(targets, defined)
	for _, name := range defined {
		if !slices.Contains(shown, name) {
			t.Errorf("the dashboard shows no %s: add a panel", name)
		}
	}
}

// TestMonitoringPromQL: where promtool is installed, the alert rules and
// every dashboard query (variables set to match anything) parse.
func TestMonitoringPromQL(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("no promtool on PATH; monitoring/check.sh --install checks the rules")
	}
	targets, variables := loadDashboardExprs(t)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range targets {
		e = monitoringVarRE.ReplaceAllStringFunc(e, func(v string) string {
			if strings.HasPrefix(v, "$__") {
				return "5m" // $__rate_interval and the like
			}
			return ".*"
		})
		q, _ := json.Marshal(e) // a JSON string is a YAML string
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %s\n", i, q)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(monitoringDir, "alerts.yaml"), file} {
		out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput()
		if err != nil {
			t.Errorf("promtool check rules %s: %v\n%s", filepath.Base(f), err, out)
		}
	}
	// label_values(metric{...}, label) is Grafana's, not PromQL: its
	// selector is checked as an expression.
	for _, v := range variables {
		if !strings.HasPrefix(v, "label_values(") {
			t.Errorf("variable query %q: want label_values(selector, label)", v)
		}
	}
}

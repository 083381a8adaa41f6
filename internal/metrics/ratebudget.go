package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
)

// GitHub's budget is per installation (or token), and many scopes may
// share one; a series per scope would grow with the targets. So
// shoes_scaleset_github_rate_limit_remaining has one series per resource,
// the lowest budget any scope last reported: the one to alert on. A
// report counts until the reset it named, after which that budget is full
// again (an hour when it named none).

// budgetTTL is how long a report that named no reset counts: GitHub's
// rate-limit window.
const budgetTTL = time.Hour

// rateResources are the resources reported by name (GitHub's
// X-RateLimit-Resource values); any other, or none, is "other". A fixed
// list keeps the series few whatever a server sends.
var rateResources = map[string]bool{
	"core": true, "graphql": true, "search": true, "code_search": true,
	"integration_manifest": true, "actions_runner_registration": true,
	"source_import": true, "code_scanning_upload": true, "scim": true,
	"dependency_snapshots": true, "audit_log": true,
}

// budgetReport is the budget one scope last reported for a resource.
type budgetReport struct {
	remaining int
	until     time.Time // when it no longer counts: the reset
}

// rateBudgets is the collector of shoes_scaleset_github_rate_limit_remaining.
// Its methods are safe for concurrent use.
type rateBudgets struct {
	desc *prometheus.Desc
	now  func() time.Time

	mu sync.Mutex
	// reports: resource → scope → the scope's last report. Bounded by the
	// scopes served (Forget drops a scope) times the few resources.
	reports map[string]map[string]budgetReport
}

var _ prometheus.Collector = (*rateBudgets)(nil)

func newRateBudgets(now func() time.Time) *rateBudgets {
	return &rateBudgets{
		desc: prometheus.NewDesc("shoes_scaleset_github_rate_limit_remaining",
			"The lowest request budget (X-RateLimit-Remaining) a GitHub answer reported among the scopes, until its reset, by resource (X-RateLimit-Resource).",
			[]string{labelResource}, nil),
		now:     now,
		reports: map[string]map[string]budgetReport{},
	}
}

func (c *rateBudgets) record(scope string, b github.RateBudget) {
	res := b.Resource
	if !rateResources[res] {
		res = "other"
	}
	until := b.Reset
	if until.IsZero() {
		until = c.now().Add(budgetTTL)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	byScope := c.reports[res]
	if byScope == nil {
		byScope = map[string]budgetReport{}
		c.reports[res] = byScope
	}
	byScope[scope] = budgetReport{remaining: b.Remaining, until: until}
}

// forget drops the reports of scope.
func (c *rateBudgets) forget(scope string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, byScope := range c.reports {
		delete(byScope, scope)
	}
}

// Describe implements prometheus.Collector.
func (c *rateBudgets) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector: per resource, the lowest
// budget of the reports whose reset has not passed. Those past their
// reset are dropped.
func (c *rateBudgets) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for res, byScope := range c.reports {
		lowest, found := 0, false
		for scope, r := range byScope {
			if !r.until.After(now) {
				delete(byScope, scope)
				continue
			}
			if !found || r.remaining < lowest {
				lowest, found = r.remaining, true
			}
		}
		if found {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(lowest), res)
		}
	}
}

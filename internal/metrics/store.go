package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// StoreSource reads the runner counts and the scale sets they belong to:
// the store.
type StoreSource interface {
	CountRunners() (map[int]map[store.RunnerState]int, error)
	ListScaleSets() ([]store.ScaleSet, error)
	WriteHealth() store.WriteHealth
}

var _ StoreSource = (*store.Store)(nil)

// runnerStates are the states shoes_scaleset_runners reports, each one
// for every known scale set, zero included.
var runnerStates = []store.RunnerState{
	store.StatePending,
	store.StateConfigured,
	store.StateIdle,
	store.StateBusy,
	store.StateDeleting,
	store.StateUnknownInstance,
}

// storeCollector counts the runners in the store at scrape time.
type storeCollector struct {
	src           StoreSource
	owns          func(targetID string) bool
	runners       *prometheus.Desc
	unknown       *prometheus.Desc
	writeFailures *prometheus.Desc
	writesFailing *prometheus.Desc
}

var _ prometheus.Collector = (*storeCollector)(nil)

// NewStoreCollector returns the collector that reports the runners in src
// by state at scrape time (shoes_scaleset_runners and
// shoes_scaleset_unknown_instances). New registers it when given a source;
// the daemon registers it itself once the state file is open. With
// replicas sharing the state, owns says which targets' scale sets this
// replica reports, so that sums over the replicas count each once; nil
// reports every scale set.
func NewStoreCollector(src StoreSource, owns func(targetID string) bool) prometheus.Collector {
	if owns == nil {
		owns = func(string) bool { return true }
	}
	return &storeCollector{
		src:  src,
		owns: owns,
		runners: prometheus.NewDesc("shoes_scaleset_runners",
			"Runner records in the state file, by scale set and state.",
			[]string{labelScaleSet, labelScope, labelState}, nil),
		unknown: prometheus.NewDesc("shoes_scaleset_unknown_instances",
			"Runner records whose instance the runner service does not know (state unknown-instance).",
			scaleSetLabels, nil),
		writeFailures: prometheus.NewDesc("shoes_scaleset_store_write_failures_total",
			"Writes to the state file that failed (a full disk, an I/O error) since start.", nil, nil),
		writesFailing: prometheus.NewDesc("shoes_scaleset_store_writes_failing",
			"Writes to the state file that failed in a row; 0 once one succeeds.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.runners
	ch <- c.unknown
	ch <- c.writeFailures
	ch <- c.writesFailing
}

// scaleSetKey is the label pair of one scale set.
type scaleSetKey struct{ scope, name string }

// Collect implements prometheus.Collector. A store error fails the scrape
// rather than reporting zeros that look like an empty scale set. Runners
// of a scale set ID the store has no record of are not reported.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.src.WriteHealth()
	ch <- prometheus.MustNewConstMetric(c.writeFailures, prometheus.CounterValue, float64(h.Failures))
	ch <- prometheus.MustNewConstMetric(c.writesFailing, prometheus.GaugeValue, float64(h.Failing))
	sets, err := c.src.ListScaleSets()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.runners, fmt.Errorf("list scale sets: %w", err))
		return
	}
	counts, err := c.src.CountRunners()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.runners, fmt.Errorf("count runners: %w", err))
		return
	}

	// Sum by label pair: two records with the same scope and name (a
	// scale set recreated under a new ID) must not yield duplicate series.
	byKey := make(map[scaleSetKey]map[store.RunnerState]int, len(sets))
	var order []scaleSetKey
	counted := make(map[int]bool, len(sets))
	for _, s := range sets {
		if !c.owns(s.TargetID) {
			continue
		}
		k := scaleSetKey{scope: s.Scope, name: s.Name}
		sum, ok := byKey[k]
		if !ok {
			sum = make(map[store.RunnerState]int, len(runnerStates))
			byKey[k] = sum
			order = append(order, k)
		}
		if s.ScaleSetID == 0 || counted[s.ScaleSetID] {
			continue // not yet created on GitHub, or already counted
		}
		counted[s.ScaleSetID] = true
		for state, n := range counts[s.ScaleSetID] {
			sum[state] += n
		}
	}
	for _, k := range order {
		sum := byKey[k]
		for _, state := range runnerStates {
			ch <- prometheus.MustNewConstMetric(c.runners, prometheus.GaugeValue, float64(sum[state]), k.name, k.scope, string(state))
		}
		ch <- prometheus.MustNewConstMetric(c.unknown, prometheus.GaugeValue, float64(sum[store.StateUnknownInstance]), k.name, k.scope)
	}
}

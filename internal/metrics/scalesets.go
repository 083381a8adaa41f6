package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Every scale set has the same eleven gauges. As GaugeVecs each series
// was a prometheus gauge with its own label pairs, about 4 KiB of heap per
// idle scale set; here a scale set is one record of about 150 bytes, its
// label values held once, and the series are built at scrape time
// (BenchmarkScaleSetGauges1000 measures it).

// scaleSetGauge is one of the gauges every scale set has.
type scaleSetGauge uint8

const (
	gaugeListeners scaleSetGauge = iota
	gaugeLastPoll
	gaugeDesired
	gaugeMinRunners
	gaugeMaxRunners
	gaugeAssigned
	gaugeRunning
	gaugeRegistered
	gaugeBusy
	gaugeIdle
	gaugeProvisionsStuck
	numScaleSetGauges
)

// A gauge is set when its bit in scaleSetValues.set is: fails to compile
// if the gauges outgrow the mask.
var _ [16 - numScaleSetGauges]struct{}

// scaleSetValues are the gauges of one scale set.
type scaleSetValues struct {
	value [numScaleSetGauges]float64
	set   uint16 // bit g: gauge g has been set, so it has a series
}

// gaugeValue is a value to set a gauge to.
type gaugeValue struct {
	gauge scaleSetGauge
	value float64
}

// scaleSetGauges is the collector of the gauges of every scale set. Its
// methods are safe for concurrent use.
type scaleSetGauges struct {
	descs [numScaleSetGauges]*prometheus.Desc

	mu sync.Mutex
	// sets holds the scale sets with a gauge set, until forget.
	sets map[scaleSetKey]*scaleSetValues
}

var _ prometheus.Collector = (*scaleSetGauges)(nil)

func newScaleSetGauges() *scaleSetGauges {
	c := &scaleSetGauges{sets: map[scaleSetKey]*scaleSetValues{}}
	desc := func(g scaleSetGauge, name, help string) {
		c.descs[g] = prometheus.NewDesc(name, help, scaleSetLabels, nil)
	}
	desc(gaugeListeners, "shoes_scaleset_listeners", "1 while the scale set's listener holds a message session, else 0.")
	desc(gaugeLastPoll, "shoes_scaleset_listener_last_poll_timestamp_seconds",
		"Unix time of the scale set listener's last successful poll of its message queue (an empty long-poll included).")
	desc(gaugeDesired, "shoes_scaleset_desired_runners", "Number of runners the scale set wants, from the latest statistics.")
	desc(gaugeMinRunners, "shoes_scaleset_min_runners", "The scale set's effective min runners (flags, or the matching rule of the policy file).")
	desc(gaugeMaxRunners, "shoes_scaleset_max_runners", "The scale set's effective max runners (flags, or the matching rule of the policy file).")
	desc(gaugeAssigned, "shoes_scaleset_assigned_jobs", "Jobs assigned to the scale set, from the latest statistics.")
	desc(gaugeRunning, "shoes_scaleset_running_jobs", "Jobs running on the scale set, from the latest statistics.")
	desc(gaugeRegistered, "shoes_scaleset_registered_runners", "Runners registered with the scale set, from the latest statistics.")
	desc(gaugeBusy, "shoes_scaleset_busy_runners", "Busy runners of the scale set, from the latest statistics.")
	desc(gaugeIdle, "shoes_scaleset_idle_runners", "Idle runners of the scale set, from the latest statistics.")
	desc(gaugeProvisionsStuck, "shoes_scaleset_provisions_stuck",
		"AddInstance calls of the scale set running for longer than half the plugin's AddInstance timeout.")
	return c
}

// set sets gauges of a scale set, all at once.
func (c *scaleSetGauges) set(scope, scaleSet string, values ...gaugeValue) {
	k := scaleSetKey{scope: scope, name: scaleSet}
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.sets[k]
	if v == nil {
		v = &scaleSetValues{}
		c.sets[k] = v
	}
	for _, gv := range values {
		v.value[gv.gauge] = gv.value
		v.set |= 1 << gv.gauge
	}
}

// forget drops the gauges of a scale set.
func (c *scaleSetGauges) forget(scope, scaleSet string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sets, scaleSetKey{scope: scope, name: scaleSet})
}

// Describe implements prometheus.Collector.
func (c *scaleSetGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: a series per gauge set. It
// copies the values under the lock and builds the series after, so that
// the Recorder does not wait on the scrape.
func (c *scaleSetGauges) Collect(ch chan<- prometheus.Metric) {
	type entry struct {
		key scaleSetKey
		scaleSetValues
	}
	c.mu.Lock()
	entries := make([]entry, 0, len(c.sets))
	for k, v := range c.sets {
		entries = append(entries, entry{k, *v})
	}
	c.mu.Unlock()

	for _, e := range entries {
		for g := range numScaleSetGauges {
			if e.set&(1<<g) == 0 {
				continue
			}
			// A label value that is not UTF-8 fails the scrape, where a
			// GaugeVec panicked in the setter.
			m, err := prometheus.NewConstMetric(c.descs[g], prometheus.GaugeValue, e.value[g], e.key.name, e.key.scope)
			if err != nil {
				m = prometheus.NewInvalidMetric(c.descs[g], err)
			}
			ch <- m
		}
	}
}

package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
)

// PoolSource reports the pool of plugin processes: the shoes host.
type PoolSource interface {
	PoolStats() shoes.PoolStats
}

var _ PoolSource = (*shoes.Host)(nil)

// poolCollector reports the plugin process pool at scrape time.
type poolCollector struct {
	src       PoolSource
	size      *prometheus.Desc
	processes *prometheus.Desc
	busy      *prometheus.Desc
}

var _ prometheus.Collector = (*poolCollector)(nil)

// NewPoolCollector returns the collector of the plugin process pool,
// read at scrape time: shoes_scaleset_plugin_pool_size,
// shoes_scaleset_plugin_processes and shoes_scaleset_plugin_processes_busy.
// The daemon registers it once the host exists.
func NewPoolCollector(src PoolSource) prometheus.Collector {
	return &poolCollector{
		src: src,
		size: prometheus.NewDesc("shoes_scaleset_plugin_pool_size",
			"The most plugin processes that may run at once (--plugin-pool-size).", nil, nil),
		processes: prometheus.NewDesc("shoes_scaleset_plugin_processes",
			"Plugin processes started and alive, idle or in a call.", nil, nil),
		busy: prometheus.NewDesc("shoes_scaleset_plugin_processes_busy",
			"Plugin processes in a call (AddInstance or DeleteInstance); at the pool size, further calls wait.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.processes
	ch <- c.busy
}

// Collect implements prometheus.Collector.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.PoolStats()
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(s.Size))
	ch <- prometheus.MustNewConstMetric(c.processes, prometheus.GaugeValue, float64(s.Processes))
	ch <- prometheus.MustNewConstMetric(c.busy, prometheus.GaugeValue, float64(s.Busy))
}

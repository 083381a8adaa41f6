package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReplicaSource is this replica's place among the replicas sharing the
// targets through etcd.
type ReplicaSource interface {
	// Owned returns the targets this replica owns.
	Owned() []string
	// Leader reports whether it is the leader.
	Leader() bool
	// SafeUntil is its safe deadline: it may act on its targets until then.
	SafeUntil() time.Time
}

// replicaCollector reports the replica's ownership at scrape time.
type replicaCollector struct {
	src    ReplicaSource
	now    func() time.Time
	owned  *prometheus.Desc
	leader *prometheus.Desc
	safe   *prometheus.Desc
}

// NewReplicaCollector returns the collector of a replica's ownership:
// shoes_scaleset_replica_owned_targets, shoes_scaleset_replica_leader and
// shoes_scaleset_replica_safe_seconds. The daemon registers it with
// --store etcd.
func NewReplicaCollector(src ReplicaSource, now func() time.Time) prometheus.Collector {
	if now == nil {
		now = time.Now
	}
	return &replicaCollector{
		src: src,
		now: now,
		owned: prometheus.NewDesc("shoes_scaleset_replica_owned_targets",
			"Targets this replica owns (--store etcd); the sum over the replicas is the number of targets served.", nil, nil),
		leader: prometheus.NewDesc("shoes_scaleset_replica_leader",
			"1 while this replica is the leader, which does the chores of removed targets and the history, else 0.", nil, nil),
		safe: prometheus.NewDesc("shoes_scaleset_replica_safe_seconds",
			"Seconds until this replica's safe deadline (its last acknowledged lease renewal plus the TTL); at 0 or below it has stopped acting on its targets.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *replicaCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.owned
	ch <- c.leader
	ch <- c.safe
}

// Collect implements prometheus.Collector.
func (c *replicaCollector) Collect(ch chan<- prometheus.Metric) {
	leader := 0.0
	if c.src.Leader() {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(c.owned, prometheus.GaugeValue, float64(len(c.src.Owned())))
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, leader)
	ch <- prometheus.MustNewConstMetric(c.safe, prometheus.GaugeValue, c.src.SafeUntil().Sub(c.now()).Seconds())
}

// Package bench holds the performance benchmarks of shoes-scaleset (build
// tag bench; `make bench` runs them). They drive the real binary (`demo`,
// `sim serve`, `run`, `runners ls`) and print the figures of
// docs/performance.md: a burst against the bound ceil(N/C)·L and its floor
// on this machine (a minimal driver instead of the controller), a warm pool,
// recovery after kill -9, the footprint of 200 idle targets, and the state
// file with 10,000 runners and 100,000 history records; and replicas on
// etcd (issue 13, replicas_test.go, with a real etcd server from
// internal/etcdtest): failover after kill -9 of a replica, the P1 burst
// with 1 and 3 replicas next to the state file, and the footprint of 3
// replicas sharing 300 idle targets. They never fail on a time; they fail
// only when a run goes wrong (jobs not completed, instances leaked, a
// process failing).
//
// Knobs (environment):
//
//	BENCH_QUICK=1   one configuration of each figure, one run, short windows
//	BENCH_RUNS=N    runs per configuration, medians reported (default 3;
//	                P1: 5 of its headline configuration, 2 of each other;
//	                the P1 burst on etcd: 2 of each mode)
//	BENCH_OUT=FILE  also append the tables (Markdown) to FILE
//
// cmd/profdemo is the binary with CPU profiling, used to find overheads.
package bench

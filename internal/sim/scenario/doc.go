// Package scenario is the one harness of whole-loop runs: shoes-scaleset
// against the simulated peers (package sim), driven through a workload,
// then checked. It holds what every driver shares, the demo (`shoes-scaleset
// demo`), the reliability suite, the benchmarks and the cli tests:
//
//   - Check, the one invariant checker: every job completed, no instance
//     leaked, no runner provisioned twice, no session left open, no
//     protocol violation;
//   - Sim, the control side of the peers, in this process (InProcess) or
//     a `sim serve` process (SimClient), and the workload on it
//     (QueueRoundRobin, Listening, JobsFinal, ...);
//   - FreeLoopbackAddr.
//
// It imports no testing package, since the demo is product code. The
// process drivers of the tests (start `sim serve` and `run` as processes,
// kill them, run one-shot commands, gather the inputs of Check from a
// stopped daemon's files) are in scenariotest.
package scenario

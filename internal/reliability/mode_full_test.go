//go:build reliability

package reliability

// parallelScenarios: `make reliability` runs one scenario at a time, so
// that the durations and figures it writes to docs/reliability.md are
// measured without another scenario's load on the machine.
const parallelScenarios = false

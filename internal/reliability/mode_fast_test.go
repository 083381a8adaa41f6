//go:build !reliability

package reliability

// parallelScenarios: in `make test` the fast scenarios run side by side
// (up to -parallel, GOMAXPROCS by default). Each has its own processes,
// ports and directories, and they mostly wait on timers, so the package
// takes about half the wall time.
const parallelScenarios = true

//go:build !reliability

package reliability

import "time"

// parallelScenarios: in `make test` the fast scenarios run side by side
// (up to -parallel, GOMAXPROCS by default). Each has its own processes,
// ports and directories, and they mostly wait on timers, so the package
// takes about half the wall time.
const parallelScenarios = true

// readinessPollHold is TestReadyWithinAPollHold's poll hold. 5s keeps
// `make test` short and still tells a listener that is ready once its
// poll is sent (within 2s) from one that waits the hold for an answer.
const readinessPollHold = 5 * time.Second

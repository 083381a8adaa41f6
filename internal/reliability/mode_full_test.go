//go:build reliability

package reliability

import "time"

// parallelScenarios: `make reliability` runs one scenario at a time, so
// that the durations and figures it writes to docs/reliability.md are
// measured without another scenario's load on the machine.
const parallelScenarios = false

// readinessPollHold is TestReadyWithinAPollHold's poll hold: issue 14's
// 20s, as GitHub's broker holds a poll for up to about 50s.
const readinessPollHold = 20 * time.Second

// Package reliability runs shoes-scaleset as separate processes, `sim
// serve` and `run` (killed with SIGKILL at chosen points and restarted),
// with the fake shoes plugin, and checks invariants after every scenario:
// every job completed, no instance leaked, no runner provisioned twice, no
// session left open, no protocol violation, and a state file that opens.
//
// Without build tags only a fast subset runs (it is part of `make test`);
// `make reliability` runs every scenario (build tag reliability) and, with
// RELIABILITY_REPORT=1, rewrites docs/reliability.md from the results.
package reliability

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testbin"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// envReport names the variable that makes the suite write docs/reliability.md.
const envReport = "RELIABILITY_REPORT"

var (
	// binary is the shoes-scaleset binary built once by TestMain: `run`,
	// `sim serve`, `sim plugin` (the fake plugin) and `sim runner`.
	binary string
	// moduleRoot is the directory of go.mod.
	moduleRoot string
	// suiteStart is when the suite started, for the report.
	suiteStart time.Time
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	suiteStart = time.Now()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go env GOMOD:", err)
		return 1
	}
	moduleRoot = filepath.Dir(strings.TrimSpace(string(gomod)))
	if parallelScenarios {
		defaultParallel(fastParallel)
	}
	code := testbin.MainAll(m, testbin.Target{Pkg: "./cmd/shoes-scaleset", Bin: &binary}, etcdtest.Target())
	if os.Getenv(envReport) != "" {
		path := filepath.Join(moduleRoot, "docs", "reliability.md")
		if err := writeReport(path, time.Since(suiteStart)); err != nil {
			fmt.Fprintln(os.Stderr, "write report:", err)
			if code == 0 {
				code = 1
			}
		} else {
			fmt.Fprintln(os.Stderr, "wrote", path)
		}
	}
	return code
}

// fastParallel is how many fast scenarios `make test` runs side by side
// when -parallel is not given: more than the two cores, because a
// scenario mostly waits on its processes' timers (poll holds, latencies).
const fastParallel = 3

// defaultParallel sets -test.parallel to n unless the command line set it.
func defaultParallel(n int) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		_ = flag.Set("test.parallel", strconv.Itoa(n))
	}
}

// appKey is the GitHub App key every `sim serve` of the suite accepts.
func appKey(t testing.TB) []byte {
	_, p := testkit.SharedKey(t)
	return p
}

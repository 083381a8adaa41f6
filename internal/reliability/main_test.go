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
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envReport names the variable that makes the suite write docs/reliability.md.
const envReport = "RELIABILITY_REPORT"

var (
	// binary is the shoes-scaleset binary built once by TestMain: `run`,
	// `sim serve`, `sim plugin` (the fake plugin) and `sim runner`.
	binary string
	// moduleRoot is the directory of go.mod.
	moduleRoot string
	// appKeyPEM is the GitHub App key every `sim serve` accepts.
	appKeyPEM []byte
	// suiteStart is when the suite started, for the report.
	suiteStart time.Time
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	suiteStart = time.Now()
	dir, err := os.MkdirTemp("", "reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go env GOMOD:", err)
		return 1
	}
	moduleRoot = filepath.Dir(strings.TrimSpace(string(gomod)))
	binary = filepath.Join(dir, "shoes-scaleset")
	build := exec.Command("go", "build", "-o", binary, "./cmd/shoes-scaleset")
	build.Dir = moduleRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build shoes-scaleset: %v\n%s", err, out)
		return 1
	}
	appKeyPEM, err = newRSAKeyPEM()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
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

// newRSAKeyPEM returns a new RSA private key as PKCS#1 PEM.
func newRSAKeyPEM() ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate RSA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), nil
}

// Package testbin builds this module's binaries for tests that need a
// real process: the fake shoes plugin, or shoes-scaleset itself.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Build compiles the main package pkg of this module (e.g.
// "./cmd/shoes-scaleset") into dir and returns the binary's path.
func Build(dir, pkg string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside the module")
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Dir(gomod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, b)
	}
	return bin, nil
}

// Main is a TestMain body: it builds pkg into a temporary directory, sets
// *bin to the binary, runs the tests and removes the directory. It
// returns the exit code for os.Exit.
func Main(m *testing.M, pkg string, bin *string) int {
	return MainAll(m, Target{Pkg: pkg, Bin: bin})
}

// Target is a main package to build and where to put the binary's path.
type Target struct {
	Pkg string
	Bin *string
}

// MainAll is Main for several binaries, such as shoes-scaleset and the
// test etcd server (etcdtest.Target).
func MainAll(m *testing.M, targets ...Target) int {
	dir, err := os.MkdirTemp("", "testbin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, t := range targets {
		if *t.Bin, err = Build(dir, t.Pkg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

package shoesfake

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// KillAll kills the process group of every instance under stateDir: what
// tests and the demo do when they stop, since instances outlive the
// plugin processes that created them by design.
func KillAll(stateDir string) {
	entries, _ := os.ReadDir(stateDir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(stateDir, e.Name(), filePgid))
		if err != nil {
			continue
		}
		if pgid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pgid > 1 {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
}

// Command profdemo is shoes-scaleset with CPU and lock profiling: every
// process it runs as (the demo, and its plugin processes, which re-execute
// it) writes $BENCH_CPUPROFILE_DIR/<command>-<pid>.pprof (CPU) and
// <command>-<pid>.mutex.pprof (contended mutexes) when that variable is set.
// It is how the overheads in docs/performance.md were found:
//
//	go build -o /tmp/profdemo ./internal/bench/cmd/profdemo
//	BENCH_CPUPROFILE_DIR=/tmp/prof /tmp/profdemo demo --json --jobs 500 ...
//	go tool pprof -top /tmp/profdemo /tmp/prof/demo-*.pprof
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/shoes-scaleset/shoes-scaleset/internal/cli"
)

func main() {
	os.Exit(run())
}

func run() int {
	if dir := os.Getenv("BENCH_CPUPROFILE_DIR"); dir != "" {
		name := "process"
		if len(os.Args) > 1 {
			name = os.Args[1]
			if len(os.Args) > 2 && name == "sim" {
				name = os.Args[2]
			}
		}
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", name, os.Getpid())))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
		// Lock contention too: every contended sync.Mutex, with the time
		// its waiters spent.
		runtime.SetMutexProfileFraction(1)
		defer func() {
			if f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.mutex.pprof", name, os.Getpid()))); err == nil {
				_ = pprof.Lookup("mutex").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Main(ctx, stop, os.Args[1:], os.Stdout, os.Stderr)
}

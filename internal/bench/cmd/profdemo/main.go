// Command profdemo is shoes-scaleset with CPU, lock and heap profiling:
// every process it runs as (the demo, and its plugin processes, which
// re-execute it) writes, when BENCH_CPUPROFILE_DIR is set:
//
//   - <command>-<pid>.pprof: CPU, from start to exit (to the first
//     period with BENCH_HEAPPROFILE_EVERY);
//   - <command>-<pid>.mutex.pprof: contended mutexes, at exit;
//   - <command>-<pid>.heap.pprof and .goroutine.pprof: the heap
//     (inuse_space, alloc_space, …) and the goroutines, at exit;
//   - with BENCH_HEAPPROFILE_EVERY (a duration, e.g. 1m) also
//     <command>-<pid>.heap-<elapsed>.pprof, .goroutine-<elapsed>.pprof and
//     .memstats-<elapsed>.txt (where the RSS goes: heap, stacks, runtime)
//     every that often, to see what grows; and the CPU profile of each
//     period in .cpu-from-<elapsed>.pprof.
//
// It is how the overheads in docs/performance.md were found:
//
//	go build -o /tmp/profdemo ./internal/bench/cmd/profdemo
//	BENCH_CPUPROFILE_DIR=/tmp/prof /tmp/profdemo demo --json --jobs 500 ...
//	go tool pprof -top /tmp/profdemo /tmp/prof/demo-*.pprof
//	go tool pprof -sample_index=inuse_space -top /tmp/profdemo /tmp/prof/run-*.heap-10m0s.pprof
//
// The P4 footprint bench runs it in place of shoes-scaleset with
// BENCH_P4_BINARY=/tmp/profdemo.
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
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/cli"
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if dir := os.Getenv("BENCH_CPUPROFILE_DIR"); dir != "" {
		name := "process"
		if len(os.Args) > 1 {
			name = os.Args[1]
			if len(os.Args) > 2 && name == "sim" {
				name = os.Args[2]
			}
		}
		prefix := filepath.Join(dir, fmt.Sprintf("%s-%d", name, os.Getpid()))
		cpu := &cpuProfile{}
		cpu.start(prefix + ".pprof")
		defer cpu.stop()
		// Lock contention too: every contended sync.Mutex, with the time
		// its waiters spent.
		runtime.SetMutexProfileFraction(1)
		defer writeProfile("mutex", prefix+".mutex.pprof")
		defer writeProfile("heap", prefix+".heap.pprof")
		defer writeProfile("goroutine", prefix+".goroutine.pprof")
		if every, err := time.ParseDuration(os.Getenv("BENCH_HEAPPROFILE_EVERY")); err == nil && every > 0 {
			done := make(chan struct{})
			finished := make(chan struct{})
			go func() {
				defer close(finished)
				t := time.NewTicker(every)
				defer t.Stop()
				start := time.Now()
				for {
					select {
					case <-done:
						return
					case now := <-t.C:
						at := now.Sub(start).Round(time.Second)
						writeProfile("heap", fmt.Sprintf("%s.heap-%s.pprof", prefix, at))
						writeProfile("goroutine", fmt.Sprintf("%s.goroutine-%s.pprof", prefix, at))
						writeMemStats(fmt.Sprintf("%s.memstats-%s.txt", prefix, at))
						// The CPU profile goes on in a new file: each
						// covers one period, so an idle one can be read
						// apart from the start.
						cpu.stop()
						cpu.start(fmt.Sprintf("%s.cpu-from-%s.pprof", prefix, at))
					}
				}
			}()
			defer func() { close(done); <-finished }()
		}
	}
	return cli.Main(ctx, stop, os.Args[1:], os.Stdout, os.Stderr)
}

// writeProfile writes the named runtime profile to path; the heap profile
// after a GC, so that inuse_space is what is live.
func writeProfile(name, path string) {
	if name == "heap" {
		runtime.GC()
	}
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = pprof.Lookup(name).WriteTo(f, 0)
}

// writeMemStats writes the runtime's memory accounting to path, in MiB:
// what of the process's RSS is heap, goroutine stacks and the runtime's own.
func writeMemStats(path string) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	s := fmt.Sprintf("goroutines %d\nSys %.1f\nHeapInuse %.1f\nHeapIdle %.1f\nHeapReleased %.1f\nHeapAlloc %.1f\nHeapObjects %d\n"+
		"StackInuse %.1f\nMSpanInuse %.1f\nMCacheInuse %.1f\nBuckHashSys %.1f\nGCSys %.1f\nOtherSys %.1f\nNumGC %d\nPauseTotal %s\nGCCPUFraction %.4f\n",
		runtime.NumGoroutine(), mib(m.Sys), mib(m.HeapInuse), mib(m.HeapIdle), mib(m.HeapReleased), mib(m.HeapAlloc), m.HeapObjects,
		mib(m.StackInuse), mib(m.MSpanInuse), mib(m.MCacheInuse), mib(m.BuckHashSys), mib(m.GCSys), mib(m.OtherSys), m.NumGC,
		time.Duration(m.PauseTotalNs), m.GCCPUFraction)
	_ = os.WriteFile(path, []byte(s), 0o644)
}

// cpuProfile is the CPU profile being written.
type cpuProfile struct{ f *os.File }

func (c *cpuProfile) start(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	if pprof.StartCPUProfile(f) != nil {
		f.Close()
		return
	}
	c.f = f
}

func (c *cpuProfile) stop() {
	if c.f == nil {
		return
	}
	pprof.StopCPUProfile()
	c.f.Close()
	c.f = nil
}

//go:build bench

package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testbin"
)

// The benchmarks drive the binary with the shared scenario harness
// (internal/sim/scenario/scenariotest): `demo`, `sim serve` and `run` as
// processes. What is their own: the knobs, the statistics, the CPU and
// memory accounting and the report.

// binary is shoes-scaleset, built once by TestMain, with the test etcd
// server of the replica figures (etcdtest).
var binary string

func TestMain(m *testing.M) {
	os.Exit(testbin.MainAll(m, testbin.Target{Pkg: "./cmd/shoes-scaleset", Bin: &binary}, etcdtest.Target()))
}

// quick reports BENCH_QUICK: one configuration of each figure.
func quick() bool { return os.Getenv("BENCH_QUICK") != "" && os.Getenv("BENCH_QUICK") != "0" }

// runs is how often each configuration runs: BENCH_RUNS, else 3 (1 quick).
func runs() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_RUNS")); err == nil && n > 0 {
		return n
	}
	if quick() {
		return 1
	}
	return 3
}

// ---------------------------------------------------------------------------
// output

var printOnce sync.Once

// report prints a block of the results (Markdown) on stdout and appends
// it to BENCH_OUT, after the machine's description once.
func report(t *testing.T, format string, args ...any) {
	t.Helper()
	printOnce.Do(func() { write(t, machine()) })
	write(t, fmt.Sprintf(format, args...))
}

func write(t *testing.T, s string) {
	t.Helper()
	fmt.Print(s)
	if p := os.Getenv("BENCH_OUT"); p != "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Errorf("BENCH_OUT: %v", err)
			return
		}
		defer f.Close()
		if _, err := io.WriteString(f, s); err != nil {
			t.Errorf("BENCH_OUT: %v", err)
		}
	}
}

// machine describes the machine the figures come from.
func machine() string {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if kb, err := strconv.Atoi(f[1]); err == nil {
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return fmt.Sprintf("\nmachine: %d CPUs (%s), %s RAM, %s %s/%s, load average at start %s\n",
		runtime.NumCPU(), model, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH, loadAvg())
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// ---------------------------------------------------------------------------
// statistics

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread formats the median of xs and, with more than one run, its range.
func spread(xs []float64, format string) string {
	m := fmt.Sprintf(format, median(xs))
	if len(xs) < 2 {
		return m
	}
	return fmt.Sprintf("%s ("+format+"–"+format+")", m, slices.Min(xs), slices.Max(xs))
}

// ---------------------------------------------------------------------------
// CPU accounting

// cpuSample is the machine's CPU time so far, from /proc/stat.
type cpuSample struct{ busy, total float64 }

func sampleCPU() cpuSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var s cpuSample
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		s.total += v
		if i != 3 && i != 4 { // idle, iowait
			s.busy += v
		}
	}
	return s
}

// clockTick is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTick = 100.0

// busySeconds is the CPU time the whole machine spent between two samples.
func busySeconds(a, b cpuSample) float64 { return (b.busy - a.busy) / clockTick }

// processCPU is a process's user+system CPU time so far, in seconds, from
// /proc/<pid>/stat.
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	// After the command: state(0) ... utime(11) stime(12).
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clockTick, nil
}

// childrenRSS is the resident set size, in bytes, of the processes whose
// parent is pid (run's plugin processes), and how many there are.
func childrenRSS(pid int) (int64, int) {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var total int64
	n := 0
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// After the command: state(0) ppid(1).
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		child, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if rss, err := processRSS(child); err == nil {
			total += rss
			n++
		}
	}
	return total, n
}

// processRSS is a process's resident set size in bytes, from
// /proc/<pid>/status.
func processRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

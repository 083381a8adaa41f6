package store

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCreateRunnerParallel measures CreateRunner under concurrent
// writers, which share batch commits (and fsyncs). goroutines is the number
// of concurrent callers: b.RunParallel starts GOMAXPROCS×parallelism.
func BenchmarkCreateRunnerParallel(b *testing.B) {
	for _, parallelism := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("goroutines=%dxGOMAXPROCS", parallelism), func(b *testing.B) {
			s := openStore(b, Options{})
			var seq atomic.Int64
			b.SetParallelism(parallelism)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := Runner{
						Name:       fmt.Sprintf("myshoes-%d", seq.Add(1)),
						TargetID:   "target-1",
						Scope:      "org/repo",
						ScaleSetID: 1,
						ShoesType:  "lxd",
					}
					if err := s.CreateRunner(r); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkListRunners10k lists 10,000 runners, all of them and a filtered
// third.
func BenchmarkListRunners10k(b *testing.B) {
	const n = 10000
	s := openStore(b, Options{})
	seedRunners(b, s, n, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	for _, bm := range []struct {
		name   string
		filter RunnerFilter
		want   int
	}{
		{"all", RunnerFilter{}, n},
		{"scale_set", RunnerFilter{ScaleSetID: 2}, n / 3},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rs, err := s.ListRunners(bm.filter)
				if err != nil {
					b.Fatal(err)
				}
				if len(rs) != bm.want {
					b.Fatalf("listed %d runners, want %d", len(rs), bm.want)
				}
			}
		})
	}
}

// BenchmarkCountRunners500: what the daemon's reconcile pays per scale set
// in a burst of 500 runners, with none changed since the last scan
// ("unchanged") and with one written between scans ("one_changed").
func BenchmarkCountRunners500(b *testing.B) {
	const n = 500
	s := openStore(b, Options{})
	seedRunners(b, s, n, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	rs, err := s.ListRunners(RunnerFilter{})
	if err != nil {
		b.Fatal(err)
	}
	for _, bm := range []struct {
		name  string
		write bool
	}{{"unchanged", false}, {"one_changed", true}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if bm.write {
					b.StopTimer()
					if _, err := s.UpdateRunner(rs[i%n].Name, func(r *Runner) error { r.Attempts++; return nil }); err != nil {
						b.Fatal(err)
					}
					i++
					b.StartTimer()
				}
				counts, err := s.CountRunners()
				if err != nil {
					b.Fatal(err)
				}
				if total := countAll(counts); total != n {
					b.Fatalf("counted %d runners, want %d", total, n)
				}
			}
		})
	}
}

func countAll(counts map[int]map[RunnerState]int) int {
	total := 0
	for _, byState := range counts {
		for _, c := range byState {
			total += c
		}
	}
	return total
}

package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/replica"
)

// BenchmarkEtcdWriteCost is the cost of a runner's writes on each
// backend (issue 13): one op is a CreateRunner (pending) then a
// SetRunnerState to idle, the two writes every provisioned runner starts
// with. The backends:
//
//   - bbolt: the state file, as one `run` has it (batched commits, fsync);
//   - etcd: the state in etcd, not fenced (a reader's store, `state migrate`);
//   - etcd-fenced: as a replica writes it, with a replica.Replica that owns
//     the target as the Fencer: every commit also compares the target's
//     ownership key.
//
// serial is one writer, each op waiting for its commits; parallel is
// 16×GOMAXPROCS writers, whose writes share bbolt's batch commits and
// etcd's raft batches. The etcd server is a real one (internal/etcdtest)
// on loopback, with its data directory in the test's temporary directory.
func BenchmarkEtcdWriteCost(b *testing.B) {
	c := etcdtest.Start(b).Client()
	var prefixes atomic.Int64
	backends := []struct {
		name string
		open func(b *testing.B) *Store
	}{
		{"bbolt", func(b *testing.B) *Store { return openStore(b, Options{}) }},
		{"etcd", func(b *testing.B) *Store {
			s, err := OpenEtcd(EtcdOptions{Client: c, Prefix: fmt.Sprintf("/bench-%d/state/", prefixes.Add(1)), OwnerID: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"etcd-fenced", func(b *testing.B) *Store {
			prefix := fmt.Sprintf("/bench-%d/", prefixes.Add(1))
			return fencedStore(b, c, prefix, benchTarget)
		}},
	}
	for _, be := range backends {
		for _, mode := range []struct {
			name        string
			parallelism int // 0: serial
		}{{"serial", 0}, {"parallel=16xGOMAXPROCS", 16}} {
			b.Run(be.name+"/"+mode.name, func(b *testing.B) {
				s := be.open(b)
				var seq atomic.Int64
				op := func() error {
					name := fmt.Sprintf("myshoes-%d", seq.Add(1))
					if err := s.CreateRunner(Runner{Name: name, TargetID: benchTarget, Scope: "org/repo", ScaleSetID: 1, ShoesType: "lxd"}); err != nil {
						return err
					}
					_, err := s.SetRunnerState(name, StateIdle, func(r *Runner) { r.CloudID = "cloud-" + name })
					return err
				}
				b.ReportAllocs()
				b.ResetTimer()
				if mode.parallelism == 0 {
					for range b.N {
						if err := op(); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.SetParallelism(mode.parallelism)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := op(); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/write")
				if n, err := s.CountRunners(); err != nil || n[1][StateIdle] != int(seq.Load()) {
					b.Fatalf("idle runners stored: %v, %v; want %d", n[1], err, seq.Load())
				}
			})
		}
	}
}

// benchTarget is the target of the benchmark's runners.
const benchTarget = "t-1"

// fencedStore joins a replica under prefix, keeps its lease renewed
// until the benchmark ends, claims target and returns the state under
// prefix with the replica as its Fencer.
func fencedStore(b *testing.B, c *clientv3.Client, prefix, target string) *Store {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := replica.Join(ctx, replica.Config{Client: c, Prefix: prefix, ID: "bench", TTL: 30 * time.Second})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			b.Errorf("replica: %v", err)
		}
	})
	if _, err := r.Claim(ctx, target); err != nil {
		b.Fatal(err)
	}
	if _, ok := r.Fence(target); !ok {
		b.Fatal("the replica does not fence the target it claimed")
	}
	s, err := OpenEtcd(EtcdOptions{Client: c, Prefix: prefix + "state/", OwnerID: "bench", Fencer: r})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

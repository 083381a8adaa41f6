package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// testLockTimeout keeps the lock tests short.
const testLockTimeout = 300 * time.Millisecond

// newFakeClock returns a settable clock at 2026-03-01 12:00 UTC.
func newFakeClock() *testkit.Clock {
	return testkit.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

// testPath returns a state file path in a fresh temporary directory.
func testPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "state.db")
}

// openStore opens opts (Path defaults to a fresh file, LockTimeout to
// testLockTimeout) and closes the store when the test ends.
func openStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Path == "" {
		opts.Path = testPath(t)
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = testLockTimeout
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newTestStore opens a fresh store on a fake clock.
func newTestStore(t testing.TB) (*Store, *testkit.Clock) {
	t.Helper()
	clock := newFakeClock()
	return openStore(t, Options{Now: clock.Now}), clock
}

// fileSum returns the sha256 of a file's content.
func fileSum(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// rawUpdate edits a closed state file with bbolt directly, to build files
// this package would never write.
func rawUpdate(t testing.TB, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("bolt open %s: %v", path, err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatalf("bolt update %s: %v", path, err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("bolt close %s: %v", path, err)
	}
}

// seedRunners stores n runners in one transaction (CreateRunner one by one
// would wait for a batch commit each time). Runner i is created i seconds
// after base, in scale set 1 + i%3, with RunnerID i+1.
func seedRunners(t testing.TB, s *Store, n int, base time.Time) {
	t.Helper()
	err := s.update(func(tx txn) error {
		b := tx.bucket(bucketRunners)
		for i := range n {
			created := base.Add(time.Duration(i) * time.Second)
			r := Runner{
				Name:         fmt.Sprintf("myshoes-%08d-0000-4000-8000-000000000000", i),
				RunnerID:     int64(i + 1),
				TargetID:     fmt.Sprintf("target-%d", i%3),
				Scope:        fmt.Sprintf("org%d/repo", i%3),
				ScaleSetID:   1 + i%3,
				CloudID:      fmt.Sprintf("cloud-%d", i),
				ShoesType:    "lxd",
				IPAddress:    "10.0.0.1",
				ResourceType: "large",
				State:        StateIdle,
				StateSince:   map[RunnerState]time.Time{StatePending: created, StateIdle: created},
				CreatedAt:    created,
				UpdatedAt:    created,
			}
			if err := put(b, []byte(r.Name), r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed %d runners: %v", n, err)
	}
}

// wantNotFound checks that each named operation on what (something
// deleted or missing) failed with ErrNotFound.
func wantNotFound(t *testing.T, what string, errs map[string]error) {
	t.Helper()
	for name, err := range errs {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of a %s = %v, want ErrNotFound", name, what, err)
		}
	}
}

// list returns fn(f), a Store's ListRunners or ListHistory, or fails the
// test.
func list[F, T any](t testing.TB, fn func(F) ([]T, error), f F) []T {
	t.Helper()
	out, err := fn(f)
	if err != nil {
		t.Fatalf("list %T %+v: %v", f, f, err)
	}
	return out
}

// wantRecord fails the test unless get(key), the getter named name, reads
// want.
func wantRecord[K, T any](t testing.TB, name string, get func(K) (T, error), key K, want T) {
	t.Helper()
	got, err := get(key)
	if err != nil {
		t.Fatalf("%s(%v): %v", name, key, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %+v, want %+v", name, got, want)
	}
}

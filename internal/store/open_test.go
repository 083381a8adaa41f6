package store

import (
	"bufio"
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

func TestOptionsValidate(t *testing.T) {
	// An invalid setting is a *setting.FieldError naming the field.
	for _, tt := range []struct {
		opts           Options
		field, wantErr string
	}{
		{Options{Path: "x"}, "", ""},
		{Options{}, "Path", "path is required"},
		{Options{Path: "x", LockTimeout: -1}, "LockTimeout", "lock timeout"},
		{Options{Path: "x", HistoryMaxAge: -1}, "HistoryMaxAge", "max age"},
		{Options{Path: "x", HistoryMaxCount: -1}, "HistoryMaxCount", "max count"},
	} {
		err := tt.opts.Validate()
		if testkit.WantErr(t, err, tt.wantErr); setting.FieldOf(err) != tt.field {
			t.Errorf("Validate(%+v) = %v, want an error about %q", tt.opts, err, tt.field)
		}
	}
	// defaults fills zero Options from DefaultOptions, the one statement
	// of each default.
	o := Options{Path: "x"}
	o.defaults()
	if testkit.SameSettings(t, o, DefaultOptions()); o.Now == nil {
		t.Error("defaults left Now nil")
	}
}

var ownerIDPattern = regexp.MustCompile(`^shoes-scaleset-[a-z0-9.-]+-[0-9a-f]{8}$`)

func TestOpenCreateReopenKeepsOwnerID(t *testing.T) {
	path := testPath(t)
	s, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	owner := s.OwnerID()
	if !ownerIDPattern.MatchString(owner) {
		t.Errorf("OwnerID() = %q, want it to match %s", owner, ownerIDPattern)
	}
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	if err := s.PutScaleSet(ScaleSet{TargetID: "t1", Scope: "org"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for _, readOnly := range []bool{false, true} {
		s, err := Open(Options{Path: path, ReadOnly: readOnly})
		if err != nil {
			t.Fatalf("reopen (read-only %v): %v", readOnly, err)
		}
		if got := s.OwnerID(); got != owner {
			t.Errorf("reopen (read-only %v): OwnerID() = %q, want %q", readOnly, got, owner)
		}
		if _, err := s.GetScaleSet("t1"); err != nil {
			t.Errorf("reopen (read-only %v): %v", readOnly, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}

	other := openStore(t, Options{})
	if other.OwnerID() == owner {
		t.Errorf("two state files share owner ID %q", owner)
	}
}

func TestSanitizeHost(t *testing.T) {
	tests := []struct{ in, want string }{
		{"runner-01", "runner-01"},
		{"Runner01.Example.COM", "runner01.example.com"},
		{"a_b c", "a-b-c"},
		{"", "unknown"},
		{"___", "unknown"},
		{strings.Repeat("h", 100), strings.Repeat("h", 63)},
	}
	for _, tt := range tests {
		if got := sanitizeHost(tt.in); got != tt.want {
			t.Errorf("sanitizeHost(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestOpenFreshFiles: a state file that is missing, empty or has no
// buckets is refused by a read-only Open, which leaves it as it was, and
// initialised by a read-write Open.
func TestOpenFreshFiles(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
	}{
		{"missing", func(*testing.T, string) {}},
		{"zero length", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"bbolt file without buckets", func(t *testing.T, path string) {
			rawUpdate(t, path, func(*bolt.Tx) error { return nil })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := testPath(t)
			tt.setup(t, path)
			before, statErr := os.ReadFile(path)

			ro, err := Open(Options{Path: path, ReadOnly: true, LockTimeout: testLockTimeout})
			if err == nil {
				ro.Close()
				t.Fatal("Open(ReadOnly) succeeded, want an error")
			}
			if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open(ReadOnly) = %v, want fs.ErrNotExist naming %s", err, path)
			}
			after, err := os.ReadFile(path)
			switch {
			case statErr != nil:
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("read-only Open created %s (read: %v)", path, err)
				}
			case string(after) != string(before):
				t.Errorf("read-only Open changed %s", path)
			}

			s := openStore(t, Options{Path: path})
			if !ownerIDPattern.MatchString(s.OwnerID()) {
				t.Errorf("OwnerID() = %q", s.OwnerID())
			}
			if err := s.CreateRunner(Runner{Name: "r1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetRunner("r1"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// buildStateFile writes a real state file with enough records to span many
// pages, and returns the bytes its pages need (the high-water mark).
func buildStateFile(t *testing.T, path string) int64 {
	t.Helper()
	clock := newFakeClock()
	s, err := Open(Options{Path: path, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	seedRunners(t, s, 300, clock.Now())
	if _, err := s.FinishRunner("myshoes-00000000-0000-4000-8000-000000000000", "completed"); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st.DataSize < 16*4096 {
		t.Fatalf("state file uses only %d bytes; want many pages", st.DataSize)
	}
	return st.DataSize
}

// TestOpenNeverOverwritesBadFiles checks that a file that is not a valid
// state file of this version is refused with the right error and left
// byte-for-byte unchanged, by a read-write and by a read-only Open.
func TestOpenNeverOverwritesBadFiles(t *testing.T) {
	garbage := func(n int) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			b := make([]byte, n)
			rng := rand.New(rand.NewPCG(1, uint64(n)))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	truncated := func(size func(used int64) int64) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			used := buildStateFile(t, path)
			if err := os.Truncate(path, size(used)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
		want  error
	}{
		{"garbage 100 bytes", garbage(100), ErrCorrupt},
		{"garbage one page", garbage(4096), ErrCorrupt},
		{"garbage 64KiB", garbage(64 << 10), ErrCorrupt},
		{"text file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("targets:\n  - org/repo\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrCorrupt},
		{"truncated to one page", truncated(func(int64) int64 { return 4096 }), ErrCorrupt},
		{"truncated to half", truncated(func(used int64) int64 { return used / 2 }), ErrCorrupt},
		{"truncated by one page", truncated(func(used int64) int64 { return used - 4096 }), ErrCorrupt},
		{"meta page overwritten", func(t *testing.T, path string) {
			buildStateFile(t, path)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// Both meta pages: bbolt would otherwise fall back to the other.
			for _, off := range []int64{16, 4096 + 16} {
				if _, err := f.WriteAt([]byte("garbage-garbage-garbage"), off); err != nil {
					t.Fatal(err)
				}
			}
		}, ErrCorrupt},
		{"data pages overwritten", func(t *testing.T, path string) {
			used := buildStateFile(t, path)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rng := rand.New(rand.NewPCG(2, 3))
			junk := make([]byte, 4096)
			for pg := int64(4); pg*4096 < used; pg += 3 {
				for i := range junk {
					junk[i] = byte(rng.Uint32())
				}
				if _, err := f.WriteAt(junk, pg*4096); err != nil {
					t.Fatal(err)
				}
			}
		}, ErrCorrupt},
		{"newer schema", func(t *testing.T, path string) {
			buildStateFile(t, path)
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte("2"))
			})
		}, ErrNewerSchema},
		{"invalid schema version", func(t *testing.T, path string) {
			buildStateFile(t, path)
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte(`"one"`))
			})
		}, ErrCorrupt},
		{"foreign bbolt file", func(t *testing.T, path string) {
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("raft_log"))
				if err != nil {
					return err
				}
				return b.Put([]byte{0, 1}, []byte{2, 3})
			})
		}, ErrCorrupt},
		{"missing bucket", func(t *testing.T, path string) {
			buildStateFile(t, path)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketSessions) })
		}, ErrCorrupt},
		{"record is not JSON", func(t *testing.T, path string) {
			buildStateFile(t, path)
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket(bucketRunners).Put([]byte("myshoes-x"), []byte{0xff, 0x00})
			})
		}, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := testPath(t)
			tt.setup(t, path)
			before := fileSum(t, path)
			for _, readOnly := range []bool{false, true} {
				s, err := Open(Options{Path: path, ReadOnly: readOnly, LockTimeout: testLockTimeout})
				if err == nil {
					s.Close()
					t.Fatalf("Open(ReadOnly: %v) succeeded, want %v", readOnly, tt.want)
				}
				if !errors.Is(err, tt.want) {
					t.Errorf("Open(ReadOnly: %v) = %v, want %v", readOnly, err, tt.want)
				}
				t.Logf("Open(ReadOnly: %v): %v", readOnly, err)
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				if after := fileSum(t, path); after != before {
					t.Fatalf("Open(ReadOnly: %v) modified the file: sha256 %s -> %s", readOnly, before, after)
				}
			}
			// A failed Open holds no lock: another one fails the same way,
			// not with ErrLocked.
			if s, err := Open(Options{Path: path, LockTimeout: testLockTimeout}); !errors.Is(err, tt.want) {
				if err == nil {
					s.Close()
				}
				t.Errorf("third Open = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOpenNewerSchemaMessage(t *testing.T) {
	path := testPath(t)
	buildStateFile(t, path)
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte("7"))
	})
	_, err := Open(Options{Path: path})
	if err == nil || !strings.Contains(err.Error(), "schema 7 > supported 1") {
		t.Fatalf("Open() = %v, want the versions in the message", err)
	}
}

// TestOpenLocked opens the same file twice in one process. bbolt's flock is
// per open file description, so a second Open in the same process contends
// for the lock as another process would.
func TestOpenLocked(t *testing.T) {
	tests := []struct {
		name           string
		holder, opener bool // ReadOnly
		wantLocked     bool
	}{
		{name: "writer blocks writer", wantLocked: true},
		{name: "writer blocks reader", opener: true, wantLocked: true},
		{name: "reader blocks writer", holder: true, wantLocked: true},
		{name: "readers share", holder: true, opener: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := testPath(t)
			s, err := Open(Options{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			if tt.holder {
				s.Close()
				s = openStore(t, Options{Path: path, ReadOnly: true})
			} else {
				t.Cleanup(func() { s.Close() })
			}

			start := time.Now()
			s2, err := Open(Options{Path: path, ReadOnly: tt.opener, LockTimeout: testLockTimeout})
			elapsed := time.Since(start)
			if !tt.wantLocked {
				if err != nil {
					t.Fatalf("second Open: %v", err)
				}
				s2.Close()
				return
			}
			if err == nil {
				s2.Close()
				t.Fatal("second Open succeeded, want ErrLocked")
			}
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("second Open = %v, want ErrLocked", err)
			}
			want := "state file " + path + " is locked by another process (is another `shoes-scaleset run` using it?)"
			if err.Error() != want {
				t.Errorf("message = %q, want %q", err, want)
			}
			t.Logf("ErrLocked after %v (LockTimeout %v)", elapsed, testLockTimeout)
			// It waited for the lock (bbolt gives up one 50ms retry early),
			// and then gave up rather than hang.
			if elapsed < testLockTimeout/2 || elapsed > testLockTimeout+5*time.Second {
				t.Errorf("ErrLocked after %v, want about %v", elapsed, testLockTimeout)
			}
		})
	}
}

const holdLockEnv = "SHOES_SCALESET_STORE_TEST_HOLD_LOCK"

// TestHelperHoldLock is not a test: run as a child process by
// TestOpenLockedByAnotherProcess, it holds the store open until stdin closes.
func TestHelperHoldLock(t *testing.T) {
	path := os.Getenv(holdLockEnv)
	if path == "" {
		t.Skip("helper process for TestOpenLockedByAnotherProcess")
	}
	s, err := Open(Options{Path: path})
	if err != nil {
		os.Stdout.WriteString("error: " + err.Error() + "\n")
		os.Exit(3)
	}
	os.Stdout.WriteString("locked\n")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until EOF
	s.Close()
	os.Exit(0)
}

func TestOpenLockedByAnotherProcess(t *testing.T) {
	path := testPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
	cmd.Env = append(os.Environ(), holdLockEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("child: %q, %v", line, err)
	}

	for _, readOnly := range []bool{false, true} {
		_, err := Open(Options{Path: path, ReadOnly: readOnly, LockTimeout: testLockTimeout})
		if !errors.Is(err, ErrLocked) {
			t.Errorf("Open(ReadOnly: %v) while another process holds the file = %v, want ErrLocked", readOnly, err)
		}
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	s := openStore(t, Options{Path: path})
	if s.OwnerID() == "" {
		t.Error("no owner ID after the child created the file")
	}
}

func TestReadOnlyStoreRefusesWrites(t *testing.T) {
	path := testPath(t)
	s, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRunner(Runner{Name: "r1"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	before := fileSum(t, path)

	ro := openStore(t, Options{Path: path, ReadOnly: true})
	writes := map[string]func() error{
		"PutScaleSet":   func() error { return ro.PutScaleSet(ScaleSet{TargetID: "t"}) },
		"PutSession":    func() error { return ro.PutSession(Session{ScaleSetID: 1}) },
		"RecordMessage": func() error { return ro.RecordMessage(1, 2, nil) },
		"CreateRunner":  func() error { return ro.CreateRunner(Runner{Name: "r2"}) },
		"UpdateRunner": func() error {
			_, err := ro.UpdateRunner("r1", func(*Runner) error { return nil })
			return err
		},
		"FinishRunner": func() error { _, err := ro.FinishRunner("r1", "completed"); return err },
		"PruneHistory": func() error { _, err := ro.PruneHistory(); return err },
	}
	for name, write := range writes {
		if err := write(); !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only store = %v, want ErrReadOnly", name, err)
		}
	}
	if _, err := ro.GetRunner("r1"); err != nil {
		t.Errorf("GetRunner on a read-only store: %v", err)
	}
	ro.Close()
	if fileSum(t, path) != before {
		t.Error("read-only store modified the file")
	}
}

// TestUnknownFieldsAreRead: a record written by a newer shoes-scaleset that
// only added fields still reads; a record of a newer version does not.
func TestUnknownFieldsAreRead(t *testing.T) {
	s, _ := newTestStore(t)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRunners)
		if err := b.Put([]byte("r-extra"), []byte(`{"v":1,"added_later":true,"data":{"name":"r-extra","runner_id":7,"state":"busy","gpu_count":2,"placement":{"zone":"a"}}}`)); err != nil {
			return err
		}
		return b.Put([]byte("r-newer"), []byte(`{"v":2,"data":{"name":"r-newer"}}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.GetRunner("r-extra")
	if err != nil {
		t.Fatalf("GetRunner with unknown fields: %v", err)
	}
	if r.Name != "r-extra" || r.RunnerID != 7 || r.State != StateBusy {
		t.Errorf("GetRunner = %+v", r)
	}
	if _, err := s.GetRunner("r-newer"); !errors.Is(err, ErrNewerSchema) {
		t.Errorf("GetRunner of a newer record = %v, want ErrNewerSchema", err)
	}
}

// TestStoredForm pins the on-disk shape: a versioned envelope and
// snake_case fields.
func TestStoredForm(t *testing.T) {
	s, _ := newTestStore(t)
	if err := s.CreateRunner(Runner{Name: "r1", RunnerID: 5, ScaleSetID: 2}); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		raw = append(raw, tx.Bucket(bucketRunners).Get([]byte("r1"))...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		V    int            `json:"v"`
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.V != 1 || got.Data["name"] != "r1" || got.Data["runner_id"] != 5.0 || got.Data["scale_set_id"] != 2.0 {
		t.Errorf("stored form = %s", raw)
	}
}

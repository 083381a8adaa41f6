// Package store owns the shoes-scaleset state file: one bbolt database that
// holds the scale sets, the listener sessions, the runner records and a
// bounded history of finished runners, so that a restart loses nothing.
//
// It is the only package that imports bbolt, and a *bbolt.Tx never leaves it.
// Every method is one transaction. Writes that many goroutines make at once
// (runner create/update/finish, RecordMessage) go through bbolt's Batch, so
// concurrent writers share one commit and one fsync.
//
// Open never writes to a file it has not validated: an existing file is first
// opened read-only (shared lock) and inspected, and only a file that passes is
// reopened read-write. A file that is corrupt, is not a bbolt file, or was
// written by a newer shoes-scaleset is left byte-for-byte unchanged.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
	bolt "go.etcd.io/bbolt"
)

// maxBatchDelay is how long a batched write waits for others to share its
// commit (bbolt's default is 10ms). A lone writer waits this long; under
// load, commits fill up well before it, so a short delay costs few extra
// fsyncs and takes milliseconds off every runner state change.
const maxBatchDelay = 2 * time.Millisecond

// schemaVersion is the layout of the state file this code reads and writes.
// A file with a higher version is refused with ErrNewerSchema.
const schemaVersion = 1

// Bucket and meta key names.
var (
	bucketMeta      = []byte("meta")
	bucketScaleSets = []byte("scalesets")
	bucketSessions  = []byte("sessions")
	bucketRunners   = []byte("runners")
	bucketHistory   = []byte("history")

	keySchemaVersion = []byte("schema_version")
	keyOwnerID       = []byte("owner_id")
	keyCreatedAt     = []byte("created_at")
)

// dataBuckets are the buckets that hold records, in addition to bucketMeta.
func dataBuckets() [][]byte {
	return [][]byte{bucketScaleSets, bucketSessions, bucketRunners, bucketHistory}
}

// Sentinel errors. Open returns ErrLocked, ErrCorrupt and ErrNewerSchema
// wrapped in a message that names the file and says what to do.
var (
	// ErrLocked: another process holds the state file.
	ErrLocked = errors.New("state file is locked by another process")
	// ErrCorrupt: the file is not a bbolt file, is damaged, or is not a
	// shoes-scaleset state file. Open leaves such a file untouched.
	ErrCorrupt = errors.New("state file is corrupt")
	// ErrNewerSchema: the file was written by a newer shoes-scaleset. Open
	// leaves such a file untouched.
	ErrNewerSchema = errors.New("state file was written by a newer shoes-scaleset")
	// ErrNotFound: no record with that key.
	ErrNotFound = errors.New("not found")
	// ErrExists: a record with that key already exists.
	ErrExists = errors.New("already exists")
	// ErrReadOnly: a write was attempted on a store opened with ReadOnly.
	ErrReadOnly = errors.New("store is open read-only")
)

// Options configures Open.
type Options struct {
	// Path of the state file. Required.
	Path string
	// ReadOnly opens an existing file with a shared lock, for `runners ls`
	// when no daemon runs. It never creates or writes the file; a missing or
	// empty file is an error that matches fs.ErrNotExist.
	ReadOnly bool
	// LockTimeout bounds the wait for the file lock; Open then fails with
	// ErrLocked. Default 5s.
	LockTimeout time.Duration
	// HistoryMaxAge: PruneHistory drops records that finished longer ago.
	// Default 7 days.
	HistoryMaxAge time.Duration
	// HistoryMaxCount: PruneHistory keeps at most this many records, the
	// newest. Default 10000.
	HistoryMaxCount int
	// Now is the clock for every timestamp the store sets. Default time.Now.
	Now func() time.Time
}

// DefaultOptions returns the settings zero Options get: a zero field of
// Options means its value here. It is the one place these defaults are
// stated; the run command's flags take theirs from it. Path has no
// default and Now is left nil (time.Now).
func DefaultOptions() Options {
	return Options{
		LockTimeout:     5 * time.Second,
		HistoryMaxAge:   7 * 24 * time.Hour,
		HistoryMaxCount: 10000,
	}
}

func (o *Options) defaults() {
	if o.LockTimeout == 0 {
		o.LockTimeout = DefaultOptions().LockTimeout
	}
	commonDefaults(&o.HistoryMaxAge, &o.HistoryMaxCount, &o.Now)
}

// commonDefaults fills in the settings both backends have: the history
// bounds and the clock.
func commonDefaults(maxAge *time.Duration, maxCount *int, now *func() time.Time) {
	d := DefaultOptions()
	if *maxAge == 0 {
		*maxAge = d.HistoryMaxAge
	}
	if *maxCount == 0 {
		*maxCount = d.HistoryMaxCount
	}
	if *now == nil {
		*now = time.Now
	}
}

// FieldError is an invalid setting of this package's Config; Field names
// the Config field.
type FieldError = setting.FieldError

// Validate reports the first invalid field, as a *FieldError. A zero
// field stands for its default.
func (o Options) Validate() error {
	bad := setting.Invalid
	switch {
	case o.Path == "":
		return bad("Path", "state file path is required")
	case o.LockTimeout < 0:
		return bad("LockTimeout", "lock timeout must not be negative, got %s", o.LockTimeout)
	case o.HistoryMaxAge < 0:
		return bad("HistoryMaxAge", "history max age must not be negative, got %s", o.HistoryMaxAge)
	case o.HistoryMaxCount < 0:
		return bad("HistoryMaxCount", "history max count must not be negative, got %d", o.HistoryMaxCount)
	}
	return nil
}

// Store is the open state file. Its methods are safe for concurrent use.
type Store struct {
	kv       backend
	db       *bolt.DB // nil on etcd
	path     string
	readOnly bool
	ownerID  string
	clock    func() time.Time
	maxAge   time.Duration
	maxCount int
	cache    runnerCache // decoded runner records, by the bytes they came from
	counts   atomic.Pointer[runnerCounts]
	health   writeHealth
}

// WriteHealth says how the writes to the state file fare: a full disk or
// an I/O error fails them, and callers retry.
type WriteHealth struct {
	// Failing counts the writes that failed in a row (0: the last one
	// succeeded, or none was made).
	Failing int
	// FailingSince is when the first of those failed.
	FailingSince time.Time
	// LastError is the error of the last failed write.
	LastError string
	// Failures counts every failed write since the file was opened.
	Failures int64
}

type writeHealth struct {
	mu sync.Mutex
	h  WriteHealth
}

func (w *writeHealth) note(err error, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.h.Failing, w.h.FailingSince, w.h.LastError = 0, time.Time{}, ""
		return
	}
	if w.h.Failing == 0 {
		w.h.FailingSince = now
	}
	w.h.Failing++
	w.h.Failures++
	w.h.LastError = err.Error()
}

// WriteHealth returns how the writes fare.
func (s *Store) WriteHealth() WriteHealth {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	return s.health.h
}

// Open opens the state file at opts.Path, creating it unless opts.ReadOnly.
// A missing or zero-length file is a fresh store. An existing file is
// inspected read-only before anything is written to it.
func Open(opts Options) (*Store, error) {
	opts.defaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("open state file: %w", err)
	}
	path := opts.Path

	fresh := false
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if opts.ReadOnly {
			return nil, &fileError{kind: fs.ErrNotExist, cause: err,
				msg: fmt.Sprintf("state file %s does not exist (has `shoes-scaleset run` used it yet?)", path)}
		}
		fresh = true
	case err != nil:
		return nil, fmt.Errorf("open state file: %w", err)
	case fi.IsDir():
		return nil, fmt.Errorf("open state file: %s is a directory", path)
	case fi.Size() == 0:
		if opts.ReadOnly {
			return nil, noStateError(path)
		}
		fresh = true
	}

	s := &Store{
		path:     path,
		readOnly: opts.ReadOnly,
		clock:    opts.Now,
		maxAge:   opts.HistoryMaxAge,
		maxCount: opts.HistoryMaxCount,
	}

	if !fresh {
		db, m, err := openInspected(path, opts.LockTimeout, opts.ReadOnly)
		if err != nil {
			return nil, err
		}
		if opts.ReadOnly {
			if !m.initialized {
				_ = db.Close()
				return nil, noStateError(path)
			}
			s.db, s.kv, s.ownerID = db, boltBackend{db}, m.ownerID
			return s, nil
		}
		// Reopen read-write below: flock is per open file description, so
		// the shared lock must go before the exclusive one can be taken.
		if err := db.Close(); err != nil {
			return nil, fmt.Errorf("open state file %s: %w", path, err)
		}
	}

	db, err := openBolt(path, false, opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	db.MaxBatchDelay = maxBatchDelay
	ownerID, err := initialize(db, s.now())
	if err != nil {
		_ = db.Close()
		return nil, classify(path, err)
	}
	s.db, s.kv, s.ownerID = db, boltBackend{db}, ownerID
	return s, nil
}

// Close closes the file and releases its lock.
func (s *Store) Close() error {
	if s.db == nil {
		return nil // etcd: the caller owns the client
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close state file %s: %w", s.path, err)
	}
	return nil
}

// Path returns the state file path.
func (s *Store) Path() string { return s.path }

// OwnerID returns the stable ID generated when the file was created,
// `shoes-scaleset-<hostname>-<8 hex>`. It is the message session owner name.
func (s *Store) OwnerID() string { return s.ownerID }

// now returns the store clock in UTC without a monotonic reading, so a
// timestamp compares equal to itself after a JSON round trip.
func (s *Store) now() time.Time { return s.clock().UTC().Round(0) }

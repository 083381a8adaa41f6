package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// fileError is an Open failure an operator must act on. Its message is a
// complete sentence naming the file; errors.Is matches kind and cause.
type fileError struct {
	kind  error
	msg   string
	cause error
}

func (e *fileError) Error() string { return e.msg }

func (e *fileError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// corruption is a finding of inspect or readMeta; classify turns it into an
// ErrCorrupt fileError.
type corruption struct{ err error }

func (c corruption) Error() string { return c.err.Error() }

func corruptf(format string, args ...any) error {
	return corruption{fmt.Errorf(format, args...)}
}

// newerSchema is a finding of readMeta; classify turns it into an
// ErrNewerSchema fileError.
type newerSchema struct{ found int }

func (n newerSchema) Error() string {
	return fmt.Sprintf("schema %d > supported %d", n.found, schemaVersion)
}

func noStateError(path string) error {
	return &fileError{kind: fs.ErrNotExist,
		msg: fmt.Sprintf("state file %s holds no state yet (has `shoes-scaleset run` used it?)", path)}
}

// classify maps an error met while opening path to the message an operator
// needs. Errors it does not know are wrapped with the path.
func classify(path string, err error) error {
	var (
		fe *fileError
		c  corruption
		n  newerSchema
	)
	switch {
	case errors.As(err, &fe):
		return err
	case errors.Is(err, bolterrors.ErrTimeout):
		return &fileError{kind: ErrLocked, cause: err,
			msg: fmt.Sprintf("state file %s is locked by another process (is another `shoes-scaleset run` using it?)", path)}
	case errors.As(err, &n):
		return &fileError{kind: ErrNewerSchema,
			msg: fmt.Sprintf("state file %s was written by a newer shoes-scaleset: %v; it was left untouched (upgrade shoes-scaleset or point it at another state file)", path, n)}
	case errors.As(err, &c),
		errors.Is(err, bolterrors.ErrInvalid),
		errors.Is(err, bolterrors.ErrVersionMismatch),
		errors.Is(err, bolterrors.ErrChecksum):
		return &fileError{kind: ErrCorrupt, cause: err,
			msg: fmt.Sprintf("state file %s is corrupt or not a shoes-scaleset state file: %v; it was left untouched (move it aside to start with an empty state)", path, err)}
	}
	return fmt.Errorf("open state file %s: %w", path, err)
}

// guard turns a panic or a memory fault (a page of a damaged file that lies
// beyond its end) in the calling goroutine into an error. bbolt panics on
// some damaged files, and reading a truncated mmap raises SIGBUS.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corruptf("bbolt failed reading it: %v", r)
		}
	}()
	return fn()
}

// openBolt opens path with bbolt, waiting up to timeout for the lock.
// readOnly takes a shared lock and never writes; read-write takes an
// exclusive lock and creates the file if needed.
func openBolt(path string, readOnly bool, timeout time.Duration) (*bolt.DB, error) {
	var (
		db   *bolt.DB
		file *os.File
	)
	err := guard(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout:  timeout,
			ReadOnly: readOnly,
			// Keep the handle, so that a panic inside bolt.Open does not
			// leak the descriptor and its lock.
			OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
				f, err := os.OpenFile(name, flag, perm)
				file = f
				return f, err
			},
		})
		return err
	})
	var (
		c     corruption
		pathE *fs.PathError
		errno syscall.Errno
	)
	switch {
	case err == nil:
		return db, nil
	case errors.As(err, &c):
		if file != nil {
			_ = file.Close() // bolt.Open panicked: release the lock ourselves
		}
	case errors.Is(err, bolterrors.ErrTimeout), errors.As(err, &pathE), errors.As(err, &errno):
		// locked, or the file system refused: not the file's fault
	default:
		// bbolt's other open errors are about the content: invalid or
		// mismatched meta pages, "file size too small", ...
		err = corruption{err}
	}
	return nil, classify(path, err)
}

// openInspected opens an existing, non-empty file read-only and checks it
// thoroughly before anything may write to it. On success the read-only
// handle is returned open. For a reader (reuseCheck: runners ls and the
// other inspecting commands) the thorough check is done once per change
// of the file: a file that has not changed since it last passed (checked.go)
// gets only the cheap checks. A writer always checks it all.
func openInspected(path string, timeout time.Duration, reuseCheck bool) (*bolt.DB, metaInfo, error) {
	db, err := openBolt(path, true, timeout)
	if err != nil {
		return nil, metaInfo{}, err
	}
	var m metaInfo
	err = guard(func() error {
		return db.View(func(tx *bolt.Tx) error {
			var err error
			stamp, stampErr := stampOf(path, tx)
			if reuseCheck && stampErr == nil && checkedBefore(path, stamp) {
				m, err = inspectCheap(tx, path)
				return err
			}
			if m, err = inspect(tx, path); err == nil && stampErr == nil {
				recordChecked(path, stamp)
			}
			return err
		})
	})
	if err != nil {
		_ = db.Close()
		return nil, metaInfo{}, classify(path, err)
	}
	return db, m, nil
}

// inspect validates a file in a read-only transaction, cheapest and safest
// check first: the size before any data page is read, then the schema (so a
// newer file is reported as such, not as corrupt), then every record, then
// bbolt's own consistency check.
func inspect(tx *bolt.Tx, path string) (metaInfo, error) {
	m, err := inspectCheap(tx, path)
	if err != nil {
		return metaInfo{}, err
	}
	// Read every key and value in this goroutine, where guard catches a
	// fault, before tx.Check reads the same pages in a goroutine of its own.
	if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		return walkBucket(b, string(name))
	}); err != nil {
		return metaInfo{}, err
	}
	var first error
	n := 0
	for err := range tx.Check() { // drain: Check's goroutine sends until done
		if first == nil {
			first = err
		}
		n++
	}
	if first != nil {
		return metaInfo{}, corruptf("consistency check found %d problem(s), the first: %v", n, first)
	}
	return m, nil
}

// inspectCheap is what every open checks, changed file or not: the size
// before any data page is read, then the schema.
func inspectCheap(tx *bolt.Tx, path string) (metaInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return metaInfo{}, err
	}
	if need := tx.Size(); fi.Size() < need {
		return metaInfo{}, corruptf("file is truncated: %d bytes, its pages need %d", fi.Size(), need)
	}
	return readMeta(tx)
}

// walkBucket reads every key and value in b and its sub-buckets. Every value
// of a shoes-scaleset state file is JSON.
func walkBucket(b *bolt.Bucket, where string) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			sub := b.Bucket(k)
			if sub == nil {
				return corruptf("bucket %s: key %q has no value", where, k)
			}
			return walkBucket(sub, where+"/"+string(k))
		}
		if !json.Valid(v) {
			return corruptf("bucket %s: value of key %q is not JSON", where, k)
		}
		return nil
	})
}

// metaInfo is the content of the meta bucket.
type metaInfo struct {
	initialized bool // the meta bucket exists
	version     int
	ownerID     string
	createdAt   time.Time
}

// readMeta reads the meta bucket and checks the layout. A file with no
// buckets at all is a fresh store (initialized false). A newer schema is
// reported before any other finding, since a newer layout may differ.
func readMeta(tx *bolt.Tx) (metaInfo, error) {
	mb := tx.Bucket(bucketMeta)
	if mb == nil {
		var names []string
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, string(name))
			return nil
		})
		if len(names) > 0 {
			return metaInfo{}, corruptf("it has buckets %q but no %q bucket", names, bucketMeta)
		}
		return metaInfo{}, nil
	}
	m := metaInfo{initialized: true}
	if err := metaValue(mb, keySchemaVersion, &m.version); err != nil {
		return metaInfo{}, err
	}
	switch {
	case m.version > schemaVersion:
		return metaInfo{}, newerSchema{found: m.version}
	case m.version < 1:
		return metaInfo{}, corruptf("invalid schema version %d", m.version)
	}
	if err := metaValue(mb, keyOwnerID, &m.ownerID); err != nil {
		return metaInfo{}, err
	}
	if m.ownerID == "" {
		return metaInfo{}, corruptf("empty owner ID")
	}
	if err := metaValue(mb, keyCreatedAt, &m.createdAt); err != nil {
		return metaInfo{}, err
	}
	for _, name := range dataBuckets() {
		if tx.Bucket(name) == nil {
			return metaInfo{}, corruptf("bucket %q is missing", name)
		}
	}
	return m, nil
}

func metaValue(mb *bolt.Bucket, key []byte, dst any) error {
	raw := mb.Get(key)
	if raw == nil {
		return corruptf("meta has no %s", key)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return corruptf("meta %s: %v", key, err)
	}
	return nil
}

// initialize runs on the read-write handle: it checks the schema again (the
// file may have changed between the inspection and the exclusive lock) and,
// for a fresh file only, writes the meta record and creates the buckets. A
// failed check returns an error from the transaction, so nothing is written.
func initialize(db *bolt.DB, now time.Time) (string, error) {
	newID := newOwnerID()
	var ownerID string
	err := guard(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			m, err := readMeta(tx)
			if err != nil {
				return err
			}
			if m.initialized {
				ownerID = m.ownerID
				return nil
			}
			mb, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			for key, v := range map[string]any{
				string(keySchemaVersion): schemaVersion,
				string(keyOwnerID):       newID,
				string(keyCreatedAt):     now,
			} {
				raw, err := json.Marshal(v)
				if err != nil {
					return err
				}
				if err := mb.Put([]byte(key), raw); err != nil {
					return err
				}
			}
			for _, name := range dataBuckets() {
				if _, err := tx.CreateBucket(name); err != nil {
					return fmt.Errorf("create bucket %s: %w", name, err)
				}
			}
			ownerID = newID
			return nil
		})
	})
	return ownerID, err
}

// newOwnerID returns `shoes-scaleset-<hostname>-<8 hex>`.
func newOwnerID() string {
	host, err := os.Hostname()
	if err != nil {
		host = ""
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return "shoes-scaleset-" + sanitizeHost(host) + "-" + hex.EncodeToString(b[:])
}

// sanitizeHost keeps a hostname readable and safe as a session owner name:
// lower-case letters, digits, '-' and '.', at most 63 characters.
func sanitizeHost(host string) string {
	host = strings.ToLower(host)
	var sb strings.Builder
	for _, r := range host {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.':
			sb.WriteRune(r)
		default:
			sb.WriteByte('-')
		}
		if sb.Len() >= 63 {
			break
		}
	}
	if s := strings.Trim(sb.String(), "-."); s != "" {
		return s
	}
	return "unknown"
}

package store

import (
	"errors"
	"os"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// stampNow returns what the file at path looks like now.
func stampNow(t *testing.T, path string) fileStamp {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: testLockTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var st fileStamp
	if err := db.View(func(tx *bolt.Tx) error {
		st, err = stampOf(path, tx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestReaderChecksOncePerChange: a reader records the file it checked;
// the next reader of the same unchanged file skips the thorough check,
// while a writer always does it, and any change of the file makes readers
// check again.
func TestReaderChecksOncePerChange(t *testing.T) {
	path := testPath(t)
	buildStateFile(t, path)
	s, err := Open(Options{Path: path, ReadOnly: true, LockTimeout: testLockTimeout})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !checkedBefore(path, stampNow(t, path)) {
		t.Fatal("a reader that checked the file did not record it")
	}

	// A record gone bad, and a record that says this very file passed:
	// as if the file had been damaged without any write.
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHistory).Put([]byte("bad"), []byte{0xff, 0x00})
	})
	recordChecked(path, stampNow(t, path))
	if s, err := Open(Options{Path: path, ReadOnly: true, LockTimeout: testLockTimeout}); err != nil {
		t.Fatalf("a reader of an unchanged, recorded file checked it all: %v", err)
	} else {
		s.Close()
	}
	if s, err := Open(Options{Path: path, LockTimeout: testLockTimeout}); !errors.Is(err, ErrCorrupt) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("a writer's Open = %v, want ErrCorrupt: a writer checks it all", err)
	}

	// Any write changes the transaction ID: readers check again.
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte("touched"), []byte(`1`))
	})
	if s, err := Open(Options{Path: path, ReadOnly: true, LockTimeout: testLockTimeout}); !errors.Is(err, ErrCorrupt) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("a reader of a changed file = %v, want ErrCorrupt", err)
	}
	// A record that cannot be read is no record.
	if err := os.WriteFile(path+checkedSuffix, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if checkedBefore(path, stampNow(t, path)) {
		t.Fatal("an unreadable record counts as checked")
	}
}

package store

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// The thorough check of a state file (every record, bbolt's consistency
// check) costs most of `runners ls` on a large file: 0.26 s of 0.58 s
// with 10,000 runners and 100,000 history records. A reader records, next
// to the file, what the file looked like when it passed: its last
// transaction ID, size, modification time and inode. The next reader that
// finds the file looking the same skips the thorough check (the cheap
// ones still run); any write changes the transaction ID, so a changed
// file is checked again. A writer (`run`) always checks it all before
// writing. The record is a best effort: a reader that cannot write it
// (another user, a read-only directory) checks every time.

// checkedSuffix names the record, next to the state file.
const checkedSuffix = ".checked"

// CheckedPath is the file next to the state file at path in which readers
// record that it passed the thorough check: a state file deleted on
// purpose takes it along.
func CheckedPath(path string) string { return path + checkedSuffix }

// fileStamp is what a state file looked like.
type fileStamp struct {
	TxID    int    `json:"txid"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	Inode   uint64 `json:"inode"`
}

func stampOf(path string, tx *bolt.Tx) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{TxID: tx.ID(), Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Inode = uint64(sys.Ino)
	}
	return st, nil
}

// checkedBefore reports whether the file passed the thorough check as it
// looks now.
func checkedBefore(path string, now fileStamp) bool {
	b, err := os.ReadFile(path + checkedSuffix)
	if err != nil {
		return false
	}
	var was fileStamp
	return json.Unmarshal(b, &was) == nil && was == now
}

// recordChecked records that the file passed as it looks now; errors are
// ignored (see above).
func recordChecked(path string, now fileStamp) {
	b, err := json.Marshal(now)
	if err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+checkedSuffix+".*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Rename(tmp.Name(), path+checkedSuffix) != nil {
		_ = os.Remove(tmp.Name())
	}
}

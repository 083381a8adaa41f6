package store

// Copying the state from one store into another, for `shoes-scaleset
// state migrate`: one machine's file into etcd for replicas, or etcd back
// into a file. Records are copied as stored, byte for byte, on the
// backend seam, so the copy holds exactly what the source held whatever
// the record types look like.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

var (
	// ErrNotEmpty: Copy's destination already holds state. A migration
	// runs once, into an empty store; merging two states is never right.
	ErrNotEmpty = errors.New("destination is not empty")
	// ErrMismatch: Verify found a record that differs between the copy
	// and its source.
	ErrMismatch = errors.New("the copy differs from the source")
)

// copyBatch is how many keys one write transaction of Copy carries: etcd
// refuses a transaction of more than 128 operations by default
// (--max-txn-ops), and smaller commits stay far below its request size
// limit (--max-request-bytes, 1.5 MiB by default).
const copyBatch = 100

// CopyCounts are the records Copy copied, by kind.
type CopyCounts struct {
	ScaleSets int `json:"scale_sets"`
	Sessions  int `json:"sessions"`
	Runners   int `json:"runners"`
	History   int `json:"history"`
	// Meta counts what the store learned besides its records, such as
	// the plugin's cloud IDs (CloudIDs).
	Meta int `json:"meta"`
}

// copiedBuckets are the buckets Copy copies and Verify compares, in that
// order: every bucket the store has.
func copiedBuckets() [][]byte { return append(dataBuckets(), bucketMeta) }

// isFileMeta reports whether a meta key describes the bbolt file itself
// rather than the state: Open writes these into every new file (the new
// file's owner ID is its own), and etcd has none. They are neither
// copied, nor compared, nor count as content.
func isFileMeta(key []byte) bool {
	for _, k := range [][]byte{keySchemaVersion, keyOwnerID, keyCreatedAt} {
		if bytes.Equal(key, k) {
			return true
		}
	}
	return false
}

// record is one stored key and value.
type record struct{ key, value []byte }

// snapshot is every record of a store as stored, by bucket name, each
// bucket in key order.
type snapshot map[string][]record

func (s snapshot) counts() CopyCounts {
	n := func(name []byte) int { return len(s[string(name)]) }
	return CopyCounts{
		ScaleSets: n(bucketScaleSets),
		Sessions:  n(bucketSessions),
		Runners:   n(bucketRunners),
		History:   n(bucketHistory),
		Meta:      n(bucketMeta),
	}
}

// Copy copies every record of src into dst: the scale sets, sessions,
// runners, history and what was learned (meta), as stored. dst must hold
// nothing (ErrNotEmpty, naming what it holds). src is read in one view,
// a consistent snapshot; dst is written in transactions of at most
// copyBatch keys, so a failure can leave dst with part of the copy: it
// must then be cleared before Copy runs again. Nothing else may write dst
// meanwhile; Verify finds it if something did.
func Copy(dst, src *Store) (CopyCounts, error) {
	if err := dst.checkEmpty(); err != nil {
		return CopyCounts{}, fmt.Errorf("copy state to %s: %w", dst.path, err)
	}
	snap, err := src.snapshot()
	if err != nil {
		return CopyCounts{}, fmt.Errorf("copy state from %s: %w", src.path, err)
	}
	for _, name := range copiedBuckets() {
		if err := dst.putAll(name, snap[string(name)]); err != nil {
			return CopyCounts{}, fmt.Errorf("copy state from %s to %s: %w", src.path, dst.path, err)
		}
	}
	return snap.counts(), nil
}

// Verify compares dst with src record by record, both read afresh, and
// returns an ErrMismatch error naming the first record that is missing
// from either or differs, and how.
func Verify(dst, src *Store) error {
	want, err := src.snapshot()
	if err != nil {
		return fmt.Errorf("verify the copy: %w", err)
	}
	got, err := dst.snapshot()
	if err != nil {
		return fmt.Errorf("verify the copy: %w", err)
	}
	for _, name := range copiedBuckets() {
		if err := diffBucket(name, want[string(name)], got[string(name)]); err != nil {
			return fmt.Errorf("verify %s against %s: %w", dst.path, src.path, err)
		}
	}
	return nil
}

// snapshot reads every record in one view. A value that is not JSON is
// refused: every record is, and a file holding one would not open.
func (s *Store) snapshot() (snapshot, error) {
	snap := snapshot{}
	err := s.view(func(tx txn) error {
		for _, name := range copiedBuckets() {
			var recs []record
			err := tx.bucket(name).ForEach(func(k, v []byte) error {
				if bytes.Equal(name, bucketMeta) && isFileMeta(k) {
					return nil
				}
				if !json.Valid(v) {
					return fmt.Errorf("%s is not JSON: %w", describeKey(name, k), ErrCorrupt)
				}
				recs = append(recs, record{key: bytes.Clone(k), value: bytes.Clone(v)})
				return nil
			})
			if err != nil {
				return err
			}
			snap[string(name)] = recs
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	return snap, nil
}

// checkEmpty returns an ErrNotEmpty error naming what the store holds,
// unless it holds nothing but a fresh file's own meta keys.
func (s *Store) checkEmpty() error {
	var held []string
	err := s.view(func(tx txn) error {
		for _, name := range dataBuckets() {
			if n := tx.bucket(name).Len(); n > 0 {
				held = append(held, fmt.Sprintf("%s: %d", bucketLabel(name), n))
			}
		}
		return tx.bucket(bucketMeta).ForEach(func(k, _ []byte) error {
			if !isFileMeta(k) {
				held = append(held, fmt.Sprintf("meta %q", k))
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("check that it is empty: %w", err)
	}
	if len(held) > 0 {
		return fmt.Errorf("%w: it holds %s", ErrNotEmpty, strings.Join(held, ", "))
	}
	return nil
}

// putAll writes recs into the bucket, copyBatch keys per transaction.
// The writes are not fenced: a migration runs while no replica does.
func (s *Store) putAll(name []byte, recs []record) error {
	for start := 0; start < len(recs); start += copyBatch {
		batch := recs[start:min(start+copyBatch, len(recs))]
		err := s.update(func(tx txn) error {
			b := tx.bucket(name)
			for _, r := range batch {
				if err := b.Put(r.key, r.value); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("write %s %d to %d of %d: %w", name, start+1, start+len(batch), len(recs), err)
		}
	}
	return nil
}

// diffBucket walks the records of a bucket in the source and in the copy
// side by side, in key order, to the first difference.
func diffBucket(name []byte, src, dst []record) error {
	i, j := 0, 0
	for i < len(src) || j < len(dst) {
		var c int
		switch {
		case i == len(src):
			c = 1
		case j == len(dst):
			c = -1
		default:
			c = bytes.Compare(src[i].key, dst[j].key)
		}
		switch {
		case c < 0:
			return fmt.Errorf("%w: %s is missing from the copy", ErrMismatch, describeKey(name, src[i].key))
		case c > 0:
			return fmt.Errorf("%w: %s is in the copy but not in the source", ErrMismatch, describeKey(name, dst[j].key))
		case !bytes.Equal(src[i].value, dst[j].value):
			return fmt.Errorf("%w: %s differs: %s", ErrMismatch, describeKey(name, src[i].key), describeDiff(src[i].value, dst[j].value))
		}
		i, j = i+1, j+1
	}
	return nil
}

// bucketLabel names the records of a bucket for an operator.
func bucketLabel(name []byte) string {
	if bytes.Equal(name, bucketScaleSets) {
		return "scale sets"
	}
	return string(name)
}

// describeKey names a record by what its key means, for an operator.
func describeKey(bucket, key []byte) string {
	switch string(bucket) {
	case string(bucketScaleSets):
		return fmt.Sprintf("scale set of target %q", key)
	case string(bucketSessions):
		if len(key) == 8 {
			return fmt.Sprintf("session of scale set %d", binary.BigEndian.Uint64(key))
		}
	case string(bucketRunners):
		return fmt.Sprintf("runner %q", key)
	case string(bucketHistory):
		if finished, ok := historyKeyTime(key); ok {
			return fmt.Sprintf("history record of runner %q finished at %s", key[8:], finished.Format(time.RFC3339Nano))
		}
	case string(bucketMeta):
		return fmt.Sprintf("meta record %q", key)
	}
	return fmt.Sprintf("%s record %x", bucket, key)
}

// describeDiff says where two stored values differ: the first field, in
// the record's own terms, with both values.
func describeDiff(src, dst []byte) string {
	var a, b any
	if json.Unmarshal(src, &a) != nil || json.Unmarshal(dst, &b) != nil {
		return "the stored values differ"
	}
	d, ok := firstDiff("", a, b)
	if !ok {
		return "the stored bytes differ (the same JSON, written differently)"
	}
	// Records are stored in an envelope ({"v":1,"data":{...}}): name the
	// record's own field.
	field := strings.TrimPrefix(d.path, "data.")
	if field == "" {
		field = "the value"
	}
	return fmt.Sprintf("%s is %s in the source, %s in the copy", field, d.src, d.dst)
}

// jsonDiff is where two JSON values differ, and what each holds there.
type jsonDiff struct{ path, src, dst string }

// firstDiff walks two decoded JSON values, object fields in name order,
// to the first place where they differ.
func firstDiff(path string, a, b any) (jsonDiff, bool) {
	am, aIsMap := a.(map[string]any)
	bm, bIsMap := b.(map[string]any)
	if aIsMap && bIsMap {
		keys := make([]string, 0, len(am)+len(bm))
		for k := range am {
			keys = append(keys, k)
		}
		for k := range bm {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range slices.Compact(keys) {
			p := strings.TrimPrefix(path+"."+k, ".")
			av, inA := am[k]
			bv, inB := bm[k]
			if !inA || !inB {
				return jsonDiff{p, showJSON(av, inA), showJSON(bv, inB)}, true
			}
			if d, ok := firstDiff(p, av, bv); ok {
				return d, true
			}
		}
		return jsonDiff{}, false
	}
	as, aIsList := a.([]any)
	bs, bIsList := b.([]any)
	if aIsList && bIsList && len(as) == len(bs) {
		for i := range as {
			if d, ok := firstDiff(fmt.Sprintf("%s[%d]", path, i), as[i], bs[i]); ok {
				return d, true
			}
		}
		return jsonDiff{}, false
	}
	if reflect.DeepEqual(a, b) {
		return jsonDiff{}, false
	}
	return jsonDiff{path, showJSON(a, true), showJSON(b, true)}, true
}

// showJSON prints a decoded JSON value for a message, shortened.
func showJSON(v any, present bool) string {
	if !present {
		return "absent"
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if s := []rune(string(raw)); len(s) > 80 {
		return string(s[:77]) + "..."
	}
	return string(raw)
}

package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

// historyFillPercent is how full bbolt fills a history page before it
// splits it. History keys start with the finish time, so records are
// appended in key order, and bbolt's default (half full, for keys that
// land anywhere) would leave every history page half empty: twice the
// file for the same records.
const historyFillPercent = 0.95

// ListHistory returns finished runners, newest first, at most f.Limit of
// them if f.Limit > 0.
func (s *Store) ListHistory(f HistoryFilter) ([]HistoryRecord, error) {
	var out []HistoryRecord
	err := s.view(func(tx txn) error {
		return tx.bucket(bucketHistory).ForEachReverse(func(k, v []byte) error {
			rec, err := decode[HistoryRecord](v)
			if err != nil {
				return fmt.Errorf("history %x: %w", k, err)
			}
			if f.Scope != "" && rec.Runner.Scope != f.Scope {
				return nil
			}
			out = append(out, rec)
			if f.Limit > 0 && len(out) >= f.Limit {
				return errStop
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list history: %w", err)
	}
	return out, nil
}

// PruneHistory drops history records that finished more than HistoryMaxAge
// ago, then the oldest beyond HistoryMaxCount, and returns how many it
// dropped. Keys sort by finish time, so both are a walk from the oldest.
func (s *Store) PruneHistory() (int, error) {
	cutoff := s.now().Add(-s.maxAge)
	var pruned int
	err := s.update(func(tx txn) error {
		pruned = 0
		b := tx.bucket(bucketHistory)
		n := b.Len()
		var doomed [][]byte
		err := b.ForEach(func(k, _ []byte) error {
			finished, ok := historyKeyTime(k)
			if ok && !finished.Before(cutoff) && n-len(doomed) <= s.maxCount {
				return errStop
			}
			doomed = append(doomed, bytes.Clone(k))
			return nil
		})
		if err != nil {
			return err
		}
		// Delete after the walk: deleting under a cursor can skip keys.
		for _, k := range doomed {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		pruned = len(doomed)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune history: %w", err)
	}
	return pruned, nil
}

// Stats describes the state file.
type Stats struct {
	Path          string `json:"path"`
	OwnerID       string `json:"owner_id"`
	SchemaVersion int    `json:"schema_version"`
	FileSize      int64  `json:"file_size"` // bytes on disk
	DataSize      int64  `json:"data_size"` // bytes up to the high-water page
	ScaleSets     int    `json:"scale_sets"`
	Sessions      int    `json:"sessions"`
	Runners       int    `json:"runners"`
	History       int    `json:"history"`
}

// Stats returns the file size and the number of records in each bucket.
func (s *Store) Stats() (Stats, error) {
	st := Stats{Path: s.path, OwnerID: s.ownerID, SchemaVersion: schemaVersion}
	if s.db == nil {
		return Stats{}, errors.New("state file stats: the state is in etcd, not a file")
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		fi, err := os.Stat(s.path)
		if err != nil {
			return err
		}
		st.FileSize, st.DataSize = fi.Size(), tx.Size()
		st.ScaleSets = tx.Bucket(bucketScaleSets).Stats().KeyN
		st.Sessions = tx.Bucket(bucketSessions).Stats().KeyN
		st.Runners = tx.Bucket(bucketRunners).Stats().KeyN
		st.History = tx.Bucket(bucketHistory).Stats().KeyN
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("state file stats: %w", err)
	}
	return st, nil
}

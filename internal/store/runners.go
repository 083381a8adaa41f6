package store

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// CreateRunner stores a new runner record, or returns ErrExists if one with
// that name exists. An empty State means pending; CreatedAt defaults to now,
// UpdatedAt is now, and StateSince gets the entry time of State.
func (s *Store) CreateRunner(r Runner) error {
	return s.CreateRunners([]Runner{r})
}

// CreateRunners stores new runner records, as CreateRunner does each, in
// one transaction: all of them, or none if one fails or a record with one
// of the names exists (ErrExists). Many runners cost one commit.
func (s *Store) CreateRunners(rs []Runner) error {
	now := s.now()
	names := make([][]byte, len(rs))
	raws := make([][]byte, len(rs))
	seen := make(map[string]bool, len(rs))
	for i, r := range rs {
		raw, err := newRunnerRecord(r, now)
		if err != nil {
			return err
		}
		if seen[r.Name] {
			return fmt.Errorf("create runner %q: named twice: %w", r.Name, ErrExists)
		}
		seen[r.Name] = true
		names[i], raws[i] = []byte(r.Name), raw
	}
	if len(rs) == 0 {
		return nil
	}

	var exists string
	err := s.batch(func(tx txn) error {
		b := tx.bucket(bucketRunners)
		exists = ""
		for _, r := range rs {
			tx.fence(r.TargetID)
		}
		for _, name := range names {
			if b.Get(name) != nil {
				exists = string(name) // write nothing; the rest of the batch commits
				return nil
			}
		}
		for i, name := range names {
			if err := b.Put(name, raws[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && exists != "" {
		return fmt.Errorf("create runner %q: %w", exists, ErrExists)
	}
	if err != nil {
		if len(rs) == 1 {
			return fmt.Errorf("create runner %q: %w", rs[0].Name, err)
		}
		return fmt.Errorf("create %d runners: %w", len(rs), err)
	}
	return nil
}

// newRunnerRecord validates a new runner, fills in its defaults as of now
// and encodes it.
func newRunnerRecord(r Runner, now time.Time) ([]byte, error) {
	if r.Name == "" {
		return nil, errors.New("create runner: name is required")
	}
	if r.State == "" {
		r.State = StatePending
	}
	if !r.State.Valid() {
		return nil, fmt.Errorf("create runner %q: unknown state %q", r.Name, r.State)
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now
	}
	r.UpdatedAt = now
	r.StateSince = maps.Clone(r.StateSince) // never write to the caller's map
	if r.StateSince == nil {
		r.StateSince = make(map[RunnerState]time.Time, 1)
	}
	if _, ok := r.StateSince[r.State]; !ok {
		r.StateSince[r.State] = now
	}
	raw, err := encode(r)
	if err != nil {
		return nil, fmt.Errorf("create runner %q: %w", r.Name, err)
	}
	return raw, nil
}

// UpdateRunner applies fn to the stored runner in one transaction, sets
// UpdatedAt and returns the result. An error from fn aborts the update and
// is returned wrapped; ErrNotFound if there is no such runner.
//
// Concurrent updates share commits, so fn may be called more than once for
// one UpdateRunner call: it must only modify the *Runner it is given.
func (s *Store) UpdateRunner(name string, fn func(*Runner) error) (Runner, error) {
	r, err := s.updateRunner(name, true, func(r *Runner, _ time.Time) error { return fn(r) })
	if err != nil {
		return Runner{}, fmt.Errorf("update runner %q: %w", name, err)
	}
	return r, nil
}

// UpdateRunnerAfterHandOver is UpdateRunner without the ownership fence,
// for a replica that lost the runner's target while it learned what only
// it can know: the instance its AddInstance created, which answered after
// the hand-over. It still commits only if the record did not change since
// fn read it (with etcd, the transaction compares the record's own
// revision, as every update does), so it cannot undo the new owner's
// work; fn decides what may change.
func (s *Store) UpdateRunnerAfterHandOver(name string, fn func(*Runner) error) (Runner, error) {
	r, err := s.updateRunner(name, false, func(r *Runner, _ time.Time) error { return fn(r) })
	if err != nil {
		return Runner{}, fmt.Errorf("update runner %q after a hand-over: %w", name, err)
	}
	return r, nil
}

// SetRunnerState moves a runner to state, recording when the state was
// entered (a runner already in state keeps its entry time), then applies
// mutate if it is not nil. Like UpdateRunner, mutate may run more than once.
func (s *Store) SetRunnerState(name string, state RunnerState, mutate func(*Runner)) (Runner, error) {
	if !state.Valid() {
		return Runner{}, fmt.Errorf("set runner %q state: unknown state %q", name, state)
	}
	r, err := s.updateRunner(name, true, func(r *Runner, now time.Time) error {
		if _, ok := r.StateSince[state]; !ok || r.State != state {
			if r.StateSince == nil {
				r.StateSince = make(map[RunnerState]time.Time, 1)
			}
			r.StateSince[state] = now
		}
		r.State = state
		if mutate != nil {
			mutate(r)
		}
		return nil
	})
	if err != nil {
		return Runner{}, fmt.Errorf("set runner %q state to %s: %w", name, state, err)
	}
	return r, nil
}

// updateRunner is the read-modify-write shared by UpdateRunner and
// SetRunnerState. Its batch function decodes afresh on every run, so a
// re-run applies fn to the stored record, not to a previous attempt.
// fenced makes the write conditional on this replica owning the target.
func (s *Store) updateRunner(name string, fenced bool, fn func(*Runner, time.Time) error) (Runner, error) {
	now := s.now()
	var (
		out   Runner
		found bool
		fnErr error
	)
	err := s.batch(func(tx txn) error {
		b := tx.bucket(bucketRunners)
		r, ok, err := get[Runner](b, []byte(name))
		found, fnErr = ok, nil
		if err != nil || !ok {
			return err
		}
		if fenced {
			tx.fence(r.TargetID)
		}
		if fnErr = fn(&r, now); fnErr != nil {
			return nil // write nothing; the rest of the batch commits
		}
		switch {
		case r.Name != name:
			fnErr = fmt.Errorf("name cannot change (to %q)", r.Name)
			return nil
		case !r.State.Valid():
			fnErr = fmt.Errorf("unknown state %q", r.State)
			return nil
		}
		r.UpdatedAt = now
		out = r
		return put(b, []byte(name), r)
	})
	switch {
	case err != nil:
		return Runner{}, err
	case !found:
		return Runner{}, ErrNotFound
	case fnErr != nil:
		return Runner{}, fnErr
	}
	return out, nil
}

// GetRunner returns a runner by name, or ErrNotFound.
func (s *Store) GetRunner(name string) (Runner, error) {
	var r Runner
	err := s.view(func(tx txn) error {
		var found bool
		var err error
		r, found, err = get[Runner](tx.bucket(bucketRunners), []byte(name))
		if err == nil && !found {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return Runner{}, fmt.Errorf("get runner %q: %w", name, err)
	}
	return r, nil
}

// ListRunners returns the runners that match f, oldest first (by CreatedAt,
// then name).
func (s *Store) ListRunners(f RunnerFilter) ([]Runner, error) {
	var out []Runner
	err := s.view(func(tx txn) error {
		return s.scanRunners(tx.bucket(bucketRunners).ForEach, func(r *Runner) error {
			if f.match(r) {
				out = append(out, r.clone())
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	slices.SortFunc(out, func(a, b Runner) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// FindRunnerByID returns the runner with a GitHub runner ID, or
// ErrNotFound. It scans the runners bucket, which holds only live runners.
func (s *Store) FindRunnerByID(runnerID int64) (Runner, error) {
	var r Runner
	err := s.view(func(tx txn) error {
		if runnerID <= 0 { // pending runners have ID 0; never match them
			return ErrNotFound
		}
		errFound := errors.New("found")
		err := s.scanRunners(tx.bucket(bucketRunners).ForEach, func(rr *Runner) error {
			if rr.RunnerID == runnerID {
				r = rr.clone()
				return errFound
			}
			return nil
		})
		switch {
		case errors.Is(err, errFound):
			return nil
		case err != nil:
			return err
		}
		return ErrNotFound
	})
	if err != nil {
		return Runner{}, fmt.Errorf("find runner by ID %d: %w", runnerID, err)
	}
	return r, nil
}

// FinishRunner removes a runner and appends its history record in one
// transaction. A missing runner returns ErrNotFound, which a caller
// finishing a runner twice treats as done.
func (s *Store) FinishRunner(name, reason string) (HistoryRecord, error) {
	return s.FinishRunnerIf(name, reason, nil)
}

// FinishRunnerIf is FinishRunner if check (nil: always) accepts the
// record as stored; its error is returned as it is, and nothing changes.
func (s *Store) FinishRunnerIf(name, reason string, check func(Runner) error) (HistoryRecord, error) {
	if reason == "" {
		return HistoryRecord{}, fmt.Errorf("finish runner %q: reason is required", name)
	}
	now := s.now()
	var (
		rec   HistoryRecord
		found bool
	)
	err := s.batch(func(tx txn) error {
		b := tx.bucket(bucketRunners)
		r, ok, err := get[Runner](b, []byte(name))
		found = ok
		if err != nil || !ok {
			return err
		}
		tx.fence(r.TargetID)
		if check != nil {
			if err := check(r); err != nil {
				return err
			}
		}
		rec = HistoryRecord{Runner: r, Reason: reason, FinishedAt: now}
		hb := tx.bucket(bucketHistory)
		if err := put(hb, historyKey(now, name), rec); err != nil {
			return err
		}
		return b.Delete([]byte(name))
	})
	if err == nil && !found {
		err = ErrNotFound
	}
	if err != nil {
		return HistoryRecord{}, fmt.Errorf("finish runner %q: %w", name, err)
	}
	return rec, nil
}

// CountRunners returns, per scale set ID, how many runners are in each state.
// The caller may change the maps it gets.
//
// On the bbolt file the counts of the last scan are kept with the
// transaction ID they were read at, and reused while no write has been
// committed since: in a burst each of the scale sets reconciles after
// nearly every message, and two thirds of the counts found the file
// unchanged since the previous one (1,265 counts over 444 commits in a
// P1 burst at C = 64, L = 200 ms).
func (s *Store) CountRunners() (map[int]map[RunnerState]int, error) {
	var counts map[int]map[RunnerState]int
	err := s.view(func(tx txn) error {
		version, known := txVersion(tx)
		if m := s.counts.Load(); known && m != nil && m.version == version {
			counts = m.counts
			return nil
		}
		out := make(map[int]map[RunnerState]int)
		err := s.scanRunners(tx.bucket(bucketRunners).ForEach, func(r *Runner) error {
			if out[r.ScaleSetID] == nil {
				out[r.ScaleSetID] = make(map[RunnerState]int)
			}
			out[r.ScaleSetID][r.State]++
			return nil
		})
		if err == nil && known {
			s.counts.Store(&runnerCounts{version: version, counts: out})
		}
		counts = out
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("count runners: %w", err)
	}
	// A copy: the kept counts are shared by every caller.
	out := make(map[int]map[RunnerState]int, len(counts))
	for id, byState := range counts {
		out[id] = maps.Clone(byState)
	}
	return out, nil
}

// runnerCounts are CountRunners' counts as of a committed version of the
// file; never written once published.
type runnerCounts struct {
	version uint64
	counts  map[int]map[RunnerState]int
}

package store

import (
	"errors"
	"fmt"
)

// PutScaleSet creates or replaces the scale set of ss.TargetID. CreatedAt is
// kept from the stored record (or set to now) unless ss sets it; UpdatedAt
// is set to now.
func (s *Store) PutScaleSet(ss ScaleSet) error {
	if ss.TargetID == "" {
		return errors.New("put scale set: target ID is required")
	}
	now := s.now()
	err := s.update(func(tx txn) error {
		tx.fence(ss.TargetID)
		b := tx.bucket(bucketScaleSets)
		key := []byte(ss.TargetID)
		rec := ss
		if rec.CreatedAt.IsZero() {
			old, found, err := get[ScaleSet](b, key)
			if err != nil {
				return err
			}
			rec.CreatedAt = now
			if found {
				rec.CreatedAt = old.CreatedAt
			}
		}
		rec.UpdatedAt = now
		return put(b, key, rec)
	})
	if err != nil {
		return fmt.Errorf("put scale set %q: %w", ss.TargetID, err)
	}
	return nil
}

// GetScaleSet returns the scale set of a target, or ErrNotFound.
func (s *Store) GetScaleSet(targetID string) (ScaleSet, error) {
	var ss ScaleSet
	err := s.view(func(tx txn) error {
		var found bool
		var err error
		ss, found, err = get[ScaleSet](tx.bucket(bucketScaleSets), []byte(targetID))
		if err == nil && !found {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return ScaleSet{}, fmt.Errorf("get scale set %q: %w", targetID, err)
	}
	return ss, nil
}

// ListScaleSets returns every scale set, sorted by target ID.
func (s *Store) ListScaleSets() ([]ScaleSet, error) {
	var out []ScaleSet
	err := s.view(func(tx txn) error {
		return tx.bucket(bucketScaleSets).ForEach(func(k, v []byte) error {
			ss, err := decode[ScaleSet](v)
			if err != nil {
				return fmt.Errorf("target %q: %w", k, err)
			}
			out = append(out, ss)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list scale sets: %w", err)
	}
	return out, nil
}

// DeleteScaleSet removes the scale set of a target, or returns ErrNotFound.
func (s *Store) DeleteScaleSet(targetID string) error {
	err := s.update(func(tx txn) error {
		tx.fence(targetID)
		b := tx.bucket(bucketScaleSets)
		if b.Get([]byte(targetID)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(targetID))
	})
	if err != nil {
		return fmt.Errorf("delete scale set %q: %w", targetID, err)
	}
	return nil
}

// UpdateScaleSet applies fn to the stored scale set in one transaction and
// sets UpdatedAt. An error from fn aborts the update and is returned
// wrapped. ErrNotFound if there is no such scale set.
func (s *Store) UpdateScaleSet(targetID string, fn func(*ScaleSet) error) error {
	now := s.now()
	err := s.update(func(tx txn) error {
		tx.fence(targetID)
		b := tx.bucket(bucketScaleSets)
		ss, found, err := get[ScaleSet](b, []byte(targetID))
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		if err := fn(&ss); err != nil {
			return err
		}
		if ss.TargetID != targetID {
			return fmt.Errorf("target ID cannot change (to %q)", ss.TargetID)
		}
		ss.UpdatedAt = now
		return put(b, []byte(targetID), ss)
	})
	if err != nil {
		return fmt.Errorf("update scale set %q: %w", targetID, err)
	}
	return nil
}

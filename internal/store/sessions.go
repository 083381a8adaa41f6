package store

import (
	"fmt"
	"slices"
	"time"
)

// PutSession creates or replaces the session of sess.ScaleSetID. CreatedAt
// is kept from the stored record (or set to now) unless sess sets it;
// UpdatedAt is set to now. The stored pending acquisitions are kept: they
// outlive sessions.
func (s *Store) PutSession(sess Session) error {
	if sess.ScaleSetID <= 0 {
		return fmt.Errorf("put session: scale set ID must be positive, got %d", sess.ScaleSetID)
	}
	now := s.now()
	err := s.update(func(tx txn) error {
		tx.fence(sess.TargetID)
		b := tx.bucket(bucketSessions)
		key := idKey(sess.ScaleSetID)
		rec := sess
		old, found, err := get[Session](b, key)
		if err != nil {
			return err
		}
		if rec.CreatedAt.IsZero() {
			rec.CreatedAt = now
			if found {
				rec.CreatedAt = old.CreatedAt
			}
		}
		if found {
			for _, p := range old.PendingAcquire {
				rec.PendingAcquire = addPending(rec.PendingAcquire, []int64{p.RequestID}, p.Since)
			}
		}
		rec.UpdatedAt = now
		return put(b, key, rec)
	})
	if err != nil {
		return fmt.Errorf("put session of scale set %d: %w", sess.ScaleSetID, err)
	}
	return nil
}

// GetSession returns the session held on a scale set, or ErrNotFound.
func (s *Store) GetSession(scaleSetID int) (Session, error) {
	var sess Session
	err := s.view(func(tx txn) error {
		var found bool
		var err error
		sess, found, err = get[Session](tx.bucket(bucketSessions), idKey(scaleSetID))
		if err == nil && !found {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return Session{}, fmt.Errorf("get session of scale set %d: %w", scaleSetID, err)
	}
	return sess, nil
}

// ListSessions returns every session, sorted by scale set ID.
func (s *Store) ListSessions() ([]Session, error) {
	var out []Session
	err := s.view(func(tx txn) error {
		return tx.bucket(bucketSessions).ForEach(func(_, v []byte) error {
			sess, err := decode[Session](v)
			if err != nil {
				return err
			}
			out = append(out, sess)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// DeleteSession removes the session of a scale set, or returns ErrNotFound.
func (s *Store) DeleteSession(scaleSetID int) error {
	err := s.update(func(tx txn) error {
		b := tx.bucket(bucketSessions)
		sess, ok, err := get[Session](b, idKey(scaleSetID))
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		tx.fence(sess.TargetID)
		return b.Delete(idKey(scaleSetID))
	})
	if err != nil {
		return fmt.Errorf("delete session of scale set %d: %w", scaleSetID, err)
	}
	return nil
}

// RecordMessage records a handled message on a scale set's session: its
// ID, and the runner requests it announced as available, to acquire
// (already pending ones are kept once). ErrNotFound if the scale set has
// no session.
func (s *Store) RecordMessage(scaleSetID int, id int64, acquire []int64) error {
	now := s.now()
	var found bool
	err := s.batch(func(tx txn) error {
		b := tx.bucket(bucketSessions)
		sess, ok, err := get[Session](b, idKey(scaleSetID))
		found = ok && sess.SessionID != ""
		if err != nil || !found {
			return err
		}
		tx.fence(sess.TargetID)
		sess.LastMessageID = id
		sess.PendingAcquire = addPending(sess.PendingAcquire, acquire, now)
		sess.UpdatedAt = now
		return put(b, idKey(scaleSetID), sess)
	})
	if err == nil && !found {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("record message %d of scale set %d: %w", id, scaleSetID, err)
	}
	return nil
}

func addPending(have []PendingAcquisition, ids []int64, now time.Time) []PendingAcquisition {
	for _, id := range ids {
		if !slices.ContainsFunc(have, func(p PendingAcquisition) bool { return p.RequestID == id }) {
			have = append(have, PendingAcquisition{RequestID: id, Since: now})
		}
	}
	return have
}

// AcquireDone removes runner requests from a scale set's pending
// acquisitions; a record left with neither a session nor pending
// acquisitions is removed. A scale set with no record is not an error.
func (s *Store) AcquireDone(scaleSetID int, ids []int64) error {
	err := s.editSession(scaleSetID, func(sess *Session) {
		sess.PendingAcquire = slices.DeleteFunc(sess.PendingAcquire, func(p PendingAcquisition) bool {
			return slices.Contains(ids, p.RequestID)
		})
	})
	if err != nil {
		return fmt.Errorf("mark jobs acquired on scale set %d: %w", scaleSetID, err)
	}
	return nil
}

// ForgetSession forgets the session held on a scale set (it was deleted,
// or GitHub no longer has it) and keeps its pending acquisitions; a record
// left with none is removed. A scale set with no record is not an error.
func (s *Store) ForgetSession(scaleSetID int) error {
	err := s.editSession(scaleSetID, func(sess *Session) {
		sess.SessionID, sess.OwnerName, sess.LastMessageID = "", "", 0
	})
	if err != nil {
		return fmt.Errorf("forget session of scale set %d: %w", scaleSetID, err)
	}
	return nil
}

// editSession changes the stored record of a scale set with fn, and
// removes a record left with neither a session nor pending acquisitions.
// A scale set with no record is left alone.
func (s *Store) editSession(scaleSetID int, fn func(*Session)) error {
	now := s.now()
	return s.update(func(tx txn) error {
		b := tx.bucket(bucketSessions)
		sess, ok, err := get[Session](b, idKey(scaleSetID))
		if err != nil || !ok {
			return err
		}
		tx.fence(sess.TargetID)
		fn(&sess)
		if sess.SessionID == "" && len(sess.PendingAcquire) == 0 {
			return b.Delete(idKey(scaleSetID))
		}
		sess.UpdatedAt = now
		return put(b, idKey(scaleSetID), sess)
	})
}

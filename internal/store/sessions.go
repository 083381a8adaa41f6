package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// PutSession creates or replaces the session of sess.ScaleSetID. CreatedAt
// is kept from the stored record (or set to now) unless sess sets it;
// UpdatedAt is set to now.
func (s *Store) PutSession(sess Session) error {
	if sess.ScaleSetID <= 0 {
		return fmt.Errorf("put session: scale set ID must be positive, got %d", sess.ScaleSetID)
	}
	now := s.now()
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		key := idKey(sess.ScaleSetID)
		rec := sess
		if rec.CreatedAt.IsZero() {
			old, found, err := get[Session](b, key)
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
		return fmt.Errorf("put session of scale set %d: %w", sess.ScaleSetID, err)
	}
	return nil
}

// GetSession returns the session held on a scale set, or ErrNotFound.
func (s *Store) GetSession(scaleSetID int) (Session, error) {
	var sess Session
	err := s.view(func(tx *bolt.Tx) error {
		var found bool
		var err error
		sess, found, err = get[Session](tx.Bucket(bucketSessions), idKey(scaleSetID))
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
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).ForEach(func(_, v []byte) error {
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
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		if b.Get(idKey(scaleSetID)) == nil {
			return ErrNotFound
		}
		return b.Delete(idKey(scaleSetID))
	})
	if err != nil {
		return fmt.Errorf("delete session of scale set %d: %w", scaleSetID, err)
	}
	return nil
}

// SetLastMessageID records the last message ID handled on a scale set's
// session. ErrNotFound if the scale set has no session.
func (s *Store) SetLastMessageID(scaleSetID int, id int64) error {
	now := s.now()
	var found bool
	err := s.batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		sess, ok, err := get[Session](b, idKey(scaleSetID))
		found = ok
		if err != nil || !ok {
			return err
		}
		sess.LastMessageID = id
		sess.UpdatedAt = now
		return put(b, idKey(scaleSetID), sess)
	})
	if err == nil && !found {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("set last message ID of scale set %d: %w", scaleSetID, err)
	}
	return nil
}

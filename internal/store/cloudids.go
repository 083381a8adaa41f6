package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// keyCloudIDs is the meta key of what was learned of the plugin's cloud IDs.
var keyCloudIDs = []byte("plugin_cloud_ids")

// CloudIDs is what the AddInstance answers of a plugin showed of its cloud
// IDs. A plugin that names each instance after its runner and answers the
// runner name as the cloud ID (shoes-lxd does) lets an instance whose
// AddInstance answer was lost be deleted by the runner's name.
type CloudIDs struct {
	// Plugin is the plugin it was learned from (the --plugin value); what
	// was learned of another plugin says nothing.
	Plugin string `json:"plugin"`
	// NameKeyed: every cloud ID seen so far was the runner's name.
	NameKeyed bool `json:"name_keyed"`
	// LearnedAt is when it was last changed.
	LearnedAt time.Time `json:"learned_at"`
}

// CloudIDs returns what was learned of the plugin's cloud IDs; found is
// false when nothing was.
func (s *Store) CloudIDs() (c CloudIDs, found bool, err error) {
	err = s.view(func(tx txn) error {
		raw := tx.bucket(bucketMeta).Get(keyCloudIDs)
		if raw == nil {
			return nil
		}
		found = true
		return json.Unmarshal(raw, &c)
	})
	if err != nil {
		return CloudIDs{}, false, fmt.Errorf("read plugin cloud IDs: %w", err)
	}
	return c, found, nil
}

// SetCloudIDs records what was learned of the plugin's cloud IDs.
func (s *Store) SetCloudIDs(c CloudIDs) error {
	raw, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("record plugin cloud IDs: %w", err)
	}
	err = s.update(func(tx txn) error {
		return tx.bucket(bucketMeta).Put(keyCloudIDs, raw)
	})
	if err != nil {
		return fmt.Errorf("record plugin cloud IDs: %w", err)
	}
	return nil
}

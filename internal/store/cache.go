package store

import (
	"bytes"
	"fmt"
	"maps"
	"sync/atomic"
)

// runnerCache keeps the runner records decoded by the last scan of the
// runners bucket, each with the bytes it was decoded from. A scan decodes
// again only the records whose bytes changed: JSON decoding was most of
// the daemon's CPU in a burst, where every reconcile lists the runners.
//
// A read-only store caches too: one command may scan twice (runners ls
// lists the runners, then counts them per scale set for the names).
//
// A cached record is used only if its bytes equal the stored ones, so the
// cache can never serve a stale record; which entries it holds only
// affects speed. Each scan builds a new map of what it saw and publishes
// it; published maps are never written again, so readers need no lock.
type runnerCache struct {
	m atomic.Pointer[map[string]*cachedRunner]
}

// cachedRunner is immutable once published.
type cachedRunner struct {
	key string
	raw []byte
	r   Runner
}

// scanRunners walks every record of the runners bucket, calling fn with each
// decoded runner (fn must neither keep nor change it: see Runner.clone).
// A new map is built only when a record changed: in a burst the daemon
// scans after nearly every write, and between bursts nothing changes.
func (s *Store) scanRunners(forEach func(func(k, v []byte) error) error, fn func(r *Runner) error) error {
	var old map[string]*cachedRunner
	if p := s.cache.m.Load(); p != nil {
		old = *p
	}
	seen := make([]*cachedRunner, 0, len(old))
	changed := false
	err := forEach(func(k, v []byte) error {
		e, ok := old[string(k)]
		if !ok || !bytes.Equal(e.raw, v) {
			r, err := decode[Runner](v)
			if err != nil {
				return runnerError(k, err)
			}
			e, changed = &cachedRunner{key: string(k), raw: bytes.Clone(v), r: r}, true
		}
		seen = append(seen, e)
		return fn(&e.r)
	})
	if err == nil && (changed || len(seen) != len(old)) {
		fresh := make(map[string]*cachedRunner, len(seen))
		for _, e := range seen {
			fresh[e.key] = e
		}
		s.cache.m.Store(&fresh)
	}
	return err
}

func runnerError(key []byte, err error) error {
	return fmt.Errorf("runner %q: %w", key, err)
}

// clone returns a copy of r that shares no memory with it. Runner's only
// reference field is StateSince; a new one must be copied here.
func (r *Runner) clone() Runner {
	c := *r
	c.StateSince = maps.Clone(r.StateSince)
	return c
}

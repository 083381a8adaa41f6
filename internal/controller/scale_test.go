package controller

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// listHookStore runs afterList once ListRunners has read the records.
type listHookStore struct {
	Store
	afterList func()
}

func (s listHookStore) ListRunners(f store.RunnerFilter) ([]store.Runner, error) {
	rs, err := s.Store.ListRunners(f)
	s.afterList()
	return rs, err
}

// TestInheritedUnfinishedIsNotOwnProvisioningThatJustEnded: with a
// hand-over grace (etcd), a pending record whose provisioning this process
// ran is not counted as left by another replica because that provisioning
// ended between the listing and the ownership check; counting it made
// scaleUp start one runner too many (507-515 instances for 500 jobs on
// etcd in TestP1BurstEtcd).
func TestInheritedUnfinishedIsNotOwnProvisioningThatJustEnded(t *testing.T) {
	st, err := store.Open(store.Options{Path: filepath.Join(t.TempDir(), "state.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	now := time.Now()
	mk := func(name string) store.Runner {
		return store.Runner{Name: name, TargetID: "t1", Scope: "org-a", ScaleSetID: 1, State: store.StatePending,
			StateSince: map[store.RunnerState]time.Time{store.StatePending: now}, CreatedAt: now, UpdatedAt: now}
	}
	if err := st.CreateRunners([]store.Runner{mk("ours"), mk("left-by-another")}); err != nil {
		t.Fatal(err)
	}
	c := &Controller{
		cfg:   Config{Ownership: &fakeOwnership{grace: time.Second, changed: make(chan struct{}, 1)}},
		owned: map[string]bool{},
	}
	c.store = listHookStore{Store: st, afterList: func() { c.disown("ours") }} // its provisioning ends now
	c.own("ours")
	set := &scaleSet{c: c, id: 1}
	n, err := set.inheritedUnfinished()
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("inherited unfinished records: %d, want 1 (only left-by-another)", n)
	}
}

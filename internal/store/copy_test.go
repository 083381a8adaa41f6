package store

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// copyRunners and copyHistory are more than copyBatch, so that the copy
// of each takes several transactions (etcd refuses more than 128 ops).
const (
	copyRunners = 260
	copyHistory = 130
)

// openEtcdStore opens the state under prefix with no Fencer, as a
// migration does.
func openEtcdStore(t *testing.T, c *clientv3.Client, prefix string) *Store {
	t.Helper()
	s, err := OpenEtcd(EtcdOptions{Client: c, Prefix: prefix, OwnerID: "migrate"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// populateForCopy fills s with some of everything the store keeps: scale
// sets, sessions (held, and with only pending acquisitions), runners in
// every state, history and the learned cloud IDs. It returns the counts a
// copy must report.
func populateForCopy(t *testing.T, s *Store, clock *testkit.Clock) CopyCounts {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutScaleSet(ScaleSet{TargetID: "t-1", Scope: "org", Name: "myshoes-org", ScaleSetID: 1, RunnerGroupID: 1,
		Labels: []string{"self-hosted", "myshoes-org"}, GitHubLabels: []string{"self-hosted"}, DroppedLabels: []string{"myshoes-org"},
		ResourceType: "large", TargetStatus: "active"}))
	must(s.PutScaleSet(ScaleSet{TargetID: "t-2", Scope: "org/repo", Name: "myshoes-org-repo", ScaleSetID: 2, LastError: "boom"}))

	must(s.PutSession(Session{ScaleSetID: 1, TargetID: "t-1", Scope: "org", SessionID: "s-1", OwnerName: "daemon", LastMessageID: 3}))
	must(s.RecordMessage(1, 4, []int64{41, 42}))
	must(s.PutSession(Session{ScaleSetID: 2, TargetID: "t-2", Scope: "org/repo", SessionID: "s-2", OwnerName: "daemon"}))
	must(s.RecordMessage(2, 9, []int64{91}))
	must(s.ForgetSession(2)) // keeps the pending acquisition only

	seedRunners(t, s, copyRunners, clock.Now().Add(-time.Hour))
	states := []Runner{
		{Name: "r-pending", State: StatePending},
		{Name: "r-configured", State: StateConfigured, RunnerID: 1001},
		{Name: "r-idle", State: StateIdle, RunnerID: 1002, CloudID: "c-idle", IPAddress: "10.0.0.2"},
		{Name: "r-busy", State: StateBusy, RunnerID: 1003, JobID: "job-1", JobRequestID: 77, Repository: "org/repo",
			WorkflowRef: "org/repo/.github/workflows/ci.yml@refs/heads/main", WorkflowRunID: 5, JobResult: ""},
		{Name: "r-deleting", State: StateDeleting, DeleteReason: "idle-ttl", Attempts: 3, LastError: "plugin: timeout",
			NextAttemptAt: clock.Now().Add(time.Minute)},
		{Name: "r-unknown", State: StateUnknownInstance, LastError: "AddInstance cancelled"},
	}
	for i := range states {
		states[i].TargetID, states[i].Scope, states[i].ScaleSetID = "t-1", "org", 1
	}
	must(s.CreateRunners(states))

	// History: most of it written at once, and two runners finished the
	// way the controller does.
	must(s.update(func(tx txn) error {
		b := tx.bucket(bucketHistory)
		for i := range copyHistory - 2 {
			finished := clock.Now().Add(-time.Duration(copyHistory-i) * time.Minute)
			r := runner(fmt.Sprintf("h-%03d", i), 1+i%2, StateIdle)
			rec := HistoryRecord{Runner: r, Reason: []string{"completed", "failed", "scale-down"}[i%3], FinishedAt: finished}
			if err := put(b, historyKey(finished, r.Name), rec); err != nil {
				return err
			}
		}
		return nil
	}))
	must(s.CreateRunners([]Runner{runner("h-done-1", 1, StateBusy), runner("h-done-2", 2, StateIdle)}))
	for _, n := range []string{"h-done-1", "h-done-2"} {
		clock.Advance(time.Second)
		if _, err := s.FinishRunner(n, "completed"); err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetCloudIDs(CloudIDs{Plugin: "/usr/local/bin/shoes-lxd", NameKeyed: true, LearnedAt: clock.Now()}))
	return CopyCounts{ScaleSets: 2, Sessions: 2, Runners: copyRunners + len(states), History: copyHistory, Meta: 1}
}

// wantSameRecords checks, through the record API, that two stores hold
// the same state.
func wantSameRecords(t *testing.T, want, got *Store) {
	t.Helper()
	read := func(s *Store) map[string]any {
		sets, err1 := s.ListScaleSets()
		sessions, err2 := s.ListSessions()
		runners, err3 := s.ListRunners(RunnerFilter{})
		history, err4 := s.ListHistory(HistoryFilter{})
		cloud, found, err5 := s.CloudIDs()
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			t.Fatalf("read %s: %v", s.Path(), err)
		}
		return map[string]any{"scale sets": sets, "sessions": sessions, "runners": runners, "history": history,
			"cloud IDs": cloud, "cloud IDs found": found}
	}
	w, g := read(want), read(got)
	for kind := range w {
		if !reflect.DeepEqual(w[kind], g[kind]) {
			t.Errorf("%s of %s differ from %s:\n got %+v\nwant %+v", kind, got.Path(), want.Path(), g[kind], w[kind])
		}
	}
}

// TestCopyRoundTrip copies a stopped daemon's file (opened read-only, as
// the migration does) into etcd and etcd into a new file: every record
// arrives, in several transactions, and Verify passes each way.
func TestCopyRoundTrip(t *testing.T) {
	clock := newFakeClock()
	path := testPath(t)
	daemon := openStore(t, Options{Path: path, Now: clock.Now})
	want := populateForCopy(t, daemon, clock)
	if err := daemon.Close(); err != nil {
		t.Fatal(err)
	}
	src := openStore(t, Options{Path: path, ReadOnly: true})

	mid := openEtcdStore(t, etcdtest.Start(t).Client(), "/migrated/state/")
	got, err := Copy(mid, src)
	if err != nil {
		t.Fatalf("copy the file into etcd: %v", err)
	}
	if got != want {
		t.Errorf("copied %+v, want %+v", got, want)
	}
	if err := Verify(mid, src); err != nil {
		t.Fatalf("verify etcd against the file: %v", err)
	}
	wantSameRecords(t, src, mid)
	runners := list(t, mid.ListRunners, RunnerFilter{})
	states := map[RunnerState]bool{}
	for _, r := range runners {
		states[r.State] = true
	}
	for _, st := range []RunnerState{StatePending, StateConfigured, StateIdle, StateBusy, StateDeleting, StateUnknownInstance} {
		if !states[st] {
			t.Errorf("no runner in state %s arrived in etcd", st)
		}
	}

	back := openStore(t, Options{Now: clock.Now})
	got, err = Copy(back, mid)
	if err != nil {
		t.Fatalf("copy etcd into a new file: %v", err)
	}
	if got != want {
		t.Errorf("copied back %+v, want %+v", got, want)
	}
	for name, against := range map[string]*Store{"etcd": mid, "the first file": src} {
		if err := Verify(back, against); err != nil {
			t.Errorf("verify the new file against %s: %v", name, err)
		}
	}
	wantSameRecords(t, src, back)
	if back.OwnerID() == src.OwnerID() {
		t.Errorf("the new file took the owner ID %s of the first: a file's identity is its own", src.OwnerID())
	}
}

// TestCopyRefusesNonEmptyDestination: a destination holding any record
// is refused, naming what it holds, and is left as it was.
func TestCopyRefusesNonEmptyDestination(t *testing.T) {
	clock := newFakeClock()
	src := openStore(t, Options{Now: clock.Now})
	if err := src.PutScaleSet(ScaleSet{TargetID: "t-src", ScaleSetID: 1}); err != nil {
		t.Fatal(err)
	}
	c := etcdtest.Start(t).Client()
	tests := []struct {
		name string
		dst  *Store
		fill func(*Store) error
		want []string
	}{
		{"etcd with runners", openEtcdStore(t, c, "/a/state/"),
			func(s *Store) error {
				return s.CreateRunners([]Runner{runner("r1", 1, StateIdle), runner("r2", 1, StateIdle)})
			},
			[]string{"runners: 2"}},
		{"etcd with only the cloud IDs", openEtcdStore(t, c, "/b/state/"),
			func(s *Store) error { return s.SetCloudIDs(CloudIDs{Plugin: "p"}) },
			[]string{`meta "plugin_cloud_ids"`}},
		{"file with history and a session", openStore(t, Options{Now: clock.Now}),
			func(s *Store) error {
				if err := s.PutSession(Session{ScaleSetID: 3, SessionID: "s"}); err != nil {
					return err
				}
				if err := s.CreateRunners([]Runner{runner("r1", 1, StateIdle)}); err != nil {
					return err
				}
				_, err := s.FinishRunner("r1", "completed")
				return err
			},
			[]string{"sessions: 1", "history: 1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.fill(tc.dst); err != nil {
				t.Fatal(err)
			}
			_, err := Copy(tc.dst, src)
			if !errors.Is(err, ErrNotEmpty) {
				t.Fatalf("copy into a non-empty store: %v, want ErrNotEmpty", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			if _, err := tc.dst.GetScaleSet("t-src"); !errors.Is(err, ErrNotFound) {
				t.Errorf("the refused copy wrote the source's scale set: %v", err)
			}
		})
	}
}

// TestVerifyFindsDifferences: Verify names the first record that differs,
// is missing from the copy, or is in the copy only, and says how.
func TestVerifyFindsDifferences(t *testing.T) {
	clock := newFakeClock()
	src := openStore(t, Options{Now: clock.Now})
	populateForCopy(t, src, clock)
	c := etcdtest.Start(t).Client()
	tests := []struct {
		name   string
		dst    func(t *testing.T) *Store
		mutate func(*Store) error
		want   []string
	}{
		{"a runner's field, in etcd", func(t *testing.T) *Store { return openEtcdStore(t, c, "/v/state/") },
			func(s *Store) error {
				_, err := s.UpdateRunner("r-idle", func(r *Runner) error { r.CloudID = "c-other"; return nil })
				return err
			},
			[]string{`runner "r-idle" differs`, "cloud_id", `"c-idle" in the source`, `"c-other" in the copy`}},
		{"a scale set's label", func(t *testing.T) *Store { return openStore(t, Options{Now: clock.Now}) },
			func(s *Store) error {
				return s.UpdateScaleSet("t-1", func(ss *ScaleSet) error { ss.Labels[1] = "other"; return nil })
			},
			[]string{`scale set of target "t-1" differs`, "labels[1]", `"myshoes-org" in the source`}},
		{"a pruned history record", func(t *testing.T) *Store {
			return openStore(t, Options{Now: clock.Now, HistoryMaxCount: copyHistory - 1})
		},
			func(s *Store) error { _, err := s.PruneHistory(); return err }, // drops the oldest
			[]string{`history record of runner "h-000" finished at`, "is missing from the copy"}},
		{"a session only in the copy", func(t *testing.T) *Store { return openStore(t, Options{Now: clock.Now}) },
			func(s *Store) error { return s.PutSession(Session{ScaleSetID: 9, SessionID: "extra"}) },
			[]string{"session of scale set 9 is in the copy but not in the source"}},
		{"a finished runner", func(t *testing.T) *Store { return openStore(t, Options{Now: clock.Now}) },
			func(s *Store) error { _, err := s.FinishRunner("r-busy", "completed"); return err },
			[]string{`runner "r-busy" is missing from the copy`}},
		{"the learned cloud IDs", func(t *testing.T) *Store { return openStore(t, Options{Now: clock.Now}) },
			func(s *Store) error {
				return s.SetCloudIDs(CloudIDs{Plugin: "/usr/local/bin/shoes-lxd", NameKeyed: false, LearnedAt: clock.Now()})
			},
			[]string{`meta record "plugin_cloud_ids" differs`, "name_keyed is true in the source, false in the copy"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := tc.dst(t)
			if _, err := Copy(dst, src); err != nil {
				t.Fatal(err)
			}
			if err := Verify(dst, src); err != nil {
				t.Fatalf("verify right after the copy: %v", err)
			}
			if err := tc.mutate(dst); err != nil {
				t.Fatal(err)
			}
			err := Verify(dst, src)
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("verify after the change: %v, want ErrMismatch", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

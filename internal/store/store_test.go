package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestScaleSets(t *testing.T) {
	s, clock := newTestStore(t)
	t0 := clock.Now()

	ss := ScaleSet{TargetID: "t-b", Scope: "org/repo", Name: "myshoes-large", ScaleSetID: 42,
		RunnerGroupID: 1, Labels: []string{"self-hosted", "large"}, ResourceType: "large", TargetStatus: "active"}
	if err := s.PutScaleSet(ss); err != nil {
		t.Fatal(err)
	}
	want := ss
	want.CreatedAt, want.UpdatedAt = t0, t0
	wantRecord(t, "GetScaleSet", s.GetScaleSet, "t-b", want)

	// Put again: CreatedAt is kept, UpdatedAt moves.
	clock.Advance(time.Minute)
	ss.TargetStatus = "paused"
	if err := s.PutScaleSet(ss); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetScaleSet("t-b")
	if !got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(t0.Add(time.Minute)) || got.TargetStatus != "paused" {
		t.Errorf("after second put: %+v", got)
	}

	if err := s.PutScaleSet(ScaleSet{TargetID: "t-a", ScaleSetID: 7}); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListScaleSets()
	if err != nil {
		t.Fatal(err)
	}
	if ids := []string{list[0].TargetID, list[1].TargetID}; len(list) != 2 || !slices.Equal(ids, []string{"t-a", "t-b"}) {
		t.Errorf("ListScaleSets = %+v", list)
	}

	clock.Advance(time.Minute)
	if err := s.UpdateScaleSet("t-b", func(ss *ScaleSet) error {
		ss.LastError = "boom"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetScaleSet("t-b")
	if got.LastError != "boom" || !got.UpdatedAt.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("after update: %+v", got)
	}

	errAbort := errors.New("abort")
	if err := s.UpdateScaleSet("t-b", func(ss *ScaleSet) error {
		ss.LastError = "not stored"
		return errAbort
	}); !errors.Is(err, errAbort) {
		t.Errorf("UpdateScaleSet with failing fn = %v, want %v", err, errAbort)
	}
	if err := s.UpdateScaleSet("t-b", func(ss *ScaleSet) error {
		ss.TargetID = "t-z"
		return nil
	}); err == nil {
		t.Error("UpdateScaleSet changed the key")
	}
	got, _ = s.GetScaleSet("t-b")
	if got.LastError != "boom" {
		t.Errorf("an aborted update was stored: %+v", got)
	}

	if err := s.DeleteScaleSet("t-b"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, "deleted scale set", map[string]error{
		"get":    func() error { _, err := s.GetScaleSet("t-b"); return err }(),
		"update": s.UpdateScaleSet("t-b", func(*ScaleSet) error { return nil }),
		"delete": s.DeleteScaleSet("t-b"),
	})
	if err := s.PutScaleSet(ScaleSet{}); err == nil {
		t.Error("PutScaleSet without target ID succeeded")
	}
}

func TestSessions(t *testing.T) {
	s, clock := newTestStore(t)
	t0 := clock.Now()

	for _, id := range []int{300, 2, 10} { // sorted numerically, not as text
		if err := s.PutSession(Session{ScaleSetID: id, TargetID: fmt.Sprint("t", id), SessionID: "sess", OwnerName: s.OwnerID()}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.ListSessions()
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, sess := range list {
		ids = append(ids, sess.ScaleSetID)
	}
	if !slices.Equal(ids, []int{2, 10, 300}) {
		t.Errorf("ListSessions IDs = %v, want [2 10 300]", ids)
	}

	clock.Advance(time.Second)
	if err := s.RecordMessage(10, 99, nil); err != nil {
		t.Fatal(err)
	}
	wantRecord(t, "GetSession", s.GetSession, 10, Session{ScaleSetID: 10, TargetID: "t10", SessionID: "sess", OwnerName: s.OwnerID(),
		LastMessageID: 99, CreatedAt: t0, UpdatedAt: t0.Add(time.Second)})

	if err := s.DeleteSession(10); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, "deleted session", map[string]error{
		"get":                 func() error { _, err := s.GetSession(10); return err }(),
		"delete":              s.DeleteSession(10),
		"set last message ID": s.RecordMessage(10, 100, nil),
	})
	if err := s.PutSession(Session{}); err == nil {
		t.Error("PutSession without scale set ID succeeded")
	}
}

// TestPendingAcquisitions: the runner requests a message announced are
// stored with it, survive the session being forgotten and replaced, and
// leave once acquired; a record with neither a session nor pending
// acquisitions goes away.
func TestPendingAcquisitions(t *testing.T) {
	s, clock := newTestStore(t)
	t0 := clock.Now()
	if err := s.PutSession(Session{ScaleSetID: 7, SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordMessage(7, 1, []int64{101, 102}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if err := s.RecordMessage(7, 2, []int64{102, 103}); err != nil { // 102 delivered again
		t.Fatal(err)
	}
	pending := func() []PendingAcquisition {
		t.Helper()
		got, err := s.GetSession(7)
		if err != nil {
			t.Fatal(err)
		}
		return got.PendingAcquire
	}
	want := []PendingAcquisition{{101, t0}, {102, t0}, {103, t0.Add(time.Second)}}
	if got := pending(); !reflect.DeepEqual(got, want) {
		t.Fatalf("pending = %+v, want %+v", got, want)
	}

	// The session expires: it is forgotten, its acquisitions are not.
	if err := s.ForgetSession(7); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSession(7)
	if err != nil || got.SessionID != "" || !reflect.DeepEqual(got.PendingAcquire, want) {
		t.Fatalf("after ForgetSession: %+v, %v; want no session ID and %+v pending", got, err, want)
	}
	if err := s.RecordMessage(7, 3, []int64{104}); !errors.Is(err, ErrNotFound) {
		t.Errorf("RecordMessage without a session = %v, want ErrNotFound", err)
	}
	// A new session takes them over.
	if err := s.PutSession(Session{ScaleSetID: 7, SessionID: "s2"}); err != nil {
		t.Fatal(err)
	}
	if got := pending(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a new session: pending = %+v, want %+v", got, want)
	}
	if err := s.AcquireDone(7, []int64{101, 103}); err != nil {
		t.Fatal(err)
	}
	if got, want := pending(), []PendingAcquisition{{102, t0}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after AcquireDone: pending = %+v, want %+v", got, want)
	}
	// Forgotten with nothing pending: the record goes.
	if err := s.AcquireDone(7, []int64{102}); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetSession(7); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(7); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetSession after the last acquisition and ForgetSession = %v, want ErrNotFound", err)
	}
	if err := s.ForgetSession(7); err != nil {
		t.Errorf("ForgetSession of no record = %v, want nil", err)
	}
}

func TestRunnerCRUD(t *testing.T) {
	s, clock := newTestStore(t)
	t0 := clock.Now()

	in := Runner{Name: "myshoes-1", TargetID: "t1", Scope: "org", ScaleSetID: 5}
	if err := s.CreateRunner(in); err != nil {
		t.Fatal(err)
	}
	if in.StateSince != nil || in.State != "" {
		t.Errorf("CreateRunner modified its argument: %+v", in)
	}
	want := in
	want.State = StatePending
	want.StateSince = map[RunnerState]time.Time{StatePending: t0}
	want.CreatedAt, want.UpdatedAt = t0, t0
	wantRecord(t, "GetRunner", s.GetRunner, "myshoes-1", want)
	if err := s.CreateRunner(in); !errors.Is(err, ErrExists) {
		t.Errorf("second CreateRunner = %v, want ErrExists", err)
	}
	for _, bad := range []Runner{{}, {Name: "x", State: "exploded"}} {
		if err := s.CreateRunner(bad); err == nil {
			t.Errorf("CreateRunner(%+v) succeeded", bad)
		}
	}

	// SetRunnerState records when each state was entered.
	clock.Advance(time.Second)
	r, err := s.SetRunnerState("myshoes-1", StateConfigured, func(r *Runner) { r.RunnerID = 77 })
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	r2, err := s.SetRunnerState("myshoes-1", StateConfigured, nil) // already there: entry time kept
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	r3, err := s.SetRunnerState("myshoes-1", StateIdle, func(r *Runner) { r.CloudID = "i-1" })
	if err != nil {
		t.Fatal(err)
	}
	wantSince := map[RunnerState]time.Time{StatePending: t0, StateConfigured: t0.Add(time.Second), StateIdle: t0.Add(3 * time.Second)}
	if r.RunnerID != 77 || r.State != StateConfigured || !r2.StateSince[StateConfigured].Equal(t0.Add(time.Second)) ||
		r3.State != StateIdle || r3.CloudID != "i-1" || !reflect.DeepEqual(r3.StateSince, wantSince) ||
		!r3.UpdatedAt.Equal(t0.Add(3*time.Second)) {
		t.Errorf("SetRunnerState results:\n%+v\n%+v\n%+v", r, r2, r3)
	}
	if stored, _ := s.GetRunner("myshoes-1"); !reflect.DeepEqual(stored, r3) {
		t.Errorf("stored %+v, returned %+v", stored, r3)
	}
	if _, err := s.SetRunnerState("myshoes-1", "exploded", nil); err == nil {
		t.Error("SetRunnerState to an unknown state succeeded")
	}

	// UpdateRunner: fn's error aborts, the name is the key.
	errAbort := errors.New("abort")
	if _, err := s.UpdateRunner("myshoes-1", func(r *Runner) error {
		r.LastError = "not stored"
		return errAbort
	}); !errors.Is(err, errAbort) {
		t.Errorf("UpdateRunner with failing fn = %v, want %v", err, errAbort)
	}
	if _, err := s.UpdateRunner("myshoes-1", func(r *Runner) error {
		r.Name = "other"
		return nil
	}); err == nil || !strings.Contains(err.Error(), "name cannot change") {
		t.Errorf("UpdateRunner renaming = %v", err)
	}
	if stored, _ := s.GetRunner("myshoes-1"); !reflect.DeepEqual(stored, r3) {
		t.Errorf("an aborted update was stored: %+v", stored)
	}
	clock.Advance(time.Second)
	updated, err := s.UpdateRunner("myshoes-1", func(r *Runner) error {
		r.Attempts++
		r.LastError = "delete failed"
		r.NextAttemptAt = clock.Now().Add(time.Minute)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if stored, _ := s.GetRunner("myshoes-1"); !reflect.DeepEqual(stored, updated) ||
		updated.Attempts != 1 || !updated.UpdatedAt.Equal(t0.Add(4*time.Second)) {
		t.Errorf("UpdateRunner returned %+v, stored %+v", updated, stored)
	}

	wantNotFound(t, "missing runner", map[string]error{
		"get": func() error { _, err := s.GetRunner("nope"); return err }(),
		"update": func() error {
			_, err := s.UpdateRunner("nope", func(*Runner) error { return nil })
			return err
		}(),
		"set state":    func() error { _, err := s.SetRunnerState("nope", StateIdle, nil); return err }(),
		"find by ID":   func() error { _, err := s.FindRunnerByID(12345); return err }(),
		"find by ID 0": func() error { _, err := s.FindRunnerByID(0); return err }(),
	})
	found, err := s.FindRunnerByID(77)
	if err != nil || found.Name != "myshoes-1" {
		t.Errorf("FindRunnerByID(77) = %+v, %v", found, err)
	}
}

func TestListRunners(t *testing.T) {
	s, clock := newTestStore(t)
	base := clock.Now()
	seedRunners(t, s, 9, base) // runner i: scale set 1+i%3, target-(i%3), org(i%3)/repo, idle
	if _, err := s.SetRunnerState("myshoes-00000004-0000-4000-8000-000000000000", StateBusy, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRunnerState("myshoes-00000007-0000-4000-8000-000000000000", StateDeleting, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		filter RunnerFilter
		want   []int // seed indexes, in CreatedAt order
	}{
		{"all", RunnerFilter{}, []int{0, 1, 2, 3, 4, 5, 6, 7, 8}},
		{"scale set", RunnerFilter{ScaleSetID: 2}, []int{1, 4, 7}},
		{"target", RunnerFilter{TargetID: "target-0"}, []int{0, 3, 6}},
		{"scope", RunnerFilter{Scope: "org2/repo"}, []int{2, 5, 8}},
		{"one state", RunnerFilter{States: []RunnerState{StateBusy}}, []int{4}},
		{"states", RunnerFilter{States: []RunnerState{StateBusy, StateDeleting}}, []int{4, 7}},
		{"scale set and state", RunnerFilter{ScaleSetID: 2, States: []RunnerState{StateIdle}}, []int{1}},
		{"nothing", RunnerFilter{ScaleSetID: 9}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := list(t, s.ListRunners, tt.filter)
			var idx []int
			for _, r := range got {
				var i int
				fmt.Sscanf(r.Name, "myshoes-%08d", &i)
				idx = append(idx, i)
			}
			if !slices.Equal(idx, tt.want) {
				t.Errorf("ListRunners(%+v) = %v, want %v", tt.filter, idx, tt.want)
			}
		})
	}

	counts, err := s.CountRunners()
	if err != nil {
		t.Fatal(err)
	}
	wantCounts := map[int]map[RunnerState]int{
		1: {StateIdle: 3},
		2: {StateIdle: 1, StateBusy: 1, StateDeleting: 1},
		3: {StateIdle: 3},
	}
	if !reflect.DeepEqual(counts, wantCounts) {
		t.Errorf("CountRunners = %v, want %v", counts, wantCounts)
	}
}

func TestRunnerStateCounted(t *testing.T) {
	for state, want := range map[RunnerState]bool{
		StatePending: true, StateConfigured: true, StateIdle: true, StateBusy: true,
		StateDeleting: false, StateUnknownInstance: false, "": false,
	} {
		if got := state.Counted(); got != want {
			t.Errorf("%q.Counted() = %v, want %v", state, got, want)
		}
	}
}

func TestFinishRunner(t *testing.T) {
	s, clock := newTestStore(t)
	if err := s.CreateRunner(Runner{Name: "r1", Scope: "org", RunnerID: 3, JobResult: "succeeded"}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	rec, err := s.FinishRunner("r1", "completed")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Reason != "completed" || !rec.FinishedAt.Equal(clock.Now()) || rec.Runner.Name != "r1" || rec.Runner.JobResult != "succeeded" {
		t.Errorf("FinishRunner = %+v", rec)
	}
	if _, err := s.GetRunner("r1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRunner after finish = %v, want ErrNotFound", err)
	}
	hist := list(t, s.ListHistory, HistoryFilter{})
	if len(hist) != 1 || !reflect.DeepEqual(hist[0], rec) {
		t.Errorf("ListHistory = %+v, want [%+v]", hist, rec)
	}

	// Finishing twice is a not-found the caller treats as done; no second record.
	if _, err := s.FinishRunner("r1", "completed"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second FinishRunner = %v, want ErrNotFound", err)
	}
	if _, err := s.FinishRunner("r1", ""); err == nil {
		t.Error("FinishRunner without a reason succeeded")
	}
	if hist, _ := s.ListHistory(HistoryFilter{}); len(hist) != 1 {
		t.Errorf("history has %d records after a repeated finish, want 1", len(hist))
	}
}

// TestFinishRunnerIsAtomic finishes runners concurrently while a reader
// checks, in single transactions, that each runner is in exactly one of the
// runners and history buckets.
func TestFinishRunnerIsAtomic(t *testing.T) {
	s, clock := newTestStore(t)
	const n = 50
	seedRunners(t, s, n, clock.Now())

	var names []string
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRunners).ForEach(func(k, _ []byte) error {
			names = append(names, string(k))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}

	check := func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			seen := make(map[string]int)
			_ = tx.Bucket(bucketRunners).ForEach(func(k, _ []byte) error {
				seen[string(k)]++
				return nil
			})
			_ = tx.Bucket(bucketHistory).ForEach(func(k, _ []byte) error {
				seen[string(k[8:])]++
				return nil
			})
			for _, name := range names {
				if seen[name] != 1 {
					return fmt.Errorf("runner %s is in %d buckets", name, seen[name])
				}
			}
			return nil
		})
	}

	done := make(chan struct{})
	readerErr := make(chan error, 1)
	go func() {
		for {
			if err := check(); err != nil {
				readerErr <- err
				return
			}
			select {
			case <-done:
				readerErr <- nil
				return
			default:
			}
		}
	}()

	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			if _, err := s.FinishRunner(name, "completed"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	close(done)
	if err := <-readerErr; err != nil {
		t.Fatal(err)
	}
	if err := check(); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Stats(); st.Runners != 0 || st.History != n {
		t.Errorf("after finishing all: %d runners, %d history, want 0, %d", st.Runners, st.History, n)
	}
}

func TestListHistory(t *testing.T) {
	s, clock := newTestStore(t)
	seedRunners(t, s, 6, clock.Now()) // scopes org0/repo, org1/repo, org2/repo, ...
	var order []string                // finish order
	for i := range 6 {
		clock.Advance(time.Minute)
		name := fmt.Sprintf("myshoes-%08d-0000-4000-8000-000000000000", (i*5)%6)
		if _, err := s.FinishRunner(name, "completed"); err != nil {
			t.Fatal(err)
		}
		order = append(order, name)
	}
	newest := slices.Clone(order)
	slices.Reverse(newest)

	tests := []struct {
		name   string
		filter HistoryFilter
		want   []string
	}{
		{"all, newest first", HistoryFilter{}, newest},
		{"limit", HistoryFilter{Limit: 2}, newest[:2]},
		{"scope", HistoryFilter{Scope: "org1/repo"}, []string{order[5], order[2]}},
		{"scope and limit", HistoryFilter{Scope: "org1/repo", Limit: 1}, []string{order[5]}},
		{"unknown scope", HistoryFilter{Scope: "nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hist := list(t, s.ListHistory, tt.filter)
			var got []string
			for _, h := range hist {
				got = append(got, h.Runner.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ListHistory(%+v) = %v, want %v", tt.filter, got, tt.want)
			}
		})
	}
}

func TestPruneHistory(t *testing.T) {
	tests := []struct {
		name       string
		maxAge     time.Duration
		maxCount   int
		ages       []time.Duration // finished this long before the prune
		wantPruned int
		wantKept   []time.Duration // newest first
	}{
		{"nothing to prune", time.Hour, 10, []time.Duration{50 * time.Minute, time.Minute}, 0,
			[]time.Duration{time.Minute, 50 * time.Minute}},
		{"by age", time.Hour, 10, []time.Duration{3 * time.Hour, 61 * time.Minute, 59 * time.Minute, time.Minute}, 2,
			[]time.Duration{time.Minute, 59 * time.Minute}},
		{"exactly max age is kept", time.Hour, 10, []time.Duration{time.Hour}, 0, []time.Duration{time.Hour}},
		{"by count", 24 * time.Hour, 2, []time.Duration{4 * time.Minute, 3 * time.Minute, 2 * time.Minute, time.Minute}, 2,
			[]time.Duration{time.Minute, 2 * time.Minute}},
		{"by age and count", time.Hour, 1, []time.Duration{2 * time.Hour, 3 * time.Minute, 2 * time.Minute}, 2,
			[]time.Duration{2 * time.Minute}},
		{"empty", time.Hour, 1, nil, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := openStore(t, Options{Now: clock.Now, HistoryMaxAge: tt.maxAge, HistoryMaxCount: tt.maxCount})
			pruneAt := clock.Now().Add(24 * time.Hour)
			err := s.update(func(tx txn) error {
				for i, age := range tt.ages {
					finished := pruneAt.Add(-age)
					rec := HistoryRecord{Runner: Runner{Name: fmt.Sprint("r", i)}, Reason: "completed", FinishedAt: finished}
					if err := put(tx.bucket(bucketHistory), historyKey(finished, rec.Runner.Name), rec); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			clock.Advance(24 * time.Hour)

			pruned, err := s.PruneHistory()
			if err != nil {
				t.Fatal(err)
			}
			if pruned != tt.wantPruned {
				t.Errorf("PruneHistory() = %d, want %d", pruned, tt.wantPruned)
			}
			hist := list(t, s.ListHistory, HistoryFilter{})
			var kept []time.Duration
			for _, h := range hist {
				kept = append(kept, pruneAt.Sub(h.FinishedAt))
			}
			if !slices.Equal(kept, tt.wantKept) {
				t.Errorf("kept ages %v, want %v", kept, tt.wantKept)
			}
		})
	}
}

// TestConcurrentUpdateRunner: 50 goroutines increment counters through
// UpdateRunner; no increment may be lost, whether they update different
// runners or all the same one.
func TestConcurrentUpdateRunner(t *testing.T) {
	const goroutines = 50
	tests := []struct {
		name    string
		runners int
	}{
		{"different runners", goroutines},
		{"same runner", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clock := newTestStore(t)
			seedRunners(t, s, tt.runners, clock.Now())
			rs := list(t, s.ListRunners, RunnerFilter{})

			var wg sync.WaitGroup
			for g := range goroutines {
				name := rs[g%tt.runners].Name
				wg.Go(func() {
					if _, err := s.UpdateRunner(name, func(r *Runner) error {
						r.Attempts++
						return nil
					}); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()

			total := 0
			for _, r := range rs {
				got, err := s.GetRunner(r.Name)
				if err != nil {
					t.Fatal(err)
				}
				if want := goroutines / tt.runners; got.Attempts != want {
					t.Errorf("%s: Attempts = %d, want %d", r.Name, got.Attempts, want)
				}
				total += got.Attempts
			}
			if total != goroutines {
				t.Errorf("total increments = %d, want %d", total, goroutines)
			}
		})
	}
}

// TestConcurrentWritersMixed runs every batched write at once, including
// ones that end in ErrExists and ErrNotFound, which must neither fail nor
// undo the other writes of their batch.
func TestConcurrentWritersMixed(t *testing.T) {
	s, _ := newTestStore(t)
	if err := s.PutSession(Session{ScaleSetID: 1, SessionID: "s"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRunner(Runner{Name: "dup"}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprint("r", i)
			if err := s.CreateRunner(Runner{Name: name, ScaleSetID: 1}); err != nil {
				t.Error(err)
				return
			}
			if _, err := s.SetRunnerState(name, StateIdle, nil); err != nil {
				t.Error(err)
			}
			if i%2 == 0 {
				if _, err := s.FinishRunner(name, "scale-down"); err != nil {
					t.Error(err)
				}
			}
		})
		wg.Go(func() {
			if err := s.CreateRunner(Runner{Name: "dup"}); !errors.Is(err, ErrExists) {
				t.Errorf("CreateRunner(dup) = %v, want ErrExists", err)
			}
		})
		wg.Go(func() {
			if _, err := s.FinishRunner(fmt.Sprint("ghost", i), "removed"); !errors.Is(err, ErrNotFound) {
				t.Errorf("FinishRunner(ghost) = %v, want ErrNotFound", err)
			}
		})
		wg.Go(func() {
			if err := s.RecordMessage(1, int64(i), nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	counts, err := s.CountRunners()
	if err != nil {
		t.Fatal(err)
	}
	if got := counts[1][StateIdle]; got != n/2 {
		t.Errorf("idle runners = %d, want %d (counts %v)", got, n/2, counts)
	}
	if hist, _ := s.ListHistory(HistoryFilter{}); len(hist) != n/2 {
		t.Errorf("history = %d records, want %d", len(hist), n/2)
	}
}

func TestStats(t *testing.T) {
	s, clock := newTestStore(t)
	seedRunners(t, s, 3, clock.Now())
	if err := s.PutScaleSet(ScaleSet{TargetID: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishRunner("myshoes-00000000-0000-4000-8000-000000000000", "completed"); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Path != s.Path() || st.OwnerID != s.OwnerID() || st.SchemaVersion != 1 ||
		st.ScaleSets != 1 || st.Sessions != 0 || st.Runners != 2 || st.History != 1 ||
		st.DataSize <= 0 || st.FileSize < st.DataSize {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestCreateRunners(t *testing.T) {
	s, clock := newTestStore(t)
	now := clock.Now().UTC().Round(0)
	if err := s.CreateRunners(nil); err != nil {
		t.Fatalf("CreateRunners(nil) = %v", err)
	}
	batch := []Runner{{Name: "r1", ScaleSetID: 1}, {Name: "r2", ScaleSetID: 1, State: StateIdle}}
	if err := s.CreateRunners(batch); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListRunners(RunnerFilter{})
	if err != nil || len(got) != 2 {
		t.Fatalf("ListRunners = %d runners (err %v), want 2", len(got), err)
	}
	for _, r := range got {
		want := StatePending
		if r.Name == "r2" {
			want = StateIdle
		}
		if r.State != want || !r.StateSince[want].Equal(now) || !r.CreatedAt.Equal(now) {
			t.Errorf("%s: state %s since %v, created %v; want %s since %v", r.Name, r.State, r.StateSince[want], r.CreatedAt, want, now)
		}
	}
	if batch[0].StateSince != nil {
		t.Error("CreateRunners wrote to the caller's record")
	}

	// All or nothing: one existing name stores none of them.
	for _, tc := range []struct {
		name string
		rs   []Runner
	}{
		{"an existing name", []Runner{{Name: "r3"}, {Name: "r1"}}},
		{"a name twice", []Runner{{Name: "r3"}, {Name: "r3"}}},
	} {
		if err := s.CreateRunners(tc.rs); !errors.Is(err, ErrExists) {
			t.Errorf("%s: CreateRunners = %v, want ErrExists", tc.name, err)
		}
		if _, err := s.GetRunner("r3"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: r3 was stored (%v)", tc.name, err)
		}
	}
	if err := s.CreateRunners([]Runner{{Name: "r4"}, {Name: ""}}); err == nil || !strings.Contains(err.Error(), "name is required") {
		t.Errorf("CreateRunners with an empty name = %v", err)
	}
}

// ListRunners, FindRunnerByID and CountRunners reuse decoded records
// whose bytes did not change: they must still see every change, and a
// caller changing a returned record must not change what later calls see.
func TestRunnerDecodeCache(t *testing.T) {
	s, _ := newTestStore(t)
	for _, name := range []string{"r1", "r2", "r3"} {
		if err := s.CreateRunner(Runner{Name: name, ScaleSetID: 1}); err != nil {
			t.Fatal(err)
		}
	}
	list := func() map[string]Runner {
		t.Helper()
		rs := list(t, s.ListRunners, RunnerFilter{})
		out := map[string]Runner{}
		for _, r := range rs {
			out[r.Name] = r
		}
		return out
	}
	first := list()
	first["r1"].StateSince[StateBusy] = time.Unix(1, 0) // the caller's copy
	if _, ok := list()["r1"].StateSince[StateBusy]; ok {
		t.Fatal("changing a listed runner changed the next listing")
	}

	if _, err := s.SetRunnerState("r2", StateConfigured, func(r *Runner) { r.RunnerID = 42 }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishRunner("r3", "completed"); err != nil {
		t.Fatal(err)
	}
	got := list()
	if len(got) != 2 || got["r2"].State != StateConfigured || got["r2"].RunnerID != 42 {
		t.Fatalf("after an update and a finish: %+v", got)
	}
	if r, err := s.FindRunnerByID(42); err != nil || r.Name != "r2" {
		t.Errorf("FindRunnerByID(42) = %s, %v", r.Name, err)
	}
	counts, err := s.CountRunners()
	if err != nil || counts[1][StatePending] != 1 || counts[1][StateConfigured] != 1 {
		t.Errorf("CountRunners = %v, %v; want 1 pending and 1 configured", counts, err)
	}
}

// TestWriteHealth: a failed commit counts; an error a write returns
// itself (not found) does not; a commit that succeeds clears the run of
// failures but not the total.
func TestWriteHealth(t *testing.T) {
	s, clock := newTestStore(t)
	if _, err := s.UpdateRunner("nobody", func(*Runner) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdateRunner of nobody = %v", err)
	}
	if h := s.WriteHealth(); h.Failing != 0 || h.Failures != 0 {
		t.Fatalf("after a not-found write: %+v, want healthy", h)
	}
	commitErr := errors.New("write /var/lib/x: no space left on device")
	t0 := clock.Now()
	s.noteWrite(commitErr, nil)
	clock.Advance(time.Second)
	s.noteWrite(commitErr, nil)
	if h := s.WriteHealth(); h.Failing != 2 || h.Failures != 2 || !h.FailingSince.Equal(t0) || h.LastError != commitErr.Error() {
		t.Fatalf("after two failed commits: %+v", h)
	}
	if err := s.PutScaleSet(ScaleSet{TargetID: "t1"}); err != nil {
		t.Fatal(err)
	}
	if h := s.WriteHealth(); h.Failing != 0 || h.Failures != 2 || h.LastError != "" {
		t.Fatalf("after a good commit: %+v, want the run cleared and the total kept", h)
	}
}

// TestCloudIDs: what was learned of the plugin's cloud IDs survives a
// reopen; nothing learned is not found.
func TestCloudIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, found, err := s.CloudIDs(); found || err != nil {
		t.Fatalf("fresh file: found %t, %v", found, err)
	}
	want := CloudIDs{Plugin: "/usr/local/bin/shoes-lxd", NameKeyed: true, LearnedAt: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)}
	if err := s.SetCloudIDs(want); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(Options{Path: path, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	got, found, err := ro.CloudIDs()
	if err != nil || !found || got != want {
		t.Fatalf("after reopen: %+v, %t, %v; want %+v", got, found, err, want)
	}
}

// TestCountRunnersKeptUntilAWrite: CountRunners answers from the counts of
// its last scan while the file is unchanged, and scans again after every
// committed write, so the counts it keeps are never stale; a caller
// changing its maps does not change the next caller's.
func TestCountRunnersKeptUntilAWrite(t *testing.T) {
	s := openStore(t, Options{})
	seedRunners(t, s, 6, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) // 2 idle in each of scale sets 1, 2, 3
	count := func() map[int]map[RunnerState]int {
		t.Helper()
		counts, err := s.CountRunners()
		if err != nil {
			t.Fatal(err)
		}
		return counts
	}
	first := count()
	kept := s.counts.Load()
	first[1][StateIdle] = 99 // the caller's copy
	if again := count(); again[1][StateIdle] != 2 || s.counts.Load() != kept {
		t.Fatalf("unchanged file: counts %v, kept %p then %p; want 2 idle in scale set 1 from the same kept counts", again, kept, s.counts.Load())
	}

	name := "myshoes-00000000-0000-4000-8000-000000000000" // scale set 1
	if _, err := s.UpdateRunner(name, func(r *Runner) error { r.State = StateBusy; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := count()[1]; got[StateIdle] != 1 || got[StateBusy] != 1 {
		t.Errorf("after a runner went busy: scale set 1 counts %v, want 1 idle and 1 busy", got)
	}
	if _, err := s.FinishRunner(name, "completed"); err != nil {
		t.Fatal(err)
	}
	if got := count()[1]; got[StateIdle] != 1 || got[StateBusy] != 0 {
		t.Errorf("after the runner finished: scale set 1 counts %v, want 1 idle", got)
	}
	if err := s.CreateRunners([]Runner{{Name: "myshoes-new", ScaleSetID: 4, State: StatePending}}); err != nil {
		t.Fatal(err)
	}
	if got := count()[4]; got[StatePending] != 1 {
		t.Errorf("after a new runner: scale set 4 counts %v, want 1 pending", got)
	}
}

//go:build bench

package bench

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario/scenariotest"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// seedState fills a new state file with runners live runners and history
// finished ones, through the store's own API (CreateRunners in batches,
// FinishRunner from many goroutines so that their commits are shared).
func seedState(t *testing.T, path string, runners, history int) {
	t.Helper()
	st, err := store.Open(store.Options{Path: path, HistoryMaxCount: history + runners})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	states := []store.RunnerState{store.StateIdle, store.StateBusy, store.StatePending, store.StateConfigured, store.StateDeleting}
	now := time.Now()
	newRunner := func(i int, state store.RunnerState) store.Runner {
		since := map[store.RunnerState]time.Time{store.StatePending: now}
		since[state] = now
		r := store.Runner{
			Name: "myshoes-" + uuid.NewString(), RunnerID: int64(i + 1),
			TargetID: fmt.Sprintf("target-%d", i%10), Scope: fmt.Sprintf("org-%d", i%10), ScaleSetID: 1 + i%10,
			ResourceType: "small", State: state, StateSince: since,
		}
		if state != store.StatePending && state != store.StateConfigured {
			r.CloudID, r.ShoesType, r.IPAddress = "fake-"+uuid.NewString(), "shoesfake", "10.0.0.1"
		}
		if state == store.StateBusy || state == store.StateDeleting {
			r.JobID, r.Repository, r.WorkflowRef = uuid.NewString(), r.Scope+"/app", r.Scope+"/app/.github/workflows/ci.yml@refs/heads/main"
		}
		return r
	}
	create := func(from, to int, state func(int) store.RunnerState) []store.Runner {
		var all []store.Runner
		for lo := from; lo < to; lo += 1000 {
			batch := make([]store.Runner, 0, 1000)
			for i := lo; i < min(lo+1000, to); i++ {
				batch = append(batch, newRunner(i, state(i)))
			}
			if err := st.CreateRunners(batch); err != nil {
				t.Fatal(err)
			}
			all = append(all, batch...)
		}
		return all
	}
	finished := create(runners, runners+history, func(int) store.RunnerState { return store.StateDeleting })
	names := make(chan string)
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for name := range names {
				if _, err := st.FinishRunner(name, "completed"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for _, r := range finished {
		names <- r.Name
	}
	close(names)
	wg.Wait()
	create(0, runners, func(i int) store.RunnerState { return states[i%len(states)] })
}

// P5: `runners ls` over a state file with 10,000 runners and 100,000
// history records, and the file size before and after pruning.
func TestP5State(t *testing.T) {
	const runners, history = 10000, 100000
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	seedStart := time.Now()
	seedState(t, path, runners, history)
	seeded := time.Since(seedStart)
	sizeSeeded := testkit.FileSize(t, path)

	// No daemon answers at --listen: runners ls reads the file read-only.
	noDaemon := testkit.FreeAddr(t)
	ls := func(format string) (time.Duration, int) {
		r := scenariotest.Exec(t, binary, 5*time.Minute, testkit.ChildEnv(), "runners", "ls", "--state-file", path, "--listen", noDaemon, "-o", format)
		if r.Code != 0 {
			t.Fatalf("runners ls -o %s:\n%s", format, r)
		}
		return r.Took, len(r.Stdout)
	}
	n := max(runs(), 5)
	row := func(format string) string {
		var secs []float64
		size := 0
		for range n {
			d, b := ls(format)
			secs = append(secs, d.Seconds())
			size = b
		}
		return fmt.Sprintf("| `runners ls -o %s` | %d | %s s | %.1f MiB |\n", format, n, spread(secs, "%.3f"), float64(size)/(1<<20))
	}
	rows := row("json") + row("table")

	// Prune with run's defaults (7 days, 10,000 records): every record is
	// fresh, so the count cap drops 90,000.
	st, err := store.Open(store.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	pruneStart := time.Now()
	pruned, err := st.PruneHistory()
	if err != nil {
		t.Fatal(err)
	}
	pruneTook := time.Since(pruneStart)
	stats, err := st.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	sizePruned := testkit.FileSize(t, path)
	rowsAfter := row("json")

	report(t, "\n### P5 state: %d runners and %d history records (seeded in %.1f s through internal/store)\n\n"+
		"| command | runs | latency, median (range) | output |\n|---|---|---|---|\n%s"+
		"\nAfter PruneHistory with the defaults (--history-max-age 7 days, --history-max-count 10000): %d records dropped in %.2f s, %d left.\n\n"+
		"| figure | value |\n|---|---|\n"+
		"| file size, seeded | %.1f MiB |\n| file size, after pruning | %.1f MiB (bbolt keeps freed pages for reuse; it never shrinks the file) |\n"+
		"| data size after pruning (high-water page) | %.1f MiB |\n\n"+
		"| command, after pruning | runs | latency, median (range) | output |\n|---|---|---|---|\n%s",
		runners, history, seeded.Seconds(), rows, pruned, pruneTook.Seconds(), stats.History,
		float64(sizeSeeded)/(1<<20), float64(sizePruned)/(1<<20), float64(stats.DataSize)/(1<<20), rowsAfter)
}

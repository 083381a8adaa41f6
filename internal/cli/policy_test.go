package cli

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/policy"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// reloadSink records what a policyReloader applies and counts.
type reloadSink struct {
	mu       sync.Mutex
	policies []*policy.Policy
	ok, bad  int
}

func (r *reloadSink) SetPolicy(p controller.Policy) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.policies = append(r.policies, p.(*policy.Policy))
}

func (r *reloadSink) PolicyReload(_ time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.bad++
	} else {
		r.ok++
	}
}

func (r *reloadSink) state() (applied, ok, bad int, last *policy.Policy) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.policies); n > 0 {
		last = r.policies[n-1]
	}
	return len(r.policies), r.ok, r.bad, last
}

// runReloader runs r until the test ends and returns its SIGHUP channel.
func runReloader(t *testing.T, r *policyReloader) chan<- os.Signal {
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.run(ctx, hup)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return hup
}

// TestPolicyReloader: a change of the file is applied without a signal; a
// bad file is refused and counted, and the policy in force stays; SIGHUP
// applies the file, and its log_level, even when its text is the same.
func TestPolicyReloader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("defaults:\n  max_runners: 3\n")
	sink := &reloadSink{}
	logs := &testkit.SyncBuffer{}
	level := &slog.LevelVar{}
	r := &policyReloader{path: path, base: policy.Settings{MaxRunners: 10, RunnerGroup: "Default"}, ctrl: sink, rec: sink,
		level: level, flagLevel: slog.LevelInfo, log: slog.New(slog.NewTextHandler(logs, nil)), now: time.Now, interval: 10 * time.Millisecond}
	lp, err := readPolicy(path, r.base)
	if err != nil {
		t.Fatal(err)
	}
	r.running, r.stamp = lp.text, lp.stamp // as run primes it from loadPolicy
	hup := runReloader(t, r)
	waitSink := func(what string, cond func(applied, ok, bad int, last *policy.Policy) bool) {
		t.Helper()
		testkit.WaitFor(t, what, 5*time.Second, func() (bool, string) {
			a, ok, bad, last := sink.state()
			return cond(a, ok, bad, last), logs.String()
		})
	}

	// A change (of size: the stamp differs even within one tick of the
	// file system's clock).
	write("defaults:\n  max_runners: 17\n")
	waitSink("the changed file applied", func(a, _, _ int, last *policy.Policy) bool {
		return a == 1 && last.Defaults.MaxRunners == 17
	})
	// A bad file is refused and counted; nothing is applied.
	write("defaults:\n  max_runners: -170\n")
	waitSink("the bad file refused", func(a, _, bad int, _ *policy.Policy) bool { return bad == 1 && a == 1 })
	if !strings.Contains(logs.String(), "policy reload refused; keeping the running policy") || !strings.Contains(logs.String(), "policy.yaml:2: defaults.max_runners") {
		t.Errorf("the refusal is not logged with the line and key:\n%s", logs.String())
	}
	// SIGHUP with a good file: applied, with its log level.
	write("log_level: debug\ndefaults:\n  max_runners: 8\n")
	hup <- os.Interrupt // any signal value: the channel is SIGHUP's
	waitSink("the SIGHUP reload", func(a, _, _ int, last *policy.Policy) bool { return a >= 2 && last.Defaults.MaxRunners == 8 })
	testkit.WaitFor(t, "the file's log level", 5*time.Second, func() (bool, string) { return level.Level() == slog.LevelDebug, level.Level().String() })
	// A SIGHUP with the same text applies it again.
	applied, _, _, _ := sink.state()
	hup <- os.Interrupt
	waitSink("a second SIGHUP applies it again", func(a, _, _ int, _ *policy.Policy) bool { return a == applied+1 })
}

// TestPolicyReloaderWithoutFile: with no --config, SIGHUP restores the
// flag's log level and applies no policy.
func TestPolicyReloaderWithoutFile(t *testing.T) {
	sink := &reloadSink{}
	logs := &testkit.SyncBuffer{}
	level := &slog.LevelVar{}
	level.Set(slog.LevelError)
	r := &policyReloader{ctrl: sink, rec: sink, level: level, flagLevel: slog.LevelWarn,
		log: slog.New(slog.NewTextHandler(logs, nil)), now: time.Now, interval: 10 * time.Millisecond}
	hup := runReloader(t, r)
	hup <- os.Interrupt
	testkit.WaitFor(t, "the flag's level back", 5*time.Second, func() (bool, string) { return level.Level() == slog.LevelWarn, logs.String() })
	if a, ok, bad, _ := sink.state(); a+ok+bad != 0 {
		t.Errorf("without a file: %d policies applied, %d reloads counted; want none", a, ok+bad)
	}
}

package shoes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
)

// TestCheck: Check starts a process, completes the handshake and stops it
// again (the pool keeps nothing); a plugin that does not start is an
// ErrConfig error naming it, with what it wrote to stderr, counted as a
// start failure; a check the caller gave up on is not ErrConfig.
func TestCheck(t *testing.T) {
	t.Parallel()
	t.Run("a plugin that starts", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil, nil)
		if err := f.host.Check(context.Background()); err != nil {
			t.Fatalf("Check: %v", err)
		}
		f.host.mu.Lock()
		live, idle := len(f.host.live), len(f.host.idle)
		f.host.mu.Unlock()
		if live != 0 || idle != 0 || len(f.host.slots) != 0 {
			t.Errorf("after Check: %d live, %d idle processes, %d slots taken; want none", live, idle, len(f.host.slots))
		}
		if why := f.host.StartFailure(); why != "" {
			t.Errorf("StartFailure = %q, want none", why)
		}
		// The pool still serves.
		if _, err := f.host.AddInstance(context.Background(), addReq()); err != nil {
			t.Fatalf("AddInstance after Check: %v", err)
		}
	})
	t.Run("a plugin that does not start", func(t *testing.T) {
		t.Parallel()
		script := writeScript(t, t.TempDir(), "plugin", "echo 'my-plugin: LXD_HOST is not set' >&2\nexit 1\n")
		rec := &recorder{}
		h, err := New(context.Background(), Config{Path: script, Logger: testLogger(t), StartTimeout: 10 * time.Second, Recorder: rec})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeWithin(t, h, 20*time.Second) })
		err = h.Check(context.Background())
		if !errors.Is(err, ErrConfig) {
			t.Fatalf("Check = %v, want ErrConfig", err)
		}
		for _, want := range []string{"start plugin " + script, "LXD_HOST is not set"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Check error %q lacks %q", err, want)
			}
		}
		if got := rec.startFailures(); !slices.Equal(got, []string{StartFailureHandshake}) {
			t.Errorf("recorded start failures %v, want [%s]", got, StartFailureHandshake)
		}
		if why := h.StartFailure(); !strings.Contains(why, "the last 1 plugin process starts failed") {
			t.Errorf("StartFailure = %q", why)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := f.host.Check(ctx)
		if err == nil || errors.Is(err, ErrConfig) {
			t.Fatalf("Check with a canceled context = %v, want an error that is not ErrConfig", err)
		}
		if why := f.host.StartFailure(); why != "" {
			t.Errorf("a canceled start counts as a failure: %q", why)
		}
	})
}

// TestStartFailureAfterCheck: the plugin starts at first (Check passes),
// then its new processes fail to start (SIM_PLUGIN_FAIL_START_IF): a call
// fails StartFailed and StartFailure says how many starts failed since
// when, with the plugin's error, until a start succeeds again.
func TestStartFailureAfterCheck(t *testing.T) {
	t.Parallel()
	noStart := filepath.Join(t.TempDir(), "no-start")
	rec := &recorder{}
	f := newFixture(t, map[string]string{shoesfake.EnvFailStartIf: noStart}, func(c *Config) { c.Recorder = rec })
	ctx := context.Background()
	if err := f.host.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := os.WriteFile(noStart, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := f.host.AddInstance(ctx, addReq()); Code(err) != CodeStartFailed {
			t.Fatalf("AddInstance %d with starts failing: %v, want StartFailed", i+1, err)
		}
	}
	why := f.host.StartFailure()
	for _, want := range []string{"the last 2 plugin process starts failed, since ", "start plugin " + fakeshoesBin, "stderr is in the log"} {
		if !strings.Contains(why, want) {
			t.Errorf("StartFailure = %q, lacks %q", why, want)
		}
	}
	// /readyz serves this reason: it does not repeat what the plugin
	// printed, which may be anything.
	if strings.Contains(why, "refusing to start") {
		t.Errorf("StartFailure = %q repeats the plugin's stderr", why)
	}
	if got := rec.startFailures(); !slices.Equal(got, []string{StartFailureHandshake, StartFailureHandshake}) {
		t.Errorf("recorded start failures %v, want two %s", got, StartFailureHandshake)
	}

	if err := os.Remove(noStart); err != nil {
		t.Fatal(err)
	}
	if _, err := f.host.AddInstance(ctx, addReq()); err != nil {
		t.Fatalf("AddInstance once starts work again: %v", err)
	}
	if why := f.host.StartFailure(); why != "" {
		t.Errorf("StartFailure after a start succeeded = %q, want none", why)
	}
}

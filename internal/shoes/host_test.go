package shoes

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/setting"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

func TestParseResourceType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want ResourceType
	}{
		{"nano", ResourceNano},
		{"micro", ResourceMicro},
		{"small", ResourceSmall},
		{"medium", ResourceMedium},
		{"large", ResourceLarge},
		{"xlarge", ResourceXLarge},
		{"2xlarge", ResourceXLarge2},
		{"3xlarge", ResourceXLarge3},
		{"4xlarge", ResourceXLarge4},
		{"Large", ResourceLarge},
		{"unknown", ResourceUnknown},
		{"", ResourceUnknown},
		{"5xlarge", ResourceUnknown},
	}
	for _, tt := range tests {
		if got := ParseResourceType(tt.in); got != tt.want {
			t.Errorf("ParseResourceType(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	for r := ResourceUnknown; r <= ResourceXLarge4; r++ {
		if got := ParseResourceType(r.String()); got != r {
			t.Errorf("round trip %v: got %v", r, got)
		}
		if int32(r.toProto()) != int32(r) || resourceFromProto(r.toProto()) != r {
			t.Errorf("proto mapping of %v is not the identity", r)
		}
	}
	if got := ResourceType(42).String(); got != "unknown" {
		t.Errorf("ResourceType(42).String() = %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	// Validate judges a Config as New uses it (a zero field is its
	// default); an invalid setting is a *setting.FieldError naming the
	// field, with a message naming the plugin setting.
	tests := []struct {
		name    string
		cfg     Config
		field   string
		wantErr string
	}{
		{"defaults", Config{Path: "/bin/true"}, "", ""},
		{"no path", Config{}, "Path", "path is empty"},
		{"negative pool", Config{Path: "x", PoolSize: -1}, "PoolSize", "pool size"},
		{"negative add timeout", Config{Path: "x", AddTimeout: -time.Second}, "AddTimeout", "add timeout"},
		{"negative delete timeout", Config{Path: "x", DeleteTimeout: -time.Second}, "DeleteTimeout", "delete timeout"},
		{"negative start timeout", Config{Path: "x", StartTimeout: -time.Second}, "StartTimeout", "plugin"},
		{"negative download attempts", Config{Path: "x", DownloadAttempts: -1}, "DownloadAttempts", "download attempts"},
		{"negative download backoff", Config{Path: "x", DownloadBackoff: -time.Second}, "DownloadBackoff", "plugin"},
		{"sha256 not hex", Config{Path: "x", SHA256: strings.Repeat("g", 64)}, "SHA256", "64 hex digits"},
		{"sha256 too short", Config{Path: "x", SHA256: "abcd"}, "SHA256", "64 hex digits"},
		{"star inside an environment filter", Config{Path: "x", DropEnv: []string{"GITHUB_*_KEY"}}, "DropEnv", "environment filter"},
		{"empty environment filter", Config{Path: "x", DropEnv: []string{""}}, "DropEnv", "environment filter"},
		{"environment filters", Config{Path: "x", DropEnv: []string{"GITHUB_TOKEN", "SHOES_SCALESET_GITHUB_*"}, SHA256: strings.Repeat("aB", 32)}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			testkit.WantErr(t, err, tt.wantErr)
			if got := setting.FieldOf(err); got != tt.field {
				t.Errorf("Validate = %v: about %q, want %q", err, got, tt.field)
			}
			if err != nil && !strings.Contains(err.Error(), "plugin") {
				t.Errorf("Validate = %q, want a message naming the plugin setting", err)
			}
		})
	}
	if err := (Config{Path: "x", SHA256: "abc"}).Validate(); !errors.Is(err, ErrChecksumMismatch) {
		t.Errorf("Validate of a bad SHA256 = %v, want ErrChecksumMismatch", err)
	}
	// defaults fills a zero Config from DefaultConfig, the one statement
	// of each default.
	c := Config{Path: "x"}
	c.defaults()
	testkit.SameSettings(t, c, DefaultConfig())
	if c.CacheDir == "" {
		t.Error("defaults left CacheDir empty")
	}
}

func TestNewBadPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notExec := filepath.Join(dir, "plugin-not-exec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "no-such-plugin")
	tests := []struct {
		name, path, want string
	}{
		{"missing", missing, "no such file"},
		{"not executable", notExec, "not executable"},
		{"directory", dir, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), Config{Path: tt.path})
			if err == nil {
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q should name %q and say %q", err, tt.path, tt.want)
			}
		})
	}
}

func TestNewFromURL(t *testing.T) {
	t.Parallel()
	bin, err := os.ReadFile(fakeshoesBin)
	if err != nil {
		t.Fatal(err)
	}
	var downloads atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fakeshoes", func(w http.ResponseWriter, _ *http.Request) {
		downloads.Add(1)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(bin)
	})
	mux.HandleFunc("GET /empty", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<!DOCTYPE html><html>sign in</html>"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for _, tt := range []struct{ path, want string }{
		{"/missing", "404"},
		{"/empty", "empty body"},
		{"/login", "HTML"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			u := srv.URL + tt.path
			_, err := New(context.Background(), Config{Path: u, CacheDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), u) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New(%s) = %v, want an error naming the URL and %q", u, err, tt.want)
			}
		})
	}

	t.Run("download once", func(t *testing.T) {
		cache := t.TempDir()
		f := newFixture(t, nil, func(c *Config) { c.Path = srv.URL + "/fakeshoes"; c.CacheDir = cache })
		if !strings.HasPrefix(f.host.PluginPath(), cache) {
			t.Fatalf("plugin path %s is not in the cache %s", f.host.PluginPath(), cache)
		}
		if _, err := f.host.AddInstance(context.Background(), addReq()); err != nil {
			t.Fatalf("AddInstance on downloaded plugin: %v", err)
		}
		h2, err := New(context.Background(), Config{Path: srv.URL + "/fakeshoes", CacheDir: cache})
		if err != nil {
			t.Fatalf("second New: %v", err)
		}
		if h2.PluginPath() != f.host.PluginPath() {
			t.Errorf("second New uses %s, want %s", h2.PluginPath(), f.host.PluginPath())
		}
		if n := downloads.Load(); n != 1 {
			t.Errorf("downloads = %d, want 1", n)
		}
	})
}

// TestEnv checks that plugins inherit our environment and that Config.Env
// overrides it. Not parallel: it sets the process environment.
func TestEnv(t *testing.T) {
	t.Setenv(shoesfake.EnvFailCode, "Internal")
	t.Setenv(shoesfake.EnvFailMethod, "AddInstance")
	f := newFixture(t, map[string]string{shoesfake.EnvFailCode: "InvalidArgument"}, nil)
	ctx := context.Background()
	if _, err := f.host.AddInstance(ctx, addReq()); Code(err) != "InvalidArgument" {
		t.Errorf("AddInstance = %v, want the overriding InvalidArgument", err)
	}
	// The inherited method filter spares DeleteInstance.
	if err := f.host.DeleteInstance(ctx, "fake-00000000-0000-0000-0000-000000000000", nil); err != nil {
		t.Errorf("DeleteInstance = %v, want nil", err)
	}
	if c := f.calls(t); len(c) != 2 || c[1].Code != "NotFound" {
		t.Errorf("calls %+v", c)
	}
}

func TestReuse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil)
	ctx := context.Background()
	for i := range 50 {
		inst, err := f.host.AddInstance(ctx, addReq())
		if err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
		if inst.CloudID == "" || inst.ShoesType != "shoesfake" || inst.IPAddress != "127.0.0.1" || inst.ResourceType != ResourceLarge {
			t.Fatalf("call %d: unexpected instance %+v", i+1, inst)
		}
	}
	calls := f.calls(t)
	if len(calls) != 50 {
		t.Fatalf("call log has %d calls, want 50", len(calls))
	}
	if pids := distinctPIDs(calls); len(pids) > f.host.cfg.PoolSize {
		t.Fatalf("50 sequential calls used %d processes, want at most %d", len(pids), f.host.cfg.PoolSize)
	}
}

func TestParallel(t *testing.T) {
	t.Parallel()
	f := newFixture(t, map[string]string{shoesfake.EnvLatency: "200ms"}, nil)
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if _, err := f.host.AddInstance(ctx, addReq()); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	elapsed := time.Since(start)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("20 calls of 200ms on a pool of 4 took %s (5 waves ≈ 1s plus process starts)", elapsed)
	if elapsed > 20*time.Second {
		t.Errorf("took %s", elapsed)
	}

	calls := f.calls(t)
	if len(calls) != 20 {
		t.Fatalf("call log has %d calls, want 20", len(calls))
	}
	if pids := distinctPIDs(calls); len(pids) > 4 {
		t.Errorf("used %d processes, want at most 4", len(pids))
	}
	byPID := map[int][]shoesfake.Call{}
	for _, c := range calls {
		byPID[c.PID] = append(byPID[c.PID], c)
	}
	for pid, cs := range byPID {
		slices.SortFunc(cs, func(a, b shoesfake.Call) int { return a.Start.Compare(b.Start) })
		for i := 1; i < len(cs); i++ {
			if cs[i].Start.Before(cs[i-1].End) {
				t.Errorf("pid %d served overlapping calls: %s-%s and %s-%s", pid,
					cs[i-1].Start.Format(time.StampMicro), cs[i-1].End.Format(time.StampMicro),
					cs[i].Start.Format(time.StampMicro), cs[i].End.Format(time.StampMicro))
			}
		}
	}
}

func TestCrash(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	f := newFixture(t, map[string]string{shoesfake.EnvCrashOnCall: "3"}, func(c *Config) { c.Recorder = rec })
	ctx := context.Background()
	for i := 1; i <= 4; i++ {
		_, err := f.host.AddInstance(ctx, addReq())
		switch {
		case i == 3:
			if !errors.Is(err, ErrRetryable) || errors.Is(err, ErrPermanent) {
				t.Fatalf("call 3: %v, want a retryable error", err)
			}
			if got := Code(err); got != CodeCrash {
				t.Errorf("call 3: Code = %q, want %q (err %v)", got, CodeCrash, err)
			}
		case err != nil:
			t.Fatalf("call %d: %v", i, err)
		}
	}
	calls := f.calls(t)
	if len(calls) != 4 {
		t.Fatalf("call log has %d calls, want 4: %+v", len(calls), calls)
	}
	if calls[2].Code != "Crash" || calls[3].Code != "OK" {
		t.Fatalf("codes = %s, %s; want Crash, OK", calls[2].Code, calls[3].Code)
	}
	if calls[3].PID == calls[2].PID {
		t.Errorf("call 4 ran on the crashed pid %d", calls[2].PID)
	}
	if testkit.Alive(calls[2].PID) {
		t.Errorf("crashed pid %d still alive", calls[2].PID)
	}
	want := []string{"AddInstance OK", "AddInstance OK", "AddInstance Crash", "AddInstance OK"}
	if got := rec.all(); !slices.Equal(got, want) {
		t.Errorf("recorded %v, want %v", got, want)
	}
}

func TestTypedOutcomes(t *testing.T) {
	t.Parallel()
	const unknownID = "fake-00000000-0000-0000-0000-000000000000"
	tests := []struct {
		name          string
		env           map[string]string
		delete        bool
		wantNil       bool
		wantPermanent bool
		wantCode      string
		wantSamePID   bool // the process answered and is kept
	}{
		{
			name:          "InvalidArgument is permanent",
			env:           map[string]string{shoesfake.EnvFailCode: "InvalidArgument"},
			wantPermanent: true,
			wantCode:      "InvalidArgument",
			wantSamePID:   true,
		},
		{
			name:        "Internal is retryable",
			env:         map[string]string{shoesfake.EnvFailCode: "Internal"},
			wantCode:    "Internal",
			wantSamePID: true,
		},
		{
			name:     "Unavailable is retryable and replaces the process",
			env:      map[string]string{shoesfake.EnvFailCode: "Unavailable"},
			wantCode: "Unavailable",
		},
		{
			name:        "InvalidArgument on delete is retryable",
			env:         map[string]string{shoesfake.EnvFailCode: "InvalidArgument"},
			delete:      true,
			wantCode:    "InvalidArgument",
			wantSamePID: true,
		},
		{
			name:        "NotFound on delete is success",
			delete:      true,
			wantNil:     true,
			wantSamePID: true,
		},
		{
			name:        "injected NotFound on delete is success",
			env:         map[string]string{shoesfake.EnvFailCode: "NotFound", shoesfake.EnvFailMethod: "DeleteInstance"},
			delete:      true,
			wantNil:     true,
			wantSamePID: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.env, func(c *Config) { c.PoolSize = 1 })
			ctx := context.Background()
			call := func() error {
				if tt.delete {
					return f.host.DeleteInstance(ctx, unknownID, []string{"linux"})
				}
				_, err := f.host.AddInstance(ctx, addReq())
				return err
			}
			for range 2 {
				err := call()
				if tt.wantNil {
					if err != nil {
						t.Fatalf("got %v, want nil", err)
					}
					continue
				}
				if err == nil {
					t.Fatal("got nil error")
				}
				if errors.Is(err, ErrPermanent) != tt.wantPermanent || errors.Is(err, ErrRetryable) == tt.wantPermanent {
					t.Errorf("err %v: permanent=%v retryable=%v, want permanent=%v",
						err, errors.Is(err, ErrPermanent), errors.Is(err, ErrRetryable), tt.wantPermanent)
				}
				if got := Code(err); got != tt.wantCode {
					t.Errorf("Code = %q, want %q", got, tt.wantCode)
				}
			}
			calls := f.calls(t)
			if len(calls) != 2 {
				t.Fatalf("call log has %d calls, want 2", len(calls))
			}
			if same := calls[0].PID == calls[1].PID; same != tt.wantSamePID {
				t.Errorf("second call on the same process = %v, want %v", same, tt.wantSamePID)
			}
		})
	}
}

func TestFailTimesAcrossProcesses(t *testing.T) {
	t.Parallel()
	a := newFixture(t, map[string]string{shoesfake.EnvFailCode: "Internal", shoesfake.EnvFailTimes: "2"}, nil)
	// b shares a's call log (and so its counter) and state, but is another
	// pool with its own processes.
	b := newFixture(t, map[string]string{
		shoesfake.EnvFailCode:  "Internal",
		shoesfake.EnvFailTimes: "2",
		shoesfake.EnvCallLog:   a.callLog,
		shoesfake.EnvStateDir:  a.stateDir,
	}, nil)
	ctx := context.Background()
	var got []string
	for _, h := range []*Host{a.host, b.host, a.host, b.host} {
		_, err := h.AddInstance(ctx, addReq())
		got = append(got, Code(err))
	}
	if want := []string{"Internal", "Internal", "OK", "OK"}; !slices.Equal(got, want) {
		t.Errorf("codes %v, want %v", got, want)
	}
	if pids := distinctPIDs(a.calls(t)); len(pids) != 2 {
		t.Errorf("want calls from 2 processes, got pids %v", pids)
	}
}

func TestBadResponses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("empty cloud id", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, map[string]string{shoesfake.EnvEmptyCloudID: "true"}, nil)
		_, err := f.host.AddInstance(ctx, addReq())
		if !errors.Is(err, ErrBadResponse) || !errors.Is(err, ErrRetryable) || Code(err) != CodeBadResponse {
			t.Fatalf("got %v (code %s), want a retryable bad response", err, Code(err))
		}
	})
	t.Run("huge ip", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, map[string]string{shoesfake.EnvHugeIP: "true"}, nil)
		inst, err := f.host.AddInstance(ctx, addReq())
		if err != nil {
			t.Fatal(err)
		}
		if inst.IPAddress != "" || inst.CloudID == "" {
			t.Fatalf("got %+v, want the instance without its ip", inst)
		}
	})
	t.Run("unknown resource type", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, map[string]string{shoesfake.EnvUnknownResourceType: "true"}, nil)
		req := addReq()
		req.ResourceType = ResourceXLarge3
		inst, err := f.host.AddInstance(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if inst.ResourceType != ResourceXLarge3 {
			t.Fatalf("resource type %v, want the requested %v", inst.ResourceType, ResourceXLarge3)
		}
		if c := f.calls(t); len(c) != 1 || c[0].ResourceType != "XLarge3" {
			t.Fatalf("plugin saw %+v, want resource_type XLarge3", c)
		}
	})
}

func TestHang(t *testing.T) {
	t.Parallel()
	f := newFixture(t, map[string]string{shoesfake.EnvHang: "AddInstance"}, func(c *Config) {
		c.AddTimeout = time.Second
		c.PoolSize = 1
	})
	ctx := context.Background()
	start := time.Now()
	_, err := f.host.AddInstance(ctx, addReq())
	elapsed := time.Since(start)
	if !errors.Is(err, ErrRetryable) || Code(err) != "DeadlineExceeded" {
		t.Fatalf("got %v (code %s), want retryable DeadlineExceeded", err, Code(err))
	}
	t.Logf("hung call returned after %s", elapsed)
	if elapsed > 10*time.Second {
		t.Errorf("hung call took %s with a 1s deadline", elapsed)
	}
	if err := f.host.DeleteInstance(ctx, "fake-00000000-0000-0000-0000-000000000000", nil); err != nil {
		t.Fatalf("call after hang: %v", err)
	}
	calls := f.calls(t)
	if len(calls) != 2 || calls[0].Code != "Hang" || calls[1].Code != "NotFound" {
		t.Fatalf("calls %+v, want a Hang then a NotFound", calls)
	}
	if calls[0].PID == calls[1].PID {
		t.Errorf("call after the hang reused the hung pid %d", calls[0].PID)
	}
	if testkit.Alive(calls[0].PID) {
		t.Errorf("hung pid %d still alive", calls[0].PID)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	f := newFixture(t, map[string]string{shoesfake.EnvLatency: "100ms"}, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := f.host.AddInstance(ctx, addReq()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	pids := distinctPIDs(f.calls(t))
	if len(pids) < 2 {
		t.Fatalf("want several processes before Close, got %v", pids)
	}
	for pid := range pids {
		if !testkit.Alive(pid) {
			t.Fatalf("pid %d died before Close", pid)
		}
	}
	if err := f.host.Close(); err != nil {
		t.Fatal(err)
	}
	for pid := range pids {
		if testkit.Alive(pid) {
			t.Errorf("pid %d alive after Close", pid)
		}
	}
	_, err := f.host.AddInstance(ctx, addReq())
	if !errors.Is(err, ErrClosed) || Code(err) != CodeClosed {
		t.Errorf("AddInstance after Close = %v, want ErrClosed", err)
	}
	if err := f.host.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseDuringCall(t *testing.T) {
	t.Parallel()
	f := newFixture(t, map[string]string{shoesfake.EnvHang: "AddInstance"}, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := f.host.AddInstance(context.Background(), addReq())
		errc <- err
	}()
	testkit.Eventually(t, 10*time.Second, "the call to reach the plugin", func() bool { return len(f.calls(t)) == 1 })
	if err := f.host.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) || Code(err) != CodeClosed {
			t.Fatalf("call interrupted by Close: %v (code %s), want ErrClosed", err, Code(err))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call in flight did not return after Close")
	}
	if pid := f.calls(t)[0].PID; testkit.Alive(pid) {
		t.Errorf("pid %d alive after Close", pid)
	}
}

func TestCallerContext(t *testing.T) {
	t.Parallel()
	f := newFixture(t, map[string]string{shoesfake.EnvHang: "AddInstance"}, func(c *Config) { c.PoolSize = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := f.host.AddInstance(ctx, addReq())
	if !errors.Is(err, ErrRetryable) {
		t.Fatalf("got %v, want a retryable error", err)
	}
	if got := Code(err); got != "DeadlineExceeded" {
		t.Errorf("Code = %q, want DeadlineExceeded", got)
	}
	// The abandoned process may still be working on the call: it is
	// discarded, not reused.
	if err := f.host.DeleteInstance(context.Background(), "fake-00000000-0000-0000-0000-000000000000", nil); err != nil {
		t.Fatal(err)
	}
	calls := f.calls(t)
	if len(calls) != 2 || calls[0].PID == calls[1].PID {
		t.Fatalf("calls %+v: want the second on a new process", calls)
	}
	if testkit.Alive(calls[0].PID) {
		t.Errorf("pid %d of the abandoned call is alive", calls[0].PID)
	}
}

func TestCodeOfOtherErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{nil, "OK"},
		{fmt.Errorf("x: %w", ErrClosed), "Closed"},
		{context.Canceled, "Canceled"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), "DeadlineExceeded"},
		{errors.New("other"), "Unknown"},
		{&CallError{Method: "AddInstance", Code: "Crash", Err: errors.New("eof")}, "Crash"},
	}
	for _, tt := range tests {
		if got := Code(tt.err); got != tt.want {
			t.Errorf("Code(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestNotAPlugin(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "not-a-plugin")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := New(context.Background(), Config{Path: p, Logger: testLogger(t), StartTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	_, err = h.AddInstance(context.Background(), addReq())
	if !errors.Is(err, ErrRetryable) || Code(err) != CodeStartFailed || !strings.Contains(err.Error(), p) {
		t.Fatalf("got %v (code %s), want a retryable StartFailed naming %s", err, Code(err), p)
	}
}

// TestBeforeSend: BeforeSend runs once a process is ready, before the
// RPC; an error from it aborts the call unsent (ErrNotSent, no call
// reaches the plugin, no metric) and the process stays usable; a call
// that times out waiting for a process never runs it.
func TestBeforeSend(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	f := newFixture(t, map[string]string{shoesfake.EnvLatency: "300ms"}, func(c *Config) {
		c.PoolSize = 1
		c.Recorder = rec
	})
	ctx := context.Background()

	called := 0
	req := addReq()
	req.BeforeSend = func() error { called++; return nil }
	if _, err := f.host.AddInstance(ctx, req); err != nil || called != 1 {
		t.Fatalf("AddInstance: err %v, BeforeSend called %d times; want nil, 1", err, called)
	}

	boom := errors.New("boom")
	req = addReq()
	req.BeforeSend = func() error { return boom }
	_, err := f.host.AddInstance(ctx, req)
	if !errors.Is(err, ErrNotSent) || !errors.Is(err, boom) {
		t.Fatalf("AddInstance with a failing BeforeSend: %v, want ErrNotSent and its error", err)
	}
	if n := len(f.calls(t)); n != 1 {
		t.Errorf("the plugin saw %d calls, want 1: the aborted call must not be sent", n)
	}
	if obs := rec.all(); len(obs) != 1 || obs[0] != "AddInstance OK" {
		t.Errorf("observed %v, want only the sent call", obs)
	}

	// The only process is busy: a call whose context ends while it waits
	// for it never reaches BeforeSend.
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = f.host.AddInstance(ctx, addReq())
	}()
	testkit.Eventually(t, 5*time.Second, "the first call to take the process", func() bool {
		f.host.mu.Lock()
		defer f.host.mu.Unlock()
		return len(f.host.slots) == 1
	})
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	req = addReq()
	req.BeforeSend = func() error { t.Error("BeforeSend ran for a call that never got a process"); return nil }
	if _, err := f.host.AddInstance(wctx, req); err == nil {
		t.Errorf("AddInstance that waited past its context succeeded")
	}
	<-done
}

// TestPoolStats: the snapshot counts the processes started and those in a
// call, and none once the host is closed.
func TestPoolStats(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, func(c *Config) { c.PoolSize = 3 })
	if got, want := f.host.PoolStats(), (PoolStats{Size: 3}); got != want {
		t.Fatalf("before any call: %+v, want %+v", got, want)
	}
	// Two calls held in BeforeSend, on a process each.
	release := f.holdCalls(t, 2)
	testkit.Eventually(t, 20*time.Second, "two busy processes", func() bool {
		return f.host.PoolStats() == PoolStats{Size: 3, Processes: 2, Busy: 2}
	})
	release()
	if got, want := f.host.PoolStats(), (PoolStats{Size: 3, Processes: 2}); got != want {
		t.Fatalf("after the calls: %+v, want %+v", got, want)
	}
	closeWithin(t, f.host, 20*time.Second)
	if got, want := f.host.PoolStats(), (PoolStats{Size: 3}); got != want {
		t.Fatalf("after Close: %+v, want %+v", got, want)
	}
}

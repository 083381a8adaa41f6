package shoes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

// pluginServer serves the fake plugin at /plugin; the first failFirst
// requests are answered with failStatus.
type pluginServer struct {
	*httptest.Server
	requests   atomic.Int32
	failFirst  int32
	failStatus int
}

func newPluginServer(t testing.TB, failFirst int32, failStatus int) *pluginServer {
	t.Helper()
	bin, err := os.ReadFile(fakeshoesBin)
	if err != nil {
		t.Fatal(err)
	}
	s := &pluginServer{failFirst: failFirst, failStatus: failStatus}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.requests.Add(1)
		if r.URL.Path != "/plugin" {
			http.NotFound(w, r)
			return
		}
		if n <= s.failFirst {
			http.Error(w, "try later", s.failStatus)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(bin)
	}))
	t.Cleanup(s.Close)
	return s
}

// startHost starts a host on the plugin s serves, cached in cache, and
// checks that s answered want requests (why: what they are) and that the
// plugin it got serves an AddInstance.
func (s *pluginServer) startHost(t *testing.T, cache string, want int32, why string, mutate func(*Config)) {
	t.Helper()
	f := newFixture(t, nil, func(c *Config) {
		c.Path = s.URL + "/plugin"
		c.CacheDir = cache
		if mutate != nil {
			mutate(c)
		}
	})
	if n := s.requests.Load(); n != want {
		t.Errorf("%d requests, want %d: %s", n, want, why)
	}
	if _, err := f.host.AddInstance(context.Background(), addReq()); err != nil {
		t.Fatalf("AddInstance on the downloaded plugin: %v", err)
	}
}

// TestFetchTransient: answers 503 and 502 for a while are retried, and
// the plugin is downloaded once the server answers.
func TestFetchTransient(t *testing.T) {
	t.Parallel()
	srv := newPluginServer(t, 2, http.StatusServiceUnavailable)
	srv.startHost(t, t.TempDir(), 3, "2 failed, 1 download", func(c *Config) { c.DownloadBackoff = 20 * time.Millisecond })
}

// TestFetchBadCache: a cached download that was truncated is not used
// again: it is downloaded afresh.
func TestFetchBadCache(t *testing.T) {
	t.Parallel()
	srv := newPluginServer(t, 0, 0)
	cache := t.TempDir()
	h, err := New(context.Background(), Config{Path: srv.URL + "/plugin", CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	cached := h.PluginPath()
	fi, err := os.Stat(cached)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(cached, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	srv.startHost(t, cache, 2, "the truncated copy must be replaced", nil)
}

// TestFetchUnreachable: a server that refuses connections is retried
// within the context.
func TestFetchUnreachable(t *testing.T) {
	t.Parallel()
	addr := testkit.FreeAddr(t)
	cache := t.TempDir()
	// The server comes up while the download is retried.
	bin, err := os.ReadFile(fakeshoesBin)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(bin) })}
	served := make(chan struct{})
	t.Cleanup(func() { _ = srv.Close(); <-served })
	go func() {
		defer close(served)
		time.Sleep(700 * time.Millisecond) // the outage
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve again on %s: %v", addr, err)
		}
	}()
	h, err := New(context.Background(), Config{Path: "http://" + addr + "/plugin", CacheDir: cache})
	if err != nil {
		t.Fatalf("New while the server is briefly down: %v", err)
	}
	if filepath.Dir(h.PluginPath()) != cache {
		t.Errorf("plugin path %s is not in the cache", h.PluginPath())
	}
}

// TestFetchErrors: what fails for good is a configuration error (ErrConfig)
// after one request; what may pass is tried DownloadAttempts times and is
// not a configuration error; a context that ends stops the retries.
func TestFetchErrors(t *testing.T) {
	t.Parallel()
	refused := "http://" + testkit.FreeAddr(t) + "/plugin"
	tests := []struct {
		name       string
		failStatus int
		path       string
		url        string // instead of the server's
		wantConfig bool
		wantReqs   int32
		want       string
	}{
		{name: "404", path: "/missing", wantConfig: true, wantReqs: 1, want: "404"},
		{name: "403", failStatus: http.StatusForbidden, path: "/plugin", wantConfig: true, wantReqs: 1, want: "403"},
		{name: "503 for good", failStatus: http.StatusServiceUnavailable, path: "/plugin", wantReqs: 3, want: "gave up after 3 attempts"},
		{name: "429 for good", failStatus: http.StatusTooManyRequests, path: "/plugin", wantReqs: 3, want: "429"},
		{name: "connection refused", url: refused, want: "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newPluginServer(t, 100, tt.failStatus)
			u := srv.URL + tt.path
			if tt.url != "" {
				u = tt.url
			}
			_, err := New(context.Background(), Config{Path: u, CacheDir: t.TempDir(), DownloadAttempts: 3, DownloadBackoff: 10 * time.Millisecond})
			if err == nil {
				t.Fatal("New succeeded")
			}
			if errors.Is(err, ErrConfig) != tt.wantConfig || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), u) {
				t.Errorf("New(%s) = %v: want a configuration error %v, naming the URL and %q", u, err, tt.wantConfig, tt.want)
			}
			if n := srv.requests.Load(); tt.url == "" && n != tt.wantReqs {
				t.Errorf("%d requests, want %d", n, tt.wantReqs)
			}
		})
	}

	t.Run("context ends during the backoff", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := New(ctx, Config{Path: refused, CacheDir: t.TempDir(), DownloadBackoff: time.Hour})
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrConfig) {
			t.Errorf("New = %v, want the context's error, not a configuration error", err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("New returned %s after its context ended", took)
		}
	})
}

// TestFetchChecksum: Config.SHA256 is checked against the download, the
// cached copy and a local file; a mismatch is a configuration error that
// names both sums, and a mismatching download is not cached.
func TestFetchChecksum(t *testing.T) {
	t.Parallel()
	bin, err := os.ReadFile(fakeshoesBin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	good := hex.EncodeToString(sum[:])
	bad := strings.Repeat("0", 64)
	srv := newPluginServer(t, 0, 0)
	u := srv.URL + "/plugin"

	t.Run("download", func(t *testing.T) {
		cache := t.TempDir()
		_, err := New(context.Background(), Config{Path: u, CacheDir: cache, SHA256: bad})
		if !errors.Is(err, ErrChecksumMismatch) || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), good) {
			t.Fatalf("New with a wrong sha256 = %v, want a checksum mismatch naming the real sum", err)
		}
		if entries, _ := os.ReadDir(cache); len(entries) != 0 {
			t.Errorf("the mismatching download was kept in the cache: %v", entries)
		}
		h, err := New(context.Background(), Config{Path: u, CacheDir: cache, SHA256: strings.ToUpper(good)})
		if err != nil {
			t.Fatalf("New with the right sha256: %v", err)
		}
		record, err := os.ReadFile(h.PluginPath() + ".sha256")
		if err != nil || !strings.HasPrefix(string(record), good+"  ") {
			t.Errorf("download record %q (%v), want the sha256 in sha256sum's format", record, err)
		}
		// The cached copy is checked too: it is not what a new SHA256
		// wants, and the server still serves it, so New fails.
		before := srv.requests.Load()
		if _, err := New(context.Background(), Config{Path: u, CacheDir: cache, SHA256: bad}); !errors.Is(err, ErrChecksumMismatch) {
			t.Errorf("New on a cached copy with another sha256 = %v, want a mismatch", err)
		}
		if srv.requests.Load() != before+1 {
			t.Errorf("the cached copy that did not match was not downloaded again")
		}
	})
	t.Run("local file", func(t *testing.T) {
		if _, err := New(context.Background(), Config{Path: fakeshoesBin, SHA256: good}); err != nil {
			t.Errorf("New with the right sha256: %v", err)
		}
		_, err := New(context.Background(), Config{Path: fakeshoesBin, SHA256: bad})
		if !errors.Is(err, ErrChecksumMismatch) || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), fakeshoesBin) {
			t.Errorf("New with a wrong sha256 = %v, want a checksum mismatch naming the file", err)
		}
	})
	t.Run("not a sha256", func(t *testing.T) {
		_, err := New(context.Background(), Config{Path: fakeshoesBin, SHA256: "abc"})
		if !errors.Is(err, ErrChecksumMismatch) || !errors.Is(err, ErrConfig) {
			t.Errorf("New with a malformed sha256 = %v", err)
		}
	})
}

// TestFetchCacheRecord: a cached copy without its record (a download cut
// before the record was written, or a cache of an older version) is
// downloaded again; a good one is used without a request.
func TestFetchCacheRecord(t *testing.T) {
	t.Parallel()
	srv := newPluginServer(t, 0, 0)
	cache := t.TempDir()
	cfg := Config{Path: srv.URL + "/plugin", CacheDir: cache}
	h, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), cfg); err != nil || srv.requests.Load() != 1 {
		t.Fatalf("New on a good cache: %v after %d requests, want no new request", err, srv.requests.Load())
	}
	if err := os.Remove(h.PluginPath() + ".sha256"); err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), cfg); err != nil || srv.requests.Load() != 2 {
		t.Fatalf("New on a cache without its record: %v after %d requests, want a new download", err, srv.requests.Load())
	}
	// The server is gone: the good cached copy is used.
	srv.Close()
	if _, err := New(context.Background(), cfg); err != nil {
		t.Fatalf("New with the server down and a good cache: %v", err)
	}
}

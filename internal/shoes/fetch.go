package shoes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// maxDownloadBackoff caps the wait between two tries of a download.
const maxDownloadBackoff = 15 * time.Second

// resolvePlugin returns the local executable for cfg.Path, downloading it
// first when it is an http(s) URL, and checks it against cfg.SHA256. An
// error that retrying cannot fix wraps ErrConfig.
func resolvePlugin(ctx context.Context, cfg *Config, log *slog.Logger) (string, error) {
	if strings.HasPrefix(cfg.Path, "http://") || strings.HasPrefix(cfg.Path, "https://") {
		return fetchPlugin(ctx, cfg, log)
	}
	p, err := filepath.Abs(cfg.Path)
	if err != nil {
		return "", asConfigError(fmt.Errorf("plugin %q: %w", cfg.Path, err))
	}
	if err := checkExecutable(p); err != nil {
		return "", asConfigError(err)
	}
	if want := strings.ToLower(cfg.SHA256); want != "" {
		sum, err := fileSHA256(p)
		if err != nil {
			return "", asConfigError(fmt.Errorf("plugin %q: %w", p, err))
		}
		if sum != want {
			return "", asConfigError(fmt.Errorf("plugin %q: %w: its sha256 is %s, want %s", p, ErrChecksumMismatch, sum, want))
		}
	}
	return p, nil
}

// checkExecutable reports why p cannot be run as a plugin, naming p.
func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("plugin %q: no such file", p)
	case err != nil:
		return fmt.Errorf("plugin %q: %w", p, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("plugin %q: not a regular file", p)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("plugin %q: not executable (mode %s)", p, fi.Mode().Perm())
	case fi.Size() == 0:
		return fmt.Errorf("plugin %q: empty file", p)
	}
	return nil
}

// fetchPlugin returns the local copy of the plugin at cfg.Path (a URL) in
// cfg.CacheDir, downloading it unless a good copy is there.
//
// A download leaves two files in the cache: the executable and, next to
// it, a record of its sha256 (<name>.sha256, in sha256sum's format). A
// cached copy is used only if it still has the sha256 its record holds
// (and cfg.SHA256, if set); otherwise it was cut or changed, and is
// downloaded again. A download that fails for a reason that may pass (no
// connection, a timeout, a 5xx, 408 or 429 answer, a cut body) is tried
// again with backoff, cfg.DownloadAttempts times in all; an answer that
// cannot become a plugin (another 4xx, an HTML page, an empty body, a
// sha256 other than cfg.SHA256) is a configuration error at once.
func fetchPlugin(ctx context.Context, cfg *Config, log *slog.Logger) (string, error) {
	u, err := url.Parse(cfg.Path)
	if err != nil {
		return "", asConfigError(fmt.Errorf("download plugin: %w", err))
	}
	shown := u.Redacted()
	sum := sha256.Sum256([]byte(cfg.Path))
	name := "plugin-" + hex.EncodeToString(sum[:12])
	if base := path.Base(u.Path); base != "" && base != "/" && base != "." {
		name += "-" + sanitizeName(base)
	}
	dst := filepath.Join(cfg.CacheDir, name)
	want := strings.ToLower(cfg.SHA256)
	log = log.With("url", shown, "path", dst)

	cached, err := verifyCached(dst)
	switch {
	case err == nil && (want == "" || cached == want):
		return dst, nil
	case err == nil:
		log.Info("cached plugin does not have the expected sha256; downloading it again", "sha256", cached, "want", want)
	case !errors.Is(err, fs.ErrNotExist):
		log.Warn("cached plugin is damaged; downloading it again", "err", err)
	}

	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return "", fmt.Errorf("download plugin %s: %w", shown, err)
	}
	d := downloader{client: cfg.HTTPClient, url: cfg.Path, shown: shown, dst: dst, want: want}
	wait := cfg.DownloadBackoff
	for attempt := 1; ; attempt++ {
		err := d.download(ctx)
		if err == nil {
			return dst, nil
		}
		if _, ok := errors.AsType[*transientError](err); !ok {
			return "", err
		}
		if attempt == cfg.DownloadAttempts {
			return "", fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		}
		pause := wait + rand.N(wait/4+1)
		log.Warn("download plugin failed; retrying", "attempt", attempt, "retry_in", pause.Round(time.Millisecond), "err", err)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("download plugin %s: %w (after: %w)", shown, ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, maxDownloadBackoff)
	}
}

// transientError is a download failure that may pass on a later try.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// downloader downloads one plugin into its place in the cache.
type downloader struct {
	client *http.Client
	url    string
	shown  string // url without its password, for messages
	dst    string
	want   string // expected sha256 in hex, or ""
}

// download tries once. A failure that may pass is a *transientError;
// one retrying cannot fix wraps ErrConfig.
func (d *downloader) download(ctx context.Context) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("download plugin %s: "+format, append([]any{d.shown}, args...)...)
	}
	transient := func(err error) error { return &transientError{err: err} }

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, nil)
	if err != nil {
		return asConfigError(fail("%w", err))
	}
	resp, err := d.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fail("%w", ctx.Err())
		}
		return transient(fail("%w", err))
	}
	defer resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 500, c == http.StatusRequestTimeout, c == http.StatusTooManyRequests:
		return transient(fail("server answered %s", resp.Status))
	case c < 200 || c > 299:
		return asConfigError(fail("server answered %s", resp.Status))
	}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/html") {
		return asConfigError(fail("got an HTML page (%s), not an executable", ct))
	}

	dir, name := filepath.Split(d.dst)
	tmp, err := os.CreateTemp(dir, name+".*.part")
	if err != nil {
		return fail("%w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	n, copyErr := io.Copy(io.MultiWriter(tmp, h), resp.Body)
	closeErr := tmp.Close()
	switch {
	case copyErr != nil && ctx.Err() != nil:
		return fail("%w", ctx.Err())
	case copyErr != nil:
		return transient(fail("%w", copyErr))
	case resp.ContentLength >= 0 && n != resp.ContentLength:
		return transient(fail("cut short: %d of %d bytes", n, resp.ContentLength))
	case closeErr != nil:
		return fail("%w", closeErr)
	case n == 0:
		return asConfigError(fail("empty body"))
	}
	if err := rejectHTML(tmp.Name()); err != nil {
		return asConfigError(fail("%w", err))
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if d.want != "" && sum != d.want {
		return asConfigError(fail("%w: its sha256 is %s, want %s", ErrChecksumMismatch, sum, d.want))
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return fail("%w", err)
	}
	if err := os.Rename(tmp.Name(), d.dst); err != nil {
		return fail("%w", err)
	}
	if err := writeRecord(d.dst, sum); err != nil {
		return fail("%w", err)
	}
	return nil
}

// recordPath is the file that holds the sha256 of the download at p.
func recordPath(p string) string { return p + ".sha256" }

// writeRecord stores the sha256 of the download at p next to it, in
// sha256sum's format (so `sha256sum -c` checks it too).
func writeRecord(p, sum string) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), filepath.Base(p)+".*.part")
	if err != nil {
		return fmt.Errorf("write download record: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := fmt.Fprintf(tmp, "%s  %s\n", sum, filepath.Base(p))
	if err := errors.Join(werr, tmp.Close()); err != nil {
		return fmt.Errorf("write download record: %w", err)
	}
	if err := os.Rename(tmp.Name(), recordPath(p)); err != nil {
		return fmt.Errorf("write download record: %w", err)
	}
	return nil
}

// verifyCached checks a cached download against its record and returns
// its sha256. fs.ErrNotExist means nothing is cached.
func verifyCached(p string) (string, error) {
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	if err := checkExecutable(p); err != nil {
		return "", err
	}
	b, err := os.ReadFile(recordPath(p))
	if errors.Is(err, fs.ErrNotExist) {
		return "", errors.New("no record of its sha256")
	}
	if err != nil {
		return "", fmt.Errorf("read download record: %w", err)
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 || len(fields[0]) != 2*sha256.Size {
		return "", fmt.Errorf("download record %s: no sha256", recordPath(p))
	}
	want := strings.ToLower(fields[0])
	sum, err := fileSHA256(p)
	if err != nil {
		return "", err
	}
	if sum != want {
		return "", fmt.Errorf("its sha256 is %s, its record says %s (cut or changed since the download)", sum, want)
	}
	return sum, nil
}

// fileSHA256 returns the sha256 of the file at p in hex.
func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// rejectHTML fails when the file starts like an HTML page, the usual shape
// of a login or error page served with status 200.
func rejectHTML(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = bytes.ToLower(bytes.TrimSpace(head[:n]))
	if bytes.HasPrefix(head, []byte("<!doctype html")) || bytes.HasPrefix(head, []byte("<html")) {
		return errors.New("got an HTML page, not an executable")
	}
	return nil
}

func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

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
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// resolvePlugin returns the local executable for cfg.Path, downloading it
// first when it is an http(s) URL.
func resolvePlugin(ctx context.Context, cfg *Config) (string, error) {
	if strings.HasPrefix(cfg.Path, "http://") || strings.HasPrefix(cfg.Path, "https://") {
		return fetchPlugin(ctx, cfg.HTTPClient, cfg.Path, cfg.CacheDir)
	}
	p, err := filepath.Abs(cfg.Path)
	if err != nil {
		return "", fmt.Errorf("plugin %q: %w", cfg.Path, err)
	}
	if err := checkExecutable(p); err != nil {
		return "", err
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

// fetchPlugin downloads rawURL into cacheDir once and returns the local path.
// A file already downloaded from the same URL is reused.
func fetchPlugin(ctx context.Context, client *http.Client, rawURL, cacheDir string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("download plugin %s: %w", rawURL, err)
	}
	sum := sha256.Sum256([]byte(rawURL))
	name := "plugin-" + hex.EncodeToString(sum[:12])
	if base := path.Base(u.Path); base != "" && base != "/" && base != "." {
		name += "-" + sanitizeName(base)
	}
	dst := filepath.Join(cacheDir, name)
	if err := checkExecutable(dst); err == nil {
		return dst, nil
	}

	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("download plugin %s: %w", rawURL, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return "", fmt.Errorf("download plugin %s: %w", rawURL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("download plugin %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("download plugin %s: server answered %s", rawURL, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/html") {
		return "", fmt.Errorf("download plugin %s: got an HTML page (%s), not an executable", rawURL, ct)
	}

	tmp, err := os.CreateTemp(cacheDir, name+".*.part")
	if err != nil {
		return "", fmt.Errorf("download plugin %s: %w", rawURL, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	n, copyErr := io.Copy(tmp, resp.Body)
	closeErr := tmp.Close()
	switch {
	case copyErr != nil:
		return "", fmt.Errorf("download plugin %s: %w", rawURL, copyErr)
	case closeErr != nil:
		return "", fmt.Errorf("download plugin %s: %w", rawURL, closeErr)
	case n == 0:
		return "", fmt.Errorf("download plugin %s: empty body", rawURL)
	}
	if err := rejectHTML(tmp.Name()); err != nil {
		return "", fmt.Errorf("download plugin %s: %w", rawURL, err)
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return "", fmt.Errorf("download plugin %s: %w", rawURL, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("download plugin %s: %w", rawURL, err)
	}
	return dst, nil
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

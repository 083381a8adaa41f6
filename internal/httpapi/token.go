package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tokenFileSuffix names the token file after the state file:
// /var/lib/shoes-scaleset/state.db.api-token.
const tokenFileSuffix = ".api-token"

// maxTokenFileBytes bounds what ReadTokenFile reads.
const maxTokenFileBytes = 4 << 10

// TokenFile is the path of the API token file of the daemon whose state
// file is stateFile: next to it, so that whoever may read the state may
// also change it through the API, and nobody else.
func TokenFile(stateFile string) string {
	return stateFile + tokenFileSuffix
}

// NewToken returns a new random API token: 32 bytes from crypto/rand, in
// hex.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate api token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// WriteTokenFile writes token to path with mode 0600, replacing any file
// left there by an earlier start. The file is written whole under a
// temporary name and renamed, so a reader never sees a partial token.
func WriteTokenFile(path, token string) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write api token file: %w", err)
	}
	tmp := f.Name()
	err = f.Chmod(0o600) // CreateTemp's 0600 already; say it
	if err == nil {
		_, err = io.WriteString(f, token+"\n")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write api token file %s: %w", path, err)
	}
	return nil
}

// RemoveTokenFile removes the token file; one that is already gone is no
// error.
func RemoveTokenFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove api token file: %w", err)
	}
	return nil
}

// ReadTokenFile reads the token a daemon wrote with WriteTokenFile.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read api token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("read api token %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case len(b) > maxTokenFileBytes:
		return "", fmt.Errorf("read api token %s: file is larger than %d bytes", path, maxTokenFileBytes)
	case tok == "":
		return "", fmt.Errorf("read api token %s: file is empty", path)
	}
	return tok, nil
}

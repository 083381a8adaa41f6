package shoesfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ListInstances lists the instances that exist under stateDir (the
// plugin's StateDir), in name order, whichever cloud-ID mode created
// them: each directory is named after the instance's cloud ID, fake-<uuid>
// or the runner name, and its instance.json gives the runner name. It is
// for tests and the demo, to tell a leaked instance from one a record
// owns. Instances being created or deleted (hidden directories) are left
// out; a missing stateDir has none. A directory that is not an instance
// is an error, not skipped: a checker must not miss it.
func ListInstances(stateDir string) ([]Instance, error) {
	entries, err := os.ReadDir(stateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	var out []Instance
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(stateDir, e.Name())
		if !validCloudID("", e.Name()) {
			return nil, fmt.Errorf("list instances: %s is not an instance directory", dir)
		}
		info, err := readInstance(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // deleted meanwhile
		case err != nil:
			return nil, fmt.Errorf("list instances: %w", err)
		case info.CloudID != e.Name():
			return nil, fmt.Errorf("list instances: %s describes cloud ID %q", dir, info.CloudID)
		}
		out = append(out, info)
	}
	return out, nil
}

// readInstance reads the instance.json of the instance in dir.
func readInstance(dir string) (Instance, error) {
	var info Instance
	b, err := os.ReadFile(filepath.Join(dir, fileInstance))
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("read %s: %w", filepath.Join(dir, fileInstance), err)
	}
	info.Dir = dir
	return info, nil
}

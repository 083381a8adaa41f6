// Package buildinfo reports the version of this binary.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"time"
)

// version is set at link time: -ldflags "-X github.com/shoes-scaleset/shoes-scaleset/internal/buildinfo.version=v1.2.3".
var version = ""

// Info describes this binary: `shoes-scaleset version -o json`.
type Info struct {
	// Version is the link-time version, else the module version, else
	// devel-<revision>[-dirty], else devel.
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	// Revision is the VCS commit the binary was built from, when the
	// build recorded it; RevisionTime its commit time, and Modified that
	// the work tree had changes.
	Revision     string    `json:"revision,omitempty"`
	RevisionTime time.Time `json:"revision_time,omitzero"`
	Modified     bool      `json:"modified,omitempty"`
	OS           string    `json:"os"`
	Arch         string    `json:"arch"`
}

// Read returns what the binary knows of its build.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return fromBuild(version, bi)
}

// Version returns the link-time version, else the module version from the
// build info, else "devel-<revision>", else "devel".
func Version() string { return Read().Version }

// fromBuild derives the Info from the link-time version and the build
// info (nil when the binary has none).
func fromBuild(linked string, bi *debug.BuildInfo) Info {
	info := Info{Version: linked, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi == nil {
		if info.Version == "" {
			info.Version = "devel"
		}
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
				info.RevisionTime = t
			}
		}
	}
	if info.Version != "" {
		return info
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		info.Version = v
		return info
	}
	if info.Revision == "" {
		info.Version = "devel"
		return info
	}
	rev := info.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if info.Modified {
		rev += "-dirty"
	}
	info.Version = "devel-" + rev
	return info
}

package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestFromBuild(t *testing.T) {
	rev := "0123456789abcdef0123456789abcdef01234567"
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: "2025-03-04T05:06:07Z"},
			{Key: "vcs.modified", Value: modified},
		}
	}
	when := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		name   string
		linked string
		bi     *debug.BuildInfo
		want   Info
	}{
		{name: "no build info", want: Info{Version: "devel"}},
		{name: "no build info, linked", linked: "v1.2.3", want: Info{Version: "v1.2.3"}},
		{name: "linked wins over the module version", linked: "v1.2.3",
			bi:   &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "v0.0.1"}, Settings: vcs("false")},
			want: Info{Version: "v1.2.3", GoVersion: "go1.99", Revision: rev, RevisionTime: when}},
		{name: "module version (go install)",
			bi:   &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "v0.4.0"}},
			want: Info{Version: "v0.4.0", GoVersion: "go1.99"}},
		{name: "clean checkout",
			bi:   &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "(devel)"}, Settings: vcs("false")},
			want: Info{Version: "devel-0123456789ab", GoVersion: "go1.99", Revision: rev, RevisionTime: when}},
		{name: "modified checkout",
			bi:   &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "(devel)"}, Settings: vcs("true")},
			want: Info{Version: "devel-0123456789ab-dirty", GoVersion: "go1.99", Revision: rev, RevisionTime: when, Modified: true}},
		{name: "no VCS information",
			bi:   &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "(devel)"}},
			want: Info{Version: "devel", GoVersion: "go1.99"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want.GoVersion == "" {
				want.GoVersion = runtime.Version()
			}
			want.OS, want.Arch = runtime.GOOS, runtime.GOARCH
			if got := fromBuild(tc.linked, tc.bi); got != want {
				t.Errorf("fromBuild(%q, ...) =\n %+v\nwant\n %+v", tc.linked, got, want)
			}
		})
	}
}

// TestVersionIsRead: Version is Read's version, never empty.
func TestVersionIsRead(t *testing.T) {
	if v := Version(); v == "" || v != Read().Version {
		t.Errorf("Version() = %q, Read().Version = %q", v, Read().Version)
	}
}

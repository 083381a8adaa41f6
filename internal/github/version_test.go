package github

import (
	"errors"
	"net/http"
	"testing"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
)

// shuffledDownloads answers the runner downloads with linux/x64 last, the
// fake's own check of the credential first.
func shuffledDownloads(f *fakeGitHub) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if rec := f.answer(r); rec.Code != http.StatusOK {
			w.WriteHeader(rec.Code)
			return
		}
		const base = "https://github.com/actions/runner/releases/download/v2.330.0/"
		writeJSON(w, http.StatusOK, []map[string]string{
			{"os": "osx", "architecture": "x64", "download_url": base + "actions-runner-osx-x64-2.330.0.tar.gz", "filename": "actions-runner-osx-x64-2.330.0.tar.gz"},
			{"os": "linux", "architecture": "arm64", "download_url": base + "actions-runner-linux-arm64-2.330.0.tar.gz", "filename": "actions-runner-linux-arm64-2.330.0.tar.gz"},
			{"os": "win", "architecture": "x64", "download_url": base + "actions-runner-win-x64-2.330.0.zip", "filename": "actions-runner-win-x64-2.330.0.zip"},
			{"os": "linux", "architecture": "x64", "download_url": base + "actions-runner-linux-x64-2.330.0.tar.gz", "filename": "actions-runner-linux-x64-2.330.0.tar.gz"},
		})
	}
}

func TestRunnerVersionLatest(t *testing.T) {
	tests := []struct {
		name, scope, path string
		mutate            []func(*Config)
	}{
		{"acme", "acme", "/api/v3/orgs/acme/actions/runners/downloads", nil},
		{"acme/widgets", "acme/widgets", "/api/v3/repos/acme/widgets/actions/runners/downloads", nil},
		{"acme pat", "acme", "/api/v3/orgs/acme/actions/runners/downloads", []func(*Config){withPAT}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.route("GET "+tt.path, shuffledDownloads(f))
			p, _ := newProvider(t, f, tt.mutate...)
			ctx := testCtx(t)
			for _, req := range []string{"latest", "", "LATEST"} {
				v, err := p.RunnerVersion(ctx, tt.scope, req)
				if err != nil || v != "2.330.0" {
					t.Fatalf("RunnerVersion(%q) = %q, %v; want 2.330.0", req, v, err)
				}
			}
			if n := f.count("GET", tt.path); n != 1 {
				t.Fatalf("downloads listed %d times, want 1 (cached)", n)
			}
		})
	}
	t.Run("no linux/x64", func(t *testing.T) {
		f := newFake(t)
		f.route("GET /api/v3/orgs/acme/actions/runners/downloads", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, []map[string]string{{"os": "osx", "architecture": "arm64", "download_url": "x"}})
		})
		p, _ := newProvider(t, f)
		if _, err := p.RunnerVersion(testCtx(t), "acme", "latest"); err == nil {
			t.Fatal("want an error without a linux/x64 entry")
		}
	})
	t.Run("the fake's version", func(t *testing.T) {
		_, p := newFakeProvider(t, func(c *actionsfake.Config) { c.RunnerVersion = "2.331.1" })
		if v, err := p.RunnerVersion(testCtx(t), "acme", "latest"); err != nil || v != "2.331.1" {
			t.Fatalf("RunnerVersion = %q, %v; want 2.331.1", v, err)
		}
	})
}

func TestRunnerVersionExplicit(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"v2.329.0", "2.329.0", false},
		{"2.329.0", "2.329.0", false},
		{" v2.311.10 ", "2.311.10", false},
		{"bogus", "", true},
		{"2.329", "", true},
		{"v2.x.0", "", true},
		{"vv2.329.0", "", true},
		{"2.329.0-beta", "", true},
		{"-1.2.3", "", true},
	}
	f, p := newFakeProvider(t)
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, err := p.RunnerVersion(testCtx(t), "acme", tt.in)
			if checkErr := CheckRunnerVersion(tt.in); (checkErr != nil) != tt.wantErr {
				t.Errorf("CheckRunnerVersion(%q) = %v, disagrees with RunnerVersion", tt.in, checkErr)
			}
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidRunnerVersion) {
					t.Fatalf("RunnerVersion(%q) = %q, %v; want ErrInvalidRunnerVersion", tt.in, v, err)
				}
				return
			}
			if err != nil || v != tt.want {
				t.Fatalf("RunnerVersion(%q) = %q, %v; want %q", tt.in, v, err, tt.want)
			}
		})
	}
	for _, latest := range []string{"", "latest", "Latest"} {
		if err := CheckRunnerVersion(latest); err != nil {
			t.Errorf("CheckRunnerVersion(%q) = %v", latest, err)
		}
	}
	if f.total() != 0 {
		t.Fatalf("explicit versions made %d requests, want 0", f.total())
	}
}

package shoesfake

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoes-scaleset/shoes-scaleset/internal/runnerscript"
)

// runnerDirOf names only the directory the default script installs this
// instance's runner in, and nothing for a script that does not say.
func TestRunnerDirOf(t *testing.T) {
	const name = "myshoes-0b4c1f7e-8d7a-4a51-9d0e-3f1a2b3c4d5e"
	render := func(tmpl, runnerName, base string) string {
		t.Helper()
		r, err := runnerscript.New(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		s, err := r.Render(runnerscript.Values{RunnerName: runnerName, JITConfig: "jit", RunnerVersion: "2.330.0", RunnerBaseDirectory: base})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const custom = "#!/bin/bash\ncd {{ shellQuote .RunnerBaseDirectory }}/{{ shellQuote .RunnerName }} && ./run.sh --jitconfig {{ shellQuote .JITConfig }}\n"
	tests := []struct {
		name, script, want string
	}{
		{"absolute base", render("", name, "/srv/runners"), "/srv/runners/" + name},
		{"default base", render("", name, ""), "/tmp/" + name},
		{"base with a quote", render("", name, "/srv/it's"), "/srv/it's/" + name},
		{"relative base: from the instance dir", render("", name, "runners"), "/state/fake-x/runners/" + name},
		{"relative base leaving the instance dir", render("", name, "../../r"), "/r/" + name},
		{"another runner's script", render("", "myshoes-11111111-1111-4111-8111-111111111111", "/srv"), ""},
		{"custom template", render(custom, name, "/srv"), ""},
		{"not a wrapper", "#!/bin/bash\nRUNNER_BASE_DIRECTORY=\"$HOME\"\nRUNNER_NAME='" + name + "'\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := runnerDirOf(tt.script, name, "/state/fake-x"); got != tt.want {
				t.Errorf("runnerDirOf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidCloudID(t *testing.T) {
	t.Parallel()
	const u = "0b4c1f7e-8d7a-4a51-9d0e-3f1a2b3c4d5e"
	tests := []struct {
		id                string
		opaque, name, any bool
	}{
		{"fake-" + u, true, false, true},
		{"myshoes-" + u, false, true, true},
		{"myshoes-" + strings.ToUpper(u), false, false, false},
		{"fake-" + u + "/..", false, false, false},
		{"myshoes-../../outside", false, false, false},
		{"../outside", false, false, false},
		{u, false, false, false},
		{"", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			for mode, want := range map[string]bool{CloudIDsOpaque: tt.opaque, CloudIDsName: tt.name, "": tt.any} {
				if got := validCloudID(mode, tt.id); got != want {
					t.Errorf("validCloudID(%q, %q) = %v, want %v", mode, tt.id, got, want)
				}
			}
		})
	}
}

func TestListInstances(t *testing.T) {
	t.Parallel()
	const (
		opaqueID = "fake-0b4c1f7e-8d7a-4a51-9d0e-3f1a2b3c4d5e"
		nameID   = "myshoes-11111111-1111-4111-8111-111111111111"
	)
	write := func(t *testing.T, stateDir, dir string, info Instance) {
		t.Helper()
		b, err := json.Marshal(info)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(stateDir, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(stateDir, dir, fileInstance), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, stateDir string)
		want    []Instance // CloudID and RunnerName
		wantErr string
	}{
		{name: "no state dir", setup: func(t *testing.T, stateDir string) { _ = os.Remove(stateDir) }},
		{name: "both modes; hidden directories and files left out", setup: func(t *testing.T, stateDir string) {
			write(t, stateDir, opaqueID, Instance{CloudID: opaqueID, RunnerName: nameID})
			write(t, stateDir, nameID, Instance{CloudID: nameID, RunnerName: nameID})
			write(t, stateDir, ".creating-"+nameID+"-123", Instance{CloudID: nameID, RunnerName: nameID})
			write(t, stateDir, ".deleting-"+opaqueID+"-x", Instance{CloudID: opaqueID, RunnerName: nameID})
			if err := os.WriteFile(filepath.Join(stateDir, ".counter"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: []Instance{{CloudID: opaqueID, RunnerName: nameID}, {CloudID: nameID, RunnerName: nameID}}},
		{name: "not an instance directory", setup: func(t *testing.T, stateDir string) {
			if err := os.Mkdir(filepath.Join(stateDir, "runners"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "not an instance directory"},
		{name: "describes another instance", setup: func(t *testing.T, stateDir string) {
			write(t, stateDir, nameID, Instance{CloudID: opaqueID, RunnerName: nameID})
		}, wantErr: "describes cloud ID"},
		{name: "unreadable description", setup: func(t *testing.T, stateDir string) {
			write(t, stateDir, nameID, Instance{})
			if err := os.WriteFile(filepath.Join(stateDir, nameID, fileInstance), []byte("{"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: fileInstance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stateDir := t.TempDir()
			tt.setup(t, stateDir)
			got, err := ListInstances(stateDir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i, w := range tt.want {
				if got[i].CloudID != w.CloudID || got[i].RunnerName != w.RunnerName || got[i].Dir != filepath.Join(stateDir, w.CloudID) {
					t.Errorf("instance %d = %+v, want cloud ID %s, runner %s in its own directory", i, got[i], w.CloudID, w.RunnerName)
				}
			}
		})
	}
}

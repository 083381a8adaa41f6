package shoesfake

import (
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

package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// myshoesEnvFile is an env file as myshoes documents it: MYSQL_URL has
// parentheses, which a shell that sources the file parses as code.
const myshoesEnvFile = `# myshoes
MYSQL_URL=user:pass@tcp(127.0.0.1:3306)/myshoes?parseTime=true
GITHUB_APP_ID=123456

PLUGIN=/usr/local/bin/shoes-lxd
LXD_HOST=lxd.example.com $HOME *
RUNNER_USER=ubuntu`

// TestMyshoesEnvFileRecipe runs the shell recipe of docs/configuration.md
// ("Using myshoes's env file"), as written there, on such a file, under
// bash and sh, with a fake shoes-scaleset that prints its environment:
// every value arrives as written. Sourcing the file with set -a, the
// recipe it replaces, fails on it.
func TestMyshoesEnvFileRecipe(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(docsModuleRoot(t), "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	recipe := shellBlockWith(string(doc), "while IFS= read -r line")
	if recipe == "" {
		t.Fatal(`docs/configuration.md has no sh block with "while IFS= read -r line"`)
	}
	const docPath = "/etc/myshoes/myshoes.env"
	if !strings.Contains(recipe, docPath) || !strings.Contains(recipe, "shoes-scaleset run") {
		t.Fatalf("the recipe does not read %s and start shoes-scaleset run:\n%s", docPath, recipe)
	}
	dir := t.TempDir()
	envFile := filepath.Join(dir, "myshoes.env")
	if err := os.WriteFile(envFile, []byte(myshoesEnvFile), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "shoes-scaleset"), []byte("#!/bin/sh\nexec env\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := strings.ReplaceAll(recipe, docPath, envFile)
	want := map[string]string{
		"MYSQL_URL":     "user:pass@tcp(127.0.0.1:3306)/myshoes?parseTime=true",
		"GITHUB_APP_ID": "123456",
		"PLUGIN":        "/usr/local/bin/shoes-lxd",
		"LXD_HOST":      "lxd.example.com $HOME *",
		"RUNNER_USER":   "ubuntu", // the last line, without a newline
	}
	for _, shell := range []string{"bash", "sh"} {
		t.Run(shell, func(t *testing.T) {
			path, err := exec.LookPath(shell)
			if err != nil {
				t.Skipf("no %s: %v", shell, err)
			}
			cmd := exec.Command(path, "-c", script)
			cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "HOME=/nonexistent"}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("the recipe failed: %v\n%s", err, out)
			}
			got := map[string]string{}
			for line := range strings.Lines(string(out)) {
				if k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "="); ok {
					got[k] = v
				}
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			if _, ok := got["# myshoes"]; ok {
				t.Error("the comment was exported")
			}
		})
	}

	// The recipe the docs replace: the shell parses the parentheses
	// (bash says so and goes on without the file's variables).
	naive := "set -a; . " + envFile + "; set +a\nshoes-scaleset run"
	cmd := exec.Command("bash", "-c", naive)
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin"}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, _ := cmd.Output()
	if strings.Contains("\n"+string(out), "\nMYSQL_URL="+want["MYSQL_URL"]+"\n") || !strings.Contains(stderr.String(), "syntax error") {
		t.Errorf("sourcing the file works after all; the docs say it does not:\n%s\n%s", out, stderr.String())
	}
}

// shellBlockWith returns the first ```sh block of markdown that
// contains s, without its fences.
func shellBlockWith(markdown, s string) string {
	for _, block := range strings.Split(markdown, "```sh\n")[1:] {
		body, _, _ := strings.Cut(block, "```")
		if strings.Contains(body, s) {
			return body
		}
	}
	return ""
}

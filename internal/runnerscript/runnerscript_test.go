package runnerscript

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A JIT config with everything quoting must survive: quotes, $(), backticks,
// spaces and a newline.
const nastyJIT = `eyJhIjoiYiJ9'"$(touch PWNED)` + "`touch PWNED`" + ` x  y` + "\n" + `z\`

func baseValues() Values {
	return Values{
		RunnerName:    "myshoes-0b4c1f7e-8d7a-4a51-9d0e-3f1a2b3c4d5e",
		JITConfig:     nastyJIT,
		RunnerVersion: "v2.330.0",
		Scope:         "octo-org",
		Labels:        []string{"self-hosted", "linux"},
	}
}

// sandbox is a temp dir with PATH shims standing in for uname, curl, sudo,
// chown and id; everything else (bash, base64, gzip, tar, mktemp) is real.
type sandbox struct {
	root, bin, logs, tmp, base, cache string
	downloaded                        string // tarball the curl shim "downloads"
}

var shims = map[string]string{
	"uname": `#!/bin/bash
case "$1" in
  -s) echo "$SHIM_KERNEL" ;;
  -m) echo "$SHIM_MACHINE" ;;
  *) exit 2 ;;
esac
`,
	// Records the URL, then writes the fixture tarball to the -o file.
	"curl": `#!/bin/bash
out= url= prev=
for a in "$@"; do
  case "$a" in http://* | https://*) url="$a" ;; esac
  [ "$prev" = -o ] && out="$a"
  prev="$a"
done
printf '%s\n' "$url" >>"$SHIM_LOG/curl.log"
[ -z "${SHIM_CURL_FAIL:-}" ] || exit 22
cp "$SHIM_TARBALL" "$out"
`,
	// Records its arguments, drops its own options and runs the command.
	"sudo": `#!/bin/bash
printf '%s\0' "$@" >"$SHIM_LOG/sudo.args"
while [ $# -gt 0 ]; do
  case "$1" in
    -u) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
exec "$@"
`,
	"chown": `#!/bin/bash
printf '%s\0' "$@" >"$SHIM_LOG/chown.args"
`,
	"id": `#!/bin/bash
if [ $# -eq 1 ] && [ "$1" = -u ]; then echo "$SHIM_UID"; exit 0; fi
printf '%s\0' "$@" >"$SHIM_LOG/id.args"
[ -z "${SHIM_NO_USER:-}" ] || exit 1
echo "uid=1001($1) gid=1001($1)"
`,
}

// recorderRunSh is the run.sh inside the fixture tarballs.
const recorderRunSh = `#!/bin/bash
printf '%s\0' "$@" >"$SHIM_LOG/runsh.args"
pwd >"$SHIM_LOG/runsh.pwd"
`

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	root := t.TempDir()
	sb := &sandbox{
		root:  root,
		bin:   filepath.Join(root, "bin"),
		logs:  filepath.Join(root, "logs"),
		tmp:   filepath.Join(root, "tmp"),
		base:  filepath.Join(root, `base dir 'q' $HOME`),
		cache: filepath.Join(root, "cache"),
	}
	for _, d := range []string{sb.bin, sb.logs, sb.tmp, sb.base, sb.cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range shims {
		if err := os.WriteFile(filepath.Join(sb.bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sb.downloaded = filepath.Join(root, "downloaded.tar.gz")
	writeTarball(t, sb.downloaded, "downloaded")
	return sb
}

// writeTarball writes a runner-like tarball: run.sh and a marker file
// naming where the tarball came from.
func writeTarball(t *testing.T, path, origin string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	files := []struct {
		name string
		mode int64
		body string
	}{
		{"run.sh", 0o755, recorderRunSh},
		{"origin-" + origin, 0o644, origin},
	}
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

type runResult struct {
	exitCode int
	stderr   string
}

// run runs script with real bash: as a file, or with `bash -c` if asCommand.
func (sb *sandbox) run(t *testing.T, script, kernel, machine, uid string, asCommand bool, extraEnv ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var cmd *exec.Cmd
	if asCommand {
		cmd = exec.CommandContext(ctx, "bash", "-c", script)
	} else {
		path := filepath.Join(sb.root, "setup.sh")
		if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
			t.Fatal(err)
		}
		cmd = exec.CommandContext(ctx, "bash", path)
	}
	cmd.Dir = sb.root
	cmd.Env = append([]string{
		"PATH=" + sb.bin + ":" + os.Getenv("PATH"),
		"HOME=" + sb.root,
		"TMPDIR=" + sb.tmp,
		"SHIM_LOG=" + sb.logs,
		"SHIM_KERNEL=" + kernel,
		"SHIM_MACHINE=" + machine,
		"SHIM_UID=" + uid,
		"SHIM_TARBALL=" + sb.downloaded,
	}, extraEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run bash: %v", err)
		}
		code = ee.ExitCode()
	}
	return runResult{code, stderr.String()}
}

// args reads a NUL-separated argument log; nil if it was never written.
func (sb *sandbox) args(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sb.logs, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

func (sb *sandbox) log(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sb.logs, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func (sb *sandbox) values() Values {
	v := baseValues()
	v.RunnerBaseDirectory = sb.base
	v.CacheDirectory = sb.cache
	return v
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func render(t *testing.T, v Values) string {
	t.Helper()
	r, err := New("")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s, err := r.Render(v)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return s
}

func TestRunDownload(t *testing.T) {
	tests := []struct {
		kernel, machine, uid string
		platform             string // os-arch in the tarball name
		asCommand            bool
	}{
		{"Linux", "x86_64", "0", "linux-x64", false},
		{"Linux", "aarch64", "1000", "linux-arm64", false},
		{"Darwin", "x86_64", "1000", "osx-x64", false},
		{"Darwin", "arm64", "0", "osx-arm64", false},
		{"Linux", "amd64", "1000", "linux-x64", true},
		{"Linux", "arm64", "0", "linux-arm64", true},
	}
	for _, tt := range tests {
		name := tt.kernel + "-" + tt.machine + "-uid" + tt.uid
		if tt.asCommand {
			name += "-bash-c"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sb := newSandbox(t)
			v := sb.values()
			res := sb.run(t, render(t, v), tt.kernel, tt.machine, tt.uid, tt.asCommand)
			if res.exitCode != 0 {
				t.Fatalf("exit %d, output:\n%s", res.exitCode, res.stderr)
			}
			runnerDir := filepath.Join(sb.base, v.RunnerName)

			wantURL := "https://github.com/actions/runner/releases/download/v2.330.0/actions-runner-" + tt.platform + "-2.330.0.tar.gz\n"
			if got := sb.log(t, "curl.log"); got != wantURL {
				t.Errorf("curl fetched %q, want %q", got, wantURL)
			}
			if got, want := sb.args(t, "runsh.args"), []string{"--jitconfig", nastyJIT}; !slices.Equal(got, want) {
				t.Errorf("run.sh args = %q, want %q", got, want)
			}
			if got := strings.TrimSpace(sb.log(t, "runsh.pwd")); got != runnerDir {
				t.Errorf("run.sh ran in %q, want %q", got, runnerDir)
			}
			if !exists(filepath.Join(runnerDir, "origin-downloaded")) {
				t.Error("downloaded tarball was not extracted into the runner dir")
			}
			if exists(filepath.Join(runnerDir, "actions-runner-"+tt.platform+"-2.330.0.tar.gz")) {
				t.Error("downloaded tarball was left in the runner dir")
			}

			sudo, chown, id := sb.args(t, "sudo.args"), sb.args(t, "chown.args"), sb.args(t, "id.args")
			if tt.uid == "0" {
				wantSudo := []string{"-u", "runner", "-E", "-H", "./run.sh", "--jitconfig", nastyJIT}
				if !slices.Equal(sudo, wantSudo) {
					t.Errorf("sudo args = %q, want %q", sudo, wantSudo)
				}
				if want := []string{"-R", "runner", runnerDir}; !slices.Equal(chown, want) {
					t.Errorf("chown args = %q, want %q", chown, want)
				}
				if want := []string{"runner"}; !slices.Equal(id, want) {
					t.Errorf("user check: id args = %q, want %q", id, want)
				}
			} else if sudo != nil || chown != nil {
				t.Errorf("not root, yet sudo %q / chown %q ran", sudo, chown)
			}

			if exists(filepath.Join(sb.root, "PWNED")) || exists(filepath.Join(runnerDir, "PWNED")) {
				t.Error("the JIT config was executed by the shell")
			}
			if strings.Contains(res.stderr, "eyJhIjoiYiJ9") {
				t.Errorf("the JIT config was printed:\n%s", res.stderr)
			}
			if left, _ := os.ReadDir(sb.tmp); len(left) != 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
		})
	}
}

func TestRunCachedTarball(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t)
	writeTarball(t, filepath.Join(sb.cache, "actions-runner-osx-arm64-2.330.0.tar.gz"), "cached")
	v := sb.values()
	res := sb.run(t, render(t, v), "Darwin", "arm64", "1000", false)
	if res.exitCode != 0 {
		t.Fatalf("exit %d, output:\n%s", res.exitCode, res.stderr)
	}
	if got := sb.log(t, "curl.log"); got != "" {
		t.Errorf("curl ran with a cached tarball: %q", got)
	}
	runnerDir := filepath.Join(sb.base, v.RunnerName)
	if !exists(filepath.Join(runnerDir, "origin-cached")) {
		t.Error("the cached tarball was not extracted")
	}
	if got, want := sb.args(t, "runsh.args"), []string{"--jitconfig", nastyJIT}; !slices.Equal(got, want) {
		t.Errorf("run.sh args = %q, want %q", got, want)
	}
	if !exists(filepath.Join(sb.cache, "actions-runner-osx-arm64-2.330.0.tar.gz")) {
		t.Error("the cached tarball was removed")
	}
}

func TestRunExistingRunner(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t)
	v := sb.values()
	runnerDir := filepath.Join(sb.base, v.RunnerName)
	if err := os.MkdirAll(runnerDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runnerDir, "run.sh"), []byte(recorderRunSh), 0o755); err != nil {
		t.Fatal(err)
	}
	res := sb.run(t, render(t, v), "Linux", "x86_64", "0", false)
	if res.exitCode != 0 {
		t.Fatalf("exit %d, output:\n%s", res.exitCode, res.stderr)
	}
	if got := sb.log(t, "curl.log"); got != "" {
		t.Errorf("curl ran though run.sh was present: %q", got)
	}
	if exists(filepath.Join(runnerDir, "origin-downloaded")) {
		t.Error("a tarball was extracted over the present runner")
	}
	if got, want := sb.args(t, "runsh.args"), []string{"--jitconfig", nastyJIT}; !slices.Equal(got, want) {
		t.Errorf("run.sh args = %q, want %q", got, want)
	}
}

func TestRunFailures(t *testing.T) {
	tests := []struct {
		name                 string
		kernel, machine, uid string
		env                  []string
		wantMsg              string
	}{
		{"unsupported arch", "Linux", "ppc64le", "1000", nil, "unsupported architecture: ppc64le"},
		{"unsupported OS", "FreeBSD", "x86_64", "1000", nil, "unsupported OS: FreeBSD"},
		{"download fails", "Linux", "x86_64", "1000", []string{"SHIM_CURL_FAIL=1"}, "downloading https://"},
		{"runner user missing", "Linux", "x86_64", "0", []string{"SHIM_NO_USER=1"}, "runner user runner does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sb := newSandbox(t)
			res := sb.run(t, render(t, sb.values()), tt.kernel, tt.machine, tt.uid, false, tt.env...)
			if res.exitCode == 0 {
				t.Fatalf("exit 0, want a failure; output:\n%s", res.stderr)
			}
			if !strings.Contains(res.stderr, tt.wantMsg) {
				t.Errorf("output %q does not contain %q", res.stderr, tt.wantMsg)
			}
			if got := sb.args(t, "runsh.args"); got != nil {
				t.Errorf("run.sh ran: %q", got)
			}
			if left, _ := os.ReadDir(sb.tmp); len(left) != 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
		})
	}
}

func TestWrapper(t *testing.T) {
	r, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	v := baseValues()
	v.JITConfig = "eyJydW5uZXIiOiJteXNob2VzLXNlY3JldC1qaXQtY29uZmlnIn0=" // a realistic base64 JIT
	script, err := r.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(script, "#!/bin/bash\n") {
		t.Errorf("script does not start with #!/bin/bash: %q", script[:min(40, len(script))])
	}
	if strings.Contains(script, v.JITConfig) || strings.Contains(script, "mysho"+"es-secret") {
		t.Error("the JIT config is in the wrapper in plain text")
	}
	if strings.Contains(script, v.RunnerName) {
		t.Error("the main script is not encoded")
	}
	if len(script) > 4096 {
		t.Errorf("wrapper is %d bytes, want it small for user-data", len(script))
	}

	// The payload decodes to the main script, which holds the quoted values.
	_, rest, ok := strings.Cut(script, "<<'"+heredocMarker+"'")
	if !ok {
		t.Fatal("no here-document in the wrapper")
	}
	_, rest, _ = strings.Cut(rest, "\n")
	payload, _, ok := strings.Cut(rest, "\n"+heredocMarker+"\n")
	if !ok {
		t.Fatal("here-document is not terminated")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(payload, "\n", ""))
	if err != nil {
		t.Fatalf("payload is not base64: %v", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("payload is not gzip: %v", err)
	}
	main, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"#!/bin/bash\n",
		"set -euo pipefail",
		"RUNNER_JIT_CONFIG='" + v.JITConfig + "'",
		"RUNNER_VERSION='2.330.0'",
		"RUNNER_USER='runner'",
		"RUNNER_BASE_DIRECTORY='/tmp'",
		"RUNNER_CACHE_DIRECTORY='/usr/local/etc'",
		"RUNNER_LABELS='self-hosted,linux'",
	} {
		if !bytes.Contains(main, []byte(want)) {
			t.Errorf("main script lacks %q", want)
		}
	}
}

func TestUserTemplate(t *testing.T) {
	const tmpl = `#!/bin/bash
set -euo pipefail
printf '%s\0' {{ shellQuote .RunnerName }} {{ shellQuote .JITConfig }} {{ .RunnerVersion }} {{ shellQuote .RunnerUser }} \
  {{ shellQuote .RunnerBaseDirectory }} {{ shellQuote .CacheDirectory }} {{ shellQuote .Scope }} {{ shellQuote (join .Labels ",") }} >"$SHIM_LOG/user.args"
`
	r, err := New(tmpl)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	v := baseValues()
	v.RunnerUser = "ci"
	v.Scope = "octocat/hello-world"
	script, err := r.Render(v)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if strings.Contains(script, "touch PWNED") {
		t.Error("the JIT config is in the wrapper in plain text")
	}
	sb := newSandbox(t)
	res := sb.run(t, script, "Linux", "x86_64", "1000", false)
	if res.exitCode != 0 {
		t.Fatalf("exit %d, output:\n%s", res.exitCode, res.stderr)
	}
	want := []string{v.RunnerName, nastyJIT, "2.330.0", "ci", "/tmp", "/usr/local/etc", "octocat/hello-world", "self-hosted,linux"}
	if got := sb.args(t, "user.args"); !slices.Equal(got, want) {
		t.Errorf("user template saw %q, want %q", got, want)
	}
	if got := sb.log(t, "curl.log"); got != "" {
		t.Errorf("the default script ran too: curl %q", got)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name, tmpl, wantErr string
	}{
		{"parse error", "#!/bin/bash\necho {{ .RunnerName", "parse runner script template"},
		{"unknown field", "#!/bin/bash\necho {{ .Nope }}", "check runner script template"},
		{"unknown function", "#!/bin/bash\necho {{ quote .RunnerName }}", "parse runner script template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.tmpl)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New = %v, %v; want error containing %q", r, err, tt.wantErr)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Values)
		wantErr string // "" = valid
	}{
		{"defaults fill the optional fields", func(*Values) {}, ""},
		{"version without v", func(v *Values) { v.RunnerVersion = "2.330.0" }, ""},
		{"latest", func(v *Values) { v.RunnerVersion = "latest" }, "latest"},
		{"empty version", func(v *Values) { v.RunnerVersion = "" }, "runner version"},
		{"partial version", func(v *Values) { v.RunnerVersion = "2.330" }, "runner version"},
		{"pre-release", func(v *Values) { v.RunnerVersion = "2.330.0-rc1" }, "runner version"},
		{"empty name", func(v *Values) { v.RunnerName = "" }, "runner name is empty"},
		{"name with slash", func(v *Values) { v.RunnerName = "../etc" }, "not a directory name"},
		{"dot-dot name", func(v *Values) { v.RunnerName = ".." }, "not a directory name"},
		{"empty JIT", func(v *Values) { v.JITConfig = "" }, "JIT config is empty"},
		{"NUL in JIT", func(v *Values) { v.JITConfig = "a\x00b" }, "NUL"},
		{"option-like user", func(v *Values) { v.RunnerUser = "-R" }, "runner user"},
		{"user with a space", func(v *Values) { v.RunnerUser = "a b" }, "runner user"},
		{"relative base dir", func(v *Values) { v.RunnerBaseDirectory = "tmp" }, "runner base directory"},
		{"relative cache dir", func(v *Values) { v.CacheDirectory = "cache" }, "cache directory"},
		{"NUL in a label", func(v *Values) { v.Labels = []string{"a\x00"} }, "label"},
	}
	r, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := baseValues()
			tt.edit(&v)
			err := v.Validate()
			_, renderErr := r.Render(v)
			if tt.wantErr == "" {
				if err != nil || renderErr != nil {
					t.Errorf("Validate = %v, Render = %v; want nil", err, renderErr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate = %v, want error containing %q", err, tt.wantErr)
			}
			if renderErr == nil {
				t.Error("Render accepted invalid values")
			}
			if err != nil && v.JITConfig != "" && strings.Contains(err.Error(), v.JITConfig) {
				t.Errorf("error quotes the JIT config: %v", err)
			}
		})
	}
}

// shellQuote round-trips through real bash.
func TestShellQuote(t *testing.T) {
	inputs := []string{"", "plain", "it's", "'", "''", `a"b`, "$HOME", "$(id)", "`id`", "a\nb", `back\slash`, " lead", "*", "!event", "ü日本"}
	var script strings.Builder
	script.WriteString("printf '%s\\0'")
	for _, in := range inputs {
		script.WriteString(" " + shellQuote(in))
	}
	out, err := exec.CommandContext(t.Context(), "bash", "-c", script.String()).Output()
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !slices.Equal(got, inputs) {
		t.Errorf("round trip = %q, want %q", got, inputs)
	}
	if _, err := shellQuoteFunc("a\x00b"); err == nil {
		t.Error("shellQuote accepted a NUL byte")
	}
}

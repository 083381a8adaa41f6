package runnerscript

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	sysroot                           string // Values.SystemRoot: etc/environment, job hooks
	cwd                               string // where the script runs; root unless set
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

// recorderRunSh is the run.sh inside the fixture tarballs and runner
// directories. It records its arguments, its working directory, the
// variables of interest it got (NAME=value, NUL-separated) and everything
// exported to it; only builtins, so a PATH from /etc/environment cannot
// break it.
const recorderRunSh = `#!/bin/bash
printf '%s\0' "$@" >"$SHIM_LOG/runsh.args"
pwd >"$SHIM_LOG/runsh.pwd"
for v in http_proxy NO_PROXY FROM_ETC_ENVIRONMENT PATH RUNNER_JIT_CONFIG \
  ACTIONS_RUNNER_HOOK_JOB_STARTED ACTIONS_RUNNER_HOOK_JOB_COMPLETED; do
  if [ -n "${!v+set}" ]; then printf '%s=%s\0' "$v" "${!v}"; fi
done >"$SHIM_LOG/runsh.env"
export -p >"$SHIM_LOG/runsh.exports"
`

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	root := t.TempDir()
	sb := &sandbox{
		root:    root,
		bin:     filepath.Join(root, "bin"),
		logs:    filepath.Join(root, "logs"),
		tmp:     filepath.Join(root, "tmp"),
		base:    filepath.Join(root, `base dir 'q' $HOME`),
		cache:   filepath.Join(root, "cache"),
		sysroot: filepath.Join(root, "sysroot"),
		cwd:     root,
	}
	for _, d := range []string{sb.bin, sb.logs, sb.tmp, sb.base, sb.cache, filepath.Join(sb.sysroot, "etc")} {
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
	cmd.Dir = sb.cwd
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
	v.SystemRoot = sb.sysroot
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
				// sudo runs the launcher that sources /etc/environment and
				// execs run.sh.
				wantHead := []string{"-u", "runner", "-E", "-H", "env"}
				wantTail := []string{"./run.sh", "--jitconfig", nastyJIT}
				if !slices.Equal(sudo[:min(len(sudo), len(wantHead))], wantHead) || len(sudo) < len(wantHead)+len(wantTail) ||
					!slices.Equal(sudo[len(sudo)-len(wantTail):], wantTail) {
					t.Errorf("sudo args = %q, want %q ... %q", sudo, wantHead, wantTail)
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

// writeRunnerDir writes an extracted runner: run.sh, config.sh and a
// marker file naming where it came from.
func writeRunnerDir(t *testing.T, dir, origin string) {
	t.Helper()
	for name, body := range map[string]string{
		"run.sh":           recorderRunSh,
		"config.sh":        "#!/bin/bash\nexit 0\n",
		"origin-" + origin: origin,
	} {
		writeFile(t, filepath.Join(dir, name), body, 0o755)
	}
}

func writeFile(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

// Runner sources, in the script's order of precedence.
const (
	srcInstalled = "installed"   // <base>/<runner name>/run.sh: a re-run
	srcExtracted = "extracted"   // <base>/runner/config.sh: myshoes's pre-extracted runner
	srcCacheV    = "cache-v"     // <cache>/runner-v<version>/config.sh
	srcCache     = "cache-plain" // <cache>/runner-<version>/config.sh
	srcTarball   = "tarball"     // <cache>/actions-runner-<os>-<arch>-<version>.tar.gz
	srcDownload  = "downloaded"  // curl
)

// runnerLayout builds the cache layouts of a sandbox and knows where each
// source leaves the runner and what the script logs for it.
type runnerLayout struct {
	sb       *sandbox
	base     string // the runner base directory, absolute
	name     string
	platform string // os-arch
}

func (l runnerLayout) runnerDir() string { return filepath.Join(l.base, l.name) }

// dir is where the runner of src is before the script runs.
func (l runnerLayout) dir(src string) string {
	switch src {
	case srcInstalled:
		return l.runnerDir()
	case srcExtracted:
		return filepath.Join(l.base, "runner")
	case srcCacheV:
		return filepath.Join(l.sb.cache, "runner-v2.330.0")
	case srcCache:
		return filepath.Join(l.sb.cache, "runner-2.330.0")
	case srcTarball:
		return filepath.Join(l.sb.cache, "actions-runner-"+l.platform+"-2.330.0.tar.gz")
	}
	return ""
}

func (l runnerLayout) create(t *testing.T, src string) {
	t.Helper()
	switch src {
	case srcInstalled:
		// A re-run: run.sh is there; config.sh need not be.
		writeFile(t, filepath.Join(l.dir(src), "run.sh"), recorderRunSh, 0o755)
		writeFile(t, filepath.Join(l.dir(src), "origin-"+src), src, 0o644)
	case srcTarball:
		writeTarball(t, l.dir(src), src)
	default:
		writeRunnerDir(t, l.dir(src), src)
	}
}

// ranIn is the directory run.sh must run in when src wins.
func (l runnerLayout) ranIn(src string) string {
	if src == srcExtracted {
		return l.dir(srcExtracted)
	}
	return l.runnerDir()
}

// logLine is the line the script logs when src wins.
func (l runnerLayout) logLine(src string) string {
	const p = "shoes-scaleset setup: "
	switch src {
	case srcInstalled:
		return p + "using the runner already installed in " + l.runnerDir()
	case srcExtracted:
		return p + "using the pre-extracted runner in " + l.dir(src)
	case srcCacheV, srcCache:
		return p + "using the cached runner directory " + l.dir(src) + " (moved to " + l.runnerDir() + ")"
	case srcTarball:
		return p + "using the cached tarball " + l.dir(src)
	}
	return p + "downloading https://github.com/actions/runner/releases/download/v2.330.0/actions-runner-" + l.platform + "-2.330.0.tar.gz"
}

// checkSource asserts that the runner came from want and nowhere else.
func (l runnerLayout) checkSource(t *testing.T, res runResult, want string, present []string) {
	t.Helper()
	sb := l.sb
	if res.exitCode != 0 {
		t.Fatalf("exit %d, output:\n%s", res.exitCode, res.stderr)
	}
	if !strings.Contains(res.stderr, l.logLine(want)+"\n") {
		t.Errorf("output lacks the line %q:\n%s", l.logLine(want), res.stderr)
	}
	if n := strings.Count(res.stderr, "shoes-scaleset setup: using ") + strings.Count(res.stderr, "shoes-scaleset setup: downloading "); n != 1 {
		t.Errorf("%d lines name a runner source, want 1:\n%s", n, res.stderr)
	}
	ranIn := strings.TrimSpace(sb.log(t, "runsh.pwd"))
	if ranIn != l.ranIn(want) {
		t.Errorf("run.sh ran in %q, want %q", ranIn, l.ranIn(want))
	}
	if !exists(filepath.Join(ranIn, "origin-"+want)) {
		t.Errorf("run.sh's directory %q is not the %s runner", ranIn, want)
	}
	if got, wantArgs := sb.args(t, "runsh.args"), []string{"--jitconfig", nastyJIT}; !slices.Equal(got, wantArgs) {
		t.Errorf("run.sh args = %q, want %q", got, wantArgs)
	}
	curl := sb.log(t, "curl.log")
	if want == srcDownload {
		if wantURL := strings.TrimPrefix(l.logLine(srcDownload), "shoes-scaleset setup: downloading ") + "\n"; curl != wantURL {
			t.Errorf("curl fetched %q, want %q", curl, wantURL)
		}
	} else if curl != "" {
		t.Errorf("curl ran though the %s runner was there: %q", want, curl)
	}
	// The winner is used as myshoes does; the losers stay untouched.
	for _, src := range present {
		switch gone := !exists(l.dir(src)); {
		case src == want && (src == srcCacheV || src == srcCache):
			if !gone {
				t.Errorf("cached runner directory %s was not moved", l.dir(src))
			}
		case gone:
			t.Errorf("%s runner %s was removed", src, l.dir(src))
		}
	}
	if want == srcExtracted && exists(l.runnerDir()) {
		t.Errorf("the pre-extracted runner was used, yet %s was created", l.runnerDir())
	}
}

func TestRunRunnerSources(t *testing.T) {
	all := []string{srcInstalled, srcExtracted, srcCacheV, srcCache, srcTarball}
	tests := []struct {
		name            string
		kernel, machine string
		platform        string
		uid             string
		present         []string
		want            string
	}{
		{"all present: the installed runner wins", "Linux", "x86_64", "linux-x64", "1000", all, srcInstalled},
		{"installed runner, as root", "Linux", "x86_64", "linux-x64", "0", []string{srcInstalled}, srcInstalled},
		{"pre-extracted beats the cache", "Linux", "x86_64", "linux-x64", "1000", all[1:], srcExtracted},
		{"pre-extracted alone, as root", "Linux", "aarch64", "linux-arm64", "0", []string{srcExtracted}, srcExtracted},
		{"runner-v<version> beats runner-<version>", "Linux", "x86_64", "linux-x64", "1000", all[2:], srcCacheV},
		{"runner-v<version> alone, as root", "Linux", "x86_64", "linux-x64", "0", []string{srcCacheV}, srcCacheV},
		{"runner-<version> beats the tarball", "Linux", "x86_64", "linux-x64", "1000", all[3:], srcCache},
		{"cached tarball", "Linux", "x86_64", "linux-x64", "0", []string{srcTarball}, srcTarball},
		{"cached tarball for macOS arm64", "Darwin", "arm64", "osx-arm64", "1000", []string{srcTarball}, srcTarball},
		{"nothing cached: download", "Linux", "x86_64", "linux-x64", "1000", nil, srcDownload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sb := newSandbox(t)
			v := sb.values()
			l := runnerLayout{sb: sb, base: sb.base, name: v.RunnerName, platform: tt.platform}
			for _, src := range tt.present {
				l.create(t, src)
			}
			res := sb.run(t, render(t, v), tt.kernel, tt.machine, tt.uid, false)
			l.checkSource(t, res, tt.want, tt.present)
			if tt.uid == "0" {
				if want := []string{"-R", "runner", l.ranIn(tt.want)}; !slices.Equal(sb.args(t, "chown.args"), want) {
					t.Errorf("chown args = %q, want %q", sb.args(t, "chown.args"), want)
				}
			}
		})
	}
}

// A cache the script cannot write to (it does not run as root) is copied
// from rather than moved out of.
func TestRunReadOnlyCacheDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can write to any directory")
	}
	t.Parallel()
	sb := newSandbox(t)
	v := sb.values()
	l := runnerLayout{sb: sb, base: sb.base, name: v.RunnerName, platform: "linux-x64"}
	l.create(t, srcCacheV)
	if err := os.Chmod(sb.cache, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(sb.cache, 0o755) })
	res := sb.run(t, render(t, v), "Linux", "x86_64", "1000", false)
	if res.exitCode != 0 {
		t.Fatalf("exit %d, output:\n%s", res.exitCode, res.stderr)
	}
	want := "shoes-scaleset setup: using the cached runner directory " + l.dir(srcCacheV) + " (copied to " + l.runnerDir() + ": the cache is read-only)\n"
	if !strings.Contains(res.stderr, want) {
		t.Errorf("output lacks %q:\n%s", want, res.stderr)
	}
	if got := strings.TrimSpace(sb.log(t, "runsh.pwd")); got != l.runnerDir() || !exists(filepath.Join(got, "origin-"+srcCacheV)) {
		t.Errorf("run.sh ran in %q, want the copied runner in %q", got, l.runnerDir())
	}
	if !exists(l.dir(srcCacheV)) {
		t.Error("the read-only cache lost its runner")
	}
}

// The runner's environment: /etc/environment (under Values.SystemRoot) is
// sourced with allexport, and myshoes's job hooks are set only when their
// files exist; with or without sudo. The JIT config is never exported.
func TestRunEnvironment(t *testing.T) {
	const etcEnvironment = `# /etc/environment as an operator writes it: no "export"
http_proxy=http://proxy.example:3128
NO_PROXY="localhost,127.0.0.1, .internal"
FROM_ETC_ENVIRONMENT=yes
PATH=/from-etc-environment/bin:/usr/bin:/bin
`
	const (
		started   = "myshoes-actions-runner-hook-job-started.sh"
		completed = "myshoes-actions-runner-hook-job-completed.sh"
	)
	tests := []struct {
		name           string
		uid            string
		etcEnvironment bool
		hooks          []string // hook files present under the system root
	}{
		{"root: environment and both hooks", "0", true, []string{started, completed}},
		{"user: environment and both hooks", "1000", true, []string{started, completed}},
		{"root: no environment file, no hooks", "0", false, nil},
		{"user: no environment file, no hooks", "1000", false, nil},
		{"user: started hook only", "1000", true, []string{started}},
		{"root: completed hook only", "0", false, []string{completed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sb := newSandbox(t)
			if tt.etcEnvironment {
				writeFile(t, filepath.Join(sb.sysroot, "etc", "environment"), etcEnvironment, 0o644)
			}
			for _, h := range tt.hooks {
				writeFile(t, filepath.Join(sb.sysroot, h), "#!/bin/bash\n", 0o755)
			}
			res := sb.run(t, render(t, sb.values()), "Linux", "x86_64", tt.uid, false)
			if res.exitCode != 0 {
				t.Fatalf("exit %d, output:\n%s", res.exitCode, res.stderr)
			}
			got := map[string]string{}
			for _, kv := range sb.args(t, "runsh.env") {
				k, v, _ := strings.Cut(kv, "=")
				got[k] = v
			}
			want := map[string]string{}
			if tt.etcEnvironment {
				want["http_proxy"] = "http://proxy.example:3128"
				want["NO_PROXY"] = "localhost,127.0.0.1, .internal"
				want["FROM_ETC_ENVIRONMENT"] = "yes"
				want["PATH"] = "/from-etc-environment/bin:/usr/bin:/bin"
			}
			if slices.Contains(tt.hooks, started) {
				want["ACTIONS_RUNNER_HOOK_JOB_STARTED"] = filepath.Join(sb.sysroot, started)
			}
			if slices.Contains(tt.hooks, completed) {
				want["ACTIONS_RUNNER_HOOK_JOB_COMPLETED"] = filepath.Join(sb.sysroot, completed)
			}
			for _, k := range []string{"http_proxy", "NO_PROXY", "FROM_ETC_ENVIRONMENT", "ACTIONS_RUNNER_HOOK_JOB_STARTED", "ACTIONS_RUNNER_HOOK_JOB_COMPLETED"} {
				g, gotOK := got[k]
				w, wantOK := want[k]
				if gotOK != wantOK || g != w {
					t.Errorf("run.sh got %s=%q (set: %v), want %q (set: %v)", k, g, gotOK, w, wantOK)
				}
			}
			if w, ok := want["PATH"]; ok && got["PATH"] != w {
				t.Errorf("run.sh got PATH=%q, want /etc/environment's %q", got["PATH"], w)
			}
			if _, ok := got["RUNNER_JIT_CONFIG"]; ok {
				t.Error("RUNNER_JIT_CONFIG was exported to run.sh")
			}
			if strings.Contains(sb.log(t, "runsh.exports"), "eyJhIjoiYiJ9") {
				t.Error("the JIT config is in run.sh's environment")
			}
			if got, wantArgs := sb.args(t, "runsh.args"), []string{"--jitconfig", nastyJIT}; !slices.Equal(got, wantArgs) {
				t.Errorf("run.sh args = %q, want %q", got, wantArgs)
			}
			if sudo := sb.args(t, "sudo.args"); (tt.uid == "0") != (sudo != nil) {
				t.Errorf("uid %s: sudo args %q", tt.uid, sudo)
			}
			if strings.Contains(res.stderr, "eyJhIjoiYiJ9") {
				t.Errorf("the JIT config was printed:\n%s", res.stderr)
			}
		})
	}
}

// A relative base directory is taken from the script's working directory,
// as myshoes takes it.
func TestRunRelativeBaseDirectory(t *testing.T) {
	tests := []struct {
		name    string
		base    string // relative to the working directory
		uid     string
		present []string
		want    string
		cdpath  bool // CDPATH names a directory that has a "runners" too
	}{
		{"download", "runners", "1000", nil, srcDownload, false},
		{"dot", ".", "1000", nil, srcDownload, false},
		{"leading dash, as root", "-runners/x", "0", nil, srcDownload, false},
		{"a dash alone is not $OLDPWD", "-", "1000", nil, srcDownload, false},
		{"CDPATH is not searched", "runners", "1000", nil, srcDownload, true},
		{"quotes and spaces, cached tarball", `my 'runners' $HOME`, "1000", []string{srcTarball}, srcTarball, false},
		{"pre-extracted under the relative base", "runners", "0", []string{srcExtracted, srcCacheV}, srcExtracted, false},
		{"runner-v<version> moved under the relative base", "a/b", "1000", []string{srcCacheV}, srcCacheV, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sb := newSandbox(t)
			sb.cwd = filepath.Join(sb.root, "cwd dir")
			if err := os.Mkdir(sb.cwd, 0o755); err != nil {
				t.Fatal(err)
			}
			v := sb.values()
			v.RunnerBaseDirectory = tt.base
			l := runnerLayout{sb: sb, base: filepath.Join(sb.cwd, tt.base), name: v.RunnerName, platform: "linux-x64"}
			for _, src := range tt.present {
				l.create(t, src)
			}
			var env []string
			if tt.cdpath {
				elsewhere := filepath.Join(sb.root, "elsewhere")
				if err := os.MkdirAll(filepath.Join(elsewhere, tt.base), 0o755); err != nil {
					t.Fatal(err)
				}
				env = append(env, "CDPATH="+elsewhere)
			}
			res := sb.run(t, render(t, v), "Linux", "x86_64", tt.uid, false, env...)
			l.checkSource(t, res, tt.want, tt.present)
			if tt.uid == "0" {
				if want := []string{"-R", "runner", l.ranIn(tt.want)}; !slices.Equal(sb.args(t, "chown.args"), want) {
					t.Errorf("chown args = %q, want %q (absolute)", sb.args(t, "chown.args"), want)
				}
			}
			if exists(filepath.Join(sb.root, tt.base)) && tt.base != "." {
				t.Errorf("the base directory was made relative to %s, not the working directory", sb.root)
			}
		})
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
	main, err := mainScriptOf(script)
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
		"SYSTEM_ROOT='/'",
		"RUNNER_LABELS='self-hosted,linux'",
	} {
		if !bytes.Contains(main, []byte(want)) {
			t.Errorf("main script lacks %q", want)
		}
	}
}

// mainScriptOf decodes the main script out of a wrapper script.
func mainScriptOf(script string) ([]byte, error) {
	_, rest, ok := strings.Cut(script, "<<'"+heredocMarker+"'")
	if !ok {
		return nil, errors.New("no here-document in the wrapper")
	}
	_, rest, _ = strings.Cut(rest, "\n")
	payload, _, ok := strings.Cut(rest, "\n"+heredocMarker+"\n")
	if !ok {
		return nil, errors.New("here-document is not terminated")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(payload, "\n", ""))
	if err != nil {
		return nil, fmt.Errorf("payload is not base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("payload is not gzip: %w", err)
	}
	return io.ReadAll(zr)
}

// TestRenderConcurrently: scripts rendered at once (a burst; the gzip
// writers are pooled) each carry their own runner's name and JIT config.
func TestRenderConcurrently(t *testing.T) {
	r, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				v := baseValues()
				v.RunnerName = fmt.Sprintf("runner-%d-%d", g, i)
				v.JITConfig = base64.StdEncoding.EncodeToString([]byte("jit of " + v.RunnerName))
				script, err := r.Render(v)
				if err != nil {
					t.Error(err)
					return
				}
				main, err := mainScriptOf(script)
				if err != nil {
					t.Errorf("%s: %v", v.RunnerName, err)
					return
				}
				if !bytes.Contains(main, []byte("RUNNER_JIT_CONFIG='"+v.JITConfig+"'")) || !bytes.Contains(main, []byte("RUNNER_NAME='"+v.RunnerName+"'")) {
					t.Errorf("the script rendered for %s does not carry its name and JIT config", v.RunnerName)
				}
			}
		})
	}
	wg.Wait()
}

func TestUserTemplate(t *testing.T) {
	const tmpl = `#!/bin/bash
set -euo pipefail
printf '%s\0' {{ shellQuote .RunnerName }} {{ shellQuote .JITConfig }} {{ .RunnerVersion }} {{ shellQuote .RunnerUser }} \
  {{ shellQuote .RunnerBaseDirectory }} {{ shellQuote .CacheDirectory }} {{ shellQuote .SystemRoot }} {{ shellQuote .Scope }} {{ shellQuote (join .Labels ",") }} >"$SHIM_LOG/user.args"
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
	want := []string{v.RunnerName, nastyJIT, "2.330.0", "ci", "/tmp", "/usr/local/etc", "/", "octocat/hello-world", "self-hosted,linux"}
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
		{"relative base dir, as myshoes", func(v *Values) { v.RunnerBaseDirectory = "tmp" }, ""},
		{"dot base dir", func(v *Values) { v.RunnerBaseDirectory = "." }, ""},
		{"base dir with a newline", func(v *Values) { v.RunnerBaseDirectory = "/tmp/a\nb" }, "runner base directory"},
		{"NUL in base dir", func(v *Values) { v.RunnerBaseDirectory = "tmp\x00" }, "runner base directory"},
		{"relative cache dir", func(v *Values) { v.CacheDirectory = "cache" }, "cache directory"},
		{"relative system root", func(v *Values) { v.SystemRoot = "sysroot" }, "system root"},
		{"system root with a tab", func(v *Values) { v.SystemRoot = "/a\tb" }, "system root"},
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

// Package runnerscript renders the setup script handed to shoes plugins as
// AddInstanceRequest.setup_script. It installs actions/runner the way
// myshoes's setup script does (a runner already in place, a pre-extracted
// runner, a cached runner directory or tarball, else a download) and starts
// `run.sh --jitconfig` under /etc/environment.
//
// The script has two parts. The main script is a text/template (the embedded
// default.sh.tmpl, or the operator's own). The wrapper that Render returns is
// a small bash script carrying the main script gzip+base64 encoded, as myshoes
// does, so it fits cloud-init user-data limits and works with `bash -c` too.
package runnerscript

import (
	"bytes"
	"compress/gzip"
	_ "embed" // default.sh.tmpl
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"text/template"
)

//go:embed default.sh.tmpl
var defaultMainTemplate string

// The defaults of Values' user and base directory, which the
// controller's settings take too.
const (
	DefaultRunnerUser          = "runner"
	DefaultRunnerBaseDirectory = "/tmp"
)

const (
	defaultCacheDirectory = "/usr/local/etc"
	defaultSystemRoot     = "/"

	// heredocMarker ends the encoded main script; '_' is not in the base64
	// alphabet, so the payload cannot contain it.
	heredocMarker = "SHOES_SCALESET_MAIN_SCRIPT"
	base64LineLen = 76
)

var (
	versionRE = regexp.MustCompile(`^v?([0-9]+\.[0-9]+\.[0-9]+)$`)
	// userRE is a portable user name; it never starts with '-', so it cannot
	// turn into an option of sudo or chown.
	userRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
)

// Values are what a rendered script needs for one runner.
type Values struct {
	// RunnerName is the runner's name, also its directory name.
	RunnerName string
	// JITConfig is the encoded JIT config from generatejitconfig. It is a
	// secret: it reaches run.sh as written and is never printed.
	JITConfig string
	// RunnerVersion is a concrete actions/runner release, "2.330.0" or
	// "v2.330.0"; "latest" must be resolved before rendering.
	RunnerVersion string
	// RunnerUser runs the runner when the script runs as root. Default
	// "runner".
	RunnerUser string
	// RunnerBaseDirectory holds the runner directories
	// (<dir>/<runner name>) and may hold a pre-extracted runner in
	// <dir>/runner. Default "/tmp". A relative directory is taken from the
	// setup script's working directory, as myshoes does.
	RunnerBaseDirectory string
	// CacheDirectory is where an image may cache an extracted runner,
	// runner-v<version>/ or runner-<version>/, or the release tarball
	// actions-runner-<os>-<arch>-<version>.tar.gz, to skip the download.
	// Default "/usr/local/etc", as myshoes. An absolute path.
	CacheDirectory string
	// SystemRoot is a test seam: the directory under which the script looks
	// up etc/environment and myshoes's job hooks
	// (myshoes-actions-runner-hook-job-{started,completed}.sh), so tests
	// need not write to "/". Default "/"; the CLI does not expose it. An
	// absolute path.
	SystemRoot string
	// Scope and Labels are informational: the default script logs them.
	Scope  string
	Labels []string
}

func (v Values) withDefaults() Values {
	if v.RunnerUser == "" {
		v.RunnerUser = DefaultRunnerUser
	}
	if v.RunnerBaseDirectory == "" {
		v.RunnerBaseDirectory = DefaultRunnerBaseDirectory
	}
	if v.CacheDirectory == "" {
		v.CacheDirectory = defaultCacheDirectory
	}
	if v.SystemRoot == "" {
		v.SystemRoot = defaultSystemRoot
	}
	return v
}

// Validate reports whether the values can be rendered; empty optional
// fields count as their defaults. Errors never quote the JIT config.
func (v Values) Validate() error {
	v = v.withDefaults()
	var errs []error
	switch {
	case v.RunnerName == "":
		errs = append(errs, errors.New("runner name is empty"))
	case v.RunnerName == "." || v.RunnerName == ".." || strings.Contains(v.RunnerName, "/") || hasControl(v.RunnerName):
		errs = append(errs, fmt.Errorf("runner name %q is not a directory name", v.RunnerName))
	}
	switch {
	case v.JITConfig == "":
		errs = append(errs, errors.New("JIT config is empty"))
	case strings.ContainsRune(v.JITConfig, 0):
		errs = append(errs, errors.New("JIT config contains a NUL byte"))
	}
	if !versionRE.MatchString(v.RunnerVersion) {
		errs = append(errs, fmt.Errorf("runner version %q: want a concrete release X.Y.Z or vX.Y.Z (resolve \"latest\" first)", v.RunnerVersion))
	}
	if !userRE.MatchString(v.RunnerUser) {
		errs = append(errs, fmt.Errorf("runner user %q is not a valid user name", v.RunnerUser))
	}
	if err := CheckRunnerBaseDirectory(v.RunnerBaseDirectory); err != nil {
		errs = append(errs, fmt.Errorf("runner base directory: %w", err))
	}
	for _, d := range []struct{ name, path string }{
		{"cache directory", v.CacheDirectory},
		{"system root", v.SystemRoot},
	} {
		if !strings.HasPrefix(d.path, "/") || hasControl(d.path) {
			errs = append(errs, fmt.Errorf("%s %q is not an absolute path", d.name, d.path))
		}
	}
	if strings.ContainsRune(v.Scope, 0) {
		errs = append(errs, errors.New("scope contains a NUL byte"))
	}
	for _, l := range v.Labels {
		if strings.ContainsRune(l, 0) {
			errs = append(errs, fmt.Errorf("label %q contains a NUL byte", l))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("runner script values: %w", errors.Join(errs...))
	}
	return nil
}

// CheckRunnerBaseDirectory reports whether dir can be the runner base
// directory: not empty and without control characters. A relative dir is
// accepted, as myshoes accepts it: the setup script takes it from its
// working directory.
func CheckRunnerBaseDirectory(dir string) error {
	switch {
	case dir == "":
		return errors.New("must not be empty")
	case hasControl(dir):
		return fmt.Errorf("%q contains a control character", dir)
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// templateData is what the main template sees: Values with defaults applied,
// RunnerVersion without the "v".
type templateData struct {
	RunnerName          string
	JITConfig           string
	RunnerVersion       string
	RunnerUser          string
	RunnerBaseDirectory string
	CacheDirectory      string
	SystemRoot          string
	Scope               string
	Labels              []string
}

func newTemplateData(v Values) templateData {
	return templateData{
		RunnerName:          v.RunnerName,
		JITConfig:           v.JITConfig,
		RunnerVersion:       strings.TrimPrefix(v.RunnerVersion, "v"),
		RunnerUser:          v.RunnerUser,
		RunnerBaseDirectory: v.RunnerBaseDirectory,
		CacheDirectory:      v.CacheDirectory,
		SystemRoot:          v.SystemRoot,
		Scope:               v.Scope,
		Labels:              v.Labels,
	}
}

// Renderer renders setup scripts. It is safe for concurrent use.
type Renderer struct {
	main *template.Template
	// gzips holds *gzip.Writer for reuse: allocating one (about 1 MB of
	// compressor state) cost more than compressing a script, and a burst
	// renders one script per runner.
	gzips sync.Pool
}

// New parses the main script template; "" selects the embedded default.
// The template sees the fields of Values (RunnerVersion without "v",
// defaults applied) and the functions shellQuote (single-quotes a string for
// bash) and join (strings.Join). A template that fails to parse, or to
// execute on sample values, is an error here rather than at the first runner.
func New(mainTemplate string) (*Renderer, error) {
	name := "custom main script"
	if mainTemplate == "" {
		name, mainTemplate = "default.sh.tmpl", defaultMainTemplate
	}
	t, err := template.New(name).
		Option("missingkey=error").
		Funcs(template.FuncMap{"shellQuote": shellQuoteFunc, "join": strings.Join}).
		Parse(mainTemplate)
	if err != nil {
		return nil, fmt.Errorf("parse runner script template: %w", err)
	}
	r := &Renderer{main: t}
	sample := Values{
		RunnerName:    "myshoes-00000000-0000-4000-8000-000000000000",
		JITConfig:     "sample-jit-config",
		RunnerVersion: "2.330.0",
		Scope:         "org/repo",
		Labels:        []string{"self-hosted"},
	}
	if _, err := r.renderMain(sample.withDefaults()); err != nil {
		return nil, fmt.Errorf("check runner script template: %w", err)
	}
	return r, nil
}

// Render validates v and returns the wrapper script: "#!/bin/bash" and a few
// lines that decode the main script into a private temporary file, run it
// with bash and remove it. The JIT config is inside the gzip+base64 payload,
// never in plain text, and never on a command line of the wrapper.
func (r *Renderer) Render(v Values) (string, error) {
	v = v.withDefaults()
	if err := v.Validate(); err != nil {
		return "", err
	}
	main, err := r.renderMain(v)
	if err != nil {
		return "", fmt.Errorf("render runner script for %s: %w", v.RunnerName, err)
	}
	payload, err := r.gzipBase64(main)
	if err != nil {
		return "", fmt.Errorf("render runner script for %s: %w", v.RunnerName, err)
	}
	return wrap(payload), nil
}

func (r *Renderer) renderMain(v Values) ([]byte, error) {
	var buf bytes.Buffer
	if err := r.main.Execute(&buf, newTemplateData(v)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// gzipBase64 compresses at gzip's default level: on the default script it
// gives the same size as the best level (2,343 bytes from 8,217) at half
// the CPU.
func (r *Renderer) gzipBase64(b []byte) (string, error) {
	var buf bytes.Buffer
	zw, ok := r.gzips.Get().(*gzip.Writer)
	if ok {
		zw.Reset(&buf)
	} else {
		zw = gzip.NewWriter(&buf)
	}
	defer r.gzips.Put(zw)
	if _, err := zw.Write(b); err != nil {
		return "", fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("gzip: %w", err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// wrap builds the wrapper around an encoded main script. `base64 --decode`
// and `gzip -dc` work on Linux and macOS alike; the payload goes through a
// here-document, so it never appears in a process's arguments.
func wrap(payload string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/bash
# shoes-scaleset runner setup. The main script is gzip+base64 encoded below;
# it is decoded into a private temporary file, run with bash, and removed.
set -euo pipefail
main_script="$(mktemp "${TMPDIR:-/tmp}/shoes-scaleset-setup.XXXXXXXXXX")"
trap 'rm -f -- "$main_script"' EXIT
chmod 0700 "$main_script"
base64 --decode <<'` + heredocMarker + `' | gzip -dc >"$main_script"
`)
	for len(payload) > base64LineLen {
		b.WriteString(payload[:base64LineLen])
		b.WriteByte('\n')
		payload = payload[base64LineLen:]
	}
	b.WriteString(payload)
	b.WriteString("\n" + heredocMarker + "\n")
	b.WriteString(`"${BASH:-/bin/bash}" "$main_script"` + "\n")
	return b.String()
}

// shellQuote quotes s as one bash word in single quotes; an embedded single
// quote closes the quoted part, adds an escaped quote (\') and reopens it.
// The result is safe for any string without a NUL byte.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellQuoteFunc is the template function: bash strings cannot hold NUL.
func shellQuoteFunc(s string) (string, error) {
	if strings.ContainsRune(s, 0) {
		return "", errors.New("shellQuote: value contains a NUL byte")
	}
	return shellQuote(s), nil
}

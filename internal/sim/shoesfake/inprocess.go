package shoesfake

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// fileInProcess marks an instance whose runner is a goroutine of a plugin
// process; it holds that process's PID. The runner removes it when it ends
// by itself, so an instance whose file is gone, or names a process that is
// gone, does not run (see instances.running).
const fileInProcess = "inprocess"

// maxMainScript bounds the decoded main script of a setup script.
const maxMainScript = 1 << 20

// heredocRE finds the start of the here-document that carries the
// gzip+base64 main script in the wrapper internal/runnerscript renders:
// `base64 --decode <<'MARKER' | gzip -dc >"$main_script"`.
var heredocRE = regexp.MustCompile(`(?m)^[^\n#]*base64[^\n]*<<-?'([A-Za-z_][A-Za-z0-9_]*)'[^\n]*$`)

// ExtractJITConfig finds the JIT config a setup script hands to the
// runner, however the script writes it: after `--jitconfig` (or
// `--jitconfig=`) single-quoted, double-quoted or unquoted, or as a
// variable ("$JIT", ${JIT}) that the script assigns a literal elsewhere
// (JIT=..., export JIT=...), or assigned to RUNNER_JIT_CONFIG or
// ACTIONS_RUNNER_INPUT_JITCONFIG, the runner's own variable. A script that
// carries its main script gzip+base64 in a here-document
// (internal/runnerscript's wrapper) is searched in that main script. Each
// candidate is checked with DecodeJITConfig, so that a word that is not a
// JIT config is passed over. Errors never quote the config.
func ExtractJITConfig(setupScript string) (string, error) {
	main, err := mainScript(setupScript)
	if err != nil {
		return "", err
	}
	valid := func(v string) bool {
		_, err := DecodeJITConfig(v)
		return v != "" && err == nil
	}
	for _, m := range jitconfigFlagRE.FindAllStringIndex(main, -1) {
		w, ok := parseShellWord(main[m[1]:])
		switch {
		case !ok:
		case w.ref == "" && valid(w.literal):
			return w.literal, nil
		case w.ref != "":
			for _, v := range slices.Backward(assignmentsTo(main, w.ref)) {
				if valid(v) {
					return v, nil
				}
			}
		}
	}
	for _, name := range []string{"RUNNER_JIT_CONFIG", "ACTIONS_RUNNER_INPUT_JITCONFIG"} {
		for _, v := range slices.Backward(assignmentsTo(main, name)) {
			if valid(v) {
				return v, nil
			}
		}
	}
	return "", errors.New("setup script: no JIT config found (want run.sh --jitconfig with a literal value or a variable the script assigns one)")
}

// jitconfigFlagRE finds the runner's --jitconfig flag, up to its value.
var jitconfigFlagRE = regexp.MustCompile(`--jitconfig(?:=|[ \t]+)`)

// assignmentsTo returns the literal values the script assigns to the
// variable name, in order: NAME=..., also after export, readonly, local or
// declare, at the start of a line or after a blank or one of ;&|(. It is
// a plain search, not a regular expression over every assignment: in a
// benchmark's burst this fake parses hundreds of scripts a second, on the
// cores the controller under test runs on.
func assignmentsTo(script, name string) []string {
	var out []string
	pat := name + "="
	for i := 0; ; {
		j := strings.Index(script[i:], pat)
		if j < 0 {
			return out
		}
		at := i + j
		i = at + len(pat)
		if at > 0 && strings.IndexByte(";&|( \t\n\r\f", script[at-1]) < 0 {
			continue // part of a longer name, or not an assignment
		}
		if w, ok := parseShellWord(script[i:]); ok && w.ref == "" {
			out = append(out, w.literal)
		}
	}
}

// shellWord is one bash word: a literal, or a lone variable reference.
type shellWord struct {
	literal string
	ref     string // the variable of a word that is only "$NAME" or ${NAME}, quoted or not
}

// varRefRE matches a word that is only a variable reference.
var varRefRE = regexp.MustCompile(`^\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})$`)

// parseShellWord parses the bash word at the start of s: single-quoted,
// double-quoted and unquoted parts, with backslash escapes, up to an
// unquoted blank or operator. A word with an expansion ($, `) in it is a
// literal only if it is a lone variable reference, which it reports as
// ref; any other expansion, or an unterminated quote, reports false.
func parseShellWord(s string) (shellWord, bool) {
	var lit, raw strings.Builder // raw keeps $ and the quotes' insides, to spot a lone reference
	expands := false
	i := 0
loop:
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return shellWord{}, false
			}
			lit.WriteString(s[i+1 : i+1+end])
			raw.WriteString(s[i+1 : i+1+end])
			i += end + 2
		case c == '"':
			i++
			for {
				if i >= len(s) {
					return shellWord{}, false
				}
				d := s[i]
				if d == '"' {
					i++
					break
				}
				if d == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0 {
					lit.WriteByte(s[i+1])
					raw.WriteByte(s[i+1])
					i += 2
					continue
				}
				if d == '$' || d == '`' {
					expands = true
				}
				lit.WriteByte(d)
				raw.WriteByte(d)
				i++
			}
		case c == '\\' && i+1 < len(s):
			lit.WriteByte(s[i+1])
			raw.WriteByte(s[i+1])
			i += 2
		case strings.IndexByte(" \t\n;&|<>()", c) >= 0:
			break loop
		default:
			if c == '$' || c == '`' {
				expands = true
			}
			lit.WriteByte(c)
			raw.WriteByte(c)
			i++
		}
	}
	if i == 0 {
		return shellWord{}, false
	}
	if !expands {
		return shellWord{literal: lit.String()}, true
	}
	if m := varRefRE.FindStringSubmatch(raw.String()); m != nil {
		return shellWord{ref: m[1] + m[2]}, true
	}
	return shellWord{}, false
}

// mainScript returns the main script a setup script carries gzip+base64 in
// a here-document, as internal/runnerscript's wrapper does; a script
// without that wrapper is returned as is.
func mainScript(setupScript string) (string, error) {
	m := heredocRE.FindStringSubmatchIndex(setupScript)
	if m == nil {
		return setupScript, nil
	}
	marker := setupScript[m[2]:m[3]]
	body := setupScript[m[1]:]
	body = strings.TrimPrefix(body, "\n")
	end := strings.Index(body, "\n"+marker+"\n")
	if end < 0 && strings.HasSuffix(body, "\n"+marker) {
		end = len(body) - len(marker) - 1
	}
	if end < 0 {
		return "", fmt.Errorf("setup script: here-document %s is not terminated", marker)
	}
	decoded, err := decodeMainScript(body[:end])
	if err != nil {
		return "", fmt.Errorf("setup script: %w", err)
	}
	return decoded, nil
}

// decodeMainScript decodes the base64 lines of a here-document and gunzips
// them.
func decodeMainScript(payload string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(payload), ""))
	if err != nil {
		return "", fmt.Errorf("decode main script: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return "", fmt.Errorf("decode main script: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(zr, maxMainScript+1))
	if err != nil {
		return "", fmt.Errorf("decode main script: %w", err)
	}
	if len(b) > maxMainScript {
		return "", fmt.Errorf("decode main script: larger than %d bytes", maxMainScript)
	}
	return string(b), nil
}

// inprocRunner is a sim runner running as a goroutine of this process.
type inprocRunner struct {
	dir    string
	dirID  os.FileInfo // the instance directory, to tell it from a later one of the same name
	cancel context.CancelFunc
	done   chan struct{}
}

// runnerHTTP is shared by the in-process runners: hundreds of them long-poll
// the same fake service, so idle connections are kept for all of them.
var runnerHTTP = &http.Client{Transport: &http.Transport{
	Proxy:               nil,
	MaxIdleConns:        4096,
	MaxIdleConnsPerHost: 4096,
	IdleConnTimeout:     90 * time.Second,
}}

// startInProcess runs the sim runner for an instance as a goroutine. It
// ends when the runner's job is done, when DeleteInstance cancels it (from
// this process, or from another one by removing the instance directory),
// or when the plugin process stops.
func (m *instances) startInProcess(cloudID, dir, jit string) error {
	dirID, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, fileInProcess), []byte(fmt.Sprintf("%d\n", os.Getpid()))); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(m.ctx)
	r := &inprocRunner{dir: dir, dirID: dirID, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.inproc[cloudID] = r
	m.mu.Unlock()
	m.watchOnce.Do(func() {
		m.wg.Add(1)
		go m.watchInProcess()
	})
	logger := slog.New(slog.NewTextHandler(appendWriter(filepath.Join(dir, fileScriptLg)), nil))
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(r.done)
		defer cancel()
		err := runRunner(ctx, jit, logger, runnerHTTP)
		m.mu.Lock()
		if m.inproc[cloudID] == r {
			delete(m.inproc, cloudID)
			if ctx.Err() == nil {
				// Ended by itself: the instance no longer runs, and an
				// AddInstance of its name boots it again.
				_ = os.Remove(filepath.Join(dir, fileInProcess))
			}
		}
		m.mu.Unlock()
		if ctx.Err() != nil {
			return // deleted or stopped, like a killed script: no exit event
		}
		ev := Call{Event: EventScriptExit, PID: os.Getpid(), CloudID: cloudID}
		if err != nil {
			ev.ExitCode, ev.StderrTail = 1, err.Error()
			logger.Error("runner failed", "err", err)
		}
		ev.End = time.Now().UTC()
		if err := appendLine(m.callLog, ev); err != nil {
			m.log.Error("write call log", "err", err)
		}
	}()
	return nil
}

// stopInProcess cancels the runner of an instance this process runs and
// waits for it; it reports whether it was ours.
func (m *instances) stopInProcess(cloudID string) bool {
	m.mu.Lock()
	r := m.inproc[cloudID]
	m.mu.Unlock()
	if r == nil {
		return false
	}
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		m.log.Warn("in-process runner did not stop", "cloud_id", cloudID)
	}
	return true
}

// watchInProcess cancels the runners whose instance directory another
// plugin process of the pool removed (its DeleteInstance), also when an
// instance of the same name has been created since (CloudIDsName mode).
func (m *instances) watchInProcess() {
	defer m.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		var gone []*inprocRunner
		for _, r := range m.inproc {
			if fi, err := os.Stat(r.dir); errors.Is(err, os.ErrNotExist) || (err == nil && !os.SameFile(fi, r.dirID)) {
				gone = append(gone, r)
			}
		}
		m.mu.Unlock()
		for _, r := range gone {
			r.cancel()
		}
	}
}

// appendWriter appends each write to a file, opening it every time: an
// instance's log is written a few times, and hundreds of instances must
// not hold a descriptor each.
type appendWriter string

func (p appendWriter) Write(b []byte) (int, error) {
	f, err := os.OpenFile(string(p), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := f.Write(b)
	return n, errors.Join(err, f.Close())
}

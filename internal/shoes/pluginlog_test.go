package shoes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestPluginStderrLines: each line a plugin writes to its stderr is a
// record; a JSON object's keys are its fields, its message, level and time
// taken from hclog's, slog's or logrus's keys; any other line is logged as
// it is at debug level.
func TestPluginStderrLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, line string
		want       map[string]any // "" value: the key must be absent
	}{
		{"hclog JSON",
			`{"@level":"warn","@message":"backend slow","@module":"shoes-lxd","@timestamp":"2026-01-02T03:04:05.000000Z","host":"lxd-1","attempt":3}`,
			map[string]any{"level": "WARN", "msg": "backend slow", "module": "shoes-lxd", "plugin_time": "2026-01-02T03:04:05.000000Z",
				"host": "lxd-1", "attempt": float64(3), "logger": "shoes-lxd"}},
		{"slog JSON",
			`{"time":"2026-01-02T03:04:05Z","level":"ERROR","msg":"create instance","scope":"shoesfake","err":"quota"}`,
			map[string]any{"level": "ERROR", "msg": "create instance", "plugin_time": "2026-01-02T03:04:05Z",
				"plugin_scope": "shoesfake", "scope": "go-plugin", "err": "quota"}},
		{"logrus JSON, an unknown level",
			`{"level":"verbose","message":"hello","nested":{"a":[1,2]}}`,
			map[string]any{"level": "DEBUG", "msg": "hello", "plugin_level": "verbose", "nested": map[string]any{"a": []any{float64(1), float64(2)}}}},
		{"JSON whose @message is not a string (go-plugin's own parser panics on it)",
			`{"@message":42,"@level":"info"}`,
			map[string]any{"level": "INFO", "msg": "", "message": float64(42)}},
		{"not JSON",
			`2026/01/02 03:04:05 created instance myshoes-1`,
			map[string]any{"level": "DEBUG", "msg": "2026/01/02 03:04:05 created instance myshoes-1", "plugin_time": ""}},
		{"two JSON values are not one object",
			`{"msg":"a"} {"msg":"b"}`,
			map[string]any{"level": "DEBUG", "msg": `{"msg":"a"} {"msg":"b"}`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).
				With("scope", "go-plugin", "logger", "shoes-lxd")
			w := newPluginStderr(log)
			// go-plugin writes a line, then its newline.
			fmt.Fprint(w, tc.line)
			fmt.Fprint(w, "\n")
			var rec map[string]any
			if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
				t.Fatalf("not one JSON record: %v\n%s", err, buf.String())
			}
			for k, want := range tc.want {
				got, ok := rec[k]
				if want == "" && k != "msg" {
					if ok {
						t.Errorf("%s = %v, want it absent", k, got)
					}
					continue
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s = %#v, want %#v\n%s", k, got, want, buf.String())
				}
			}
		})
	}
}

// TestPluginStderrBounds: a line longer than the bound is cut, the lines
// below the logger's level are dropped, blank lines are skipped, and the
// last lines are kept for a start's error.
func TestPluginStderrBounds(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := newPluginStderr(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	fmt.Fprint(w, "plain line, at debug\n\n")
	fmt.Fprint(w, `{"level":"info","msg":"kept"}`+"\n")
	fmt.Fprint(w, strings.Repeat("x", maxPluginLine+10)+"\n")
	fmt.Fprint(w, "one\ntwo\nthree")
	fmt.Fprint(w, "\n")
	out := buf.String()
	if strings.Contains(out, "plain line") || !strings.Contains(out, "msg=kept") {
		t.Errorf("at info: want only the info record:\n%s", out)
	}
	if tail := w.lastLines(); tail != "one | two | three" {
		t.Errorf("lastLines = %q, want the last 3 lines", tail)
	}
	var cut bytes.Buffer
	w = newPluginStderr(slog.New(slog.NewTextHandler(&cut, &slog.HandlerOptions{Level: slog.LevelDebug})))
	fmt.Fprint(w, strings.Repeat("x", maxPluginLine+10)+"\nnext\n")
	first, _, _ := strings.Cut(cut.String(), "\n")
	if n := strings.Count(first, "x"); n != maxPluginLine || !strings.Contains(first, "...(truncated)") || !strings.Contains(cut.String(), "msg=next") {
		t.Errorf("a long line: %d x logged, want %d and the mark, then the next line", n, maxPluginLine)
	}
}

// TestQuietStderrLogger: go-plugin's logger for the plugin's stderr (named
// after the plugin's file) is off, so go-plugin leaves the lines to
// pluginStderr; its other loggers are not.
func TestQuietStderrLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	a := newHCLogAdapter(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))).quietFor("/usr/local/bin/shoes-lxd")
	stderr := a.Named("shoes-lxd")
	if stderr.GetLevel() != hclog.Off || stderr.IsDebug() {
		t.Errorf("the stderr logger is on (level %v)", stderr.GetLevel())
	}
	stderr.Error("from the plugin")
	a.Named("stdio").Debug("from go-plugin")
	a.Warn("plugin failed to exit gracefully")
	out := buf.String()
	if strings.Contains(out, "from the plugin") || !strings.Contains(out, "from go-plugin") || !strings.Contains(out, "exit gracefully") {
		t.Errorf("want go-plugin's own lines only:\n%s", out)
	}
}

// TestPluginStderrNestedKeysReachRedaction: a nested object of a plugin's
// JSON line becomes a group, so the logger's redaction of secret keys
// sees its keys too.
func TestPluginStderrNestedKeysReachRedaction(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	redact := func(_ []string, a slog.Attr) slog.Attr {
		if strings.Contains(a.Key, "token") || a.Key == "setup_script" {
			return slog.String(a.Key, "<redacted>")
		}
		return a
	}
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: redact}))
	w := newPluginStderr(log)
	fmt.Fprint(w, `{"@level":"info","@message":"add","req":{"runner":"r1","setup_script":"#!/bin/bash s3cret","auth":{"token":"s3cret"}}}`+"\n")
	out := buf.String()
	if strings.Contains(out, "s3cret") || !strings.Contains(out, `"runner":"r1"`) {
		t.Fatalf("nested secret keys not redacted, or the other fields lost:\n%s", out)
	}
}

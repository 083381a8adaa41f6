package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestLogDurationsAreStrings: a duration is logged as a Go duration, in
// JSON as in text, also inside a group and in a child logger's
// attributes; secrets are still redacted.
func TestLogDurationsAreStrings(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := newLogger(&buf, "info", format)
			if err != nil {
				t.Fatal(err)
			}
			log.With("took", 95*time.Millisecond).Info("line",
				"retry_in", time.Minute, "group", map[string]any{"x": 1}, "token", "ghp_secret")
			log.WithGroup("g").Info("grouped", "wait", 1500*time.Microsecond)
			out := buf.String()
			if strings.Contains(out, "ghp_secret") {
				t.Errorf("a token was logged:\n%s", out)
			}
			if format == "text" {
				for _, want := range []string{"took=95ms", "retry_in=1m0s", "g.wait=1.5ms"} {
					if !strings.Contains(out, want) {
						t.Errorf("text log lacks %q:\n%s", want, out)
					}
				}
				return
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			var first, second map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
				t.Fatal(err)
			}
			g, _ := second["g"].(map[string]any)
			if first["took"] != "95ms" || first["retry_in"] != "1m0s" || g["wait"] != "1.5ms" {
				t.Errorf("durations in JSON: took=%#v retry_in=%#v g.wait=%#v, want \"95ms\", \"1m0s\", \"1.5ms\"\n%s",
					first["took"], first["retry_in"], g["wait"], out)
			}
		})
	}
}

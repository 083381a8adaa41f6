package cli

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLevelVarChangesWhatIsLogged: the level applies to child loggers made
// before the change too, as the components hold theirs from the start.
func TestLevelVarChangesWhatIsLogged(t *testing.T) {
	var buf bytes.Buffer
	base, err := newLogger(&buf, "debug", "text")
	if err != nil {
		t.Fatal(err)
	}
	log, lv := withLevelVar(base, slog.LevelInfo)
	child := log.With("component", "x").WithGroup("g")
	child.Debug("hidden at info")
	lv.Set(slog.LevelDebug)
	child.Debug("shown at debug")
	lv.Set(slog.LevelWarn)
	child.Info("hidden at warn")
	out := buf.String()
	if strings.Contains(out, "hidden") || !strings.Contains(out, "shown at debug") || !strings.Contains(out, "component=x") {
		t.Fatalf("log output does not follow the level:\n%s", out)
	}
}

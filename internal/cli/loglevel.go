package cli

import (
	"context"
	"log/slog"
)

// levelHandler filters the records of its handler by a level that can
// change while running: SIGHUP applies a new log level (policy.go).
type levelHandler struct {
	slog.Handler
	level *slog.LevelVar
}

// withLevelVar returns a logger that logs what log would at level, and
// the level to change. log must be built to log everything (debug).
func withLevelVar(log *slog.Logger, level slog.Level) (*slog.Logger, *slog.LevelVar) {
	lv := &slog.LevelVar{}
	lv.Set(level)
	return slog.New(&levelHandler{Handler: log.Handler(), level: lv}), lv
}

func (h *levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() && h.Handler.Enabled(ctx, l)
}

func (h *levelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &levelHandler{Handler: h.Handler.WithAttrs(attrs), level: h.level}
}

func (h *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{Handler: h.Handler.WithGroup(name), level: h.level}
}

package shoes

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Check starts one plugin process, completes the go-plugin handshake,
// and stops the process again: `run` calls it once at start, so a plugin
// that cannot serve (the wrong binary, a setting missing from the
// environment, a wrapper that never hands over to the plugin) is found
// before anything else starts. A plugin that fails is an error wrapping
// ErrConfig that names the plugin and says why, with the last lines it
// wrote to stderr; a start the caller or Close ended is not.
//
// It uses one of the pool's slots, and the process is not kept: the pool
// starts its processes on demand, as before.
func (h *Host) Check(ctx context.Context) error {
	if err := h.enter(); err != nil {
		return fmt.Errorf("check plugin: %w", err)
	}
	defer h.calls.Done()
	select {
	case h.slots <- struct{}{}:
	case <-h.done:
		return fmt.Errorf("check plugin: %w", ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("check plugin: %w", ctx.Err())
	}
	defer func() { <-h.slots }()

	p, err := h.startProc(ctx)
	if err != nil {
		if se, ok := errors.AsType[*startError](err); ok && se.reason != StartFailureCanceled {
			h.cfg.Recorder.PluginStartFailed(se.reason)
			return asConfigError(err) // "start plugin <path>: ..."
		}
		return fmt.Errorf("check plugin: %w", err)
	}
	h.mu.Lock()
	delete(h.live, p)
	h.mu.Unlock()
	p.kill(false)
	h.log.Debug("plugin checked: it starts and completes the handshake", "plugin", h.launch.path, "pid", p.pid)
	return nil
}

// StartFailure says why plugin processes fail to start, for readiness:
// how many starts in a row failed, since when, and the last error, until
// a start succeeds; "" while they start. A start abandoned because its
// call ended or the host closed is neither a failure nor a success.
func (h *Host) StartFailure() string { return h.starts.failure(time.Now()) }

// startHealth follows the outcome of process starts.
type startHealth struct {
	mu      sync.Mutex
	failing int       // starts in a row that failed
	since   time.Time // when the first of them failed
	last    string    // the last one's error
}

// note records the outcome of one start: err is nil for a process that
// started.
func (s *startHealth) note(err error, now time.Time) {
	if se, ok := errors.AsType[*startError](err); ok && se.reason == StartFailureCanceled {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.failing, s.since, s.last = 0, time.Time{}, ""
		return
	}
	if s.failing == 0 {
		s.since = now
	}
	s.failing++
	s.last = err.Error()
	if se, ok := errors.AsType[*startError](err); ok && se.brief != nil && se.brief.Error() != se.err.Error() {
		s.last = se.brief.Error() + " (what the plugin wrote to stderr is in the log)"
	}
}

// failures returns how many starts in a row failed, and the time of the
// last note.
func (s *startHealth) failures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failing
}

func (s *startHealth) failure(now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing == 0 {
		return ""
	}
	return fmt.Sprintf("the last %d plugin process starts failed, since %s ago: %s",
		s.failing, now.Sub(s.since).Round(time.Second), s.last)
}

package shoesfake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// EventScriptExit is the Event of the line written when a setup script ends.
const EventScriptExit = "script_exit"

// Call is one line of the call log: an RPC (Event empty) or an event such as
// EventScriptExit.
type Call struct {
	Event        string    `json:"event,omitempty"`
	PID          int       `json:"pid"`
	Method       string    `json:"method,omitempty"`
	RunnerName   string    `json:"runner_name,omitempty"`
	CloudID      string    `json:"cloud_id,omitempty"`
	Labels       []string  `json:"labels,omitempty"`
	ResourceType string    `json:"resource_type,omitempty"`
	Start        time.Time `json:"start,omitzero"`
	End          time.Time `json:"end,omitzero"`
	// Code is the gRPC code name of the answer, or "Crash" / "Hang" for a
	// call that never answered.
	Code string `json:"code,omitempty"`
	// RunnerMode is how the runner an AddInstance started runs:
	// RunnerModeScript or RunnerModeInProcess ("" when it started none:
	// NoRunner, or an existing instance that was running).
	RunnerMode string `json:"runner_mode,omitempty"`
	// Existing marks an AddInstance that found an instance of the runner's
	// name (CloudIDsName mode) and returned it instead of creating one;
	// with a RunnerMode, it booted that instance again.
	Existing bool `json:"existing,omitempty"`
	// ExitCode and StderrTail describe a script_exit event; StderrTail is
	// the end of the instance's script.log.
	ExitCode   int    `json:"exit_code,omitempty"`
	StderrTail string `json:"stderr_tail,omitempty"`
}

// ReadCallLog parses a call log. A missing file means no calls yet; an
// unterminated last line (a write in progress) is ignored.
func ReadCallLog(path string) ([]Call, error) {
	calls, _, err := ReadCallLogFrom(path, 0)
	return calls, err
}

// ReadCallLogFrom parses the calls a call log has from byte offset on, and
// returns the offset after the last complete line, to read from next time;
// a poller reads each line once. A missing file means no calls yet; an
// unterminated last line is left for the next read.
func ReadCallLogFrom(path string, offset int64) ([]Call, int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, offset, nil
	}
	if err != nil {
		return nil, offset, fmt.Errorf("read call log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, offset, fmt.Errorf("read call log: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, offset, fmt.Errorf("read call log: %w", err)
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	var calls []Call
	for n, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var c Call
		if err := json.Unmarshal(line, &c); err != nil {
			return nil, offset, fmt.Errorf("read call log %s line %d after byte %d: %w", path, n+1, offset, err)
		}
		calls = append(calls, c)
	}
	return calls, offset + int64(len(b)), nil
}

// appendLine appends v as one JSON line with a single O_APPEND write under
// an exclusive flock of the file, so that lines from concurrent processes
// (and the instances' scripts, which take the same lock) do not interleave.
func appendLine(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return err
	}
	_, werr := f.Write(b)
	cerr := f.Close() // releases the lock
	return errors.Join(werr, cerr)
}

// counts is the state shared by all plugin processes of one pool.
type counts struct {
	Calls  int `json:"calls"`  // calls of either method
	Failed int `json:"failed"` // injected failures so far
}

const counterSize = 64

// counter is a call counter in a file, shared across processes under an
// exclusive flock.
type counter struct {
	path string
}

// next counts one call and lets decide, under the lock, whether it fails.
// It returns the call's number (from 1) and the decision.
func (c counter) next(decide func(counts) bool) (int, bool, error) {
	f, err := os.OpenFile(c.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, false, fmt.Errorf("open call counter: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return 0, false, fmt.Errorf("lock call counter: %w", err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too

	b, err := io.ReadAll(f)
	if err != nil {
		return 0, false, fmt.Errorf("read call counter: %w", err)
	}
	var st counts
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &st); err != nil {
			return 0, false, fmt.Errorf("parse call counter %s: %w", c.path, err)
		}
	}
	st.Calls++
	fail := decide(st)
	if fail {
		st.Failed++
	}
	out, err := json.Marshal(st)
	if err != nil {
		return 0, false, err
	}
	// Pad to a fixed size so the file never shrinks and needs no truncate
	// (a truncate makes ext4 flush on close).
	if len(out) < counterSize {
		out = append(out, bytes.Repeat([]byte(" "), counterSize-len(out))...)
	}
	if _, err := f.WriteAt(out, 0); err != nil {
		return 0, false, fmt.Errorf("write call counter: %w", err)
	}
	return st.Calls, fail, nil
}

// CallLogTail reads a call log as it grows, each line once: polling the
// whole file every 100ms cost more CPU than the controller in a burst of
// hundreds of instances, on the same cores.
type CallLogTail struct {
	Path   string
	offset int64
	calls  []Call
}

// Read returns every call logged so far.
func (t *CallLogTail) Read() ([]Call, error) {
	calls, offset, err := ReadCallLogFrom(t.Path, t.offset)
	if err != nil {
		return nil, err
	}
	t.calls, t.offset = append(t.calls, calls...), offset
	return t.calls, nil
}

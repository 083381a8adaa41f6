package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/controller"
	"github.com/shoes-scaleset/shoes-scaleset/internal/policy"
)

// policyWatchInterval is how often run looks at the policy file for a
// change; a change is applied once it has held for one interval, so
// within two. Polling, rather than inotify, also sees the file replaced
// through a symlink (a Kubernetes ConfigMap, an atomic rename).
const policyWatchInterval = 2 * time.Second

// policyFlagBase is the policy of run's flags, over which the file's
// defaults and rules apply.
func (o *runOptions) policyFlagBase() policy.Settings {
	return policy.Settings{MinRunners: o.MinRunners, MaxRunners: o.MaxRunners, Labels: o.Labels, RunnerGroup: o.RunnerGroup}
}

// loadPolicy reads --config at start: an invalid file is a usage error
// naming the flag, the file, the line and the key.
func (o *runOptions) loadPolicy() (*loadedPolicy, error) {
	if o.Config == "" {
		return nil, nil
	}
	lp, err := readPolicy(o.Config, o.policyFlagBase())
	if err != nil {
		return nil, o.env.flagError("config", "%v", err)
	}
	return lp, nil
}

// loadedPolicy is a policy file as read: the policy, its text, and what
// the file looked like just before it was read.
type loadedPolicy struct {
	policy *policy.Policy
	text   []byte
	stamp  fileStamp
}

// readPolicy reads and parses the policy file. The stamp is taken first,
// so that a change made while it is read shows as a new stamp later.
func readPolicy(path string, base policy.Settings) (*loadedPolicy, error) {
	stamp, _ := stampOf(path)
	text, err := policy.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := policy.Parse(path, text, base)
	if err != nil {
		return nil, err
	}
	return &loadedPolicy{policy: p, text: text, stamp: stamp}, nil
}

// policySetter takes a new policy: the controller.
type policySetter interface {
	SetPolicy(controller.Policy)
}

// policyRecorder counts reloads: the metrics recorder.
type policyRecorder interface {
	PolicyReload(at time.Time, err error)
}

// policyReloader reloads the policy file on SIGHUP and when the file
// changes. A file that does not load is refused, with a log line and a
// metric, and the running policy is kept. SIGHUP also applies the file's
// log_level (or the flag's, when the file has none).
type policyReloader struct {
	path      string
	base      policy.Settings
	ctrl      policySetter
	rec       policyRecorder
	level     *slog.LevelVar
	flagLevel slog.Level
	log       *slog.Logger
	now       func() time.Time
	interval  time.Duration

	// running is the text of the policy in force, so that a file touched
	// but not changed is not applied again; stamp is what the file
	// looked like when last read. Both start as loadPolicy read them.
	running []byte
	stamp   fileStamp
	// pending is a change seen at the last look, applied if the file
	// still looks the same at the next.
	pending fileStamp
}

// fileStamp is what tells that a file changed without reading it.
type fileStamp struct {
	modTime time.Time
	size    int64
	ino     uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{modTime: fi.ModTime(), size: fi.Size(), ino: inode(fi)}, nil
}

// run reloads on each signal of hup and each change of the file until ctx
// ends. Without a file a SIGHUP applies the flag's log level again and
// says there is no policy file to reload.
func (r *policyReloader) run(ctx context.Context, hup <-chan os.Signal) {
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if r.path == "" {
				r.level.Set(r.flagLevel)
				r.log.Info("SIGHUP: no --config policy file to reload; log level from --log-level", "log_level", r.flagLevel.String())
				continue
			}
			r.reload("SIGHUP", true, nil)
		case <-tick.C:
			if r.path == "" {
				continue
			}
			st, err := stampOf(r.path)
			if err != nil || st == r.stamp {
				// A file gone for a moment (replaced by a rename) is
				// looked at again next time.
				r.pending = fileStamp{}
				continue
			}
			// A change is read once it has held for a whole interval:
			// an editor or a copy that truncates the file and then
			// writes it would otherwise be caught half-way, and an
			// empty file is a valid policy (the flags alone).
			if st != r.pending {
				r.pending = st
				continue
			}
			r.pending = fileStamp{}
			r.reload("the file changed", false, &st)
		}
	}
}

// reload loads the file and applies it. force applies it even if its
// text did not change (a SIGHUP asks for it). confirmed, on a change seen
// by looking, is what the file looked like at the two looks: a file that
// changed again since is left for the next looks, not read half written.
func (r *policyReloader) reload(why string, force bool, confirmed *fileStamp) {
	lp, err := readPolicy(r.path, r.base)
	if confirmed != nil && (lp == nil || lp.stamp != *confirmed) {
		if st, statErr := stampOf(r.path); statErr == nil && st != *confirmed {
			r.pending = st
			return
		}
	}
	if lp != nil {
		r.stamp = lp.stamp
		if !force && bytes.Equal(lp.text, r.running) {
			return // touched, not changed
		}
	} else if st, statErr := stampOf(r.path); statErr == nil {
		r.stamp = st // a bad file is reported once, not at every tick
	}
	r.rec.PolicyReload(r.now(), err)
	if err != nil {
		r.log.Warn("policy reload refused; keeping the running policy", "reason", why, "err", err)
		return
	}
	r.running = lp.text
	r.ctrl.SetPolicy(lp.policy)
	level := r.flagLevel
	if lp.policy.LogLevel != "" {
		_ = level.UnmarshalText([]byte(lp.policy.LogLevel)) // Parse checked it
	}
	r.level.Set(level)
	r.log.Info("policy reloaded", "reason", why, "file", r.path, "rules", len(lp.policy.Rules),
		"sha256", shortHash(lp.text), "log_level", level.String())
}

func shortHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// inode returns the file's inode number, 0 where the system has none.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

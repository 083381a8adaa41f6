package shoesfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// errNotFound is returned for an unknown cloud ID.
var errNotFound = errors.New("instance not found")

var cloudIDPattern = regexp.MustCompile(`^fake-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Files in an instance directory.
const (
	fileSetup    = "setup.sh"
	fileWrapper  = "run-setup.sh"
	fileScriptLg = "script.log"
	fileErrors   = "errors.log"
	filePgid     = "pgid"
	fileInstance = "instance.json"
	dirShims     = "shims"
	dirPayload   = ".payload" // inside shims: the fake runner tarball's content
)

// instanceInfo is written to instance.json for tests and the demo.
type instanceInfo struct {
	CloudID      string    `json:"cloud_id"`
	RunnerName   string    `json:"runner_name"`
	Labels       []string  `json:"labels"`
	ResourceType string    `json:"resource_type"`
	PID          int       `json:"pid"` // the plugin process that created it
	Created      time.Time `json:"created"`
	// RunnerDir is where the setup script installs the runner, when it
	// says (see runnerDirOf); DeleteInstance removes it with the instance.
	RunnerDir string `json:"runner_dir,omitempty"`
}

// instances creates and deletes instance directories and their scripts.
// Every plugin process sharing dir sees the same instances.
type instances struct {
	dir       string
	runnerCmd []string
	callLog   string
	runScript bool
	mode      string // RunnerModeScript or RunnerModeInProcess
	log       *slog.Logger
	// ctx ends the in-process runners when the plugin stops; wg tracks
	// them and their watcher.
	ctx       context.Context
	wg        sync.WaitGroup
	watchOnce sync.Once

	mu       sync.Mutex
	children map[string]chan struct{} // cloud ID → closed once reaped
	inproc   map[string]*inprocRunner // cloud ID → runner goroutine (inprocess mode)
}

// newInstance is an instance whose directory is written and whose runner
// has not started yet.
type newInstance struct {
	cloudID, dir string
	mode         string // RunnerModeScript, RunnerModeInProcess, or "" (no runner)
	jit          string // inprocess mode
}

// prepare makes the instance directory: its description, its setup script
// and, in script mode, the shims and the wrapper. launch starts it.
func (m *instances) prepare(info instanceInfo, script string) (*newInstance, error) {
	dir := filepath.Join(m.dir, info.CloudID)
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return nil, err
	}
	inst := &newInstance{cloudID: info.CloudID, dir: dir}
	if m.runScript {
		inst.mode = RunnerModeScript
		if m.mode == RunnerModeInProcess {
			jit, err := ExtractJITConfig(script)
			if err == nil {
				inst.mode, inst.jit = RunnerModeInProcess, jit
			} else {
				m.log.Warn("inprocess mode: running the setup script under bash instead", "cloud_id", info.CloudID, "err", err)
			}
		}
	}
	if inst.mode == RunnerModeScript {
		info.RunnerDir = runnerDirOf(script, info.RunnerName, dir)
	}
	// The instance appears whole or not at all: its description is
	// written in a hidden directory that is then renamed, so a plugin
	// killed meanwhile leaves no instance without a runner name.
	tmp := filepath.Join(m.dir, ".creating-"+info.CloudID)
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return nil, err
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, fileInstance), b, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, fileSetup), []byte(script), 0o755); err != nil {
		return inst, err
	}
	if inst.mode != RunnerModeScript {
		return inst, nil
	}
	if err := m.writeShims(dir); err != nil {
		return inst, fmt.Errorf("write shims: %w", err)
	}
	record := ""
	if m.callLog != "" {
		logPath, err := filepath.Abs(m.callLog)
		if err != nil {
			return inst, err
		}
		record = render(recordExit, "CLOUD_ID", shq(info.CloudID), "CALL_LOG", shq(logPath))
	}
	wrapper := render(wrapperScript, "DIR", shq(dir), "RECORD", record)
	return inst, os.WriteFile(filepath.Join(dir, fileWrapper), []byte(wrapper), 0o755)
}

// launch starts a prepared instance's runner: in script mode its setup
// script runs in the background in its own process group, so that it
// outlives this plugin process; in inprocess mode the sim runner runs as
// a goroutine of this process.
func (m *instances) launch(inst *newInstance) error {
	switch inst.mode {
	case RunnerModeInProcess:
		return m.startInProcess(inst.cloudID, inst.dir, inst.jit)
	case RunnerModeScript:
		return m.start(inst.cloudID, inst.dir)
	}
	return nil
}

// discard removes a prepared instance that will not be launched.
func (m *instances) discard(inst *newInstance) {
	if inst != nil {
		_ = removeInstanceDir(inst.dir)
	}
}

func (m *instances) start(cloudID, dir string) error {
	bash, err := exec.LookPath("bash")
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(dir, fileScriptLg), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()

	origPath := os.Getenv("PATH")
	cmd := exec.Command(bash, filepath.Join(dir, fileWrapper))
	cmd.Dir = dir
	cmd.Env = append(scriptEnv(os.Environ()),
		"HOME="+dir,
		// The wrapper's temporary main script goes with the instance: a
		// killed script never runs its cleanup trap.
		"TMPDIR="+dir,
		"PATH="+filepath.Join(dir, dirShims)+":"+origPath,
		"SHOESFAKE_ORIG_PATH="+origPath,
		"SHOESFAKE_INSTANCE_DIR="+dir,
		"SHOESFAKE_CLOUD_ID="+cloudID,
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, and no tie to our lifetime: the instance
	// must survive this plugin process being killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start setup script: %w", err)
	}
	pgid := cmd.Process.Pid
	if err := writeFileAtomic(filepath.Join(dir, filePgid), []byte(strconv.Itoa(pgid)+"\n")); err != nil {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		_ = cmd.Wait()
		return err
	}
	done := make(chan struct{})
	m.mu.Lock()
	m.children[cloudID] = done
	m.mu.Unlock()
	go func() { // reaps the script; ends when it does
		_ = cmd.Wait()
		m.mu.Lock()
		delete(m.children, cloudID)
		m.mu.Unlock()
		close(done)
	}()
	return nil
}

// remove kills the instance's process group and deletes the runner
// directory its setup script used (instanceInfo.RunnerDir) and its own
// directory, as deleting a VM takes its disk along. It works for instances
// created by any plugin process.
func (m *instances) remove(cloudID string) error {
	if !cloudIDPattern.MatchString(cloudID) {
		return errNotFound
	}
	dir := filepath.Join(m.dir, cloudID)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return errNotFound
	} else if err != nil {
		return err
	}
	// An in-process runner is stopped by its own process; another process
	// of the pool leaves that to the owner's watcher, which sees the
	// directory go.
	m.stopInProcess(cloudID)
	b, err := os.ReadFile(filepath.Join(dir, filePgid))
	switch {
	case errors.Is(err, fs.ErrNotExist): // no script was started
	case err != nil:
		return err
	default:
		pgid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pgid <= 1 {
			return fmt.Errorf("instance %s: bad pgid file %q", cloudID, b)
		}
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill process group %d: %w", pgid, err)
		}
		m.mu.Lock()
		done := m.children[cloudID]
		m.mu.Unlock()
		if done != nil {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				m.log.Warn("setup script not reaped after SIGKILL", "cloud_id", cloudID, "pgid", pgid)
			}
		}
	}
	// The runner directory goes first: until the instance directory is
	// gone, a retried delete still knows where it is.
	if err := m.removeRunnerDir(dir); err != nil {
		return err
	}
	return removeInstanceDir(dir)
}

// runnerDirOf is the runner directory a setup script rendered from
// internal/runnerscript's default template installs the runner in,
// <RUNNER_BASE_DIRECTORY>/<RUNNER_NAME>, with a relative base taken from
// instanceDir, where the script runs. It is "" when the script does not
// assign both as the template does (a custom template) or names another
// runner. A pre-extracted runner (<base>/runner) is shared by every
// instance on this host, so it is not the instance's to remove.
func runnerDirOf(setupScript, runnerName, instanceDir string) string {
	main, err := mainScript(setupScript)
	if err != nil {
		return ""
	}
	base, ok := singleQuotedAssignment(main, "RUNNER_BASE_DIRECTORY")
	if !ok || base == "" {
		return ""
	}
	if name, ok := singleQuotedAssignment(main, "RUNNER_NAME"); !ok || name != runnerName {
		return ""
	}
	if !filepath.IsAbs(base) {
		abs, err := filepath.Abs(filepath.Join(instanceDir, base))
		if err != nil {
			return ""
		}
		base = abs
	}
	return filepath.Join(base, runnerName)
}

// singleQuotedAssignment finds the first line NAME='...' of a script, as
// runnerscript's shellQuote writes it.
func singleQuotedAssignment(script, name string) (string, bool) {
	for line := range strings.Lines(script) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), name+"="); ok {
			if v, ok := shellSingleQuoted(rest); ok {
				return v, true
			}
		}
	}
	return "", false
}

// removeRunnerDir removes the runner directory the instance's setup script
// used outside the instance directory, as deleting a VM takes its disk
// along: whatever a deleted instance leaves on this host is a leak.
func (m *instances) removeRunnerDir(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, fileInstance))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var info instanceInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return fmt.Errorf("read %s: %w", fileInstance, err)
	}
	rd := info.RunnerDir
	if rd == "" {
		return nil
	}
	// Only ever a directory named after this instance's runner.
	if !filepath.IsAbs(rd) || filepath.Clean(rd) != rd || filepath.Base(rd) != info.RunnerName || validateRunnerName(info.RunnerName) != nil {
		m.log.Warn("not removing a runner directory that is not the instance's", "cloud_id", info.CloudID, "runner_dir", rd)
		return nil
	}
	if err := removeAll(rd); err != nil {
		return fmt.Errorf("remove runner directory: %w", err)
	}
	return nil
}

// removeInstanceDir removes an instance atomically: the directory is first
// renamed to a hidden name, so that a plugin killed while removing it
// leaves no half-deleted instance behind.
func removeInstanceDir(dir string) error {
	gone := filepath.Join(filepath.Dir(dir), ".deleting-"+filepath.Base(dir))
	if err := os.Rename(dir, gone); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return removeAll(gone)
}

// removeAll is os.RemoveAll, tried again: a process that was being killed
// may still create a file.
func removeAll(path string) error {
	for i := 0; ; i++ {
		err := os.RemoveAll(path)
		if err == nil || i == 3 {
			return err
		}
	}
}

// writeShims writes the command shims and the fake runner payload.
func (m *instances) writeShims(dir string) error {
	shims := filepath.Join(dir, dirShims)
	payload := filepath.Join(shims, dirPayload)
	files := map[string]string{
		filepath.Join(shims, "curl"):                            render(curlShim, "DIR", shq(dir), "PAYLOAD", shq(payload)),
		filepath.Join(shims, "sudo"):                            sudoShim,
		filepath.Join(shims, "id"):                              idShim,
		filepath.Join(payload, "run.sh"):                        render(runSh, "RUNNER", shqAll(m.runnerCmd)),
		filepath.Join(payload, "config.sh"):                     configSh,
		filepath.Join(payload, "bin", "installdependencies.sh"): installDepsSh,
	}
	for _, name := range []string{"chown", "useradd", "usermod", "groupadd", "adduser"} {
		files[filepath.Join(shims, name)] = render(noopShim, "NAME", name)
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// scriptEnv drops go-plugin's and our own knobs from env.
func scriptEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "HOME", name == "PATH",
			name == "SHOES_PLUGIN_MAGIC_COOKIE",
			strings.HasPrefix(name, "PLUGIN_"),
			strings.HasPrefix(name, "SIM_PLUGIN_"):
			continue
		}
		out = append(out, kv)
	}
	return out
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

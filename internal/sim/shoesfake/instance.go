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

	"github.com/google/uuid"
)

// errNotFound is returned for an unknown cloud ID, and for an instance
// deleted while a call was on it.
var errNotFound = errors.New("instance not found")

// Cloud IDs, which name the instance directories: fake-<uuid> in
// CloudIDsOpaque mode, the runner name (myshoes-<lower-case uuid>, as
// validateRunnerName accepts it) in CloudIDsName mode. Both leave no room
// for a path.
const lowerUUID = `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`

var (
	opaqueIDPattern = regexp.MustCompile(`^fake-` + lowerUUID + `$`)
	nameIDPattern   = regexp.MustCompile(`^myshoes-` + lowerUUID + `$`)
)

// validCloudID reports whether id is a cloud ID of mode (CloudIDsOpaque or
// CloudIDsName); mode "" accepts either.
func validCloudID(mode, id string) bool {
	switch mode {
	case CloudIDsOpaque:
		return opaqueIDPattern.MatchString(id)
	case CloudIDsName:
		return nameIDPattern.MatchString(id)
	}
	return opaqueIDPattern.MatchString(id) || nameIDPattern.MatchString(id)
}

// Files in an instance directory.
const (
	fileSetup    = "setup.sh"
	fileWrapper  = "run-setup.sh"
	fileScriptLg = "script.log"
	fileErrors   = "errors.log"
	filePgid     = "pgid"
	fileInstance = "instance.json"
	fileLock     = "lock" // flocked by launch and remove, across processes
	dirShims     = "shims"
	dirPayload   = ".payload" // inside shims: the fake runner tarball's content
)

// Instance describes an instance: it is its directory's instance.json,
// written once when the instance is created, and what ListInstances
// returns. The directory is named after CloudID in both cloud-ID modes.
type Instance struct {
	// CloudID is what AddInstance answered (unless EmptyCloudID hid it):
	// fake-<uuid>, or the runner name in CloudIDsName mode.
	CloudID      string    `json:"cloud_id"`
	RunnerName   string    `json:"runner_name"`
	Labels       []string  `json:"labels"`
	ResourceType string    `json:"resource_type"`
	PID          int       `json:"pid"` // the plugin process that created it
	Created      time.Time `json:"created"`
	// RunnerMode is how the instance runs its runner: RunnerModeScript,
	// RunnerModeInProcess, or "" (no runner: NoRunner).
	RunnerMode string `json:"runner_mode,omitempty"`
	// RunnerDir is where the setup script installs the runner, when it
	// says (see runnerDirOf); DeleteInstance removes it with the instance.
	RunnerDir string `json:"runner_dir,omitempty"`
	// Dir is the instance's directory (ListInstances only).
	Dir string `json:"-"`
}

// instances creates and deletes instance directories and their scripts.
// Every plugin process sharing dir sees the same instances.
type instances struct {
	dir       string
	runnerCmd []string
	callLog   string
	runScript bool
	mode      string // RunnerModeScript or RunnerModeInProcess
	cloudIDs  string // CloudIDsOpaque or CloudIDsName
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

// newCloudID is the cloud ID of an instance for runnerName.
func (m *instances) newCloudID(runnerName string) string {
	if m.cloudIDs == CloudIDsName {
		return runnerName
	}
	return "fake-" + uuid.NewString()
}

// newInstance is an instance that AddInstance returns: one whose directory
// it has written, or in CloudIDsName mode one that existed already. launch
// starts its runner.
type newInstance struct {
	cloudID, dir string
	mode         string // RunnerModeScript, RunnerModeInProcess, or "" (no runner)
	jit          string // inprocess mode
	// existing marks an instance this call did not create (CloudIDsName
	// mode): launch reads its mode from its directory, and a failed call
	// leaves it alone.
	existing bool
}

// prepare makes the instance directory: its description, its setup script
// and, in script mode, the shims and the wrapper. launch starts it. In
// CloudIDsName mode, when an instance of that name exists, it returns that
// one (existing) and writes nothing.
func (m *instances) prepare(info Instance, script string) (*newInstance, error) {
	dir := filepath.Join(m.dir, info.CloudID)
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return nil, err
	}
	existing := &newInstance{cloudID: info.CloudID, dir: dir, existing: true}
	if m.cloudIDs == CloudIDsName {
		if _, err := os.Stat(filepath.Join(dir, fileInstance)); err == nil {
			return existing, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
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
	info.RunnerMode = inst.mode
	if inst.mode == RunnerModeScript {
		info.RunnerDir = runnerDirOf(script, info.RunnerName, dir)
	}
	// The instance appears whole or not at all: it is written in a hidden
	// directory that is then renamed, so a plugin killed meanwhile leaves
	// no instance without a runner name or a script, and of two calls
	// creating the same name (CloudIDsName mode) one creates it and the
	// other finds it there.
	tmp, err := os.MkdirTemp(m.dir, ".creating-"+info.CloudID+"-")
	if err != nil {
		return nil, err
	}
	if err := m.writeInstance(tmp, dir, info, script, inst.mode); err != nil {
		_ = removeAll(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		_ = removeAll(tmp)
		// A directory, never empty, is there: EEXIST or ENOTEMPTY.
		if m.cloudIDs == CloudIDsName && errors.Is(err, fs.ErrExist) {
			return existing, nil
		}
		return nil, err
	}
	return inst, nil
}

// writeInstance writes an instance's files into at, to be renamed to dir
// (the paths in its scripts are dir's).
func (m *instances) writeInstance(at, dir string, info Instance, script, mode string) error {
	if err := os.Chmod(at, 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(at, fileInstance), b, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(at, fileSetup), []byte(script), 0o755); err != nil {
		return err
	}
	if mode != RunnerModeScript {
		return nil
	}
	if err := m.writeShims(at, dir); err != nil {
		return fmt.Errorf("write shims: %w", err)
	}
	record := ""
	if m.callLog != "" {
		logPath, err := filepath.Abs(m.callLog)
		if err != nil {
			return err
		}
		record = render(recordExit, "CLOUD_ID", shq(info.CloudID), "CALL_LOG", shq(logPath))
	}
	wrapper := render(wrapperScript, "DIR", shq(dir), "RECORD", record)
	return os.WriteFile(filepath.Join(at, fileWrapper), []byte(wrapper), 0o755)
}

// launch starts an instance's runner unless it runs already, and returns
// the runner mode it started ("" when it started none): in script mode
// its setup script runs in the background in its own process group, so
// that it outlives this plugin process; in inprocess mode the sim runner
// runs as a goroutine of this process. An existing instance (CloudIDsName
// mode) whose runner has stopped boots again: its own setup script runs
// again, in its own mode.
//
// It holds the instance's lock, as remove does, so an instance is started
// once however many calls of the pool ask, and never after its deletion
// (errNotFound).
func (m *instances) launch(inst *newInstance) (string, error) {
	unlock, err := lockInstance(inst.dir)
	if err != nil {
		return "", err
	}
	defer unlock()
	if inst.existing {
		if err := m.load(inst); err != nil {
			return "", err
		}
	}
	if inst.mode == "" {
		return "", nil
	}
	if running, err := m.running(inst.cloudID, inst.dir, inst.mode); err != nil || running {
		return "", err
	}
	switch inst.mode {
	case RunnerModeInProcess:
		return inst.mode, m.startInProcess(inst.cloudID, inst.dir, inst.jit)
	case RunnerModeScript:
		return inst.mode, m.start(inst.cloudID, inst.dir)
	}
	return "", fmt.Errorf("instance %s: unknown runner mode %q", inst.cloudID, inst.mode)
}

// load reads an existing instance's runner mode, and its JIT config in
// inprocess mode, from its directory.
func (m *instances) load(inst *newInstance) error {
	info, err := readInstance(inst.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return errNotFound
	} else if err != nil {
		return err
	}
	inst.mode = info.RunnerMode
	if inst.mode == RunnerModeInProcess {
		script, err := os.ReadFile(filepath.Join(inst.dir, fileSetup))
		if err != nil {
			return err
		}
		if inst.jit, err = ExtractJITConfig(string(script)); err != nil {
			return err
		}
	}
	return nil
}

// running reports whether an instance's runner runs: a process of its
// setup script's process group lives (script mode), or a plugin process
// runs it as a goroutine (inprocess mode; see startInProcess).
func (m *instances) running(cloudID, dir, mode string) (bool, error) {
	switch mode {
	case RunnerModeScript:
		b, err := os.ReadFile(filepath.Join(dir, filePgid))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil // never started
		} else if err != nil {
			return false, err
		}
		pgid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pgid <= 1 {
			return false, fmt.Errorf("instance %s: bad pgid file %q", cloudID, b)
		}
		return groupRunning(pgid), nil
	case RunnerModeInProcess:
		b, err := os.ReadFile(filepath.Join(dir, fileInProcess))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil // never started, or its runner ended
		} else if err != nil {
			return false, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			return false, fmt.Errorf("instance %s: bad %s file %q", cloudID, fileInProcess, b)
		}
		if pid == os.Getpid() {
			m.mu.Lock()
			_, ok := m.inproc[cloudID]
			m.mu.Unlock()
			return ok, nil
		}
		// Another process of the pool runs it, unless that process has
		// gone and taken its goroutines along.
		return processRunning(pid), nil
	}
	return false, nil
}

// discard removes an instance this call created but will not return, with
// whatever it started.
func (m *instances) discard(inst *newInstance) {
	if inst == nil || inst.existing {
		return
	}
	if err := m.remove(inst.cloudID); err != nil && !errors.Is(err, errNotFound) {
		m.log.Error("discard instance", "cloud_id", inst.cloudID, "err", err)
	}
}

// lockInstance takes the lock of the instance in dir, shared by all plugin
// processes: an flock on a file in the directory. It fails with
// errNotFound when the instance is gone, or went while it waited.
func lockInstance(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, fileLock)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotFound
	} else if err != nil {
		return nil, fmt.Errorf("lock instance: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock instance: %w", err)
	}
	held, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock instance: %w", err)
	}
	// Deleted meanwhile (renamed away), and maybe created again under the
	// same name (CloudIDsName mode): the lock is not that instance's.
	if now, err := os.Stat(path); err != nil || !os.SameFile(held, now) {
		f.Close()
		return nil, errNotFound
	}
	return func() { f.Close() }, nil
}

// groupRunning reports whether process group pgid has a live process; a
// zombie, exited but not yet reaped, is not one.
func groupRunning(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true // kill found the group; no way to tell zombies
	}
	want := strconv.Itoa(pgid)
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		state, pgrp, ok := procStat(e.Name())
		if ok && pgrp == want && state != "Z" {
			return true
		}
	}
	return false
}

// processRunning reports whether pid is a live process (not a zombie).
func processRunning(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	state, _, ok := procStat(strconv.Itoa(pid))
	return !ok || state != "Z"
}

// procStat reads the state and process group of a process from
// /proc/PID/stat.
func procStat(pid string) (state, pgrp string, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", "", false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold anything
	if i < 0 {
		return "", "", false
	}
	f := strings.Fields(s[i+1:]) // state ppid pgrp ...
	if len(f) < 3 {
		return "", "", false
	}
	return f[0], f[2], true
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
		if m.children[cloudID] == done { // not a later boot's
			delete(m.children, cloudID)
		}
		m.mu.Unlock()
		close(done)
	}()
	return nil
}

// remove kills the instance's process group and deletes the runner
// directory its setup script used (instanceInfo.RunnerDir) and its own
// directory, as deleting a VM takes its disk along. It works for instances
// created by any plugin process. It holds the instance's lock, so that no
// launch starts the instance meanwhile; an ID not of this plugin's
// cloud-ID mode is not found.
func (m *instances) remove(cloudID string) error {
	if !validCloudID(m.cloudIDs, cloudID) {
		return errNotFound
	}
	dir := filepath.Join(m.dir, cloudID)
	unlock, err := lockInstance(dir)
	if err != nil {
		return err
	}
	defer unlock()
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
	base, ok := firstAssignment(main, "RUNNER_BASE_DIRECTORY")
	if !ok || base == "" {
		return ""
	}
	if name, ok := firstAssignment(main, "RUNNER_NAME"); !ok || name != runnerName {
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

// firstAssignment finds the first literal the script assigns to
// name (NAME='...', as runnerscript's shellQuote writes it, or any other
// quoting).
func firstAssignment(script, name string) (string, bool) {
	if vs := assignmentsTo(script, name); len(vs) > 0 {
		return vs[0], true
	}
	return "", false
}

// removeRunnerDir removes the runner directory the instance's setup script
// used outside the instance directory, as deleting a VM takes its disk
// along: whatever a deleted instance leaves on this host is a leak.
func (m *instances) removeRunnerDir(dir string) error {
	info, err := readInstance(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
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
// leaves no half-deleted instance behind. The hidden name is unique: in
// CloudIDsName mode an instance of the same name may be deleted again
// while the last one's leftovers are still there.
func removeInstanceDir(dir string) error {
	gone := filepath.Join(filepath.Dir(dir), ".deleting-"+filepath.Base(dir)+"-"+uuid.NewString())
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

// writeShims writes the command shims and the fake runner payload into
// at, for the instance directory dir they will run in.
func (m *instances) writeShims(at, dir string) error {
	shims := filepath.Join(at, dirShims)
	payload := filepath.Join(shims, dirPayload)
	files := map[string]string{
		filepath.Join(shims, "curl"):                            render(curlShim, "DIR", shq(dir), "PAYLOAD", shq(filepath.Join(dir, dirShims, dirPayload))),
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

package shoes

import "syscall"

// sysProcAttr puts a plugin process in a process group of its own, so that
// killing the group also kills what it started (a wrapper script's
// children, which may hold its stdout open), and has the kernel kill it
// with SIGKILL when we die, even by SIGKILL.
//
// The parent-death signal is sent when the thread that started the
// process exits; Go does not end its threads while the program runs
// (unless a goroutine locked to one returns), so in practice it fires when
// the program dies. It reaches the process we started, not its children:
// a wrapper script should exec the plugin.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

//go:build unix && !linux

package shoes

import "syscall"

// sysProcAttr puts a plugin process in a process group of its own, so that
// killing the group also kills what it started. There is no parent-death
// signal outside Linux.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

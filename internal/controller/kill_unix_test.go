//go:build unix

package controller_test

import "syscall"

func killGroup(pgid int) error { return syscall.Kill(-pgid, syscall.SIGKILL) }

//go:build unix && !linux

package acceptance

import "syscall"

// childProcAttr puts a --procs process in a process group of its own (a
// terminal's Ctrl-C reaches it once, forwarded by the parent).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

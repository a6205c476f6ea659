package acceptance

import "syscall"

// childProcAttr puts a --procs process in a process group of its own (a
// terminal's Ctrl-C reaches it once, forwarded by the parent) and has the
// kernel send it SIGTERM when the parent dies, so none outlives a killed run.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

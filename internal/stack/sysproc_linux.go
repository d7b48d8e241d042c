//go:build linux

package stack

import "syscall"

// sysProcAttr puts a child in its own process group, so a terminal's Ctrl-C reaches
// only the stack's owner (which then stops the children in order, by PID), and makes
// the kernel kill the child if the owner dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

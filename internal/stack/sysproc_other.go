//go:build unix && !linux

package stack

import "syscall"

// sysProcAttr puts a child in its own process group, so a terminal's Ctrl-C reaches
// only the stack's owner, which then stops the children in order, by PID. (Only Linux
// can also have the kernel kill children whose owner died.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

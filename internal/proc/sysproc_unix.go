//go:build unix && !linux

package proc

import "syscall"

// sysProcAttr puts the child in a process group of its own with ownGroup. (Only
// Linux can also have the kernel kill children whose owner died.)
func sysProcAttr(ownGroup bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: ownGroup}
}

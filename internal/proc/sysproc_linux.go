//go:build linux

package proc

import "syscall"

// sysProcAttr makes the kernel kill the child when the thread that started it dies
// (a panic, `go test -timeout`, SIGKILL of the owner), and with ownGroup puts it in
// a process group of its own.
func sysProcAttr(ownGroup bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: ownGroup, Pdeathsig: syscall.SIGKILL}
}

//go:build linux

package testenv

import "syscall"

// sysProcAttr makes the kernel kill a server when the test binary that started it
// dies (a panic or `go test -timeout`), so no server outlives its tests.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

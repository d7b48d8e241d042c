//go:build !unix

package proc

import "syscall"

// sysProcAttr has nothing to set where there are no process groups: the processes
// are meant to run on Linux and macOS.
func sysProcAttr(bool) *syscall.SysProcAttr { return nil }

//go:build !unix

package stack

import "syscall"

// sysProcAttr has nothing to set where there are no process groups or signals; the
// stack is meant for Linux and macOS.
func sysProcAttr() *syscall.SysProcAttr { return nil }

//go:build !linux

package testenv

import "syscall"

// sysProcAttr has nothing to add outside Linux: servers are stopped by t.Cleanup.
func sysProcAttr() *syscall.SysProcAttr { return nil }

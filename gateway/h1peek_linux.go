package gateway

import (
	"syscall"
	"unsafe"
)

// h1Peeks reports whether peekIdle can look at a resting connection (see h1peek_other.go).
const h1Peeks = true

// peekIdle reports what arrived on a pooled connection's socket fd while it rested:
// nothing (nil: the connection is clean), bytes nobody asked for, or the upstream's close.
// One non-blocking MSG_PEEK receive, which consumes nothing. It never blocks
// (MSG_DONTWAIT), so it is made without telling the scheduler (RawSyscall6).
func peekIdle(fd uintptr) error {
	var b [1]byte
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK:
		return nil
	case errno != 0:
		return errno
	case n > 0:
		return errH1Unsolicited
	}
	return errH1ClosedIdle
}

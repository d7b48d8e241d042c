//go:build !linux

package gateway

// h1Peeks reports whether peekIdle can look at a resting connection. Here it cannot, and
// a pooled connection reused unchecked could take bytes the upstream sent unasked for as
// the next request's answer, so the gateway does not use its HTTP/1.1 pool here.
const h1Peeks = false

// peekIdle is not implemented here (see h1Peeks).
func peekIdle(uintptr) error { return nil }

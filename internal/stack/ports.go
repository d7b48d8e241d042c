package stack

import (
	"net"
	"strconv"
)

// startTries is how many sets of free ports a process is tried on: another process
// may take a port between our probe and the child's bind.
const startTries = 5

// loopback returns "127.0.0.1:port".
func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Package testenv starts the real servers that integration tests talk to: a
// redis-server and a Consul agent in -dev mode, each on free loopback ports, each
// owned by one test and stopped by PID when that test ends; and a FaultProxy that
// sits in front of any of them (or of an HTTP server) to add delay, stall or reset
// connections on command. The processes are run by internal/proc: on Linux they die
// with the test binary even when it panics or times out.
//
// Binaries are found as follows; a missing binary fails the test (it never skips),
// with a message telling to run `make tools` (which `make test` runs first):
//
//	consul:       $CONSUL_BIN, else ${GATEWAY_TOOLS:-$HOME/.cache/gateway-tools}/consul, else PATH
//	redis-server: $REDIS_SERVER, else PATH
//
// Stop and Start must be called from the test's own goroutine (they may call
// t.Fatal), like every other testing.TB method that ends a test.
package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/proc"
)

// pollInterval is how often conditions are probed.
const pollInterval = 20 * time.Millisecond

// startTries is how many sets of free ports a server is tried on before its test
// fails: another process may take a port between our probe and the server's bind.
const startTries = 5

// startWithin starts p and waits at most timeout for it to be ready.
func startWithin(p *proc.Process, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Start(ctx)
}

// restart starts a stopped p again on its ports within timeout, waiting out a port
// that another process holds for a moment.
func restart(p *proc.Process, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		err := p.Start(ctx)
		if !errors.Is(err, proc.ErrPortInUse) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logOnFailure prints the end of each process's log with t.Log when the test has
// failed.
func logOnFailure(t testing.TB, ps ...*proc.Process) {
	if !t.Failed() {
		return
	}
	for _, p := range ps {
		if p != nil {
			t.Logf("testenv: %s (%s) log:\n%s", p.Name, p.Addr, p.Tail(proc.MaxTail))
		}
	}
}

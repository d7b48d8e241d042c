// Package testenv starts the real servers that integration tests talk to: a
// redis-server and a Consul agent in -dev mode, each on free loopback ports, each
// owned by one test and stopped by PID when that test ends; and a FaultProxy that
// sits in front of any of them (or of an HTTP server) to add delay, stall or reset
// connections on command.
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
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"time"
)

// errPortInUse reports that a server could not bind one of its ports because some
// other process took it between our probe and the server's bind.
var errPortInUse = errors.New("testenv: port already in use")

// maxLogBytes caps how much of a server's log is printed when a test fails.
const maxLogBytes = 64 << 10

// pollInterval is how often readiness is probed while a server starts.
const pollInterval = 20 * time.Millisecond

// process is one run of a server binary. done is closed once the process has
// exited and err holds what Wait returned.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProcess starts bin with args, sending stdout and stderr to log.
func startProcess(bin string, args []string, log *os.File) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process and waits until it has exited.
func (p *process) kill() {
	_ = p.cmd.Process.Kill() // fails only when it already exited
	<-p.done
}

// logSince returns what was written to the log file at path from offset on.
func logSince(path string, offset int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	return b
}

// logSize returns the current size of the log file at path.
func logSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// tail returns the last maxLogBytes of the log file at path, for a failed test.
func tail(path string) string {
	b := logSince(path, 0)
	if len(b) > maxLogBytes {
		b = append([]byte("…(earlier lines cut)\n"), b[len(b)-maxLogBytes:]...)
	}
	return string(b)
}

// bindFailed reports whether a server's log says that it could not bind a port.
func bindFailed(log []byte) bool {
	return bytes.Contains(bytes.ToLower(log), []byte("address already in use"))
}

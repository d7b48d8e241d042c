// Package testenv starts the real servers that integration tests talk to: a
// redis-server and a Consul agent in -dev mode, each on free loopback ports, each
// owned by one test and stopped by PID when that test ends.
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
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
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

// freePorts returns n distinct loopback TCP ports that were free a moment ago.
// The first udp of them were also free for UDP (Serf gossips over both).
// All listeners are held until every port is chosen, so the ports differ.
func freePorts(n, udp int) ([]int, error) {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("testenv: no free loopback port found")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testenv: listen on loopback: %w", err)
		}
		closers = append(closers, l)
		port := l.Addr().(*net.TCPAddr).Port
		if len(ports) < udp {
			pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				continue // UDP side taken: try another port
			}
			closers = append(closers, pc)
		}
		ports = append(ports, port)
	}
	return ports, nil
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

package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// pollInterval is how often readiness and other conditions are probed.
const pollInterval = 20 * time.Millisecond

// maxLogTail caps how much of a log Tail returns.
const maxLogTail = 64 << 10

// Process is one child process of the stack: a binary with its arguments and
// environment, its stdout and stderr appended to a log file, started in its own
// process group and stopped by PID. A stopped Process can be started again with
// the same command line (same ports).
type Process struct {
	// Name identifies the process: "consul", "redis", "users-1", "gateway-2".
	Name string
	// Addr is the address it serves on (Consul: its HTTP API), "127.0.0.1:PORT".
	Addr string
	// LogPath is the file that receives its stdout and stderr.
	LogPath string

	bin   string
	args  []string
	env   []string
	ready func(ctx context.Context) error
	// stoppedCodes are exit statuses besides 0 that Stop accepts as a clean exit
	// (Consul's agent exits 1 after a signal-initiated shutdown).
	stoppedCodes []int

	mu  sync.Mutex
	cur *run // nil while not running
}

// run is one execution of a Process.
type run struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // what Wait returned; set before done is closed
	offset int64 // log size when this run started
}

// errPortInUse reports that a process could not bind a port that was free a moment
// before it started; the caller picks other ports and tries again.
var errPortInUse = errors.New("stack: port already in use")

// Start starts the process if it is not running, and returns once it is ready (its
// readiness probe passed) or ctx ends. A process that exits before it is ready is
// reported with the end of its log.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.cur != nil && !p.cur.exited() {
		p.mu.Unlock()
		return nil
	}
	log, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	defer log.Close() // the child holds its own descriptor
	r := &run{done: make(chan struct{}), offset: fileSize(p.LogPath)}
	r.cmd = exec.Command(p.bin, p.args...)
	r.cmd.Env = p.env
	r.cmd.Stdout = log
	r.cmd.Stderr = log
	r.cmd.SysProcAttr = sysProcAttr()
	if err := r.cmd.Start(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	p.cur = r
	p.mu.Unlock()

	if p.ready == nil {
		return nil
	}
	var last error
	for {
		if r.exited() {
			out := logSince(p.LogPath, r.offset)
			if bytes.Contains(bytes.ToLower(out), []byte("address already in use")) {
				return fmt.Errorf("%s: %w", p.Name, errPortInUse)
			}
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.Name, r.err, out)
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		last = p.ready(pctx)
		cancel()
		if last == nil {
			return nil
		}
		if errors.Is(last, errPortInUse) {
			p.Kill()
			return fmt.Errorf("%s: %w", p.Name, last)
		}
		select {
		case <-ctx.Done():
			p.Kill()
			return fmt.Errorf("%s not ready: %v (%w)\n%s", p.Name, last, ctx.Err(), tailBytes(logSince(p.LogPath, r.offset)))
		case <-time.After(pollInterval):
		}
	}
}

// PID returns the process id of the running process, or 0.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || p.cur.exited() {
		return 0
	}
	return p.cur.cmd.Process.Pid
}

// Running reports whether the process has been started and has not exited.
func (p *Process) Running() bool { return p.PID() != 0 }

// Signal sends sig to the running process (by PID).
func (p *Process) Signal(sig os.Signal) error {
	p.mu.Lock()
	r := p.cur
	p.mu.Unlock()
	if r == nil || r.exited() {
		return fmt.Errorf("%s is not running", p.Name)
	}
	return r.cmd.Process.Signal(sig)
}

// Wait waits until the process exits or ctx ends. It returns nil for exit status 0,
// otherwise what exec.Cmd.Wait reported (an *exec.ExitError for a status or a signal).
func (p *Process) Wait(ctx context.Context) error {
	p.mu.Lock()
	r := p.cur
	p.mu.Unlock()
	if r == nil {
		return fmt.Errorf("%s was never started", p.Name)
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("%s still running: %w", p.Name, ctx.Err())
	}
}

// Kill sends SIGKILL and waits until the process has exited, as after a crash.
// Killing a process that is not running does nothing.
func (p *Process) Kill() {
	p.mu.Lock()
	r := p.cur
	p.mu.Unlock()
	if r == nil {
		return
	}
	_ = r.cmd.Process.Kill() // fails only when it already exited
	<-r.done
}

// Stop sends SIGTERM and waits up to grace for the process to exit, then kills it.
// It returns an error when the process had to be killed or exited with a failure;
// stopping a process that is not running returns nil.
func (p *Process) Stop(grace time.Duration) error {
	p.mu.Lock()
	r := p.cur
	p.mu.Unlock()
	if r == nil || r.exited() {
		return nil
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.Name, grace)
	}
	var exit *exec.ExitError
	if r.err != nil && !(errors.As(r.err, &exit) && slices.Contains(p.stoppedCodes, exit.ExitCode())) {
		return fmt.Errorf("%s: %w", p.Name, r.err)
	}
	return nil
}

// Tail returns the end of the process's log (at most 64 KiB).
func (p *Process) Tail() string { return tailBytes(logSince(p.LogPath, 0)) }

// exited reports whether the run has ended.
func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// startRetrying calls start until it succeeds or fails for a reason other than a
// port taken in the meantime, at most five times; start picks fresh ports each time.
func startRetrying(start func() error) error {
	var err error
	for range 5 {
		if err = start(); !errors.Is(err, errPortInUse) {
			return err
		}
	}
	return err
}

// loopback returns "127.0.0.1:port".
func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// logSince returns what was written to the file at path from offset on.
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

// fileSize returns the size of the file at path, 0 if it does not exist.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// tailBytes returns the last maxLogTail bytes of b as a string.
func tailBytes(b []byte) string {
	if len(b) > maxLogTail {
		b = append([]byte("…(earlier lines cut)\n"), b[len(b)-maxLogTail:]...)
	}
	return string(b)
}

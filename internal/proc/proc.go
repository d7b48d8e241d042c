// Package proc starts and stops the child processes that the tests (internal/testenv),
// the local stack (internal/stack) and the load harness (bench/e2e) run: a binary
// with its arguments, its output appended to a log file, probed until it is ready,
// stopped by PID with SIGTERM and, after a grace period, SIGKILL.
//
// On Linux every child gets SIGKILL from the kernel when the thread that started it
// dies (Pdeathsig), so no server outlives a test binary that panicked or timed out.
// With OwnGroup it also gets a process group of its own, so a terminal's Ctrl-C
// reaches only its owner, which then stops the children in order.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"
)

// ErrPortInUse reports that a process could not bind a port that was free a moment
// before it started: its log says "address already in use", or its readiness probe
// found another process answering on its port. The caller picks other ports and
// tries again (see RetryPortInUse).
var ErrPortInUse = errors.New("port already in use")

// PollInterval is how often Start probes readiness.
const PollInterval = 20 * time.Millisecond

// probeTimeout bounds one call of a readiness probe.
const probeTimeout = 2 * time.Second

// MaxTail caps how much of a log the errors of Start quote.
const MaxTail = 64 << 10

// Process is a child process, described by its exported fields as an exec.Cmd is,
// which may be started, stopped and started again (same command line, same ports).
// The fields must not change once Start has been called; the methods may be called
// from any goroutine.
type Process struct {
	// Name identifies the process in messages: "consul", "redis-1", "gateway-2".
	Name string
	// Addr is the address it serves on, if any ("127.0.0.1:PORT"); the package only
	// quotes it in messages.
	Addr string
	// Path is the binary and Args its arguments (without the program name).
	Path string
	Args []string
	// Env is its environment; nil inherits the caller's.
	Env []string
	// LogPath is the file its stdout and stderr are appended to (created if need
	// be); a restart appends to it. Empty: the output is discarded.
	LogPath string
	// Stdout, when set, receives the standard output instead of the log.
	Stdout io.Writer
	// Ready is the readiness probe Start polls (every PollInterval, each call
	// bounded by a few seconds) with the PID of the new process, until it returns
	// nil. An error wrapping ErrPortInUse stops the wait at once. Nil: Start returns
	// as soon as the process runs.
	Ready func(ctx context.Context, pid int) error
	// CleanExits are exit statuses besides 0 that Stop takes for a clean exit
	// (a Consul agent exits 1 after a signal-initiated shutdown).
	CleanExits []int
	// OwnGroup puts the process in a process group of its own, so a terminal's
	// Ctrl-C does not reach it; its owner is expected to stop it. Without it (and
	// outside Linux, where Pdeathsig does not exist) Ctrl-C ends it with the owner.
	OwnGroup bool

	starting sync.Mutex // held for the whole of Start
	mu       sync.Mutex // guards cur
	cur      *run       // the current or last run; nil before the first Start
}

// run is one execution of a Process.
type run struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // what Wait returned; set before done is closed
	offset int64 // log size when this run started
}

// Start starts the process unless it is running, and returns once its readiness
// probe passes, or with an error when the process exits first (quoting what it
// logged), when the probe reports ErrPortInUse, or when ctx ends; in the last two
// cases the process is killed. An error wraps ErrPortInUse when a port was taken.
// Concurrent calls wait for each other.
func (p *Process) Start(ctx context.Context) error {
	p.starting.Lock()
	defer p.starting.Unlock()
	if p.Running() {
		return nil
	}
	r, err := p.launch()
	if err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	if p.Ready == nil {
		return nil
	}
	pid := r.cmd.Process.Pid
	for {
		if r.exited() {
			log := p.logSince(r.offset)
			if bindFailed(log) {
				return fmt.Errorf("%s: %w", p.Name, ErrPortInUse)
			}
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.Name, r.err, tailOf(log, MaxTail))
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := p.Ready(pctx, pid)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrPortInUse) {
			p.Kill()
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		select {
		case <-ctx.Done():
			p.Kill()
			return fmt.Errorf("%s%s not ready: %v (%w)\n%s", p.Name, p.at(), err, ctx.Err(), tailOf(p.logSince(r.offset), MaxTail))
		case <-time.After(PollInterval):
		}
	}
}

// launch starts one run with its output on the log.
func (p *Process) launch() (*run, error) {
	r := &run{done: make(chan struct{})}
	r.cmd = exec.Command(p.Path, p.Args...)
	r.cmd.Env = p.Env
	r.cmd.SysProcAttr = sysProcAttr(p.OwnGroup)
	if p.LogPath != "" {
		log, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		defer log.Close() // the child holds its own descriptor
		if st, err := log.Stat(); err == nil {
			r.offset = st.Size()
		}
		r.cmd.Stdout, r.cmd.Stderr = log, log
	}
	if p.Stdout != nil {
		r.cmd.Stdout = p.Stdout
	}
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	p.mu.Lock()
	p.cur = r
	p.mu.Unlock()
	return r, nil
}

// last returns the current or last run, nil before the first Start.
func (p *Process) last() *run {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// PID returns the process id of the running process, or 0 when it is not running.
func (p *Process) PID() int {
	r := p.last()
	if r == nil || r.exited() {
		return 0
	}
	return r.cmd.Process.Pid
}

// Running reports whether the process has been started and has not exited.
func (p *Process) Running() bool { return p.PID() != 0 }

// Signal sends sig to the running process.
func (p *Process) Signal(sig os.Signal) error {
	r := p.last()
	if r == nil || r.exited() {
		return fmt.Errorf("%s is not running", p.Name)
	}
	return r.cmd.Process.Signal(sig)
}

// Wait waits until the process exits or ctx ends. It returns nil for exit status 0,
// otherwise what exec.Cmd.Wait reported: an *exec.ExitError for a status or a
// signal (its ExitCode is -1 after a signal). A process that has exited already
// reports its last run at once.
func (p *Process) Wait(ctx context.Context) error {
	r := p.last()
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
	r := p.last()
	if r == nil {
		return
	}
	_ = r.cmd.Process.Kill() // fails only when it already exited
	<-r.done
}

// Stop sends SIGTERM and waits up to grace for the process to exit, then kills it.
// It returns an error when the process had to be killed or exited with a status
// other than 0 and CleanExits; stopping a process that is not running returns nil.
func (p *Process) Stop(grace time.Duration) error {
	r := p.last()
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
	if r.err != nil && !(errors.As(r.err, &exit) && slices.Contains(p.CleanExits, exit.ExitCode())) {
		return fmt.Errorf("%s: %w", p.Name, r.err)
	}
	return nil
}

// Tail returns the last max bytes of the process's log ("" without a log), for a
// failure message.
func (p *Process) Tail(max int) string { return tailOf(p.logSince(0), max) }

// at returns " on ADDR", or "" without an address.
func (p *Process) at() string {
	if p.Addr == "" {
		return ""
	}
	return " on " + p.Addr
}

// exited reports whether the run has ended.
func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

package proc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The tests run this test binary as the child: with helperEnv set, TestMain acts
// as the helper named by the variable instead of running the tests.
const helperEnv = "PROC_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// helper is the child's behaviour:
//
//	serve CODE  listen on loopback, log "ready pid=PID addr=ADDR", exit CODE on SIGTERM
//	stubborn    ignore SIGTERM, log "ready pid=PID", run until killed
//	exit CODE   log "bye" on stderr, "out" on stdout, exit CODE at once
//	inuse       log the bind error a server prints, exit 1
//	owner       start a sleeper child through Process, log "child pid=PID", run until killed
//	sleep       run until killed
func helper(mode string, args []string) int {
	code := func() int {
		if len(args) == 0 {
			return 0
		}
		n, _ := strconv.Atoi(args[0])
		return n
	}
	switch mode {
	case "serve":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		fmt.Fprintf(os.Stderr, "ready pid=%d addr=%s\n", os.Getpid(), ln.Addr())
		<-term
		fmt.Fprintln(os.Stderr, "terminated")
		return code()
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		fmt.Fprintf(os.Stderr, "ready pid=%d\n", os.Getpid())
		select {}
	case "exit":
		fmt.Fprintln(os.Stderr, "bye")
		fmt.Fprintln(os.Stdout, "out")
		return code()
	case "inuse":
		fmt.Fprintln(os.Stderr, "listen tcp 127.0.0.1:1234: bind: Address already in use")
		return 1
	case "owner":
		child := helperProcess("sleeper", "", "sleep")
		if err := child.Start(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Fprintf(os.Stderr, "child pid=%d\n", child.PID())
		select {}
	case "sleep":
		select {}
	}
	fmt.Fprintln(os.Stderr, "unknown helper", mode)
	return 2
}

// helperProcess is a Process that runs this test binary as helper mode.
func helperProcess(name, logPath, mode string, args ...string) *Process {
	return &Process{
		Name:    name,
		Path:    os.Args[0],
		Args:    args,
		Env:     append(os.Environ(), helperEnv+"="+mode),
		LogPath: logPath,
	}
}

// newHelper is helperProcess with a log in the test's temporary directory and the
// process killed when the test ends.
func newHelper(t *testing.T, mode string, args ...string) *Process {
	t.Helper()
	p := helperProcess(mode, filepath.Join(t.TempDir(), mode+".log"), mode, args...)
	t.Cleanup(p.Kill)
	return p
}

// readyLine is a readiness probe: the log has "ready pid=PID" of this run, and, when
// it names an address, that address accepts a connection.
func readyLine(p *Process) func(ctx context.Context, pid int) error {
	return func(ctx context.Context, pid int) error {
		for _, l := range strings.Split(p.Tail(MaxTail), "\n") {
			rest, ok := strings.CutPrefix(l, fmt.Sprintf("ready pid=%d", pid))
			if !ok {
				continue
			}
			if addr, ok := strings.CutPrefix(rest, " addr="); ok {
				c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
				if err != nil {
					return err
				}
				c.Close()
			}
			return nil
		}
		return errors.New("no ready line yet")
	}
}

// testCtx returns a context that ends well after anything a test waits for.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestStartReadyStop(t *testing.T) {
	p := newHelper(t, "serve", "0")
	p.Ready = readyLine(p)
	if err := p.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	if pid == 0 || !p.Running() {
		t.Fatalf("after Start: PID %d, Running %v", pid, p.Running())
	}
	if err := p.Start(testCtx(t)); err != nil || p.PID() != pid {
		t.Fatalf("Start of a running process: %v, PID %d (was %d)", err, p.PID(), pid)
	}
	if err := p.Stop(time.Minute); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if p.Running() || p.PID() != 0 {
		t.Fatalf("after Stop: Running %v, PID %d", p.Running(), p.PID())
	}
	if err := p.Wait(testCtx(t)); err != nil {
		t.Fatalf("Wait after a clean exit: %v", err)
	}
	if !strings.Contains(p.Tail(MaxTail), "terminated") {
		t.Fatalf("the child did not see SIGTERM; log:\n%s", p.Tail(MaxTail))
	}
	if err := p.Stop(time.Minute); err != nil {
		t.Fatalf("Stop of a stopped process: %v", err)
	}
}

func TestStopExitStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		clean  []int
		wantOK bool
	}{
		{"status 1 is a failure", nil, false},
		{"status 1 listed as clean", []int{1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newHelper(t, "serve", "1")
			p.Ready, p.CleanExits = readyLine(p), tc.clean
			if err := p.Start(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			err := p.Stop(time.Minute)
			if (err == nil) != tc.wantOK {
				t.Fatalf("Stop = %v, want ok %v", err, tc.wantOK)
			}
			var exit *exec.ExitError
			if err := p.Wait(testCtx(t)); !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("Wait = %v, want exit status 1", err)
			}
		})
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	p := newHelper(t, "stubborn")
	p.Ready = readyLine(p)
	if err := p.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	err := p.Stop(100 * time.Millisecond) // the child ignores SIGTERM: the grace always runs out
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop = %v, want killed after the grace", err)
	}
	assertKilled(t, p)
}

func TestKill(t *testing.T) {
	p := newHelper(t, "serve", "0")
	p.Ready = readyLine(p)
	if err := p.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	assertKilled(t, p)
	p.Kill() // killing a dead process does nothing
	if err := p.Signal(syscall.SIGTERM); err == nil {
		t.Fatal("Signal to a dead process succeeded")
	}
}

// assertKilled checks that p is down and was ended by SIGKILL.
func assertKilled(t *testing.T, p *Process) {
	t.Helper()
	if p.Running() {
		t.Fatal("still running")
	}
	var exit *exec.ExitError
	err := p.Wait(testCtx(t))
	if !errors.As(err, &exit) {
		t.Fatalf("Wait = %v, want an exit error", err)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("Wait = %v, want killed by SIGKILL", err)
	}
}

func TestExitCode(t *testing.T) {
	p := newHelper(t, "exit", "3")
	if err := p.Start(testCtx(t)); err != nil { // no probe: Start returns once it runs
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := p.Wait(testCtx(t)); !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("Wait = %v, want exit status 3", err)
	}
	if err := p.Stop(time.Minute); err != nil {
		t.Fatalf("Stop of an exited process: %v", err)
	}
	if log := p.Tail(MaxTail); log != "bye\nout\n" && log != "out\nbye\n" {
		t.Fatalf("log %q, want stdout and stderr", log)
	}
}

func TestStdout(t *testing.T) {
	p := newHelper(t, "exit", "0")
	var out strings.Builder
	p.Stdout = &out
	if err := p.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if out.String() != "out\n" || p.Tail(MaxTail) != "bye\n" {
		t.Fatalf("stdout %q, log %q; want stdout apart from the log", out.String(), p.Tail(MaxTail))
	}
}

func TestExitBeforeReady(t *testing.T) {
	p := newHelper(t, "exit", "2")
	p.Ready = func(context.Context, int) error { return errors.New("never") }
	err := p.Start(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "bye") {
		t.Fatalf("Start = %v, want the early exit with the log", err)
	}
	if errors.Is(err, ErrPortInUse) {
		t.Fatalf("Start = %v: not a port in use", err)
	}
}

func TestPortInUse(t *testing.T) {
	t.Run("the log says so", func(t *testing.T) {
		p := newHelper(t, "inuse")
		p.Ready = func(context.Context, int) error { return errors.New("never") }
		if err := p.Start(testCtx(t)); !errors.Is(err, ErrPortInUse) {
			t.Fatalf("Start = %v, want ErrPortInUse", err)
		}
	})
	t.Run("the probe says so", func(t *testing.T) {
		p := newHelper(t, "serve", "0")
		p.Ready = func(context.Context, int) error { return fmt.Errorf("%w: someone else answers", ErrPortInUse) }
		if err := p.Start(testCtx(t)); !errors.Is(err, ErrPortInUse) {
			t.Fatalf("Start = %v, want ErrPortInUse", err)
		}
		if p.Running() {
			t.Fatal("the process was left running")
		}
	})
}

func TestNotReadyInTime(t *testing.T) {
	p := newHelper(t, "stubborn")
	p.Ready = func(context.Context, int) error { return errors.New("not yet") }
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	err := p.Start(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not yet") {
		t.Fatalf("Start = %v, want the deadline and the probe's last error", err)
	}
	if p.Running() {
		t.Fatal("the process was left running")
	}
}

func TestRestart(t *testing.T) {
	p := newHelper(t, "serve", "0")
	var pids []int
	ready := readyLine(p)
	p.Ready = func(ctx context.Context, pid int) error {
		if err := ready(ctx, pid); err != nil {
			return err
		}
		pids = append(pids, pid)
		return nil
	}
	for range 2 {
		if err := p.Start(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if err := p.Stop(time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if len(pids) != 2 || pids[0] == pids[1] {
		t.Fatalf("ready with PIDs %v, want two runs", pids)
	}
	if log := p.Tail(MaxTail); strings.Count(log, "terminated") != 2 {
		t.Fatalf("the log does not hold both runs:\n%s", log)
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(path, []byte("first line\nsecond line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Process{LogPath: path}
	if got := p.Tail(MaxTail); got != "first line\nsecond line\n" {
		t.Fatalf("Tail = %q", got)
	}
	if got := p.Tail(12); got != "…(earlier lines cut)\nsecond line\n" {
		t.Fatalf("Tail(12) = %q", got)
	}
	if got := (&Process{}).Tail(10); got != "" {
		t.Fatalf("Tail without a log = %q", got)
	}
}

func TestNeverStarted(t *testing.T) {
	p := &Process{Name: "idle"}
	if p.Running() || p.PID() != 0 {
		t.Fatal("a process never started runs")
	}
	if err := p.Wait(testCtx(t)); err == nil {
		t.Fatal("Wait on a process never started succeeded")
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	p.Kill()
	bad := &Process{Name: "missing", Path: filepath.Join(t.TempDir(), "no-such-binary")}
	if err := bad.Start(testCtx(t)); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Start of a missing binary = %v", err)
	}
}

func TestStartAllKillsAllOnFailure(t *testing.T) {
	good := newHelper(t, "serve", "0")
	good.Ready = readyLine(good)
	bad := newHelper(t, "inuse")
	bad.Ready = func(context.Context, int) error { return errors.New("never") }
	err := StartAll(testCtx(t), []*Process{good, bad})
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("StartAll = %v, want ErrPortInUse", err)
	}
	if good.Running() {
		t.Fatal("the ready process was left running")
	}

	a, b := newHelper(t, "serve", "0"), newHelper(t, "serve", "1")
	a.Ready, b.Ready = readyLine(a), readyLine(b)
	if err := StartAll(testCtx(t), []*Process{a, b}); err != nil {
		t.Fatal(err)
	}
	err = StopAll(time.Minute, []*Process{a, nil, b})
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || a.Running() || b.Running() {
		t.Fatalf("StopAll = %v, want both stopped and b's exit status 1", err)
	}
}

func TestRetryPortInUse(t *testing.T) {
	var calls atomic.Int32
	err := RetryPortInUse(3, func() error {
		if calls.Add(1) < 3 {
			return fmt.Errorf("x: %w", ErrPortInUse)
		}
		return nil
	})
	if err != nil || calls.Load() != 3 {
		t.Fatalf("RetryPortInUse = %v after %d calls, want nil after 3", err, calls.Load())
	}
	calls.Store(0)
	err = RetryPortInUse(5, func() error { calls.Add(1); return errors.New("broken") })
	if err == nil || calls.Load() != 1 {
		t.Fatalf("RetryPortInUse = %v after %d calls, want the error after 1", err, calls.Load())
	}
	calls.Store(0)
	err = RetryPortInUse(2, func() error { calls.Add(1); return ErrPortInUse })
	if !errors.Is(err, ErrPortInUse) || calls.Load() != 2 {
		t.Fatalf("RetryPortInUse = %v after %d calls, want ErrPortInUse after 2", err, calls.Load())
	}
}

package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// clusterStartTimeout bounds how long a cluster (Redis Cluster, Sentinel, Consul
// servers) may take to form, and how long a failover may take.
const clusterStartTimeout = 90 * time.Second

// member is one process of a cluster: its command line, log and current run.
// Members are killed by PID when their test ends.
type member struct {
	name    string
	addr    string // the address it serves on (Consul: HTTP)
	bin     string
	args    []string
	logPath string

	mu   sync.Mutex
	proc *process // nil while stopped
}

// start starts the member; ready (given the new PID) is polled until it returns nil (or the member
// exits, or the deadline passes). A member that could not bind a port reports
// errPortInUse.
func (m *member) start(ready func(pid int) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		return nil
	}
	log, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child holds its own descriptor
	offset := logSize(m.logPath)
	p, err := startProcess(m.bin, m.args, log)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(clusterStartTimeout)
	for {
		if p.exited() {
			if bindFailed(logSince(m.logPath, offset)) {
				return errPortInUse
			}
			return fmt.Errorf("%s exited before it was ready: %v\n%s", m.name, p.err, logSince(m.logPath, offset))
		}
		err := ready(p.pid())
		if err == nil {
			m.proc = p
			return nil
		}
		if errors.Is(err, errPortInUse) {
			p.kill()
			return err
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("%s on %s not ready within %v: %v", m.name, m.addr, clusterStartTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// kill sends SIGKILL and waits until the member has exited; a stopped member
// stays stopped.
func (m *member) kill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		m.proc.kill()
		m.proc = nil
	}
}

// running reports whether the member is up.
func (m *member) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc != nil && !m.proc.exited()
}

// redisReady is the readiness probe of a redis-server (or sentinel) member: the
// server on its port answers PING and INFO with the PID of the process started.
func (m *member) redisReady(pid int) error {
	got, err := redisPID(m.addr)
	switch {
	case err != nil:
		return err
	case got != pid:
		return fmt.Errorf("%w: another redis-server (pid %d) answers on %s", errPortInUse, got, m.addr)
	}
	return nil
}

// startAll starts members concurrently, each with its readiness probe; it returns
// the first error, with every member killed again when one failed.
func startAll(members []*member, ready []func(pid int) error) error {
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.start(ready[i])
		}()
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err != nil {
		for _, m := range members {
			m.kill()
		}
		for _, e := range errs {
			if errors.Is(e, errPortInUse) {
				return errPortInUse
			}
		}
	}
	return err
}

// cleanupMembers kills every member when the test ends and prints their logs if
// it failed.
func cleanupMembers(t testing.TB, what string, members func() []*member) {
	t.Cleanup(func() {
		ms := members()
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Add(1)
			go func() { defer wg.Done(); m.kill() }()
		}
		wg.Wait()
		if t.Failed() {
			for _, m := range ms {
				t.Logf("testenv: %s %s (%s) log:\n%s", what, m.name, m.addr, tail(m.logPath))
			}
		}
	})
}

// withTimeout runs f with a context bounded by d.
func withTimeout(d time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return f(ctx)
}

// memberDir makes dir/name and returns it.
func memberDir(t testing.TB, dir, name string) string {
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// startRedis starts a redis-server of its own on a free loopback port, pinned like wrk
// and the backend (it stands for another machine), without persistence, and returns
// once it answers PING with its own PID. It is stopped by its PID with the other helpers.
func (h *harness) startRedis() (*proc, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", errors.New("redis-server not found: run `bash scripts/install-tools.sh` (Debian package redis-server), or leave gateway-redis-limit out with -targets")
	}
	var last error
	for attempt := 1; attempt <= 3; attempt++ {
		addr := freeAddr()
		_, port, _ := net.SplitHostPort(addr)
		p, err := h.start(fmt.Sprintf("redis-%d", attempt), h.loadCPU, nil, bin,
			"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", h.dir, "--logfile", "", "--daemonize", "no")
		if err != nil {
			return nil, "", err
		}
		if last = h.waitRedis(p, addr); last == nil {
			return p, addr, nil
		}
		p.stop() // another process took the port, or it did not come up
	}
	return nil, "", fmt.Errorf("redis-server did not start: %w", last)
}

// waitRedis polls addr until the server there answers PING and reports p's PID.
func (h *harness) waitRedis(p *proc, addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		if p.exited() {
			return fmt.Errorf("redis-server exited (log: %s)", p.logPath)
		}
		pid, err := redisPID(addr)
		switch {
		case err == nil && pid == p.pid():
			return nil
		case err == nil:
			return fmt.Errorf("another redis-server (pid %d) answers on %s", pid, addr)
		case time.Now().After(deadline):
			return fmt.Errorf("redis-server on %s: %w", addr, err)
		}
		select {
		case <-h.ctx.Done():
			return h.ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// redisPID sends PING, then INFO server, and returns the process_id the server reports.
func redisPID(addr string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"); err != nil {
		return 0, err
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "+PONG\r\n" {
		return 0, fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	line, err = br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
	if err != nil || !strings.HasPrefix(line, "$") {
		return 0, fmt.Errorf("INFO answered %q", strings.TrimSpace(line))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, err
	}
	for l := range strings.SplitSeq(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(l, "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server has no process_id")
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/tools"
)

// startRedis starts a redis-server of its own on a free loopback port, pinned like wrk
// and the backend (it stands for another machine), without persistence, and returns
// once it answers PING with its own PID. It is stopped by its PID with the other helpers.
func (h *harness) startRedis() (*proc.Process, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", errors.New("redis-server not found: run `bash scripts/install-tools.sh` (Debian package redis-server), or leave gateway-redis-limit out with -targets")
	}
	var p *proc.Process
	var addr string
	attempt := 0
	err = proc.RetryPortInUse(3, func() error {
		attempt++
		addr = freeAddr()
		_, port, _ := net.SplitHostPort(addr)
		p = h.newProc(fmt.Sprintf("redis-%d", attempt), h.loadCPU, nil, bin,
			"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", h.dir, "--logfile", "", "--daemonize", "no")
		p.Ready = func(ctx context.Context, pid int) error { return tools.RedisIs(ctx, addr, pid) }
		return h.launch(p)
	})
	if err != nil {
		return nil, "", fmt.Errorf("redis-server did not start: %w", err)
	}
	return p, addr, nil
}

package testenv

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/tools"
)

// redisStartTimeout bounds how long one start waits for PING to answer.
const redisStartTimeout = 20 * time.Second

// Redis is a redis-server owned by one test: no persistence, bound to 127.0.0.1.
type Redis struct {
	// Addr is the server's "127.0.0.1:PORT"; it stays the same across Stop and Start.
	Addr string

	t       testing.TB
	bin     string
	port    int
	dir     string
	logPath string
	proc    *proc.Process // nil until the first launch
}

// StartRedis starts a redis-server on a free loopback port and returns once it
// answers PING. The server is stopped when the test ends; if the test failed its
// log is printed with t.Log. A missing binary or a server that does not come up
// fails the test.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin, err := tools.Redis()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dir := t.TempDir()
	r := &Redis{t: t, bin: bin, dir: dir, logPath: filepath.Join(dir, "redis.log")}
	t.Cleanup(func() {
		r.Stop()
		logOnFailure(t, r.proc)
	})
	err = proc.RetryPortInUse(startTries, func() error {
		ports, err := tools.FreePorts(1, 0)
		if err != nil {
			return err
		}
		r.port = ports[0]
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
		return r.launch()
	})
	if err != nil {
		t.Fatalf("testenv: start redis-server: %v", err)
	}
	return r
}

// Stop kills the server (SIGKILL) and waits until it has exited. Clients see their
// connections reset, as after a crash. Stopping a stopped server does nothing.
func (r *Redis) Stop() {
	if r.proc != nil {
		r.proc.Kill()
	}
}

// Start starts a stopped server again on the same port, with an empty data set,
// and returns once it answers PING. Starting a running server does nothing.
func (r *Redis) Start() {
	r.t.Helper()
	if err := restart(r.proc, redisStartTimeout); err != nil {
		r.t.Fatalf("testenv: restart redis-server on %s: %v", r.Addr, err)
	}
}

// launch starts a new redis-server process on r.port and waits until it answers
// PING and INFO with its own PID (so another server that took the port is not
// mistaken for it).
func (r *Redis) launch() error {
	r.proc = &proc.Process{
		Name: "redis-server", Addr: r.Addr, Path: r.bin, Args: tools.RedisBaseArgs(r.port, r.dir), LogPath: r.logPath,
		Ready: func(ctx context.Context, pid int) error { return tools.RedisIs(ctx, r.Addr, pid) },
	}
	return startWithin(r.proc, redisStartTimeout)
}

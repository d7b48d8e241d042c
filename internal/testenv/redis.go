package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/infinityxone/gateway/internal/tools"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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

	mu   sync.Mutex
	proc *process // nil while stopped
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
		if t.Failed() {
			t.Logf("testenv: redis-server %s log:\n%s", r.Addr, tail(r.logPath))
		}
	})
	for attempt := 1; ; attempt++ {
		ports, err := tools.FreePorts(1, 0)
		if err != nil {
			t.Fatal(err)
		}
		r.port = ports[0]
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
		err = r.launch()
		if err == nil {
			return r
		}
		if !errors.Is(err, errPortInUse) || attempt == 5 {
			t.Fatalf("testenv: start redis-server: %v", err)
		}
	}
}

// Stop kills the server (SIGKILL) and waits until it has exited. Clients see their
// connections reset, as after a crash. Stopping a stopped server does nothing.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		r.proc.kill()
		r.proc = nil
	}
}

// Start starts a stopped server again on the same port, with an empty data set,
// and returns once it answers PING. Starting a running server does nothing.
func (r *Redis) Start() {
	r.t.Helper()
	deadline := time.Now().Add(redisStartTimeout)
	for {
		err := r.launch()
		if err == nil {
			return
		}
		// The port may be held for a moment by a process that picked it meanwhile.
		if !errors.Is(err, errPortInUse) || time.Now().After(deadline) {
			r.t.Fatalf("testenv: restart redis-server on %s: %v", r.Addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// launch starts redis-server on r.port and waits until it answers PING and
// reports our PID (so another server that took the port is not mistaken for it).
func (r *Redis) launch() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		return nil
	}
	log, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child holds its own descriptor
	offset := logSize(r.logPath)
	args := []string{
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", r.dir,
		"--logfile", "",
		"--daemonize", "no",
	}
	p, err := startProcess(r.bin, args, log)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(redisStartTimeout)
	for {
		if p.exited() {
			if bindFailed(logSince(r.logPath, offset)) {
				return errPortInUse
			}
			return fmt.Errorf("redis-server exited before answering PING: %v\n%s", p.err, logSince(r.logPath, offset))
		}
		pid, err := redisPID(r.Addr)
		switch {
		case err == nil && pid == p.pid():
			r.proc = p
			return nil
		case err == nil:
			// Another redis-server answers on our port: ours cannot bind it.
			p.kill()
			return errPortInUse
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %v", r.Addr, redisStartTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// redisPID sends PING, then INFO server, to the server at addr and returns the
// process_id it reports.
func redisPID(addr string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(conn)

	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return 0, err
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "+PONG\r\n" {
		return 0, fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}

	if _, err := conn.Write([]byte("*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")); err != nil {
		return 0, err
	}
	line, err = br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if !strings.HasPrefix(line, "$") {
		return 0, fmt.Errorf("INFO answered %q", strings.TrimSpace(line))
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return 0, fmt.Errorf("INFO answered %q", strings.TrimSpace(line))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(l, "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server has no process_id")
}

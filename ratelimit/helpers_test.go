package ratelimit

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// epoch0 is a whole hour, so one-minute and one-hour windows start on it.
var epoch0 = time.Unix(1_699_999_200, 0)

// fakeClock is a clock that only moves when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// countHook counts what a go-redis client sends for the store: EVALSHAs
// sent one by one (each a round trip), SCRIPT LOADs, pipelines carrying
// EVALSHAs (one round trip each) and the decisions inside them. Connection
// handshakes (HELLO, CLIENT SETINFO), which also pass through hooks, are
// not counted. If gate is set, the first exchange carrying an EVALSHA
// waits for it.
type countHook struct {
	calls     atomic.Int64 // EVALSHA sent alone
	loads     atomic.Int64 // SCRIPT LOAD
	mu        sync.Mutex
	loaded    map[string]int // SCRIPT LOADs by script source
	pipelines atomic.Int64
	piped     atomic.Int64 // decisions sent inside pipelines (keys of their EVALSHAs)
	lastBatch atomic.Int64 // decisions in the last pipeline
	lastEvals atomic.Int64 // EVALSHAs in the last pipeline

	gateOnce sync.Once
	gate     chan struct{} // nil: no gate
	gated    chan struct{} // closed when the first exchange is held at the gate

	pipeOnce  sync.Once
	pipeGate  chan struct{} // nil: no gate; else the first pipeline waits for it
	pipeGated chan struct{} // closed when the first pipeline is held, not yet sent
}

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		switch cmd.Name() {
		case "evalsha":
			h.calls.Add(1)
			h.wait()
		case "script":
			h.loads.Add(1)
			if a := cmd.Args(); len(a) > 2 {
				h.mu.Lock()
				if h.loaded == nil {
					h.loaded = map[string]int{}
				}
				h.loaded[fmt.Sprint(a[2])]++
				h.mu.Unlock()
			}
		}
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n, evals := 0, 0
		for _, c := range cmds {
			if c.Name() == "evalsha" {
				n += numKeys(c)
				evals++
			}
		}
		if n == 0 {
			return next(ctx, cmds)
		}
		h.pipelines.Add(1)
		h.piped.Add(int64(n))
		h.lastBatch.Store(int64(n))
		h.lastEvals.Store(int64(evals))
		h.wait()
		if h.pipeGate != nil {
			h.pipeOnce.Do(func() {
				close(h.pipeGated)
				<-h.pipeGate
			})
		}
		return next(ctx, cmds)
	}
}

// numKeys is an EVALSHA's number of keys: the decisions it carries.
func numKeys(c redis.Cmder) int {
	if a := c.Args(); len(a) > 2 {
		if s, ok := a[2].(string); ok {
			n, _ := strconv.Atoi(s)
			return n
		}
	}
	return 0
}

// wait holds the first exchange at the gate, if there is one.
func (h *countHook) wait() {
	if h.gate == nil {
		return
	}
	first := false
	h.gateOnce.Do(func() { first = true })
	if first {
		close(h.gated)
		<-h.gate
	}
}

// maxLoads is the most SCRIPT LOADs any one script got, and how many
// scripts were loaded.
func (h *countHook) maxLoads() (most, scripts int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.loaded {
		most = max(most, n)
	}
	return most, len(h.loaded)
}

// hits counts the exchanges that carried decisions.
func (h *countHook) hits() int64 { return h.calls.Load() + h.pipelines.Load() }

// roundTrips counts every exchange the store caused, SCRIPT LOADs included.
func (h *countHook) roundTrips() int64 { return h.hits() + h.loads.Load() }

// newClient is one "replica's" go-redis client for addr, counted by hook
// (nil: not counted), closed when the test ends.
func newClient(tb testing.TB, addr string, hook *countHook) *redis.Client {
	tb.Helper()
	opts := (RedisConfig{Address: addr}).UniversalOptions()
	c := redis.NewClient(opts.Simple())
	if hook != nil {
		c.AddHook(hook)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// blackhole listens on loopback, accepts connections, reads and never
// answers: a Redis that hangs.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// eventually polls cond until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

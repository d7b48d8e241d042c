package ratelimit

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// coalescer lets at most one round trip be out at a time and sends the
// decisions that wait meanwhile as one pipeline as soon as it returns.
//
// A decision that finds nothing in flight runs at once on its caller's
// goroutine as a plain EVALSHA: at low load the coalescer costs a mutex
// and nothing else (no timer, no goroutine hand-off). A decision that
// finds a round trip in flight joins the pending list and waits. Whoever
// finishes the round trip in flight — that caller, or the flusher goroutine
// — hands the pending list to the flusher, which sends it as one pipeline
// (at most maxBatch decisions), and again, until nothing is pending.
//
// Redis runs a pipelined EVALSHA for about half the CPU of a lone one (no
// read and write syscall per command), and one connection carries the
// whole batch, which is what lets one Redis serve more replicas.
type coalescer struct {
	s        *RedisStore
	maxBatch int

	mu       sync.Mutex
	inflight bool    // a round trip is out or the flusher owns the pending list
	pending  []*call // waiting for the next pipeline
	closed   bool

	kick chan struct{} // cap 1: the flusher has work
	stop chan struct{} // closed by close
	done chan struct{} // closed when the flusher has returned
}

// call is one decision waiting in the coalescer. ready is closed once vals
// and err are set; a caller that gave up (ctx done) never reads them.
type call struct {
	ctx   context.Context
	sc    *script
	keys  []string
	args  []any
	epoch uint64
	cmd   *redis.Cmd
	vals  []int64
	err   error
	ready chan struct{}
}

func newCoalescer(s *RedisStore, maxBatch int) *coalescer {
	co := &coalescer{
		s:        s,
		maxBatch: maxBatch,
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go co.flusher()
	return co
}

// do runs one script and waits for its answer or ctx.
func (co *coalescer) do(ctx context.Context, sc *script, keys []string, args []any) ([]int64, error) {
	co.mu.Lock()
	if co.closed {
		co.mu.Unlock()
		return nil, ErrClosed
	}
	if !co.inflight {
		// Nothing out: go now, on this goroutine.
		co.inflight = true
		co.mu.Unlock()
		vals, err := co.s.eval(ctx, sc, keys, args)
		co.release()
		return vals, err
	}
	c := &call{ctx: ctx, sc: sc, keys: keys, args: args, ready: make(chan struct{})}
	co.pending = append(co.pending, c)
	co.mu.Unlock()
	select {
	case <-c.ready:
		return c.vals, c.err
	case <-ctx.Done():
		return nil, ctx.Err() // the flusher skips c, or finishes it unread
	}
}

// release ends the round trip of a caller that went alone: the flusher
// takes over if calls queued up meanwhile.
func (co *coalescer) release() {
	co.mu.Lock()
	defer co.mu.Unlock()
	if len(co.pending) == 0 {
		co.inflight = false
		return
	}
	co.kick <- struct{}{} // never blocks: only the owner of inflight kicks
}

// close stops the flusher and fails what is pending; it is idempotent.
func (co *coalescer) close() {
	co.mu.Lock()
	first := !co.closed
	co.closed = true
	co.mu.Unlock()
	if first {
		close(co.stop)
	}
	<-co.done
}

// flusher owns inflight from a kick until it finds nothing pending.
func (co *coalescer) flusher() {
	defer close(co.done)
	var batch, retry []*call
	for {
		select {
		case <-co.stop:
			co.failPending()
			return
		case <-co.kick:
		}
		for {
			co.mu.Lock()
			if len(co.pending) == 0 {
				co.inflight = false
				co.mu.Unlock()
				break
			}
			n := min(len(co.pending), co.maxBatch)
			batch = append(batch[:0], co.pending[:n]...)
			rest := copy(co.pending, co.pending[n:])
			clear(co.pending[rest:])
			co.pending = co.pending[:rest]
			co.mu.Unlock()

			retry = co.run(batch, retry[:0])
			if len(retry) > 0 {
				co.run(retry, nil)
			}
			clear(batch)
			clear(retry)
		}
	}
}

// failPending finishes whatever waits when the store closes. A caller
// that went alone and returns after close kicks nobody; its pending calls
// are failed here or see closed.
func (co *coalescer) failPending() {
	co.mu.Lock()
	defer co.mu.Unlock()
	for _, c := range co.pending {
		co.finish(c, nil, ErrClosed)
	}
	co.pending = nil
}

// run sends calls as one pipeline and finishes each, except those answered
// NOSCRIPT: after loading their script it appends them to retry (when retry
// is not nil) for another pipeline.
func (co *coalescer) run(calls []*call, retry []*call) []*call {
	ctx, cancel := context.WithTimeout(context.Background(), co.s.timeout)
	defer cancel()
	pipe := co.s.client.Pipeline()
	n := 0
	for _, c := range calls {
		if err := c.ctx.Err(); err != nil {
			co.finish(c, nil, err) // its caller is gone: spend no token for it
			continue
		}
		c.epoch = c.sc.epoch.Load()
		c.cmd = pipe.EvalSha(ctx, c.sc.sha, c.keys, c.args...)
		n++
	}
	if n == 0 {
		return retry
	}
	_, _ = pipe.Exec(ctx) // errors are per command
	var loaded map[*script]error
	for _, c := range calls {
		if c.cmd == nil {
			continue
		}
		vals, err := c.cmd.Int64Slice()
		c.cmd = nil
		if isNoScript(err) && retry != nil {
			if loaded == nil {
				loaded = make(map[*script]error, 2)
			}
			lerr, done := loaded[c.sc]
			if !done {
				lerr = co.s.load(ctx, c.sc, c.epoch)
				loaded[c.sc] = lerr
			}
			if lerr == nil {
				retry = append(retry, c)
				continue
			}
			err = lerr
		}
		co.finish(c, vals, err)
	}
	return retry
}

func (co *coalescer) finish(c *call, vals []int64, err error) {
	c.vals, c.err = vals, err
	close(c.ready)
}

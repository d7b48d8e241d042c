package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

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
// One connection carries the whole batch, and a round trip's syscalls are
// shared by it on both sides: a write and a read for Redis, and for the
// gateway a write (which wakes Redis, the dearest part) and a read. Over a
// single server the batch is one batch-script EVALSHA per algorithm (see
// batch), so Redis also pays its per-EVALSHA cost once per batch; that is
// what lets one Redis serve more replicas, and what keeps the decision's
// wait for Redis short when Redis shares a CPU with other work.
//
// A waiting decision costs no timer of its own. Its deadline (start +
// timeout) is a number; one timer per coalescer, the reaper, is set at the
// earliest deadline of the decisions waiting whenever the flusher sends a
// pipeline, and when it fires it lets every decision past its deadline go
// with context.DeadlineExceeded. A pipeline's context carries the latest
// deadline of its batch, so the round trip is cut when nobody waits for
// it any more; a decision past its deadline when its turn comes is not
// sent. A decision that waits behind a lone EVALSHA needs no reaper: that
// round trip ends by its own, earlier, deadline.
//
// A waiting call has two owners, its caller and the coalescer (the pending
// list, then the flusher), and goes back to the pool when both are done
// with it (call.refs).
type coalescer struct {
	s        *RedisStore
	maxBatch int

	// The flusher's: a pipeline (Exec empties it) and scratch space.
	pipe    redis.Pipeliner
	batches [2]batch // token bucket, sliding window
	singles []*call
	cmds    []redis.Cmder

	mu       sync.Mutex
	inflight bool    // a round trip is out or the flusher owns the pending list
	pending  []*call // waiting for the next pipeline, oldest first
	held     []*call // taken by the flusher, not yet released (written under mu)
	closed   bool
	reaper   *time.Timer // runs reap; armed while the flusher has calls out

	kick chan struct{} // cap 1: the flusher has work
	stop chan struct{} // closed by close
	done chan struct{} // closed when the flusher has returned
}

// errKeyRefused: a batch script could not read or write a decision's key
// (one holding another type, say); the per-key script answers Redis's own
// error instead.
var errKeyRefused = errors.New("batch script")

// errExpiredQueued: a decision's timeout ended while it waited for a
// pipeline, before it was sent. It fails the decision (and matches
// context.DeadlineExceeded) but says nothing about Redis, so it never
// counts toward failing fast.
var errExpiredQueued = fmt.Errorf("%w: waited for a pipeline past the timeout, not sent", context.DeadlineExceeded)

// errBadReply: Redis answered something the store cannot read.
var errBadReply = errors.New("unexpected reply")

func newCoalescer(s *RedisStore, maxBatch int) *coalescer {
	co := &coalescer{
		s:        s,
		maxBatch: maxBatch,
		pipe:     s.client.Pipeline(),
		batches: [2]batch{
			{one: s.gcra, sc: s.gcraBatch},
			{one: s.sliding, sc: s.slidingBatch},
		},
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	co.reaper = time.AfterFunc(time.Hour, co.reap)
	co.reaper.Stop()
	go co.flusher()
	return co
}

// do runs c (prepared, owned by do from here on: it goes back to the pool)
// and waits for its answer or ctx.
func (co *coalescer) do(ctx context.Context, c *call) ([4]int64, error) {
	c.ctx = ctx
	c.deadline = time.Now().Add(co.s.timeout)
	co.mu.Lock()
	if co.closed {
		co.mu.Unlock()
		co.s.putCall(c)
		return [4]int64{}, ErrClosed
	}
	if !co.inflight {
		// Nothing out: go now, on this goroutine.
		co.inflight = true
		co.mu.Unlock()
		tctx, cancel := context.WithDeadline(ctx, c.deadline)
		err := co.s.eval(tctx, c)
		cancel()
		vals := c.vals
		co.s.putCall(c)
		co.release()
		return vals, err
	}
	c.refs.Store(2) // this caller and the coalescer
	co.pending = append(co.pending, c)
	co.mu.Unlock()
	select {
	case <-c.ready:
	case <-ctx.Done():
		if c.state.CompareAndSwap(callWaiting, callAbandoned) {
			co.unref(c) // the flusher skips c
			return [4]int64{}, ctx.Err()
		}
		<-c.ready // finished or expired meanwhile: the signal is on the way
	}
	if st := c.state.Load(); st != callDone { // the reaper: the deadline passed
		co.unref(c)
		if st == callExpiredQueued {
			return [4]int64{}, errExpiredQueued
		}
		return [4]int64{}, context.DeadlineExceeded
	}
	vals, err := c.vals, c.err
	co.unref(c)
	return vals, err
}

// unref drops one owner's hold on c; the last one pools it.
func (co *coalescer) unref(c *call) {
	if c.refs.Add(-1) == 0 {
		co.s.putCall(c)
	}
}

// reap lets every waiting call past its deadline go, and while the flusher
// has calls out, arms the reaper again for the next deadline.
func (co *coalescer) reap() {
	now := time.Now()
	co.mu.Lock()
	defer co.mu.Unlock()
	var next time.Time
	for i, list := range [2][]*call{co.held, co.pending} {
		expired := callExpired // sent: Redis did not answer in time
		if i == 1 {
			expired = callExpiredQueued // never sent: says nothing about Redis
		}
		for _, c := range list {
			switch {
			case c.state.Load() != callWaiting:
			case !now.Before(c.deadline):
				if c.state.CompareAndSwap(callWaiting, expired) {
					c.ready <- struct{}{} // cap 1, sent once: never blocks
				}
			case next.IsZero() || c.deadline.Before(next):
				next = c.deadline
			}
		}
	}
	if len(co.held) > 0 && !next.IsZero() {
		co.reaper.Reset(next.Sub(now))
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
				co.reaper.Stop()
				co.mu.Unlock()
				break
			}
			n := min(len(co.pending), co.maxBatch)
			co.held = append(co.held[:0], co.pending[:n]...)
			rest := copy(co.pending, co.pending[n:])
			clear(co.pending[rest:])
			co.pending = co.pending[:rest]
			earliest := co.held[0].deadline
			for _, c := range co.held[1:] {
				if c.deadline.Before(earliest) {
					earliest = c.deadline
				}
			}
			co.reaper.Reset(time.Until(earliest))
			co.mu.Unlock()

			batch = append(batch[:0], co.held...)
			retry = co.run(batch, retry[:0], true)
			if len(retry) > 0 {
				co.run(retry, nil, false)
			}
			clear(batch)
			clear(retry)

			// The reaper no longer sees these calls: they may be pooled.
			co.mu.Lock()
			held := co.held
			co.held = co.held[:0] // the array is kept: only the flusher writes it
			co.mu.Unlock()
			for _, c := range held {
				co.unref(c)
			}
			clear(held)
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
		co.finish(c, ErrClosed)
		co.unref(c)
	}
	clear(co.pending)
	co.pending = nil
	co.reaper.Stop()
}

// run sends calls as one pipeline and finishes each, except those answered
// NOSCRIPT when reload is set: after loading their script it appends them to
// retry for another pipeline. calls is reordered and overwritten.
//
// With batching (a single Redis server), the decisions of each algorithm go
// as one batch-script EVALSHA when there are two or more of them;
// otherwise each decision is its own EVALSHA in the pipeline.
func (co *coalescer) run(calls, retry []*call, reload bool) []*call {
	// Drop what needs no round trip; the latest deadline of the rest
	// bounds the pipeline (each caller stops waiting at its own).
	now := time.Now()
	var deadline time.Time
	sent := calls[:0]
	for _, c := range calls {
		switch {
		case c.state.Load() != callWaiting:
			// Its caller is gone (or the reaper let it go): spend no token.
		case c.ctx.Err() != nil:
			co.finish(c, c.ctx.Err())
		case !now.Before(c.deadline):
			co.finish(c, errExpiredQueued)
		default:
			if c.deadline.After(deadline) {
				deadline = c.deadline
			}
			sent = append(sent, c)
		}
	}
	clear(calls[len(sent):])
	if len(sent) == 0 {
		return retry
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	// Group; a group of one goes as a per-key EVALSHA.
	singles := sent
	if co.s.batch {
		singles = co.singles[:0]
		for _, c := range sent {
			if b := co.batchOf(c.sc); b != nil {
				b.calls = append(b.calls, c)
			} else {
				singles = append(singles, c)
			}
		}
		for i := range co.batches {
			if b := &co.batches[i]; len(b.calls) == 1 {
				singles = append(singles, b.calls[0])
				b.calls = b.calls[:0]
			}
		}
	}
	cmds := co.cmds[:0]
	for _, c := range singles {
		c.epoch = c.sc.epoch.Load()
		c.cmd = c.command(ctx)
		cmds = append(cmds, c.cmd)
	}
	for i := range co.batches {
		if b := &co.batches[i]; len(b.calls) > 0 {
			cmds = append(cmds, b.command(ctx))
		}
	}
	_ = co.pipe.BatchProcess(ctx, cmds...)
	_, _ = co.pipe.Exec(ctx) // errors are per command
	clear(cmds)
	co.cmds = cmds

	var loaded map[*script]error
	done := func(c *call, sc *script, epoch uint64, err error) {
		if isNoScript(err) && reload {
			if loaded == nil {
				loaded = make(map[*script]error, 2)
			}
			lerr, ok := loaded[sc]
			if !ok {
				lerr = co.s.load(ctx, sc, epoch)
				loaded[sc] = lerr
			}
			if lerr == nil {
				retry = append(retry, c)
				return
			}
			err = lerr
		}
		co.finish(c, err)
	}
	for _, c := range singles {
		err := c.result(c.cmd)
		c.cmd = nil
		done(c, c.sc, c.epoch, err)
	}
	if co.s.batch {
		clear(singles)
		co.singles = singles[:0]
	}
	for i := range co.batches {
		b := &co.batches[i]
		if len(b.calls) == 0 {
			continue
		}
		vals, err := b.cmd.Result()
		if err == nil && len(vals) != 4*len(b.calls) {
			err = fmt.Errorf("%w: batch script returned %d values for %d keys", errBadReply, len(vals), len(b.calls))
		}
		for j, c := range b.calls {
			cerr := err
			if err == nil {
				copy(c.vals[:], vals[4*j:4*j+4])
				if c.vals[0] < 0 {
					cerr = fmt.Errorf("%w: redis refused reading or writing %s", errKeyRefused, c.key)
				}
			}
			done(c, b.sc, b.epoch, cerr)
		}
		b.reset()
	}
	return retry
}

// batchOf is the batch that takes calls of the per-key script sc, or nil.
func (co *coalescer) batchOf(sc *script) *batch {
	for i := range co.batches {
		if co.batches[i].one == sc {
			return &co.batches[i]
		}
	}
	return nil
}

// batch is one batch-script EVALSHA being built or out: the decisions of
// one algorithm in a pipeline, in order. The flusher owns the coalescer's
// two (token bucket, sliding window) and reuses their slices; like a
// call's, the command's arguments point into the calls and the batch.
type batch struct {
	one    *script // the per-key script whose calls this batch takes
	sc     *script // the batch script
	calls  []*call
	args   []any
	stride int64 // ARGV per key: 2, or 3 with the tests' time
	epoch  uint64
	cmd    *redis.IntSliceCmd
}

// command builds the batch's EVALSHA: keys in order, then the stride and
// each call's ARGV.
func (b *batch) command(ctx context.Context) *redis.IntSliceCmd {
	b.stride = int64(b.calls[0].nargs - 4)
	args := append(b.args[:0], "evalsha", &b.sc.sha, strconv.Itoa(len(b.calls)))
	for _, c := range b.calls {
		args = append(args, &c.key)
	}
	args = append(args, &b.stride)
	for _, c := range b.calls {
		args = append(args, &c.argv[0], &c.argv[1])
		if b.stride == 3 {
			args = append(args, &c.argv[2])
		}
	}
	b.args = args
	b.epoch = b.sc.epoch.Load()
	b.cmd = redis.NewIntSliceCmd(ctx, args...)
	return b.cmd
}

// reset forgets the calls, which may be pooled and reused from now on.
func (b *batch) reset() {
	clear(b.calls)
	b.calls = b.calls[:0]
	clear(b.args)
	b.args = b.args[:0]
	b.cmd = nil
}

// finish hands c's answer (c.vals, set by c.result) and err to its caller,
// unless the caller gave up or the reaper let it go. The coalescer's hold
// on c stays (see the flusher).
func (co *coalescer) finish(c *call, err error) {
	c.err = err
	if c.state.CompareAndSwap(callWaiting, callDone) {
		c.ready <- struct{}{} // cap 1, sent once: never blocks
	}
}

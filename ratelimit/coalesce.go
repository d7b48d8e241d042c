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

// coalescer sends the decisions that wait at the same moment as one
// pipeline, and lets a few round trips be out at once when Redis is far.
//
// A decision that finds nothing in flight runs at once on its caller's
// goroutine as a plain EVALSHA: at low load the coalescer costs a mutex
// and nothing else (no timer, no goroutine hand-off). A decision that
// finds a round trip in flight joins the pending list and waits. Whoever
// finishes a round trip — that caller, or a lane — hands the pending list
// to a lane, which sends it as one pipeline (at most maxBatch decisions),
// and again, until nothing is pending.
//
// Lanes (at most maxLanes round trips out): a round trip that takes long
// would make every decision queued behind it wait for it and then for its
// own round trip, 2 × RTT, and trip the timeout when the RTT passes half of
// it. So when a decision queues and the youngest round trip out was sent at
// least spread ago (Timeout/5), the pending list goes at once on another
// lane instead of waiting: a decision then waits at most about spread plus
// its own round trip. On a near Redis, round trips come back long before
// spread and everything rides one pipeline at a time, as large as ever.
//
// One connection carries each batch, and a round trip's syscalls are
// shared by it on both sides: a write and a read for Redis, and for the
// gateway a write (which wakes Redis, the dearest part) and a read. Over a
// single server the batch is one batch-script EVALSHA per algorithm (see
// batch), so Redis also pays its per-EVALSHA cost once per batch; that is
// what lets one Redis serve more replicas, and what keeps the decision's
// wait for Redis short when Redis shares a CPU with other work.
//
// A waiting decision costs no timer of its own. Its deadline (start +
// timeout) is a number; one timer per coalescer, the reaper, is set at the
// earliest deadline of the decisions sent whenever a lane sends a
// pipeline, and when it fires it lets every decision past its deadline go
// with context.DeadlineExceeded (errExpiredQueued for one never sent). A
// pipeline's context allows the longer of its batch's latest deadline and
// the store's loadTimeout: a round trip cut short would cost its
// connection, and on a far Redis the next connection's HELLO would make
// the next pipeline late too. A decision past its deadline when its turn
// comes is not sent. A decision that waits behind a
// lone EVALSHA only needs no reaper: that round trip ends by its own,
// earlier, deadline.
//
// A waiting call has two owners, its caller and the coalescer (the pending
// list, then a lane), and goes back to the pool when both are done with it
// (call.refs).
type coalescer struct {
	s        *RedisStore
	maxBatch int
	spread   time.Duration
	lanes    []*lane

	mu        sync.Mutex
	lone      int       // 1 while a caller's lone EVALSHA is out
	busy      int       // lanes sending
	free      []*lane   // idle lanes
	lastSend  time.Time // when the youngest round trip out was sent
	pending   []*call   // waiting for the next pipeline, oldest first
	closed    bool
	reaper    *time.Timer // runs reap; armed while lanes have calls out
	reapArmed bool
	reapAt    time.Time
	launcher  *time.Timer // runs launch; armed while calls wait and a lane is idle
	launching bool

	stop chan struct{}  // closed by close
	wg   sync.WaitGroup // the lanes' goroutines
}

// lane sends one pipeline at a time; its goroutine waits for kick.
type lane struct {
	co *coalescer

	// The lane's own: a pipeline (Exec empties it) and scratch space.
	pipe    redis.Pipeliner
	batches [2]batch // token bucket, sliding window
	singles []*call
	cmds    []redis.Cmder
	out     []*call

	held []*call       // the batch being sent; written under co.mu while the lane is idle or by the lane
	kick chan struct{} // cap 1: held has a batch
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

func newCoalescer(s *RedisStore, maxBatch, maxLanes int, spread time.Duration) *coalescer {
	co := &coalescer{
		s:        s,
		maxBatch: maxBatch,
		spread:   spread,
		stop:     make(chan struct{}),
	}
	for range maxLanes {
		l := &lane{
			co:   co,
			pipe: s.client.Pipeline(),
			batches: [2]batch{
				{one: s.gcra, sc: s.gcraBatch},
				{one: s.sliding, sc: s.slidingBatch},
			},
			kick: make(chan struct{}, 1),
		}
		co.lanes = append(co.lanes, l)
		co.free = append(co.free, l)
	}
	co.reaper = time.AfterFunc(time.Hour, co.reap)
	co.reaper.Stop()
	co.launcher = time.AfterFunc(time.Hour, co.launch)
	co.launcher.Stop()
	co.wg.Add(maxLanes)
	for _, l := range co.lanes {
		go l.loop()
	}
	return co
}

// do runs c (prepared, owned by do from here on: it goes back to the pool)
// within timeout and waits for its answer or ctx.
func (co *coalescer) do(ctx context.Context, c *call, timeout time.Duration) ([4]int64, error) {
	c.ctx = ctx
	now := time.Now()
	c.deadline = now.Add(timeout)
	co.mu.Lock()
	if co.closed {
		co.mu.Unlock()
		co.s.putCall(c)
		return [4]int64{}, ErrClosed
	}
	if co.lone+co.busy == 0 {
		// Nothing out: go now, on this goroutine.
		co.lone = 1
		co.lastSend = now
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
	var l *lane
	if len(co.free) > 0 && co.lone+co.busy < len(co.lanes) {
		if now.Sub(co.lastSend) >= co.spread {
			// The youngest round trip out is old: do not wait for it.
			l = co.dispatch(now)
		} else if !co.launching {
			// Nobody may come after this call: go when it gets old.
			co.launching = true
			co.launcher.Reset(co.lastSend.Add(co.spread).Sub(now))
		}
	}
	co.mu.Unlock()
	if l != nil {
		l.kick <- struct{}{} // never blocks: an idle lane's kick is empty
	}
	select {
	case <-c.ready:
	case <-ctx.Done():
		if c.state.CompareAndSwap(callWaiting, callAbandoned) {
			co.unref(c) // the lane skips c
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

// dispatch hands the oldest pending calls to an idle lane, which the caller
// kicks after unlocking. co.mu must be held, pending and free not empty.
func (co *coalescer) dispatch(now time.Time) *lane {
	l := co.free[len(co.free)-1]
	co.free = co.free[:len(co.free)-1]
	co.busy++
	co.fill(l, now)
	return l
}

// fill moves up to maxBatch pending calls into l.held and arms the reaper
// for the earliest of their deadlines. co.mu must be held.
func (co *coalescer) fill(l *lane, now time.Time) {
	n := min(len(co.pending), co.maxBatch)
	l.held = append(l.held[:0], co.pending[:n]...)
	rest := copy(co.pending, co.pending[n:])
	clear(co.pending[rest:])
	co.pending = co.pending[:rest]
	co.lastSend = now
	earliest := l.held[0].deadline
	for _, c := range l.held[1:] {
		if c.deadline.Before(earliest) {
			earliest = c.deadline
		}
	}
	if !co.reapArmed || earliest.Before(co.reapAt) {
		co.reaper.Reset(earliest.Sub(now))
		co.reapArmed, co.reapAt = true, earliest
	}
}

// unref drops one owner's hold on c; the last one pools it.
func (co *coalescer) unref(c *call) {
	if c.refs.Add(-1) == 0 {
		co.s.putCall(c)
	}
}

// reap lets every waiting call past its deadline go, and while lanes have
// calls out, arms the reaper again for the next deadline.
func (co *coalescer) reap() {
	now := time.Now()
	co.mu.Lock()
	defer co.mu.Unlock()
	co.reapArmed = false
	var next time.Time
	sent := false
	check := func(c *call, expired int32) {
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
	for _, l := range co.lanes {
		for _, c := range l.held {
			sent = true
			check(c, callExpired) // sent: Redis did not answer in time
		}
	}
	for _, c := range co.pending {
		check(c, callExpiredQueued) // never sent: says nothing about Redis
	}
	if sent && !next.IsZero() {
		co.reaper.Reset(next.Sub(now))
		co.reapArmed, co.reapAt = true, next
	}
}

// launch sends what waits on another lane once the youngest round trip
// out is spread old, so that a call which queued with no call after it
// does not wait for a whole round trip to come back.
func (co *coalescer) launch() {
	now := time.Now()
	co.mu.Lock()
	co.launching = false
	var l *lane
	if len(co.pending) > 0 && !co.closed && len(co.free) > 0 && co.lone+co.busy < len(co.lanes) {
		if wait := co.lastSend.Add(co.spread).Sub(now); wait > 0 {
			co.launching = true
			co.launcher.Reset(wait)
		} else {
			l = co.dispatch(now)
		}
	}
	co.mu.Unlock()
	if l != nil {
		l.kick <- struct{}{}
	}
}

// release ends the round trip of a caller that went alone: a lane takes
// over if calls queued up meanwhile.
func (co *coalescer) release() {
	co.mu.Lock()
	co.lone = 0
	var l *lane
	if len(co.pending) > 0 && !co.closed && len(co.free) > 0 {
		l = co.dispatch(time.Now())
	}
	co.mu.Unlock()
	if l != nil {
		l.kick <- struct{}{}
	}
}

// close stops the lanes and fails what is pending; it is idempotent.
func (co *coalescer) close() {
	co.mu.Lock()
	first := !co.closed
	co.closed = true
	co.mu.Unlock()
	if first {
		close(co.stop)
	}
	co.wg.Wait()
	co.failPending()
}

// loop sends the batches the lane is given until the coalescer closes.
func (l *lane) loop() {
	co := l.co
	defer co.wg.Done()
	var batch, retry []*call
	for {
		select {
		case <-co.stop:
			return
		case <-l.kick:
		}
		for more := true; more; {
			batch = append(batch[:0], l.held...)
			retry = l.run(batch, retry[:0], true)
			if len(retry) > 0 {
				l.run(retry, nil, false)
			}
			clear(batch)
			clear(retry)

			// The reaper no longer sees these calls: they may be pooled.
			co.mu.Lock()
			out := append(l.out[:0], l.held...)
			clear(l.held)
			l.held = l.held[:0]
			more = len(co.pending) > 0 && !co.closed
			if more {
				co.fill(l, time.Now())
			} else {
				co.busy--
				co.free = append(co.free, l)
				if co.busy == 0 && co.reapArmed {
					co.reaper.Stop()
					co.reapArmed = false
				}
			}
			co.mu.Unlock()
			for _, c := range out {
				co.unref(c)
			}
			clear(out)
			l.out = out[:0]
		}
	}
}

// failPending finishes whatever waits when the store closes, once the
// lanes have returned: the pending calls, and a batch handed to a lane that
// saw stop before its kick. A caller that went alone and returns after
// close dispatches nothing; its pending calls are failed here or see
// closed.
func (co *coalescer) failPending() {
	co.mu.Lock()
	defer co.mu.Unlock()
	for _, l := range co.lanes {
		for _, c := range l.held {
			co.finish(c, ErrClosed)
			co.unref(c)
		}
		clear(l.held)
		l.held = l.held[:0]
	}
	for _, c := range co.pending {
		co.finish(c, ErrClosed)
		co.unref(c)
	}
	clear(co.pending)
	co.pending = nil
	co.reaper.Stop()
	co.reapArmed = false
	co.launcher.Stop()
	co.launching = false
}

// run sends calls as one pipeline and finishes each, except those answered
// NOSCRIPT when reload is set: after loading their script it appends them to
// retry for another pipeline. calls is reordered and overwritten.
//
// With batching (a single Redis server), the decisions of each algorithm go
// as one batch-script EVALSHA when there are two or more of them;
// otherwise each decision is its own EVALSHA in the pipeline.
func (l *lane) run(calls, retry []*call, reload bool) []*call {
	co := l.co
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
	// The round trip may outlast its callers (the reaper lets them go at
	// their deadlines): cutting it would close its connection, and the next
	// pipeline's new connection would cost a HELLO round trip more, which on
	// a far Redis makes it time out in turn. So the lane waits for Redis up
	// to loadTimeout; other lanes carry the decisions meanwhile.
	if long := now.Add(co.s.loadTimeout); long.After(deadline) {
		deadline = long
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	// Group; a group of one goes as a per-key EVALSHA.
	singles := sent
	if co.s.batch {
		singles = l.singles[:0]
		for _, c := range sent {
			if b := l.batchOf(c.sc); b != nil {
				b.calls = append(b.calls, c)
			} else {
				singles = append(singles, c)
			}
		}
		for i := range l.batches {
			if b := &l.batches[i]; len(b.calls) == 1 {
				singles = append(singles, b.calls[0])
				b.calls = b.calls[:0]
			}
		}
	}
	cmds := l.cmds[:0]
	for _, c := range singles {
		c.epoch = c.sc.epoch.Load()
		c.cmd = c.command(ctx)
		cmds = append(cmds, c.cmd)
	}
	for i := range l.batches {
		if b := &l.batches[i]; len(b.calls) > 0 {
			cmds = append(cmds, b.command(ctx))
		}
	}
	_ = l.pipe.BatchProcess(ctx, cmds...)
	_, _ = l.pipe.Exec(ctx) // errors are per command
	clear(cmds)
	l.cmds = cmds

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
		l.singles = singles[:0]
	}
	for i := range l.batches {
		b := &l.batches[i]
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
func (l *lane) batchOf(sc *script) *batch {
	for i := range l.batches {
		if l.batches[i].one == sc {
			return &l.batches[i]
		}
	}
	return nil
}

// batch is one batch-script EVALSHA being built or out: the decisions of
// one algorithm in a pipeline, in order. Each lane owns two (token bucket,
// sliding window) and reuses their slices; like a
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

package ratelimit

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"
)

// failFast is a lazy three-state switch in front of Redis, in the manner of
// gobreaker: closed, open for a cooldown, then exactly one call (the probe)
// is let through; its success closes it, its failure opens it again. No
// goroutine, no timer: the state is computed from timestamps when a call
// arrives.
//
// It opens only on transport faults seen repeatedly: at least `after`
// consecutive failed decisions (no decision answered in between) spread
// over at least `span` (2 × the store's timeout, at least 250 ms). One event that fails many
// decisions at the same moment — a GC pause past the timeout, one dropped
// connection failing a whole pipeline — is not an outage and never opens it
// (issue: one such event used to turn Redis off for every key for 1 s).
// An error reply from Redis (WRONGTYPE on one key, say) is an answer: it
// fails its own decision only and counts as Redis answering.
type failFast struct {
	now      func() time.Time
	cooldown time.Duration // <= 0: never open
	after    int64         // consecutive transport failures needed to open
	span     time.Duration // ... spread over at least this long
	log      hclog.Logger

	state  atomic.Int32 // ffClosed, ffOpen or ffProbing
	until  atomic.Int64 // UnixNano until which an open switch refuses calls
	streak atomic.Int64 // consecutive transport failures while closed
	first  atomic.Int64 // UnixNano of the streak's first failure
}

const (
	ffClosed int32 = iota
	ffOpen
	ffProbing
)

// admit reports whether a call may go to Redis, and whether it is the probe.
func (f *failFast) admit() (ok, probe bool) {
	switch f.state.Load() {
	case ffClosed:
		return true, false
	case ffOpen:
		if f.now().UnixNano() < f.until.Load() {
			return false, false
		}
		if f.state.CompareAndSwap(ffOpen, ffProbing) {
			return true, true
		}
	}
	return false, false
}

// success records that Redis answered.
func (f *failFast) success() {
	// Load first: the common case writes nothing, so replicas' cores do not
	// fight over the cache line.
	if f.streak.Load() != 0 {
		f.streak.Store(0)
	}
	if f.state.Load() != ffClosed && f.state.Swap(ffClosed) != ffClosed {
		f.log.Info("redis answers again; rate-limit decisions go to redis")
	}
}

// result records how a decision that went to Redis ended: err nil or a
// reply from Redis is an answer; anything else a transport fault.
func (f *failFast) result(err error, probe bool) {
	if err == nil || isReply(err) {
		f.success()
		return
	}
	f.failure(err, probe)
}

// failure records a transport fault. A probe's failure opens the switch
// again at once; otherwise it opens when the streak is long enough.
func (f *failFast) failure(err error, probe bool) {
	if f.cooldown <= 0 {
		return
	}
	now := f.now()
	if !probe {
		n := f.streak.Add(1)
		if n == 1 {
			f.first.Store(now.UnixNano())
			return
		}
		if n < f.after || now.UnixNano()-f.first.Load() < int64(f.span) {
			return
		}
	}
	f.until.Store(now.Add(f.cooldown).UnixNano())
	if old := f.state.Swap(ffOpen); old == ffClosed {
		f.log.Warn("redis failing; rate-limit calls fail fast", "for", f.cooldown,
			"failures", f.streak.Load(), "error", err)
	}
	f.streak.Store(0)
}

// abandon records that a decision ended without telling anything about
// Redis (its caller went away, or it expired in the queue before it was
// sent): the next call probes again if it was the probe.
func (f *failFast) abandon(probe bool) {
	if probe {
		f.state.CompareAndSwap(ffProbing, ffOpen)
	}
}

// isReply reports whether err is an answer Redis gave about this decision
// (an error reply such as WRONGTYPE, or a batch script's refusal of one
// key), not a fault of the way to it. Replies that say the server as a
// whole cannot serve (LOADING, MASTERDOWN, CLUSTERDOWN, READONLY, TRYAGAIN,
// BUSY) are faults: every other decision would get them too.
func isReply(err error) bool {
	var re redis.Error
	if errors.As(err, &re) {
		for _, p := range serverDownReplies {
			if redis.HasErrorPrefix(err, p) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, errKeyRefused) || errors.Is(err, errBadReply)
}

// serverDownReplies are error replies about the server, not the key.
var serverDownReplies = [...]string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "READONLY", "TRYAGAIN", "BUSY"}

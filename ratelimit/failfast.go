package ratelimit

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// failFast is a lazy three-state switch in front of Redis, in the manner of
// gobreaker but with no thresholds: one failure opens it for a cooldown,
// then exactly one call (the probe) is let through; its success closes it,
// its failure opens it again. No goroutine, no timer: the state is computed
// from timestamps when a call arrives.
type failFast struct {
	now      func() time.Time
	cooldown time.Duration // <= 0: never open
	log      hclog.Logger

	state atomic.Int32 // ffClosed, ffOpen or ffProbing
	until atomic.Int64 // UnixNano until which an open switch refuses calls
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
	if f.state.Load() != ffClosed && f.state.Swap(ffClosed) != ffClosed {
		f.log.Info("redis answers again; rate-limit decisions go to redis")
	}
}

// failure records that Redis failed: calls are refused for the cooldown.
func (f *failFast) failure(err error) {
	if f.cooldown <= 0 {
		return
	}
	f.until.Store(f.now().Add(f.cooldown).UnixNano())
	if old := f.state.Swap(ffOpen); old == ffClosed {
		f.log.Warn("redis failing; rate-limit calls fail fast", "for", f.cooldown, "error", err)
	}
}

// abandon records that a probe ended without telling anything about Redis
// (its caller went away): the next call probes again.
func (f *failFast) abandon(probe bool) {
	if probe {
		f.state.CompareAndSwap(ffProbing, ffOpen)
	}
}

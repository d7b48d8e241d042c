package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// errUpstreamIdle: the upstream sent nothing for idle_timeout while its body streamed.
var errUpstreamIdle = errors.New("upstream silent past idle_timeout")

// upstreamClock holds the upstream side's time limits of one exchange, one timer for
// both: the service's `timeout` runs from the first attempt until the response headers
// arrive (all attempts share it); after that only `idle_timeout` runs, and only while
// the gateway waits for the next piece of the body, so a stream may last as long as
// bytes keep moving. When a limit passes, the upstream request's context is cancelled
// with the limit's error as its cause.
//
// While headers are awaited, a timeout also cuts off the client's upload: the transport
// waits for the body reader, so a stalled client would otherwise hold the exchange.
//
// A clock belongs to one exchange and is never pooled: stop guarantees that the timer's
// callback has finished and will not run again, so it never touches a connection that
// has moved on to another request (the callback holds mu while it works).
type upstreamClock struct {
	mu       sync.Mutex
	timer    *time.Timer
	cancel   context.CancelCauseFunc
	idle     time.Duration
	client   http.ResponseWriter // the server's writer of this request; nil: no upload to cut
	deadline time.Time           // when the headers phase ends
	body     bool                // the headers arrived: the idle phase
	expired  error               // ErrUpstreamTimeout or errUpstreamIdle once a limit passed
	stopped  bool
}

// newUpstreamClock starts the headers phase of an exchange: ctx is the upstream
// request's context, cancelled through cancel when a limit passes.
func newUpstreamClock(timeout, idle time.Duration, cancel context.CancelCauseFunc) *upstreamClock {
	c := &upstreamClock{cancel: cancel, idle: idle, deadline: time.Now().Add(timeout)}
	c.timer = time.AfterFunc(timeout, c.fire)
	return c
}

// cutUploadOf makes a timeout in the headers phase set w's read deadline to now.
// w must be the server's own writer, not a pooled wrapper.
func (c *upstreamClock) cutUploadOf(w http.ResponseWriter) {
	c.mu.Lock()
	c.client = w
	c.mu.Unlock()
}

func (c *upstreamClock) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.expired != nil {
		return
	}
	if c.body {
		c.expired = errUpstreamIdle
	} else {
		c.expired = ErrUpstreamTimeout
		if c.client != nil {
			_ = http.NewResponseController(c.client).SetReadDeadline(time.Now())
		}
	}
	c.cancel(c.expired)
}

// timedOut reports whether `timeout` passed before the headers arrived.
func (c *upstreamClock) timedOut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.expired == ErrUpstreamTimeout
}

// remaining is what is left of the headers phase.
func (c *upstreamClock) remaining() time.Duration { return time.Until(c.deadline) }

// startBody ends the headers phase: the timeout no longer runs. It returns false when
// the timeout passed first (the answer arrived too late to be used).
func (c *upstreamClock) startBody() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer.Stop()
	c.body = true
	c.client = nil
	return c.expired == nil
}

// awaitBody arms idle_timeout before a read of the response body.
func (c *upstreamClock) awaitBody() { c.timer.Reset(c.idle) }

// bodyArrived disarms it once the read returned; the time spent writing to the client
// is the client's, not the upstream's silence.
func (c *upstreamClock) bodyArrived() { c.timer.Stop() }

// idleExpired reports whether the upstream was silent past idle_timeout.
func (c *upstreamClock) idleExpired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.expired == errUpstreamIdle
}

// stop ends the clock; when it returns, the callback is not running and never will.
func (c *upstreamClock) stop() {
	c.mu.Lock()
	c.stopped = true
	c.client = nil
	c.mu.Unlock()
	c.timer.Stop()
}

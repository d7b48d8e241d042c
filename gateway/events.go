package gateway

import (
	"sync"
	"time"
)

// Event is something that happened in the gateway that logging and metrics (and tests)
// may want to know about. Subscribers type-switch on the concrete types below; later
// features add their own types.
type Event interface{ event() }

// ConfigLoaded is published once the route table and services are built.
type ConfigLoaded struct {
	Routes   int
	Services int
}

// InstanceSetChanged is published when a service's instance set is replaced.
type InstanceSetChanged struct {
	Service string
	Source  string // static | consul
	Added   []string
	Removed []string
	Healthy int
}

// ShutdownBegun is published when the gateway starts draining.
type ShutdownBegun struct {
	Reason  string
	Timeout time.Duration
}

// BreakerStateChanged is published when an instance's circuit breaker changes state.
type BreakerStateChanged struct {
	Service  string
	Instance string
	From, To string
}

func (ConfigLoaded) event()        {}
func (InstanceSetChanged) event()  {}
func (ShutdownBegun) event()       {}
func (BreakerStateChanged) event() {}

// Events is a small synchronous publish/subscribe bus. Subscribers run on the publisher's
// goroutine and must be quick; events are rare (config, membership, state changes), never
// per request.
type Events struct {
	mu   sync.RWMutex
	subs []func(Event)
}

// Subscribe registers fn for every later event.
func (e *Events) Subscribe(fn func(Event)) {
	e.mu.Lock()
	e.subs = append(e.subs, fn)
	e.mu.Unlock()
}

// Publish delivers ev to every subscriber.
func (e *Events) Publish(ev Event) {
	e.mu.RLock()
	subs := e.subs
	e.mu.RUnlock()
	for _, fn := range subs {
		fn(ev)
	}
}

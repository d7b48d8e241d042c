// Package balancer holds a service's instance set and picks one instance per request.
//
// A Set is fed whole instance lists through Update — from static config at start-up,
// from a Consul watcher later — and builds an immutable snapshot from each list: the
// endpoints sorted by ID, plus whatever the algorithm needs precomputed (a weighted
// cycle, a hash ring). The snapshot is swapped in through an atomic.Pointer, so Pick
// never locks and never allocates; a pick is index arithmetic on precomputed data.
//
// Algorithms:
//
//   - round_robin: plain rotation in ID order; weights are ignored.
//   - weighted: nginx's smooth weighted round robin. One cycle of the sequence is
//     computed at Update time and indexed with an atomic counter, so concurrent picks
//     follow the exact sequence without a lock (a=5,b=1,c=1 gives a a b a c a a).
//   - least_conn: fewest in-flight requests relative to weight (nginx's comparison,
//     inflight/weight); ties go to the first in a rotating order, so equal instances
//     share the load. The scan stops early at an idle instance.
//   - random: a uniformly random draw, weighted (it draws a position in the weighted
//     cycle); the source is injectable.
//   - ip_hash: a consistent-hash ring with virtual nodes (160 per unit of weight),
//     keyed by the string passed to Pick (the client IP). Removing one of N instances
//     moves only the clients that were on it, about 1/N of them.
//
// Weights below 1 count as 1; weights above MaxWeight count as MaxWeight.
package balancer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
)

// The algorithm names NewSet accepts.
const (
	RoundRobin = "round_robin"
	LeastConn  = "least_conn"
	Random     = "random"
	IPHash     = "ip_hash"
	Weighted   = "weighted"
)

// MaxWeight is the largest weight the balancer honours; larger weights are clamped.
const MaxWeight = 1 << 16

// ErrUnknownAlgorithm is returned by NewSet for a name that is not one of Algorithms().
var ErrUnknownAlgorithm = errors.New("balancer: unknown load-balancing algorithm")

// Algorithms lists the algorithm names NewSet accepts.
func Algorithms() []string {
	return []string{RoundRobin, LeastConn, Random, IPHash, Weighted}
}

type algorithm uint8

const (
	algoRoundRobin algorithm = iota
	algoLeastConn
	algoRandom
	algoIPHash
	algoWeighted
)

// Instance describes one upstream instance as a source (config, Consul) reports it.
type Instance struct {
	// ID identifies the instance across updates; empty means Address.
	ID string
	// Address is host:port.
	Address string
	// Weight is the relative share of traffic; below 1 means 1. round_robin ignores it.
	Weight int
	// Tags and Meta are carried for display; the balancer does not read them.
	Tags []string
	Meta map[string]string
}

// Endpoint is an Instance inside a Set, with the runtime state the gateway keeps per
// instance. An Endpoint's Instance fields never change; an Update that changes an
// instance's weight, tags or meta (same ID and address) publishes a new Endpoint that
// shares the old one's state (in-flight count, Ext). An Update that changes the
// address of an ID replaces the instance: new state, reported as removed and added.
type Endpoint struct {
	Instance
	st *state
}

// state is what survives Updates for the same ID and address.
type state struct {
	inflight atomic.Int64
	ext      any // set once, before the first snapshot holding it is published
}

// InFlight reports the requests currently holding this endpoint (Acquire minus Release).
func (e *Endpoint) InFlight() int64 { return e.st.inflight.Load() }

// Acquire counts one more request in flight on this endpoint; least_conn reads it.
func (e *Endpoint) Acquire() { e.st.inflight.Add(1) }

// Release undoes one Acquire.
func (e *Endpoint) Release() { e.st.inflight.Add(-1) }

// Ext returns the value Options.OnNew returned for this instance (nil without OnNew).
// The gateway keeps the instance's circuit breaker there, so the hot path reaches it
// without a map lookup: e.Ext().(*breaker.Breaker).
func (e *Endpoint) Ext() any { return e.st.ext }

// Filter reports whether Pick must pass over an endpoint (an open breaker, an instance
// this request already tried). A nil Filter skips nothing. It is a func rather than an
// interface because an interface argument escapes, which would force the caller's
// filter onto the heap on every request; a method value of a stack variable
// (tried.Skip) does not.
type Filter func(*Endpoint) bool

// Options configures a Set. The zero value is ready to use.
type Options struct {
	// Rand returns uniformly distributed uint64s for the random algorithm. It must be
	// safe for concurrent use. nil: math/rand/v2's Uint64. Tests inject a seeded one.
	Rand func() uint64

	// OnNew is called once for each new instance (a new ID, or an ID whose address
	// changed) during Update, before the endpoint is published; its result is what
	// Ext returns. It runs with the Set's update lock held and must not call Update.
	OnNew func(*Endpoint) any

	// OnRemove is called during Update, after the new snapshot is published, for each
	// instance whose state is dropped (the counterpart of OnNew). Picks made before
	// the swap may still hold such an endpoint; it stays usable until they finish.
	OnRemove func(*Endpoint)

	// VirtualNodes is the number of ip_hash ring points per unit of weight.
	// 0 means 160 (ketama's choice). The whole ring is capped at 131072 points.
	VirtualNodes int
}

// Set is one service's instances and the algorithm that picks among them. Pick,
// Endpoints and Len are safe for concurrent use with each other and with Update; they
// never lock. Updates are serialised by a mutex.
type Set struct {
	snap atomic.Pointer[snapshot]
	algo algorithm
	name string
	opts Options

	mu sync.Mutex // serialises Update

	// next is the rotation counter (round_robin, weighted, least_conn ties). It is
	// written by every pick, so it sits on its own cache line, away from snap.
	_    [64]byte
	next atomic.Uint64
	_    [56]byte
}

// snapshot is one immutable generation of a Set.
type snapshot struct {
	eps []*Endpoint // sorted by ID

	// cycle is one period of the smooth weighted sequence, as indexes into eps
	// (weighted and random). nil means the identity: all weights equal.
	cycle []uint32

	ring ring // ip_hash only
}

// ValidateAlgorithm reports whether NewSet accepts name ("" means round_robin), with an
// error wrapping ErrUnknownAlgorithm that lists the names it accepts.
func ValidateAlgorithm(name string) error {
	_, err := parseAlgorithm(name)
	return err
}

func parseAlgorithm(name string) (algorithm, error) {
	switch name {
	case RoundRobin, "":
		return algoRoundRobin, nil
	case LeastConn:
		return algoLeastConn, nil
	case Random:
		return algoRandom, nil
	case IPHash:
		return algoIPHash, nil
	case Weighted:
		return algoWeighted, nil
	}
	return 0, fmt.Errorf("%w %q: not one of %s", ErrUnknownAlgorithm, name, strings.Join(Algorithms(), ", "))
}

// NewSet returns an empty Set using the named algorithm ("" means round_robin).
func NewSet(name string, opts Options) (*Set, error) {
	a, err := parseAlgorithm(name)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = RoundRobin
	}
	if opts.Rand == nil {
		opts.Rand = rand.Uint64
	}
	if opts.VirtualNodes <= 0 {
		opts.VirtualNodes = 160
	}
	opts.VirtualNodes = min(opts.VirtualNodes, maxRingPoints)
	s := &Set{algo: a, name: name, opts: opts}
	s.snap.Store(&snapshot{})
	return s, nil
}

// Algorithm returns the Set's algorithm name.
func (s *Set) Algorithm() string { return s.name }

// Len returns the number of instances in the current snapshot.
func (s *Set) Len() int { return len(s.snap.Load().eps) }

// Endpoints returns the current endpoints sorted by ID, in a new slice (for admin
// pages; it allocates).
func (s *Set) Endpoints() []*Endpoint {
	eps := s.snap.Load().eps
	out := make([]*Endpoint, len(eps))
	copy(out, eps)
	return out
}

// Pick returns the endpoint for the next request, passing over those skip rejects, or
// nil when the set is empty or every endpoint is skipped. key matters only to ip_hash
// (the client IP); the other algorithms ignore it. Pick does not allocate, and does
// not Acquire the endpoint: the caller does, once it commits to it.
func (s *Set) Pick(key string, skip Filter) *Endpoint {
	sn := s.snap.Load()
	if len(sn.eps) == 0 {
		return nil
	}
	switch s.algo {
	case algoLeastConn:
		return s.pickLeastConn(sn, skip)
	case algoRandom:
		return s.pickRandom(sn, skip)
	case algoIPHash:
		return sn.pickHash(key, skip)
	default: // round_robin, weighted: rotation over the (possibly weighted) cycle
		return s.pickRotate(sn, skip)
	}
}

// at maps position p of the cycle to an index into eps.
func (sn *snapshot) at(p uint64) int {
	if sn.cycle == nil {
		return int(p % uint64(len(sn.eps)))
	}
	return int(sn.cycle[p%uint64(len(sn.cycle))])
}

// scan is the deterministic last resort shared by every algorithm: the first endpoint
// after index i (wrapping, i itself last) that skip does not reject, or nil. It makes
// a nil from Pick mean that nothing is usable.
func (sn *snapshot) scan(i int, skip Filter) *Endpoint {
	n := len(sn.eps)
	for range n {
		i++
		if i == n {
			i = 0
		}
		if e := sn.eps[i]; !skip(e) {
			return e
		}
	}
	return nil
}

package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// MemoryStoreOptions configures a MemoryStore. Zero values mean the defaults.
type MemoryStoreOptions struct {
	// Now is the clock; nil means time.Now. Tests pass a fake and move it.
	Now func() time.Time
	// Shards is the number of independently locked maps, rounded up to a
	// power of two; 0 means 64.
	Shards int
	// SweepInterval is how often the janitor goroutine removes idle keys
	// (those whose bucket is full again); 0 means one minute, a negative
	// value starts no janitor (call Sweep yourself). An idle key is never
	// consulted either way: expiry is also checked on every lookup, so the
	// janitor only returns memory.
	SweepInterval time.Duration
}

// MemoryStore keeps buckets in process memory, with the same algorithms and
// integer arithmetic as the Redis scripts. It is safe for concurrent use; a
// decision allocates nothing once its key exists. Close stops the janitor.
type MemoryStore struct {
	now       func() time.Time
	base      time.Time // now() at construction; times are measured from it
	baseMicro int64     // base as µs since the epoch
	seed      maphash.Seed
	shards    []memShard
	mask      uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type memShard struct {
	mu sync.Mutex
	m  map[memKey]memEntry // guarded by mu
	_  [40]byte            // keep neighbouring shards' locks off one cache line
}

type memKey struct {
	policy string
	alg    Algorithm
	key    string
}

// memEntry is one bucket: for a token bucket a is the TAT in µs; for a
// sliding window a, b, c are the window index, current and previous counts.
// expires (µs) is when the bucket is full again and the entry can go.
type memEntry struct {
	a, b, c int64
	expires int64
}

// NewMemoryStore returns a MemoryStore and, unless opts.SweepInterval is
// negative, starts its janitor; the caller owns it and must Close it.
func NewMemoryStore(opts MemoryStoreOptions) *MemoryStore {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	n := 64
	if opts.Shards > 0 {
		n = 1
		for n < opts.Shards {
			n <<= 1
		}
	}
	s := &MemoryStore{
		now:    opts.Now,
		seed:   maphash.MakeSeed(),
		shards: make([]memShard, n),
		mask:   uint64(n - 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	s.base = s.now()
	s.baseMicro = s.base.UnixMicro()
	for i := range s.shards {
		s.shards[i].m = make(map[memKey]memEntry)
	}
	interval := opts.SweepInterval
	if interval == 0 {
		interval = time.Minute
	}
	if interval < 0 {
		close(s.done)
		return s
	}
	go s.janitor(interval)
	return s
}

// micros is the store's clock in µs since the epoch. It is measured from the
// construction time with the monotonic clock when the clock has one, so a
// wall-clock step does not move buckets.
func (s *MemoryStore) micros() int64 {
	return s.baseMicro + s.now().Sub(s.base).Microseconds()
}

// Allow decides one request for key under p. It never fails; ctx is unused.
func (s *MemoryStore) Allow(_ context.Context, p Policy, key string) (Result, error) {
	now := s.micros()
	alg := p.algorithm()
	sh := &s.shards[maphash.String(s.seed, key)&s.mask]
	k := memKey{policy: p.Name, alg: alg, key: key}

	sh.mu.Lock()
	e, ok := sh.m[k]
	if ok && e.expires <= now {
		e = memEntry{}
	}
	var d decision
	if alg == SlidingWindow {
		size := p.Period.Milliseconds()
		var st window
		d, st = slide(now/1000, window{index: e.a, cur: e.b, prev: e.c}, size, int64(p.Requests))
		if d.allowed {
			sh.m[k] = memEntry{a: st.index, b: st.cur, c: st.prev, expires: now + d.resetAfter}
		}
	} else {
		var tat int64
		d, tat = gcra(now, e.a, emissionMicros(p.Period, p.Requests), int64(p.burst()))
		if d.allowed {
			sh.m[k] = memEntry{a: tat, expires: tat}
		}
	}
	sh.mu.Unlock()
	return d.result(p.limit()), nil
}

// Sweep removes every key whose bucket is full again. The janitor calls it;
// tests call it after moving the clock.
func (s *MemoryStore) Sweep() {
	now := s.micros()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.expires <= now {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// Len returns the number of keys held, expired or not.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Close stops the janitor and waits for it. It is idempotent; the store
// keeps working after Close, only without the janitor.
func (s *MemoryStore) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

func (s *MemoryStore) janitor(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
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
	// MaxKeys bounds the keys held (max_keys): when a new key would pass it,
	// the oldest key of its shard (the first stored) is dropped, and
	// Evictions counts it unless it had expired anyway. Keys are spread over
	// the shards by hash, so the bound holds to within the shard count: at
	// most MaxKeys rounded up to a multiple of it. An evicted client starts
	// over with a full bucket. 0 means DefaultMaxKeys; negative: no bound.
	MaxKeys int
}

// DefaultMaxKeys is MemoryStoreOptions.MaxKeys when it is zero: about 25 MB
// of buckets at most.
const DefaultMaxKeys = 100_000

// MemoryStore keeps buckets in process memory, with the same algorithms and
// integer arithmetic as the Redis scripts, and holds at most MaxKeys keys.
// It is safe for concurrent use; a decision allocates nothing once its key
// exists. Close stops the janitor.
type MemoryStore struct {
	now       func() time.Time
	base      time.Time // now() at construction; times are measured from it
	baseMicro int64     // base as µs since the epoch
	seed      maphash.Seed
	shards    []memShard
	mask      uint64
	shardCap  int // keys per shard at most; 0: unbounded
	evictions atomic.Uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// memShard is one locked map. With a bound, ring lists its keys in the
// order they were stored: it grows to the shard's capacity, then head is
// the oldest slot, and storing a new key drops that slot's key (if the map
// still holds that very entry: a key swept and stored again has a newer
// seq) and takes its place. Every key in m has one slot, so m never holds
// more keys than ring has slots. Nothing here allocates for a key that
// exists.
type memShard struct {
	mu   sync.Mutex
	m    map[memKey]memEntry // guarded by mu, like the rest
	ring []ringSlot
	head int
	seq  uint64
	_    [40]byte // keep neighbouring shards' locks off one cache line
}

// ringSlot is one stored key and the seq of the entry it was stored with.
type ringSlot struct {
	k   memKey
	seq uint64
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
	seq     uint64 // the ring slot's, with a bound
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
	switch {
	case opts.MaxKeys == 0:
		opts.MaxKeys = DefaultMaxKeys
	case opts.MaxKeys < 0:
		opts.MaxKeys = 0
	}
	if opts.MaxKeys > 0 {
		for n > 1 && n > opts.MaxKeys { // at least one key per shard
			n >>= 1
		}
		s.shards, s.mask = s.shards[:n], uint64(n-1)
		s.shardCap = (opts.MaxKeys + n - 1) / n
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
		e = memEntry{seq: e.seq}
	}
	var d decision
	var next memEntry
	if alg == SlidingWindow {
		size := p.Period.Milliseconds()
		var st window
		d, st = slide(now/1000, window{index: e.a, cur: e.b, prev: e.c}, size, int64(p.Requests))
		next = memEntry{a: st.index, b: st.cur, c: st.prev, expires: now + d.resetAfter, seq: e.seq}
	} else {
		var tat int64
		d, tat = gcra(now, e.a, emissionMicros(p.Period, p.Requests), int64(p.burst()))
		next = memEntry{a: tat, expires: tat, seq: e.seq}
	}
	if d.allowed {
		if !ok && s.shardCap > 0 {
			next.seq = s.admit(sh, k, now)
		}
		sh.m[k] = next
	}
	sh.mu.Unlock()
	return d.result(p.limit()), nil
}

// admit makes room in sh (locked) for the new key k and returns its seq:
// once the shard's ring is full, the oldest slot's key is dropped and k
// takes the slot.
func (s *MemoryStore) admit(sh *memShard, k memKey, now int64) uint64 {
	sh.seq++
	if len(sh.ring) < s.shardCap {
		sh.ring = append(sh.ring, ringSlot{k: k, seq: sh.seq})
		return sh.seq
	}
	old := &sh.ring[sh.head]
	if e, ok := sh.m[old.k]; ok && e.seq == old.seq {
		delete(sh.m, old.k)
		if e.expires > now {
			s.evictions.Add(1)
		}
	}
	*old = ringSlot{k: k, seq: sh.seq}
	sh.head++
	if sh.head == len(sh.ring) {
		sh.head = 0
	}
	return sh.seq
}

// Evictions counts the keys dropped, still in use, to stay within MaxKeys.
func (s *MemoryStore) Evictions() uint64 { return s.evictions.Load() }

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

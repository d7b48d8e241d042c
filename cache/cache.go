package cache

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options configure a Cache. Zero values mean the defaults.
type Options struct {
	// Store keeps the entries; required.
	Store Store
	// MaxObjectBytes: larger answers are not stored; 0 means 1 MiB.
	MaxObjectBytes int64
	// DefaultTTL is the freshness of answers that carry none (heuristically cacheable
	// statuses only); 0 means such answers are not stored.
	DefaultTTL time.Duration
	// StaleIfError is how long past its freshness an entry is kept, to be served when
	// the upstream fails.
	StaleIfError time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Cache is one `cache` block: the rules plus a store, and the misses in flight.
type Cache struct {
	store      Store
	maxObject  int64
	defaultTTL time.Duration
	stale      time.Duration
	now        func() time.Time

	mu      sync.Mutex // guards flights
	flights map[string]*Flight
}

// New returns a cache.
func New(o Options) *Cache {
	c := &Cache{store: o.Store, maxObject: o.MaxObjectBytes, defaultTTL: o.DefaultTTL, stale: o.StaleIfError,
		now: o.Now, flights: map[string]*Flight{}}
	if c.maxObject <= 0 {
		c.maxObject = 1 << 20
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// Now is the cache's clock.
func (c *Cache) Now() time.Time { return c.now() }

// MaxObjectBytes is the largest body stored.
func (c *Cache) MaxObjectBytes() int64 { return c.maxObject }

// StaleIfError is how long a stale entry may still answer when the upstream fails.
func (c *Cache) StaleIfError() time.Duration { return c.stale }

// Lookup is the result of a lookup.
type Lookup struct {
	// Entry is the stored answer selected for the request (fresh or not), or nil.
	Entry *Entry
	// VaryMiss: the key has variants, but none for this request's header values.
	VaryMiss bool
}

// Lookup finds the entry that answers req: the key's entry, or through its Vary
// marker the variant for req's header values. A store error is returned as is; the
// caller then serves the request without the cache.
func (c *Cache) Lookup(ctx context.Context, req *Request) (Lookup, error) {
	e, err := c.store.Get(ctx, req.Key)
	if err != nil || e == nil {
		return Lookup{}, err
	}
	if e.Status == 0 { // a Vary marker
		values := make([]string, len(e.Vary))
		for i, name := range e.Vary {
			values[i] = varyValue(req.Header, name)
		}
		v, err := c.store.Get(ctx, variantKey(req.Key, e.Vary, values))
		if err != nil {
			return Lookup{}, err
		}
		if v == nil || !v.Matches(req.Header) {
			return Lookup{VaryMiss: true}, nil
		}
		return Lookup{Entry: v}, nil
	}
	if !e.Matches(req.Header) {
		return Lookup{VaryMiss: true}, nil
	}
	return Lookup{Entry: e}, nil
}

// StaleUsable reports whether a stale entry may still answer when the upstream fails.
func (c *Cache) StaleUsable(e *Entry, now time.Time) bool {
	return e != nil && c.stale > 0 && e.Staleness(now) <= c.stale
}

// Decide judges an upstream answer to req: its freshness lifetime, or why it is not
// stored. Call it with the answer's status and headers before its body streams.
func (c *Cache) Decide(req *Request, status int, h http.Header, now time.Time) (time.Duration, Reason) {
	return Decide(req, status, h, now, c.defaultTTL)
}

// NewEntry builds the entry of an answer that Decide accepted: header is copied
// (without Age, Set-Cookie and hop-by-hop fields), body is kept as it is.
func (c *Cache) NewEntry(req *Request, status int, header http.Header, body []byte, lifetime time.Duration, requested, received time.Time) *Entry {
	h := make(http.Header, len(header))
	for k, vv := range header {
		switch k {
		case "Age", "Set-Cookie", "Cache-Status", "Connection", "Keep-Alive", "Transfer-Encoding", "Trailer":
			continue
		}
		h[k] = slices.Clip(slices.Clone(vv))
	}
	vary, _ := parseVary(header)
	values := make([]string, len(vary))
	for i, name := range vary {
		values[i] = varyValue(req.Header, name)
	}
	return &Entry{Status: status, Header: h, Body: body, Stored: received,
		InitialAge: initialAge(header, requested, received), Lifetime: lifetime, Vary: vary, VaryValues: values}
}

// Put stores e as the answer to req. An entry with Vary is stored as a variant, with
// the key's Vary marker beside it. The store keeps it for its remaining freshness plus
// stale_if_error.
func (c *Cache) Put(ctx context.Context, req *Request, e *Entry) error {
	ttl := e.Lifetime - e.Age(c.now()) + c.stale
	if ttl <= 0 || int64(len(e.Body)) > c.maxObject {
		return nil
	}
	if len(e.Vary) == 0 {
		return c.store.Set(ctx, req.Key, e, ttl)
	}
	if err := c.store.Set(ctx, variantKey(req.Key, e.Vary, e.VaryValues), e, ttl); err != nil {
		return err
	}
	marker := &Entry{Vary: e.Vary, VaryValues: make([]string, len(e.Vary)), Stored: e.Stored, Lifetime: e.Lifetime}
	return c.store.Set(ctx, req.Key, marker, ttl)
}

// Flight is one miss in progress on this replica; others asking for the same key wait
// for it instead of going upstream too.
type Flight struct {
	key     string
	waiters int // joined after the leader; guarded by Cache.mu
	done    chan struct{}
	once    sync.Once
	entry   *Entry // set before done closes
}

// Join returns the flight of key: a new one with leader true (the caller goes
// upstream and must call Finish), or the one in progress.
func (c *Cache) Join(key string) (f *Flight, leader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[key]; f != nil {
		f.waiters++
		return f, false
	}
	f = &Flight{key: key, done: make(chan struct{})}
	c.flights[key] = f
	return f, true
}

// Waiting is how many requests wait for the miss of key in progress.
func (c *Cache) Waiting(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[key]; f != nil {
		return f.waiters
	}
	return 0
}

// Finish ends the leader's flight with the entry it stored (nil: nothing that others
// could use). Only the first call counts.
func (c *Cache) Finish(f *Flight, e *Entry) {
	f.once.Do(func() {
		c.mu.Lock()
		if c.flights[f.key] == f {
			delete(c.flights, f.key)
		}
		c.mu.Unlock()
		f.entry = e
		close(f.done)
	})
}

// Wait waits for the leader, at most until ctx ends, and returns its entry if it has
// one that matches h (nil: go upstream yourself).
func (f *Flight) Wait(ctx context.Context, h http.Header) *Entry {
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil
	}
	if f.entry == nil || !f.entry.Matches(h) {
		return nil
	}
	return f.entry
}

// StatusValue formats a Cache-Status entry (RFC 9211) for cache name with params,
// e.g. StatusValue("gateway", "hit", "ttl=30").
func StatusValue(name string, params ...string) string {
	return name + "; " + strings.Join(params, "; ")
}

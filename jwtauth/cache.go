package jwtauth

import (
	"sync"
	"time"
)

// tokenCache remembers tokens that verified, with the time until which each may be
// trusted without verifying it again: the earlier of its expiry (plus leeway) and
// CacheTTL from when it was verified. Verification is the JWT stage's whole cost, and
// clients send the same token many times, so a hit turns microseconds into a map read.
// Only successful verifications are stored, so nothing a forger sends is ever cached.
type tokenCache struct {
	mu  sync.RWMutex
	m   map[string]cacheEntry
	max int
}

type cacheEntry struct {
	claims *Claims // read-only once built, so shared by every request that sends the token
	until  time.Time
}

func newTokenCache(max int) *tokenCache {
	if max <= 0 {
		return nil
	}
	return &tokenCache{m: make(map[string]cacheEntry), max: max}
}

// get returns the claims of a token verified before and still trusted at now.
func (c *tokenCache) get(token string, now time.Time) (*Claims, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.RLock()
	e, ok := c.m[token]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	return e.claims, true
}

// put remembers a verified token. When full, an arbitrary entry makes room (expired
// ones would be found first in a full scan, but a random victim is O(1) and good enough).
func (c *tokenCache) put(token string, claims *Claims, until time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[token] = cacheEntry{claims: claims, until: until}
}

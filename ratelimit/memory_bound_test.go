package ratelimit

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// TestMemoryStoreMaxKeys: the store never holds more than MaxKeys (to
// within the shard count); the oldest keys go first; evictions of keys in
// use are counted, those of expired keys are not; a key that stays keeps
// its bucket.
func TestMemoryStoreMaxKeys(t *testing.T) {
	clock := newFakeClock(epoch0)
	s := NewMemoryStore(MemoryStoreOptions{Now: clock.Now, SweepInterval: -1, Shards: 1, MaxKeys: 3})
	defer s.Close()
	ctx := context.Background()
	p := Policy{Name: "p", Requests: 2, Period: time.Hour}
	allow := func(key string) Result {
		t.Helper()
		res, err := s.Allow(ctx, p, key)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, k := range []string{"a", "b", "c"} {
		allow(k)
	}
	allow("a") // a's bucket is now empty
	if res := allow("a"); res.Allowed {
		t.Fatal("a passed a third time in its hour")
	}
	allow("d") // evicts a, the oldest
	if got := s.Len(); got != 3 {
		t.Fatalf("%d keys, want 3", got)
	}
	if got := s.Evictions(); got != 1 {
		t.Fatalf("%d evictions, want 1", got)
	}
	if res := allow("a"); !res.Allowed || res.Remaining != 1 {
		t.Fatalf("evicted a starts over: %+v", res) // and evicts b
	}
	if res := allow("c"); res.Remaining != 0 {
		t.Fatalf("c lost its bucket: %+v", res)
	}
	// Expired keys make room without counting as evictions.
	clock.Advance(2 * time.Hour)
	for _, k := range []string{"x", "y", "z"} {
		allow(k)
	}
	if got := s.Evictions(); got != 2 {
		t.Fatalf("%d evictions after replacing expired keys, want 2", got)
	}
	if got := s.Len(); got != 3 {
		t.Fatalf("%d keys, want 3", got)
	}
}

// TestMemoryStoreFlood: a million distinct keys (a client rotating IPv6
// addresses, say; 200,000 under the race detector) leave the store at its
// bound, with the evictions counted and the heap bounded: without the bound
// each key would hold ~150 bytes, the test allows 32 per flooding key.
func TestMemoryStoreFlood(t *testing.T) {
	const maxKeys = 5_000
	flood := 1_000_000
	if raceEnabled {
		flood = 200_000
	}
	s := NewMemoryStore(MemoryStoreOptions{SweepInterval: -1, MaxKeys: maxKeys})
	defer s.Close()
	ctx := context.Background()
	p := Policy{Name: "p", Algorithm: SlidingWindow, Requests: 10, Period: time.Minute}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	buf := make([]byte, 0, 32)
	for i := range flood {
		buf = strconv.AppendInt(append(buf[:0], "2001:db8::"...), int64(i), 16)
		if _, err := s.Allow(ctx, p, string(buf)); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Len(); got > maxKeys+len(s.shards) {
		t.Fatalf("%d keys held, bound %d", got, maxKeys)
	}
	if got, want := s.Evictions(), uint64(flood-s.Len()); got != want {
		t.Fatalf("%d evictions counted, want %d", got, want)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > int64(32*flood) {
		t.Fatalf("heap grew by %d KB holding %d keys after %d", grew>>10, s.Len(), flood)
	} else {
		t.Logf("heap grew by %d KB holding %d keys after %d", grew>>10, s.Len(), flood)
	}
}

// TestMemoryBoundAllocs: with a bound, a decision on an existing key
// allocates nothing, and neither does storing a new key once the ring is
// full beyond the key string itself.
func TestMemoryBoundAllocs(t *testing.T) {
	s := NewMemoryStore(MemoryStoreOptions{SweepInterval: -1, MaxKeys: 64, Shards: 1})
	defer s.Close()
	ctx := context.Background()
	p := Policy{Name: "p", Requests: 1 << 20, Period: time.Hour}
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
		_, _ = s.Allow(ctx, p, keys[i]) // fills the ring, evicts
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = s.Allow(ctx, p, keys[255]) }); n != 0 {
		t.Errorf("existing key: %v allocs per decision, want 0", n)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() { _, _ = s.Allow(ctx, p, keys[i%256]); i++ }); n != 0 {
		t.Errorf("rotating keys through a full store: %v allocs per decision, want 0", n)
	}
}

// TestClientKey: IPv4 as is, IPv6 by its prefix.
func TestClientKey(t *testing.T) {
	for _, tc := range []struct {
		ip     string
		prefix int
		want   string
	}{
		{"192.0.2.7", 0, "192.0.2.7"},
		{"::ffff:192.0.2.7", 0, "::ffff:192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", 0, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"},
		{"fe80::1%eth0", 64, "fe80::/64"},
		{"not an ip", 64, "not an ip"},
	} {
		if got := ClientKey(tc.ip, tc.prefix); got != tc.want {
			t.Errorf("ClientKey(%q, %d) = %q, want %q", tc.ip, tc.prefix, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = ClientKey("192.0.2.7", 64) }); n != 0 {
		t.Errorf("IPv4 key: %v allocs, want 0", n)
	}
}

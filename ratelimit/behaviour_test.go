package ratelimit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/testenv"
)

// storeUnderTest builds a store whose notion of "now" is clock.
type storeUnderTest struct {
	name string
	make func(t *testing.T, clock *fakeClock) Store
}

// storesUnderTest are the stores the behaviour table runs against. The
// Redis ones get the fake clock through testNow (ARGV[3] replaces TIME), so
// Redis and memory must give the very same answers; the tests in
// redis_test.go run on Redis's real TIME.
func storesUnderTest(t *testing.T) []storeUnderTest {
	r := testenv.StartRedis(t)
	redisStore := func(direct bool) func(t *testing.T, clock *fakeClock) Store {
		return func(t *testing.T, clock *fakeClock) Store {
			s := NewRedisStore(newClient(t, r.Addr, nil), RedisStoreOptions{Direct: direct, Timeout: 5 * time.Second, Prefix: t.Name()})
			s.testNow = func() int64 { return clock.Now().UnixMicro() }
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
	}
	return []storeUnderTest{
		{"memory", func(t *testing.T, clock *fakeClock) Store {
			s := NewMemoryStore(MemoryStoreOptions{Now: clock.Now, SweepInterval: -1})
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"redis-direct", redisStore(true)},
		{"redis-coalesced", redisStore(false)},
	}
}

type step struct {
	advance time.Duration
	key     string // "" means "k"
	n       int    // requests sent; 0 means 1
	allowed int    // how many of them must pass
	last    Result // the last one's result (Limit is checked separately)
}

var behaviour = []struct {
	name  string
	p     Policy
	steps []step
}{
	{
		name: "token bucket: burst spent, rejects consume nothing, refill, full again",
		p:    Policy{Requests: 10, Period: time.Minute},
		steps: []step{
			{n: 10, allowed: 10, last: Result{Allowed: true, ResetAfter: time.Minute}},
			{n: 1, last: Result{RetryAfter: 6 * time.Second, ResetAfter: time.Minute}},
			{n: 5, last: Result{RetryAfter: 6 * time.Second, ResetAfter: time.Minute}},
			{advance: 6 * time.Second, n: 2, allowed: 1, last: Result{RetryAfter: 6 * time.Second, ResetAfter: time.Minute}},
			{advance: time.Minute, n: 1, allowed: 1, last: Result{Allowed: true, Remaining: 9, ResetAfter: 6 * time.Second}},
			{key: "other", n: 1, allowed: 1, last: Result{Allowed: true, Remaining: 9, ResetAfter: 6 * time.Second}},
		},
	},
	{
		name: "token bucket: burst above the rate",
		p:    Policy{Requests: 1, Period: 10 * time.Second, Burst: 3},
		steps: []step{
			{n: 3, allowed: 3, last: Result{Allowed: true, ResetAfter: 30 * time.Second}},
			{n: 1, last: Result{RetryAfter: 10 * time.Second, ResetAfter: 30 * time.Second}},
			{advance: 25 * time.Second, n: 3, allowed: 2, last: Result{RetryAfter: 5 * time.Second, ResetAfter: 25 * time.Second}},
		},
	},
	{
		name: "token bucket: burst below the rate",
		p:    Policy{Requests: 100, Period: 100 * time.Second, Burst: 5},
		steps: []step{
			{n: 5, allowed: 5, last: Result{Allowed: true, ResetAfter: 5 * time.Second}},
			{n: 1, last: Result{RetryAfter: time.Second, ResetAfter: 5 * time.Second}},
			{advance: 2500 * time.Millisecond, n: 3, allowed: 2, last: Result{RetryAfter: 500 * time.Millisecond, ResetAfter: 4500 * time.Millisecond}},
		},
	},
	{
		name: "token bucket: interval rounded to the microsecond",
		p:    Policy{Requests: 3, Period: time.Second},
		steps: []step{
			{n: 1, allowed: 1, last: Result{Allowed: true, Remaining: 2, ResetAfter: 333333 * time.Microsecond}},
			{n: 3, allowed: 2, last: Result{RetryAfter: 333333 * time.Microsecond, ResetAfter: 999999 * time.Microsecond}},
		},
	},
	{
		name: "sliding window: count, carry-over weighted by the window's remaining share",
		p:    Policy{Algorithm: SlidingWindow, Requests: 10, Period: time.Minute},
		steps: []step{
			{n: 10, allowed: 10, last: Result{Allowed: true, ResetAfter: 2 * time.Minute}},
			// cur = 10: only after the boundary, once 10·(60−e)/60 + 1 ≤ 10: e = 6 s.
			{n: 1, last: Result{RetryAfter: 66 * time.Second, ResetAfter: 2 * time.Minute}},
			{advance: 30 * time.Second, n: 3, last: Result{RetryAfter: 36 * time.Second, ResetAfter: 90 * time.Second}},
			{advance: 30 * time.Second, n: 1, last: Result{RetryAfter: 6 * time.Second, ResetAfter: time.Minute}},
			{advance: 6 * time.Second, n: 1, allowed: 1, last: Result{Allowed: true, ResetAfter: 114 * time.Second}},
			// e = 30 s: prev weighs 5, cur = 1 → 4 more fit.
			{advance: 24 * time.Second, n: 5, allowed: 4, last: Result{RetryAfter: 6 * time.Second, ResetAfter: 90 * time.Second}},
			{advance: 2 * time.Minute, n: 1, allowed: 1, last: Result{Allowed: true, Remaining: 9, ResetAfter: 90 * time.Second}},
			{key: "other", n: 1, allowed: 1, last: Result{Allowed: true, Remaining: 9, ResetAfter: 90 * time.Second}},
		},
	},
	{
		name: "sliding window of one request",
		p:    Policy{Algorithm: SlidingWindow, Requests: 1, Period: 10 * time.Second},
		steps: []step{
			{n: 1, allowed: 1, last: Result{Allowed: true, ResetAfter: 20 * time.Second}},
			{n: 1, last: Result{RetryAfter: 20 * time.Second, ResetAfter: 20 * time.Second}},
			{advance: 15 * time.Second, n: 1, last: Result{RetryAfter: 5 * time.Second, ResetAfter: 5 * time.Second}},
			{advance: 5 * time.Second, n: 1, allowed: 1, last: Result{Allowed: true, ResetAfter: 20 * time.Second}},
		},
	},
}

// TestBehaviour runs one table of decisions against every store: each step
// moves the fake clock, sends n requests and checks how many passed and
// the full Result of the last one.
func TestBehaviour(t *testing.T) {
	for _, st := range storesUnderTest(t) {
		t.Run(st.name, func(t *testing.T) {
			for i, tc := range behaviour {
				t.Run(tc.name, func(t *testing.T) {
					clock := newFakeClock(epoch0)
					s := st.make(t, clock)
					p := tc.p
					p.Name = fmt.Sprintf("case%d", i)
					if err := p.Validate(); err != nil {
						t.Fatal(err)
					}
					for j, sp := range tc.steps {
						clock.Advance(sp.advance)
						key := sp.key
						if key == "" {
							key = "k"
						}
						n := max(sp.n, 1)
						allowed := 0
						var last Result
						for range n {
							res, err := s.Allow(context.Background(), p, key)
							if err != nil {
								t.Fatalf("step %d: %v", j, err)
							}
							if res.Allowed {
								allowed++
							}
							last = res
						}
						want := sp.last
						want.Limit = p.limit()
						if allowed != sp.allowed || last != want {
							t.Errorf("step %d: %d of %d allowed, last %+v; want %d allowed, last %+v",
								j, allowed, n, last, sp.allowed, want)
						}
					}
				})
			}
		})
	}
}

// TestIndependentBuckets: policies and keys never share a bucket, and an
// algorithm change under one name does not reuse the other's state.
func TestIndependentBuckets(t *testing.T) {
	for _, st := range storesUnderTest(t) {
		t.Run(st.name, func(t *testing.T) {
			s := st.make(t, newFakeClock(epoch0))
			a := Policy{Name: "a", Requests: 2, Period: time.Hour}
			b := Policy{Name: "b", Requests: 2, Period: time.Hour}
			aw := Policy{Name: "a", Algorithm: SlidingWindow, Requests: 2, Period: time.Hour}
			ctx := context.Background()
			for range 3 {
				if _, err := s.Allow(ctx, a, "k"); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range []struct {
				p   Policy
				key string
			}{{a, "k2"}, {b, "k"}, {aw, "k"}, {a, "K"}, {a, "k:"}} {
				res, err := s.Allow(ctx, c.p, c.key)
				if err != nil || !res.Allowed || res.Remaining != 1 {
					t.Errorf("%s/%s %q: %+v %v; want a fresh bucket", c.p.Name, c.p.algorithm(), c.key, res, err)
				}
			}
			if res, _ := s.Allow(ctx, a, "k"); res.Allowed {
				t.Errorf("spent bucket allowed: %+v", res)
			}
		})
	}
}

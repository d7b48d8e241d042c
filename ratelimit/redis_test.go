package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// modes are the two ways RedisStore talks to Redis.
var modes = []struct {
	name   string
	direct bool
}{{"direct", true}, {"coalesced", false}}

// TestRedisSharedLimit: three replicas (each its own go-redis client,
// store and limiter) share one Redis; 48 concurrent callers spread over
// them send far more than the limit for one key within one period. Exactly
// the limit passes, for the hot key and for each other key alike.
func TestRedisSharedLimit(t *testing.T) {
	r := testenv.StartRedis(t)
	for _, m := range modes {
		for _, alg := range []Algorithm{TokenBucket, SlidingWindow} {
			t.Run(m.name+"/"+string(alg), func(t *testing.T) {
				const (
					limit    = 50
					replicas = 3
					callers  = 16 // per replica
					hotCalls = 40 // per caller
					cold     = 4
				)
				p := Policy{Name: "shared", Algorithm: alg, Requests: limit, Period: time.Hour, OnStoreError: OnErrorDeny}
				lims := make([]*Limiter, replicas)
				for i := range lims {
					s := NewRedisStore(newClient(t, r.Addr, nil), RedisStoreOptions{
						Direct: m.direct, Timeout: 10 * time.Second, Prefix: t.Name(),
					})
					t.Cleanup(func() { _ = s.Close() })
					l, err := NewLimiter(p, s, LimiterOptions{})
					if err != nil {
						t.Fatal(err)
					}
					lims[i] = l
				}
				var hot atomic.Int64
				var coldAllowed [cold]atomic.Int64
				var errs atomic.Int64
				var wg sync.WaitGroup
				for i := range replicas * callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						l := lims[i%replicas]
						for j := range hotCalls {
							res, err := l.Allow(context.Background(), "hot")
							if err != nil {
								errs.Add(1)
							} else if res.Allowed {
								hot.Add(1)
							}
							if j%4 == 0 {
								k := (i + j) % cold
								res, err := l.Allow(context.Background(), "cold-"+strconv.Itoa(k))
								if err != nil {
									errs.Add(1)
								} else if res.Allowed {
									coldAllowed[k].Add(1)
								}
							}
						}
					}()
				}
				wg.Wait()
				if errs.Load() != 0 {
					t.Fatalf("%d store errors", errs.Load())
				}
				if got := hot.Load(); got != limit {
					t.Errorf("hot key: %d allowed of %d, want exactly %d", got, replicas*callers*hotCalls, limit)
				}
				for k := range coldAllowed {
					if got := coldAllowed[k].Load(); got != limit {
						t.Errorf("cold-%d: %d allowed, want exactly %d", k, got, limit)
					}
				}
				var total Stats
				for _, l := range lims {
					s := l.Stats()
					total.Allowed += s.Allowed
					total.Limited += s.Limited
					total.Errors += s.Errors
				}
				want := Stats{Allowed: limit * (1 + cold), Limited: replicas*callers*hotCalls*5/4 - limit*(1+cold)}
				if total != want {
					t.Errorf("stats %+v, want %+v", total, want)
				}
				res, err := lims[0].Allow(context.Background(), "fresh")
				if err != nil || !res.Allowed || res.Remaining != limit-1 {
					t.Errorf("fresh key: %+v %v", res, err)
				}
			})
		}
	}
}

// TestRedisRefillAndTTL runs on Redis's real clock: a spent bucket refills
// at the policy's rate, its key carries a TTL no longer than the time until
// the bucket is full, disappears no earlier than that, and a full burst
// passes again afterwards.
func TestRedisRefillAndTTL(t *testing.T) {
	r := testenv.StartRedis(t)
	admin := newClient(t, r.Addr, nil)
	for _, tc := range []struct {
		p      Policy
		maxTTL time.Duration
	}{
		{Policy{Name: "tb", Requests: 5, Period: 500 * time.Millisecond}, 500 * time.Millisecond},
		{Policy{Name: "sw", Algorithm: SlidingWindow, Requests: 5, Period: 300 * time.Millisecond}, 600 * time.Millisecond},
	} {
		t.Run(tc.p.Name, func(t *testing.T) {
			s := NewRedisStore(newClient(t, r.Addr, nil), RedisStoreOptions{Direct: true, Timeout: 5 * time.Second})
			ctx := context.Background()
			key := s.Key(tc.p, "k")
			// spend sends requests until one is refused; from a full bucket
			// (full) at least Requests must pass first.
			spend := func(full bool) (Result, time.Time) {
				t.Helper()
				var last Result
				var lastAllowedAt time.Time
				for i := 0; ; i++ {
					at := time.Now()
					res, err := s.Allow(ctx, tc.p, "k")
					if err != nil {
						t.Fatal(err)
					}
					if !res.Allowed {
						if full && i < tc.p.Requests {
							t.Fatalf("only %d allowed from a full bucket of %d", i, tc.p.Requests)
						}
						return last, lastAllowedAt
					}
					last, lastAllowedAt = res, at
				}
			}
			last, at := spend(true)
			if last.ResetAfter <= 0 || last.ResetAfter > tc.maxTTL {
				t.Fatalf("ResetAfter %v, want in (0, %v]", last.ResetAfter, tc.maxTTL)
			}
			pttl, err := admin.PTTL(ctx, key).Result()
			if err != nil || pttl <= 0 || pttl > tc.maxTTL {
				t.Fatalf("PTTL %v %v, want in (0, %v]", pttl, err, tc.maxTTL)
			}
			rej, err := s.Allow(ctx, tc.p, "k")
			if err != nil || rej.Allowed || rej.RetryAfter <= 0 || rej.RetryAfter > tc.maxTTL {
				t.Fatalf("after spending: %+v %v", rej, err)
			}

			// It refills: some request passes again, well before the key goes.
			eventually(t, 5*time.Second, func() error {
				res, err := s.Allow(ctx, tc.p, "k")
				if err != nil || !res.Allowed {
					return fmt.Errorf("still refused: %+v %v", res, err)
				}
				return nil
			})

			// The key goes once the bucket is full again, not before.
			last, at = spend(false)
			eventually(t, 5*time.Second, func() error {
				n, err := admin.Exists(ctx, key).Result()
				if err != nil || n != 0 {
					return fmt.Errorf("key %s still there (%d, %v)", key, n, err)
				}
				return nil
			})
			if gone := time.Since(at); gone < last.ResetAfter-2*time.Millisecond {
				t.Errorf("key gone after %v, before the bucket was full (%v)", gone, last.ResetAfter)
			}
			full := 0
			for {
				res, err := s.Allow(ctx, tc.p, "k")
				if err != nil {
					t.Fatal(err)
				}
				if !res.Allowed {
					break
				}
				full++
			}
			if full < tc.p.Requests {
				t.Errorf("after the key expired %d passed, want a full bucket of %d", full, tc.p.Requests)
			}
		})
	}
}

// TestRedisClockSkew: two replicas whose process clocks are an hour apart
// (their stores get skewed clocks) share one bucket exactly, and the stored
// TAT is on Redis's timeline, not on either process's.
func TestRedisClockSkew(t *testing.T) {
	r := testenv.StartRedis(t)
	admin := newClient(t, r.Addr, nil)
	p := Policy{Name: "skew", Requests: 10, Period: time.Hour}
	var stores [2]*RedisStore
	for i, skew := range []time.Duration{time.Hour, -time.Hour} {
		stores[i] = NewRedisStore(newClient(t, r.Addr, nil), RedisStoreOptions{
			Direct: true, Timeout: 5 * time.Second,
			Now: func() time.Time { return time.Now().Add(skew) },
		})
	}
	ctx := context.Background()
	for i := range 12 {
		res, err := stores[i%2].Allow(ctx, p, "k")
		if err != nil {
			t.Fatal(err)
		}
		wantAllowed, wantRemaining := i < 10, max(9-i, 0)
		if res.Allowed != wantAllowed || res.Remaining != wantRemaining {
			t.Errorf("call %d on replica %d: %+v, want allowed=%v remaining=%d", i, i%2, res, wantAllowed, wantRemaining)
		}
		if !res.Allowed && (res.RetryAfter <= 0 || res.RetryAfter > 6*time.Minute) {
			t.Errorf("call %d: RetryAfter %v, want in (0, 6m]", i, res.RetryAfter)
		}
	}
	tat, err := admin.Get(ctx, stores[0].Key(p, "k")).Int64()
	if err != nil {
		t.Fatal(err)
	}
	now, err := admin.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ahead := time.Duration(tat-now.UnixMicro()) * time.Microsecond; ahead <= 0 || ahead > time.Hour {
		t.Errorf("stored TAT is %v ahead of Redis TIME, want within (0, 1h]", ahead)
	}
}

// TestRedisRestart: Redis killed and started again (empty) mid-test:
// decisions resume on their own and the script is loaded again.
func TestRedisRestart(t *testing.T) {
	r := testenv.StartRedis(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			hook := &countHook{}
			clock := newFakeClock(time.Now())
			s := NewRedisStore(newClient(t, r.Addr, hook), RedisStoreOptions{
				Direct: m.direct, Timeout: 2 * time.Second, Now: clock.Now, Prefix: t.Name(),
			})
			t.Cleanup(func() { _ = s.Close() })
			l, err := NewLimiter(Policy{Name: "p", Requests: 10, Period: time.Hour, OnStoreError: OnErrorDeny}, s, LimiterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for i := range 3 {
				if res, err := l.Allow(ctx, "k"); err != nil || res.Remaining != 9-i {
					t.Fatalf("before restart: %+v %v", res, err)
				}
			}
			loads := hook.loads.Load()

			r.Stop()
			if _, err := l.Allow(ctx, "k"); !errors.Is(err, ErrStoreUnavailable) {
				t.Fatalf("Redis down: err %v, want ErrStoreUnavailable", err)
			}
			r.Start()

			// A pooled connection may still fail once; each failure opens
			// the fail-fast window, which the clock then skips.
			var res Result
			for attempt := 0; ; attempt++ {
				clock.Advance(2 * time.Second)
				res, err = l.Allow(ctx, "k")
				if err == nil {
					break
				}
				if attempt == 3 {
					t.Fatalf("decisions did not resume after restart: %v", err)
				}
			}
			if !res.Allowed || res.Remaining != 9 {
				t.Errorf("first decision after restart (empty Redis): %+v, want a fresh bucket", res)
			}
			if got := hook.loads.Load() - loads; got != 1 {
				t.Errorf("%d SCRIPT LOADs after restart, want 1", got)
			}
			if res, err := l.Allow(ctx, "k"); err != nil || res.Remaining != 8 {
				t.Errorf("second decision after restart: %+v %v", res, err)
			}
		})
	}
}

// TestRedisScriptFlush: SCRIPT FLUSH makes the next EVALSHAs answer
// NOSCRIPT; the store loads the script once and the decisions succeed.
func TestRedisScriptFlush(t *testing.T) {
	r := testenv.StartRedis(t)
	admin := newClient(t, r.Addr, nil)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			hook := &countHook{}
			s := NewRedisStore(newClient(t, r.Addr, hook), RedisStoreOptions{Direct: m.direct, Timeout: 5 * time.Second, Prefix: t.Name()})
			t.Cleanup(func() { _ = s.Close() })
			p := Policy{Name: "p", Requests: 100, Period: time.Hour}
			ctx := context.Background()
			if _, err := s.Allow(ctx, p, "k"); err != nil {
				t.Fatal(err)
			}
			if err := admin.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			loads := hook.loads.Load()
			const n = 20
			var wg sync.WaitGroup
			var errs atomic.Int64
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := s.Allow(ctx, p, "k"); err != nil {
						errs.Add(1)
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if got := hook.loads.Load() - loads; got != 1 {
				t.Errorf("%d SCRIPT LOADs after SCRIPT FLUSH, want 1", got)
			}
			res, err := s.Allow(ctx, p, "k")
			if err != nil || res.Remaining != 100-n-2 {
				t.Errorf("after flush: %+v %v, want remaining %d", res, err, 100-n-2)
			}
		})
	}
}

// TestStoreErrorModes: with Redis stopped, each on_store_error is observed.
func TestStoreErrorModes(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Stop()
	for _, tc := range []struct {
		mode        StoreErrorMode
		wantAllowed int
		wantErr     bool
	}{
		{OnErrorAllow, 20, false},
		{"", 20, false}, // the default is allow
		{OnErrorDeny, 0, true},
		{OnErrorLocal, 5, false}, // 10 / expected_replicas 2
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			s := NewRedisStore(newClient(t, r.Addr, nil), RedisStoreOptions{Direct: true, Timeout: 200 * time.Millisecond})
			var errorsSeen atomic.Int64
			obs := ObserverFunc(func(policy string, o Outcome) {
				if policy == "p" && o == OutcomeError {
					errorsSeen.Add(1)
				}
			})
			l, err := NewLimiter(Policy{Name: "p", Requests: 10, Period: time.Hour, OnStoreError: tc.mode, ExpectedReplicas: 2},
				s, LimiterOptions{Observer: obs})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })
			allowed := 0
			for range 20 {
				res, err := l.Allow(context.Background(), "k")
				if tc.wantErr != (err != nil) || (err != nil && !errors.Is(err, ErrStoreUnavailable)) {
					t.Fatalf("err %v, want error=%v wrapping ErrStoreUnavailable", err, tc.wantErr)
				}
				if !res.Degraded {
					t.Fatalf("result %+v not marked Degraded", res)
				}
				if res.Allowed {
					allowed++
				}
			}
			if allowed != tc.wantAllowed {
				t.Errorf("%d allowed, want %d", allowed, tc.wantAllowed)
			}
			if st := l.Stats(); st != (Stats{Errors: 20}) || errorsSeen.Load() != 20 {
				t.Errorf("stats %+v, observer saw %d errors; want 20 errors", st, errorsSeen.Load())
			}
		})
	}
}

// TestFailFast: once Redis is seen failing, calls do not reach it for
// FailFastFor; then exactly one probe does; recovery is automatic. Counted
// by the go-redis hook, not by the wall clock.
func TestFailFast(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Stop()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			hook := &countHook{}
			clock := newFakeClock(time.Now())
			s := NewRedisStore(newClient(t, r.Addr, hook), RedisStoreOptions{
				Direct: m.direct, Timeout: 300 * time.Millisecond, FailFastFor: time.Second, Now: clock.Now, Prefix: t.Name(),
			})
			t.Cleanup(func() { _ = s.Close() })
			p := Policy{Name: "p", Requests: 1000, Period: time.Hour}
			ctx := context.Background()
			call := func() error {
				_, err := s.Allow(ctx, p, "k")
				return err
			}
			if err := call(); err == nil || errors.Is(err, ErrFailingFast) {
				t.Fatalf("first call: %v, want a real failure", err)
			}
			if h := hook.hits(); h != 1 {
				t.Fatalf("first call: %d store hits, want 1", h)
			}
			for range 50 {
				if err := call(); !errors.Is(err, ErrFailingFast) || !errors.Is(err, ErrStoreUnavailable) {
					t.Fatalf("while failing fast: %v", err)
				}
			}
			if h := hook.hits(); h != 1 {
				t.Errorf("50 calls while failing fast reached Redis %d times, want 0", h-1)
			}

			// Cooldown over, Redis still down: concurrent callers, one probe.
			clock.Advance(time.Second)
			var wg sync.WaitGroup
			var fast atomic.Int64
			for range 10 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if errors.Is(call(), ErrFailingFast) {
						fast.Add(1)
					}
				}()
			}
			wg.Wait()
			if h := hook.hits(); h != 2 || fast.Load() != 9 {
				t.Errorf("after the cooldown: %d probes, %d failed fast; want 1 and 9", h-1, fast.Load())
			}
			if err := call(); !errors.Is(err, ErrFailingFast) {
				t.Errorf("after a failed probe: %v, want failing fast again", err)
			}

			// Redis back: the next probe succeeds and every call goes through.
			r.Start()
			t.Cleanup(r.Stop) // the next subtest wants it down
			var err error
			for attempt := 0; ; attempt++ {
				clock.Advance(time.Second)
				if err = call(); err == nil {
					break
				}
				if attempt == 3 {
					t.Fatalf("no recovery: %v", err)
				}
			}
			before := hook.hits()
			for range 10 {
				if err := call(); err != nil {
					t.Fatalf("after recovery: %v", err)
				}
			}
			if h := hook.hits() - before; h != 10 {
				t.Errorf("10 calls after recovery reached Redis %d times", h)
			}
			r.Stop()
		})
	}
}

// TestFailFastHungRedis: a Redis that accepts and never answers costs the
// first call its timeout; the calls after it are not sent at all.
func TestFailFastHungRedis(t *testing.T) {
	addr := blackhole(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			hook := &countHook{}
			clock := newFakeClock(time.Now())
			const timeout = 100 * time.Millisecond
			s := NewRedisStore(newClient(t, addr, hook), RedisStoreOptions{
				Direct: m.direct, Timeout: timeout, Now: clock.Now,
			})
			t.Cleanup(func() { _ = s.Close() })
			p := Policy{Name: "p", Requests: 10, Period: time.Hour}
			start := time.Now()
			_, err := s.Allow(context.Background(), p, "k")
			if waited := time.Since(start); waited < timeout {
				t.Errorf("first call returned after %v, before the %v timeout", waited, timeout)
			}
			if !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("first call: %v, want ErrStoreUnavailable wrapping DeadlineExceeded", err)
			}
			hits := hook.hits()
			for range 100 {
				if _, err := s.Allow(context.Background(), p, "k"); !errors.Is(err, ErrFailingFast) {
					t.Fatalf("following call: %v, want ErrFailingFast", err)
				}
			}
			if got := hook.hits() - hits; got != 0 {
				t.Errorf("following calls reached the hung server %d times, want 0", got)
			}
		})
	}
}

// TestCoalescerBatches: a lone decision goes at once as a plain EVALSHA;
// decisions arriving while it is out all go together in one pipeline as
// soon as it returns; a caller that gave up meanwhile costs no token.
func TestCoalescerBatches(t *testing.T) {
	r := testenv.StartRedis(t)
	hook := &countHook{gate: make(chan struct{}), gated: make(chan struct{})}
	s := NewRedisStore(newClient(t, r.Addr, hook), RedisStoreOptions{Timeout: 10 * time.Second})
	t.Cleanup(func() { _ = s.Close() })
	p := Policy{Name: "p", Requests: 100, Period: time.Hour}
	// Load the script outside the exchanges being counted.
	if err := s.client.ScriptLoad(context.Background(), gcraScript).Err(); err != nil {
		t.Fatal(err)
	}
	pending := func() int {
		s.co.mu.Lock()
		defer s.co.mu.Unlock()
		return len(s.co.pending)
	}

	results := make(chan error, 12)
	run := func(ctx context.Context, key string) {
		_, err := s.Allow(ctx, p, key)
		results <- err
	}
	go run(context.Background(), "first")
	<-hook.gated // the first EVALSHA is out (held at the gate)

	const waiting = 10
	for i := range waiting {
		go run(context.Background(), "k"+strconv.Itoa(i))
	}
	gone, cancel := context.WithCancel(context.Background())
	go run(gone, "gone")
	eventually(t, 5*time.Second, func() error {
		if n := pending(); n != waiting+1 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	cancel()
	if err := <-results; !errors.Is(err, context.Canceled) {
		t.Errorf("abandoned call: %v, want context.Canceled", err)
	}
	close(hook.gate)
	for range waiting + 1 {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	if calls, pipes := hook.calls.Load(), hook.pipelines.Load(); calls != 1 || pipes != 1 {
		t.Errorf("%d lone EVALSHAs and %d pipelines, want 1 and 1", calls, pipes)
	}
	if got := hook.lastBatch.Load(); got != waiting {
		t.Errorf("the pipeline carried %d decisions, want %d", got, waiting)
	}
	if res, err := s.Allow(context.Background(), p, "gone"); err != nil || res.Remaining != 99 {
		t.Errorf("abandoned call's bucket: %+v %v, want untouched", res, err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allow(context.Background(), p, "k"); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

// TestRedisConfig: the redis block maps to the right go-redis client.
func TestRedisConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  RedisConfig
		want string
	}{
		{"one address", RedisConfig{Address: "127.0.0.1:6379", DB: 2}, "*redis.Client"},
		{"sentinel", RedisConfig{Addresses: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster"}, "*redis.Client"},
		{"cluster", RedisConfig{Addresses: []string{"n1:6379", "n2:6379"}}, "*redis.ClusterClient"},
		{"cluster, one seed", RedisConfig{Addresses: []string{"n1:6379"}}, "*redis.ClusterClient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.cfg.UniversalOptions()
			if !o.ContextTimeoutEnabled {
				t.Error("ContextTimeoutEnabled not set")
			}
			c := NewRedisClient(tc.cfg)
			defer c.Close()
			if got := fmt.Sprintf("%T", c); got != tc.want {
				t.Errorf("client %s, want %s", got, tc.want)
			}
			if tc.cfg.MasterName != "" && o.MasterName != tc.cfg.MasterName {
				t.Errorf("master name %q lost", o.MasterName)
			}
			var _ RedisClient = c
		})
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	s := NewRedisStore(c, RedisStoreOptions{Direct: true})
	if got := s.Key(Policy{Name: "pol"}, "1.2.3.4"); got != "ratelimit:{pol:1.2.3.4}:tb" {
		t.Errorf("key %q", got)
	}
	if got := s.Key(Policy{Name: "pol", Algorithm: SlidingWindow}, "k"); got != "ratelimit:{pol:k}:sw" {
		t.Errorf("key %q", got)
	}
}

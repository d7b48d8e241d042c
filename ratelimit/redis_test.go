package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
// NOSCRIPT; the store loads each script it uses once (the coalescer may use
// two: the per-key script and the batch script) and the decisions succeed.
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
			hook.mu.Lock()
			hook.loaded = nil
			hook.mu.Unlock()
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
			most, scripts := hook.maxLoads()
			if most != 1 || scripts < 1 || (m.direct && scripts != 1) {
				t.Errorf("after SCRIPT FLUSH, %d scripts loaded, one of them %d times; want each once", scripts, most)
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

// TestFailFast: once Redis is seen failing repeatedly — FailFastAfter
// consecutive failures spread over at least the timeout — calls do not
// reach it for FailFastFor; then exactly one probe does; recovery is
// automatic. A burst of failures at one moment does not open it. Counted by
// the go-redis hook, and on a fake clock, not by the wall clock.
func TestFailFast(t *testing.T) {
	r := testenv.StartRedis(t)
	r.Stop()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			hook := &countHook{}
			clock := newFakeClock(time.Now())
			const timeout = 300 * time.Millisecond
			s := NewRedisStore(newClient(t, r.Addr, hook), RedisStoreOptions{
				Direct: m.direct, Timeout: timeout, FailFastFor: time.Second, Now: clock.Now, Prefix: t.Name(),
			})
			t.Cleanup(func() { _ = s.Close() })
			p := Policy{Name: "p", Requests: 1000, Period: time.Hour}
			ctx := context.Background()
			call := func() error {
				_, err := s.Allow(ctx, p, "k")
				return err
			}
			// Ten failures at one moment (a GC pause, one dropped connection):
			// every one is tried, none fails fast.
			for i := range 10 {
				if err := call(); err == nil || errors.Is(err, ErrFailingFast) {
					t.Fatalf("call %d of a burst: %v, want a real failure", i, err)
				}
			}
			if h := hook.hits(); h != 10 {
				t.Fatalf("a burst of 10 failures: %d store hits, want 10", h)
			}
			// Still failing a span later: an outage. This call opens it.
			clock.Advance(s.ff.span)
			if err := call(); err == nil || errors.Is(err, ErrFailingFast) {
				t.Fatalf("call after the span: %v, want a real failure", err)
			}
			for range 50 {
				if err := call(); !errors.Is(err, ErrFailingFast) || !errors.Is(err, ErrStoreUnavailable) {
					t.Fatalf("while failing fast: %v", err)
				}
			}
			if h := hook.hits(); h != 11 {
				t.Errorf("50 calls while failing fast reached Redis %d times, want 0", h-11)
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
			if h := hook.hits(); h != 12 || fast.Load() != 9 {
				t.Errorf("after the cooldown: %d probes, %d failed fast; want 1 and 9", h-11, fast.Load())
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
// first calls their timeout (FailFastAfter of them, over at least the
// timeout); the calls after them are not sent at all.
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
			for i := range 2 {
				clock.Advance(s.ff.span)
				if _, err := s.Allow(context.Background(), p, "k"); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("call %d: %v, want a timeout", i+2, err)
				}
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
// soon as it returns (as one batch-script EVALSHA, or with PerKeyScripts one
// EVALSHA each); a caller that gave up meanwhile costs no token.
func TestCoalescerBatches(t *testing.T) {
	r := testenv.StartRedis(t)
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKeyScripts=%v", perKey), func(t *testing.T) {
			hook := &countHook{gate: make(chan struct{}), gated: make(chan struct{})}
			s := NewRedisStore(newClient(t, r.Addr, hook), RedisStoreOptions{
				Timeout: 10 * time.Second, PerKeyScripts: perKey, Prefix: t.Name(),
			})
			t.Cleanup(func() { _ = s.Close() })
			p := Policy{Name: "p", Requests: 100, Period: time.Hour}
			// Load the scripts outside the exchanges being counted.
			for _, src := range []string{gcraScript, gcraBatchScript} {
				if err := s.client.ScriptLoad(context.Background(), src).Err(); err != nil {
					t.Fatal(err)
				}
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
			wantEvals := int64(1)
			if perKey {
				wantEvals = waiting
			}
			if got, evals := hook.lastBatch.Load(), hook.lastEvals.Load(); got != waiting || evals != wantEvals {
				t.Errorf("the pipeline carried %d decisions in %d EVALSHAs, want %d in %d", got, evals, waiting, wantEvals)
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
		})
	}
}

// TestCoalescerNoScriptInPipeline: a pipeline answered NOSCRIPT (scripts
// flushed while decisions were queued) loads the script once and sends
// those decisions again; none of them fails.
func TestCoalescerNoScriptInPipeline(t *testing.T) {
	r := testenv.StartRedis(t)
	admin := newClient(t, r.Addr, nil)
	hook := &countHook{
		gate: make(chan struct{}), gated: make(chan struct{}),
		pipeGate: make(chan struct{}), pipeGated: make(chan struct{}),
	}
	s := NewRedisStore(newClient(t, r.Addr, hook), RedisStoreOptions{Timeout: 10 * time.Second})
	t.Cleanup(func() { _ = s.Close() })
	p := Policy{Name: "p", Requests: 100, Period: time.Hour}
	ctx := context.Background()
	if err := s.client.ScriptLoad(ctx, gcraScript).Err(); err != nil {
		t.Fatal(err)
	}
	loads := hook.loads.Load()

	const waiting = 10
	results := make(chan error, waiting+1)
	run := func(key string) {
		_, err := s.Allow(ctx, p, key)
		results <- err
	}
	go run("first")
	<-hook.gated // the lone EVALSHA is out: what comes now queues
	for i := range waiting {
		go run("k" + strconv.Itoa(i))
	}
	eventually(t, 5*time.Second, func() error {
		s.co.mu.Lock()
		defer s.co.mu.Unlock()
		if n := len(s.co.pending); n != waiting {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	close(hook.gate)
	<-hook.pipeGated // the pipeline is built, not sent
	if err := admin.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	close(hook.pipeGate)
	for range waiting + 1 {
		if err := <-results; err != nil {
			t.Errorf("decision: %v", err)
		}
	}
	if got := hook.loads.Load() - loads; got != 1 {
		t.Errorf("%d SCRIPT LOADs, want 1", got)
	}
	if got := hook.pipelines.Load(); got != 2 {
		t.Errorf("%d pipelines, want 2 (the one answered NOSCRIPT, then its retry)", got)
	}
	if res, err := s.Allow(ctx, p, "k0"); err != nil || res.Remaining != 98 {
		t.Errorf("k0 after the retry: %+v %v, want remaining 98 (one token spent)", res, err)
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
			if o.MaxRetries != -1 {
				t.Errorf("MaxRetries %d: go-redis would resend a decision Redis may have run", o.MaxRetries)
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
			// Batch scripts only where every key lives on one server.
			s := NewRedisStore(c, RedisStoreOptions{})
			defer s.Close()
			if want := tc.want == "*redis.Client"; s.batch != want {
				t.Errorf("batch scripts %v, want %v", s.batch, want)
			}
		})
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	s := NewRedisStore(c, RedisStoreOptions{Direct: true})
	if got := s.Key(Policy{Name: "pol"}, "1.2.3.4"); got != "ratelimit:{3:pol:1.2.3.4}:tb" {
		t.Errorf("key %q", got)
	}
	if got := s.Key(Policy{Name: "pol", Algorithm: SlidingWindow}, "k"); got != "ratelimit:{3:pol:k}:sw" {
		t.Errorf("key %q", got)
	}
	// Plain concatenation would make these one key.
	if a, b := s.Key(Policy{Name: "a"}, "h:1.2.3.4"), s.Key(Policy{Name: "a:h"}, "1.2.3.4"); a == b {
		t.Errorf("policy a key h:1.2.3.4 and policy a:h key 1.2.3.4 share %q", a)
	}
}

// TestCoalescerGiveUps: callers that give up (their context is cancelled,
// or the store's timeout ends their wait) race the flusher for their
// pooled calls. Each caller owns one key, so the answers it does get must
// count its own bucket down: a strictly falling Remaining, never another
// caller's answer.
func TestCoalescerGiveUps(t *testing.T) {
	r := testenv.StartRedis(t)
	for _, tc := range []struct {
		mode    string
		direct  bool
		timeout time.Duration // under a millisecond: many waits end on the timeout
	}{
		{"coalesced", false, 500 * time.Microsecond},
		{"coalesced", false, 2 * time.Millisecond},
		{"coalesced", false, 5 * time.Second},
		{"direct", true, 2 * time.Millisecond},
		{"direct", true, 5 * time.Second},
	} {
		t.Run(tc.mode+"/"+tc.timeout.String(), func(t *testing.T) {
			s := NewRedisStore(newClient(t, r.Addr, nil), RedisStoreOptions{
				Direct: tc.direct, Timeout: tc.timeout, FailFastFor: -1, Prefix: t.Name(),
			})
			t.Cleanup(func() { _ = s.Close() })
			// Nothing refills within the test: one token per ~6 minutes.
			p := Policy{Name: "p", Requests: 1 << 20, Period: 100_000 * time.Hour}
			const callers, calls = 48, 150
			var answered, gaveUp atomic.Int64
			var wg sync.WaitGroup
			for g := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := "k" + strconv.Itoa(g)
					last := p.Requests
					for i := range calls {
						ctx, cancel := context.WithCancel(context.Background())
						if i%3 == 0 {
							go cancel() // races the decision
						}
						res, err := s.Allow(ctx, p, key)
						cancel()
						if err != nil {
							// Cancelled, or timed out: waiting, or in go-redis's I/O.
							if !errors.Is(err, ErrStoreUnavailable) {
								t.Errorf("%s: %v", key, err)
								return
							}
							gaveUp.Add(1)
							continue
						}
						if !res.Allowed || res.Remaining >= last || res.Remaining < p.Requests-1-i {
							t.Errorf("%s call %d: %+v after remaining %d", key, i, res, last)
							return
						}
						last = res.Remaining
						answered.Add(1)
					}
				}()
			}
			wg.Wait()
			t.Logf("%d answered, %d gave up", answered.Load(), gaveUp.Load())
			if tc.timeout > time.Second && answered.Load() < callers*calls/2 {
				t.Errorf("%d of %d calls answered, want at least the 2/3 not cancelled, minus races", answered.Load(), callers*calls)
			}
		})
	}
}

// holdHook holds every EVALSHA sent alone until the test releases it, so
// the decisions the test sends meanwhile queue up and go as one pipeline.
type holdHook struct{ held chan chan struct{} }

func (h *holdHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "evalsha" {
			release := make(chan struct{})
			h.held <- release
			<-release
		}
		return next(ctx, cmd)
	}
}

func (h *holdHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestBatchScripts: decisions that go together in one pipeline are decided
// by the batch scripts (both algorithms in one pipeline, a key repeated
// within a batch), and answer exactly what MemoryStore answers for the same
// decisions in the same order on the same fake clock. A key that Redis
// refuses (it holds another type) fails its own decision only.
func TestBatchScripts(t *testing.T) {
	r := testenv.StartRedis(t)
	hook := &holdHook{held: make(chan chan struct{})}
	client := newClient(t, r.Addr, nil)
	client.AddHook(hook)
	clock := newFakeClock(epoch0)
	s := NewRedisStore(client, RedisStoreOptions{Timeout: 10 * time.Second, FailFastFor: -1})
	s.testNow = func() int64 { return clock.Now().UnixMicro() }
	t.Cleanup(func() { _ = s.Close() })
	mem := NewMemoryStore(MemoryStoreOptions{Now: clock.Now, SweepInterval: -1})
	t.Cleanup(func() { _ = mem.Close() })
	if !s.batch {
		t.Fatal("a plain client must get batch scripts")
	}
	for _, src := range []string{gcraScript, gcraBatchScript, slidingBatchScript} {
		if err := client.ScriptLoad(context.Background(), src).Err(); err != nil {
			t.Fatal(err)
		}
	}

	tb := Policy{Name: "tb", Requests: 3, Burst: 5, Period: time.Minute}
	sw := Policy{Name: "sw", Algorithm: SlidingWindow, Requests: 4, Period: time.Minute}
	lone := Policy{Name: "lone", Requests: 1 << 20, Period: time.Hour}
	type decision struct {
		p   Policy
		key string
	}
	// batch sends ds as one pipeline behind a held lone decision and
	// returns their answers in order.
	batch := func(ds []decision) ([]Result, []error) {
		t.Helper()
		eventually(t, 5*time.Second, func() error { // the last batch's flusher is done
			s.co.mu.Lock()
			defer s.co.mu.Unlock()
			if s.co.lone+s.co.busy > 0 {
				return errors.New("a round trip is still out")
			}
			return nil
		})
		loneDone := make(chan error, 1)
		go func() {
			_, err := s.Allow(context.Background(), lone, "x")
			loneDone <- err
		}()
		release := <-hook.held
		res := make([]Result, len(ds))
		errs := make([]error, len(ds))
		var wg sync.WaitGroup
		for i, d := range ds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i], errs[i] = s.Allow(context.Background(), d.p, d.key)
			}()
			eventually(t, 5*time.Second, func() error { // queued in this order
				s.co.mu.Lock()
				defer s.co.mu.Unlock()
				if n := len(s.co.pending); n != i+1 {
					return fmt.Errorf("%d pending, want %d", n, i+1)
				}
				return nil
			})
		}
		close(release)
		wg.Wait()
		if err := <-loneDone; err != nil {
			t.Fatal(err)
		}
		return res, errs
	}

	rng := rand.New(rand.NewPCG(1, 2))
	policies := []Policy{tb, sw}
	keys := []string{"a", "b"}
	for round := range 20 {
		clock.Advance(time.Duration(rng.IntN(40)) * time.Second)
		ds := make([]decision, 2+rng.IntN(10))
		for i := range ds {
			ds[i] = decision{policies[rng.IntN(2)], keys[rng.IntN(2)]}
		}
		got, errs := batch(ds)
		for i, d := range ds {
			want, _ := mem.Allow(context.Background(), d.p, d.key)
			if errs[i] != nil || got[i] != want {
				t.Errorf("round %d, decision %d (%s %s): %+v %v; memory says %+v",
					round, i, d.p.Name, d.key, got[i], errs[i], want)
			}
		}
	}

	if err := client.HSet(context.Background(), s.Key(tb, "bad"), "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	got, errs := batch([]decision{{tb, "c"}, {tb, "bad"}, {tb, "c"}})
	if !errors.Is(errs[1], ErrStoreUnavailable) {
		t.Errorf("decision on a key of another type: %+v %v, want ErrStoreUnavailable", got[1], errs[1])
	}
	if errs[0] != nil || errs[2] != nil || got[0].Remaining != 4 || got[2].Remaining != 3 {
		t.Errorf("the other decisions of that batch: %+v %v, %+v %v", got[0], errs[0], got[2], errs[2])
	}
}

// TestCoalescerDeadlines: against a Redis that never answers, every
// decision returns its timeout after it started, whether it waits behind a
// lone EVALSHA or inside a pipeline whose other decisions started later
// (the pipeline runs until the last one's deadline; the reaper lets the
// earlier ones go at theirs).
func TestCoalescerDeadlines(t *testing.T) {
	addr := blackhole(t)
	const timeout = 400 * time.Millisecond
	s := NewRedisStore(newClient(t, addr, nil), RedisStoreOptions{Timeout: timeout, FailFastFor: -1})
	t.Cleanup(func() { _ = s.Close() })
	p := Policy{Name: "p", Requests: 10, Period: time.Hour}
	type answer struct {
		waited time.Duration
		err    error
	}
	start := func(key string) chan answer {
		ch := make(chan answer, 1)
		go func() {
			t0 := time.Now()
			_, err := s.Allow(context.Background(), p, key)
			ch <- answer{time.Since(t0), err}
		}()
		return ch
	}
	lone := start("lone") // hangs until its deadline
	time.Sleep(50 * time.Millisecond)
	early := start("early") // queued; sent when the lone one gives up
	time.Sleep(250 * time.Millisecond)
	late := start("late") // queued; same pipeline, deadline 250 ms later
	for name, ch := range map[string]chan answer{"lone": lone, "early": early, "late": late} {
		a := <-ch
		if !errors.Is(a.err, context.DeadlineExceeded) && !isTimeout(a.err) {
			t.Errorf("%s: %v, want a timeout", name, a.err)
		}
		if a.waited < timeout-5*time.Millisecond || a.waited > timeout+150*time.Millisecond {
			t.Errorf("%s returned after %v, want about the %v timeout", name, a.waited, timeout)
		}
	}
}

// isTimeout reports a network timeout (go-redis's I/O deadline).
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

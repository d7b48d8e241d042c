package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/testenv"
)

// TestNoDoubleChargeOnDroppedConnection: Redis runs a decision's script,
// then the connection drops before the answer arrives. The client must not
// send the decision again on a new connection (go-redis would, with its
// default retries), so the bucket is charged once.
func TestNoDoubleChargeOnDroppedConnection(t *testing.T) {
	r := testenv.StartRedis(t)
	direct := newClient(t, r.Addr, nil)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			proxy := testenv.NewFaultProxy(t, r.Addr)
			s := NewRedisStore(newClient(t, proxy.Addr(), nil), RedisStoreOptions{
				Direct: m.direct, Timeout: 5 * time.Second, Prefix: t.Name(),
			})
			t.Cleanup(func() { _ = s.Close() })
			truth := NewRedisStore(direct, RedisStoreOptions{Direct: true, Prefix: t.Name()})
			p := Policy{Name: "p", Requests: 10, Period: time.Hour}
			// Warm the connection and the script: the stalled call must be an
			// EVALSHA that Redis runs, not a NOSCRIPT.
			if _, err := s.Allow(context.Background(), p, "warm"); err != nil {
				t.Fatal(err)
			}

			proxy.Stall()
			errc := make(chan error, 1)
			go func() {
				_, err := s.Allow(context.Background(), p, "k")
				errc <- err
			}()
			eventually(t, 10*time.Second, func() error {
				n, err := direct.Exists(context.Background(), s.Key(p, "k")).Result()
				if err == nil && n == 0 {
					err = errors.New("redis has not run the decision yet")
				}
				return err
			})
			proxy.Reset()  // the answer is lost with the connection
			proxy.Resume() // a retry on a new connection would go through
			var err error
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				t.Fatal("the decision did not return after its connection was reset")
			}
			if !errors.Is(err, ErrStoreUnavailable) {
				t.Fatalf("decision on a reset connection: %v, want ErrStoreUnavailable", err)
			}
			res, err := truth.Allow(context.Background(), p, "k")
			if err != nil {
				t.Fatal(err)
			}
			if want := 10 - 2; res.Remaining != want {
				t.Fatalf("remaining %d after the lost decision and one more, want %d (%d charges for the lost one)",
					res.Remaining, want, 10-1-res.Remaining)
			}
		})
	}
}

// TestWrongTypeFailsOneKey: a key that holds another type (WRONGTYPE) fails
// its own decisions only. Redis answered, so the store never fails fast and
// every other key, decided concurrently and in the same pipelines, is
// answered.
func TestWrongTypeFailsOneKey(t *testing.T) {
	r := testenv.StartRedis(t)
	direct := newClient(t, r.Addr, nil)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s := NewRedisStore(newClient(t, r.Addr, nil), RedisStoreOptions{
				Direct: m.direct, Timeout: 5 * time.Second, Prefix: t.Name(),
			})
			t.Cleanup(func() { _ = s.Close() })
			p := Policy{Name: "p", Requests: 1_000_000, Period: time.Hour}
			if err := direct.RPush(context.Background(), s.Key(p, "bad"), "a list").Err(); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			var good, bad, fast, other atomic.Int64
			for g := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 200 {
						key := fmt.Sprintf("k%d", (g+i)%5)
						if i%4 == 0 {
							key = "bad"
						}
						_, err := s.Allow(context.Background(), p, key)
						switch {
						case errors.Is(err, ErrFailingFast):
							fast.Add(1)
						case key == "bad" && errors.Is(err, ErrStoreUnavailable):
							bad.Add(1)
						case key != "bad" && err == nil:
							good.Add(1)
						default:
							other.Add(1)
							t.Errorf("key %s: %v", key, err)
						}
					}
				}()
			}
			wg.Wait()
			if fast.Load() != 0 || good.Load() != 16*150 || bad.Load() != 16*50 {
				t.Fatalf("%d answered, %d WRONGTYPE, %d failed fast, %d other; want %d, %d, 0, 0",
					good.Load(), bad.Load(), fast.Load(), other.Load(), 16*150, 16*50)
			}
		})
	}
}

// TestCoalescerFarRedis: 16 callers decide through a fault proxy that adds
// a reply delay, with the store's timeout at 2.5 × the delay (at least the
// default 50 ms; 26 ms at 50 ms is where one pipeline at a time collapsed).
// Queued decisions go on another pipeline rather than wait a whole round
// trip, so at least 99% are answered and none is refused by failing fast.
// Under the race detector, which makes every go-redis call several times
// dearer in CPU on a shared machine, the timeout is 5 × the delay (at least
// 250 ms) and 95%
// must be answered; no refusal by failing fast either way.
func TestCoalescerFarRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	for _, tc := range []struct{ delay, timeout time.Duration }{
		{0, 50 * time.Millisecond},
		{5 * time.Millisecond, 50 * time.Millisecond},
		{20 * time.Millisecond, 50 * time.Millisecond},
		{26 * time.Millisecond, 50 * time.Millisecond},
		{40 * time.Millisecond, 100 * time.Millisecond},
	} {
		t.Run(tc.delay.String(), func(t *testing.T) {
			wantPct := int64(99)
			if raceEnabled {
				tc.timeout = max(tc.timeout, 5*tc.delay, 250*time.Millisecond)
				wantPct = 95
			}
			proxy := testenv.NewFaultProxy(t, r.Addr)
			proxy.SetDelay(tc.delay)
			s := NewRedisStore(newClient(t, proxy.Addr(), nil), RedisStoreOptions{
				Timeout: tc.timeout, Prefix: t.Name(),
			})
			t.Cleanup(func() { _ = s.Close() })
			p := Policy{Name: "p", Requests: 1_000_000, Period: time.Hour}
			const callers, each = 16, 25
			// Warm up: the scripts loaded, connections open (a new one costs
			// a HELLO round trip before its first command). Then wait until
			// decisions are answered.
			var wg sync.WaitGroup
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 3 {
						_, _ = s.Allow(context.Background(), p, "warm")
					}
				}()
			}
			wg.Wait()
			eventually(t, 10*time.Second, func() error {
				_, err := s.Allow(context.Background(), p, "warm")
				return err
			})
			var answered, fast, failed, early atomic.Int64
			for g := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						_, err := s.Allow(context.Background(), p, fmt.Sprintf("k%d-%d", g, i%4))
						switch {
						case err == nil:
							answered.Add(1)
						case errors.Is(err, ErrFailingFast):
							fast.Add(1)
						default:
							if failed.Add(1) == 1 {
								t.Logf("first failure: %v", err)
							}
							if i < 10 {
								early.Add(1)
							}
						}
					}
				}()
			}
			wg.Wait()
			t.Logf("delay %v, timeout %v: %d answered, %d timed out or failed (%d early), %d failed fast",
				tc.delay, tc.timeout, answered.Load(), failed.Load(), early.Load(), fast.Load())
			if fast.Load() != 0 {
				t.Errorf("%d decisions refused by failing fast; Redis never failed", fast.Load())
			}
			if total := int64(callers * each); answered.Load()*100 < total*wantPct {
				t.Errorf("%d of %d decisions answered, want at least %d%%", answered.Load(), total, wantPct)
			}
		})
	}
}

// TestRedisRestartUnderLoad: Redis is killed under load and started again
// (empty: its scripts are gone); decisions come back on their own within
// the fail-fast cooldown of Redis answering again.
func TestRedisRestartUnderLoad(t *testing.T) {
	r := testenv.StartRedis(t)
	direct := newClient(t, r.Addr, nil)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s := NewRedisStore(newClient(t, r.Addr, nil), RedisStoreOptions{Direct: m.direct, Prefix: t.Name()})
			t.Cleanup(func() { _ = s.Close() })
			p := Policy{Name: "p", Requests: 1_000_000, Period: time.Hour}
			var lastOK atomic.Int64 // UnixNano of the latest answered decision
			var failures atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := s.Allow(context.Background(), p, fmt.Sprintf("k%d", (g+i)%8)); err == nil {
							lastOK.Store(time.Now().UnixNano())
						} else {
							failures.Add(1)
							time.Sleep(time.Millisecond) // failing fast returns at once: do not spin
						}
					}
				}()
			}
			defer func() { close(stop); wg.Wait() }()
			eventually(t, 10*time.Second, func() error {
				if lastOK.Load() == 0 {
					return errors.New("no decision answered yet")
				}
				return nil
			})
			r.Stop()
			eventually(t, 10*time.Second, func() error {
				if failures.Load() == 0 {
					return errors.New("no decision failed yet")
				}
				return nil
			})
			r.Start()
			eventually(t, 10*time.Second, func() error { return direct.Ping(context.Background()).Err() })
			back := time.Now()
			eventually(t, 10*time.Second, func() error {
				if lastOK.Load() < back.UnixNano() {
					return errors.New("no decision answered since redis came back")
				}
				return nil
			})
			took := time.Duration(lastOK.Load() - back.UnixNano())
			t.Logf("decisions back %v after redis answered", took)
			// The cooldown is 1 s; the bound is generous for a busy machine.
			if took > 3*time.Second {
				t.Errorf("decisions came back %v after redis answered, want about the 1s cooldown", took)
			}
		})
	}
}

// TestCoalescerSecondPipeline: a decision that queues behind a round trip
// that has been out for Timeout/5 goes on a second pipeline instead of
// waiting for the first to come back. The delay (3 s, 6 s on a new
// connection: HELLO first) is far from the spread (2 s of a 10 s timeout),
// so what is checked is an order of events, not a duration.
func TestCoalescerSecondPipeline(t *testing.T) {
	r := testenv.StartRedis(t)
	proxy := testenv.NewFaultProxy(t, r.Addr)
	hook := &countHook{}
	client := newClient(t, proxy.Addr(), hook)
	s := NewRedisStore(client, RedisStoreOptions{Timeout: 10 * time.Second, Prefix: t.Name()})
	t.Cleanup(func() { _ = s.Close() })
	p := Policy{Name: "p", Requests: 1000, Period: time.Hour}
	if _, err := s.Allow(context.Background(), p, "warm"); err != nil { // script loaded
		t.Fatal(err)
	}

	proxy.SetDelay(3 * time.Second)
	var aDone atomic.Bool
	errs := make(chan error, 2)
	go func() {
		_, err := s.Allow(context.Background(), p, "a") // lone: goes at once
		aDone.Store(true)
		if err != nil {
			err = fmt.Errorf("a: %w", err)
		}
		errs <- err
	}()
	eventually(t, 10*time.Second, func() error {
		if hook.calls.Load() < 2 {
			return errors.New("a is not out yet")
		}
		return nil
	})
	go func() {
		start := time.Now()
		_, err := s.Allow(context.Background(), p, "b") // queues behind a
		if err != nil {
			err = fmt.Errorf("b after %v: %w", time.Since(start), err)
		}
		errs <- err
	}()
	eventually(t, 10*time.Second, func() error {
		if hook.pipelines.Load() < 1 {
			return errors.New("b not sent yet")
		}
		return nil
	})
	if aDone.Load() {
		t.Fatal("b was sent only after a came back: one round trip at a time")
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

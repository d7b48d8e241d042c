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

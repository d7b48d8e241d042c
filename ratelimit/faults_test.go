package ratelimit

import (
	"context"
	"errors"
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

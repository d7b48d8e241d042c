package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestFaultProxy drives a real redis-server through the proxy: plain
// forwarding, an added delay, a stall that a client deadline cuts, a reset.
func TestFaultProxy(t *testing.T) {
	r := StartRedis(t)
	p := NewFaultProxy(t, r.Addr)
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	defer rdb.Close()
	ctx := context.Background()

	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the proxy: %v", err)
	}

	// Delay: a round trip takes at least the delay (a lower bound only: the
	// machine may be slow, never fast).
	p.SetDelay(30 * time.Millisecond)
	start := time.Now()
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET with delay = %q, %v", got, err)
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Fatalf("GET with a 30ms delay took %v", took)
	}
	p.SetDelay(0)

	// Stall: the command reaches Redis, the answer does not come back.
	p.Stall()
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := rdb.Set(sctx, "stalled", "1", 0).Err()
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		var ne interface{ Timeout() bool }
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("SET while stalled: %v, want a timeout", err)
		}
	}
	direct := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer direct.Close()
	if got, err := direct.Get(ctx, "stalled").Result(); err != nil || got != "1" {
		t.Fatalf("the stalled SET did not reach redis: %q, %v", got, err)
	}
	p.Resume()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}

	// Reset: an open connection breaks; a new one works.
	conn := rdb.Conn()
	defer conn.Close()
	if err := conn.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	if err := conn.Ping(ctx).Err(); err == nil {
		t.Fatal("PING on a reset connection succeeded")
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING on a new connection after Reset: %v", err)
	}
	if p.Accepted() < 2 {
		t.Fatalf("Accepted = %d, want at least 2", p.Accepted())
	}
}

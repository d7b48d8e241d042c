package cache

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/infinityxone/gateway/internal/testenv"
)

func TestRedisStore(t *testing.T) {
	srv := testenv.StartRedis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer client.Close()
	now := time.Now()
	clock := func() time.Time { return now }
	s := NewRedisStore(client, RedisOptions{Name: "api", Now: clock, Timeout: time.Second})
	ctx := context.Background()

	if e, err := s.Get(ctx, "missing"); e != nil || err != nil {
		t.Fatalf("missing key: %v %v", e, err)
	}
	e := &Entry{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("body"), Stored: now, Lifetime: time.Minute}
	if err := s.Set(ctx, "GET h/p", e, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "GET h/p")
	if err != nil || got == nil || string(got.Body) != "body" || got.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("get: %+v %v", got, err)
	}
	ttl, err := client.PTTL(ctx, s.RedisKey("GET h/p")).Result()
	if err != nil || ttl <= 80*time.Second || ttl > 90*time.Second {
		t.Fatalf("redis TTL %v (%v), want the freshness plus stale_if_error", ttl, err)
	}

	// A server that is gone fails a call, then the store fails fast without trying.
	srv.Stop()
	if _, err := s.Get(ctx, "GET h/p"); err == nil {
		t.Fatal("no error with redis down")
	}
	if _, err := s.Get(ctx, "GET h/p"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("second call: %v, want ErrUnavailable", err)
	}
	srv.Start()
	now = now.Add(2 * time.Second) // past the fail-fast window
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := s.Get(ctx, "GET h/p")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover: %v", err)
		}
		now = now.Add(2 * time.Second)
		time.Sleep(20 * time.Millisecond)
	}
}

package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClient is the part of a go-redis client the store uses; Client, Ring, Cluster
// and UniversalClient all fit.
type RedisClient interface {
	Get(ctx context.Context, key string) *redis.StringCmd
	Set(ctx context.Context, key string, value any, expiration time.Duration) *redis.StatusCmd
}

// RedisOptions configures a RedisStore. Zero values mean the defaults.
type RedisOptions struct {
	// Prefix starts every key; "" means "gwcache". A key is PREFIX:NAME:SHA256(key).
	Prefix string
	// Name is the cache's name, part of every key.
	Name string
	// Timeout bounds each call; 0 means 100 ms.
	Timeout time.Duration
	// FailFastFor is how long calls are refused without trying Redis once a call
	// failed, so that a Redis outage costs requests nothing; 0 means 1 s.
	FailFastFor time.Duration
	// Now is the clock of fail-fast; nil means time.Now.
	Now func() time.Time
}

// ErrUnavailable is returned while the store fails fast after an error.
var ErrUnavailable = errors.New("cache: redis unavailable")

// RedisStore keeps entries in Redis, shared by every gateway replica. Entries expire
// in Redis with the TTL they are set with.
type RedisStore struct {
	c        RedisClient
	prefix   string
	timeout  time.Duration
	failFast time.Duration
	now      func() time.Time
	downTill atomic.Int64 // unix nanos; calls before it fail at once
}

// NewRedisStore returns a store over c; the caller owns and closes c.
func NewRedisStore(c RedisClient, o RedisOptions) *RedisStore {
	s := &RedisStore{c: c, prefix: o.Prefix, timeout: o.Timeout, failFast: o.FailFastFor, now: o.Now}
	if s.prefix == "" {
		s.prefix = "gwcache"
	}
	s.prefix += ":" + o.Name + ":"
	if s.timeout <= 0 {
		s.timeout = 100 * time.Millisecond
	}
	if s.failFast <= 0 {
		s.failFast = time.Second
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// RedisKey is the Redis key under which key is stored.
func (s *RedisStore) RedisKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return s.prefix + hex.EncodeToString(sum[:])
}

func (s *RedisStore) down() bool { return s.now().UnixNano() < s.downTill.Load() }

func (s *RedisStore) failed(err error) error {
	if err != nil && !errors.Is(err, context.Canceled) {
		s.downTill.Store(s.now().Add(s.failFast).UnixNano())
	}
	return err
}

// Get implements Store.
func (s *RedisStore) Get(ctx context.Context, key string) (*Entry, error) {
	if s.down() {
		return nil, ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	b, err := s.c.Get(ctx, s.RedisKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, s.failed(err)
	}
	e := &Entry{}
	if err := e.UnmarshalBinary(b); err != nil {
		return nil, nil // an entry of another version or a damaged one: a miss
	}
	return e, nil
}

// Set implements Store.
func (s *RedisStore) Set(ctx context.Context, key string, e *Entry, ttl time.Duration) error {
	if s.down() {
		return ErrUnavailable
	}
	if ttl < time.Millisecond {
		return nil
	}
	b, _ := e.MarshalBinary()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.failed(s.c.Set(ctx, s.RedisKey(key), b, ttl).Err())
}

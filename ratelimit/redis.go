package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"
)

// Store decides one request for (policy, key). Implementations: RedisStore
// (shared by every replica) and MemoryStore (this process only).
type Store interface {
	Allow(ctx context.Context, p Policy, key string) (Result, error)
}

// RedisClient is the part of go-redis that RedisStore uses. Every go-redis
// client fits: *redis.Client (one address), the Sentinel failover client,
// *redis.ClusterClient, *redis.Ring and redis.UniversalClient.
type RedisClient interface {
	EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd
	ScriptLoad(ctx context.Context, script string) *redis.StringCmd
	Pipeline() redis.Pipeliner
}

// RedisConfig is the `redis` block.
type RedisConfig struct {
	// Address is one Redis server; used when Addresses is empty.
	Address string
	// Addresses are Sentinel addresses when MasterName is set, otherwise
	// Cluster seed nodes (even a single one).
	Addresses  []string
	MasterName string
	Password   string
	DB         int
	// PoolSize is the connection pool size per node; 0 is go-redis's default.
	PoolSize int
}

// UniversalOptions translates c for redis.NewUniversalClient. The client
// honours context deadlines (ContextTimeoutEnabled), which RedisStore's
// per-call timeout relies on.
func (c RedisConfig) UniversalOptions() *redis.UniversalOptions {
	o := &redis.UniversalOptions{
		Addrs:                 c.Addresses,
		MasterName:            c.MasterName,
		Password:              c.Password,
		DB:                    c.DB,
		PoolSize:              c.PoolSize,
		ContextTimeoutEnabled: true,
	}
	if len(c.Addresses) == 0 {
		o.Addrs = []string{c.Address}
	} else if c.MasterName == "" {
		o.IsClusterMode = true
	}
	return o
}

// NewRedisClient returns the go-redis client for c: a plain client for one
// address, a Sentinel failover client with MasterName, a Cluster client for
// Addresses. The caller closes it.
func NewRedisClient(c RedisConfig) redis.UniversalClient {
	return redis.NewUniversalClient(c.UniversalOptions())
}

// RedisStoreOptions configures a RedisStore. Zero values mean the defaults.
type RedisStoreOptions struct {
	// Prefix starts every key; "" means "ratelimit". A key looks like
	// ratelimit:{POLICY:KEY}:tb — the hash tag keeps each script on one
	// Cluster slot; tb is token_bucket, sw sliding_window.
	Prefix string
	// Timeout bounds each decision, queueing included (redis.timeout);
	// 0 means 50 ms. The client must honour context deadlines (see
	// RedisConfig.UniversalOptions) for a hung server to be cut off.
	Timeout time.Duration
	// FailFastFor is how long calls are refused without trying Redis once
	// a call failed; after it one call probes and its success resumes
	// normal operation. 0 means 1 s; negative disables failing fast.
	FailFastFor time.Duration
	// Direct sends one EVALSHA per decision instead of coalescing the
	// decisions waiting at the same moment into one pipeline.
	Direct bool
	// MaxBatch caps how many decisions one pipeline carries; 0 means 256.
	MaxBatch int
	// Now is the clock for failing fast (never for the buckets, which use
	// Redis's TIME); nil means time.Now.
	Now func() time.Time
	// Logger receives fail-fast transitions; nil means no logging.
	Logger hclog.Logger
}

// RedisStore keeps buckets in Redis, changed only by Lua scripts that read
// Redis's own clock, so any number of replicas share one limit. A decision
// is one EVALSHA, or one slot in a coalesced pipeline: at most one round
// trip. NOSCRIPT (first use, restart, failover, SCRIPT FLUSH) loads the
// script and retries once. Every key gets a TTL that ends when its bucket
// is full again.
//
// Errors wrap ErrStoreUnavailable. Once a call fails, calls fail fast with
// ErrFailingFast for FailFastFor, then one probe goes through; see
// RedisStoreOptions.
type RedisStore struct {
	client  RedisClient
	prefix  string
	timeout time.Duration
	ff      failFast
	co      *coalescer // nil: Direct
	gcra    *script
	sliding *script
	errFast error

	// testNow, set only by this package's tests, replaces Redis's TIME
	// (µs since the epoch) so a table can run on a fake clock.
	testNow func() int64
}

// NewRedisStore returns a store over client. Unless opts.Direct, it starts
// the coalescer goroutine; Close stops it. The client stays the caller's.
func NewRedisStore(client RedisClient, opts RedisStoreOptions) *RedisStore {
	if opts.Prefix == "" {
		opts.Prefix = "ratelimit"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 50 * time.Millisecond
	}
	if opts.FailFastFor == 0 {
		opts.FailFastFor = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	s := &RedisStore{
		client:  client,
		prefix:  opts.Prefix,
		timeout: opts.Timeout,
		ff:      failFast{now: opts.Now, cooldown: opts.FailFastFor, log: opts.Logger.Named("ratelimit")},
		gcra:    newScript(gcraScript),
		sliding: newScript(slidingScript),
		errFast: fmt.Errorf("%w: %w", ErrStoreUnavailable, ErrFailingFast),
	}
	if !opts.Direct {
		s.co = newCoalescer(s, opts.MaxBatch)
	}
	return s
}

// Key returns the Redis key of (p, key): exported so operators and tests
// can find a bucket.
func (s *RedisStore) Key(p Policy, key string) string {
	suffix := "}:tb"
	if p.algorithm() == SlidingWindow {
		suffix = "}:sw"
	}
	return s.prefix + ":{" + p.Name + ":" + key + suffix
}

// Allow decides one request for key under p.
func (s *RedisStore) Allow(ctx context.Context, p Policy, key string) (Result, error) {
	ok, probe := s.ff.admit()
	if !ok {
		return Result{Limit: p.limit()}, s.errFast
	}
	sc, args := s.gcra, []any{emissionMicros(p.Period, p.Requests), p.burst()}
	if p.algorithm() == SlidingWindow {
		sc, args = s.sliding, []any{p.Period.Milliseconds(), p.Requests}
	}
	if s.testNow != nil {
		args = append(args, s.testNow())
	}
	keys := []string{s.Key(p, key)}

	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	var vals []int64
	var err error
	if s.co != nil {
		vals, err = s.co.do(cctx, sc, keys, args)
	} else {
		vals, err = s.eval(cctx, sc, keys, args)
	}
	cancel()
	if err == nil && len(vals) != 4 {
		err = fmt.Errorf("script returned %d values, want 4", len(vals))
	}
	if err != nil {
		if ctx.Err() != nil {
			// The caller went away; that says nothing about Redis.
			s.ff.abandon(probe)
		} else {
			s.ff.failure(err)
		}
		return Result{Limit: p.limit()}, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	s.ff.success()
	return decision{
		allowed:    vals[0] == 1,
		remaining:  vals[1],
		retryAfter: vals[2],
		resetAfter: vals[3],
	}.result(p.limit()), nil
}

// Close stops the coalescer; decisions after Close fail with ErrClosed
// (wrapped in ErrStoreUnavailable). It is idempotent and does not close the
// client.
func (s *RedisStore) Close() error {
	if s.co != nil {
		s.co.close()
	}
	return nil
}

// eval runs sc with one EVALSHA, loading the script on NOSCRIPT.
func (s *RedisStore) eval(ctx context.Context, sc *script, keys []string, args []any) ([]int64, error) {
	epoch := sc.epoch.Load()
	vals, err := s.client.EvalSha(ctx, sc.sha, keys, args...).Int64Slice()
	if isNoScript(err) {
		if err := s.load(ctx, sc, epoch); err != nil {
			return nil, err
		}
		vals, err = s.client.EvalSha(ctx, sc.sha, keys, args...).Int64Slice()
	}
	return vals, err
}

// load sends SCRIPT LOAD for sc unless another caller loaded it since the
// caller saw epoch (so a burst of NOSCRIPTs after a restart loads it once).
func (s *RedisStore) load(ctx context.Context, sc *script, epoch uint64) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.epoch.Load() != epoch {
		return nil
	}
	sha, err := s.client.ScriptLoad(ctx, sc.src).Result()
	if err != nil {
		return fmt.Errorf("script load: %w", err)
	}
	if sha != sc.sha {
		return fmt.Errorf("script load: redis computed sha %s, want %s", sha, sc.sha)
	}
	sc.epoch.Add(1)
	return nil
}

func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

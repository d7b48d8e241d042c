package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
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
	Process(ctx context.Context, cmd redis.Cmder) error
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
// per-call timeout relies on, and never retries a command on its own
// (MaxRetries -1): a connection that drops after Redis ran a script but
// before its answer arrived would otherwise have go-redis send it again,
// charging the decision twice. RedisStore fails such a decision instead and
// has its own rule for failing fast (Cluster MOVED/ASK redirects, where
// Redis ran nothing, are still followed).
func (c RedisConfig) UniversalOptions() *redis.UniversalOptions {
	o := &redis.UniversalOptions{
		Addrs:                 c.Addresses,
		MasterName:            c.MasterName,
		Password:              c.Password,
		DB:                    c.DB,
		PoolSize:              c.PoolSize,
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
		// A new connection costs no round trip of its own before its first
		// command but HELLO: no CLIENT SETINFO, and RESP2 (nothing here needs
		// RESP3), so a connection replacing one cut by a timeout does not
		// eat the next decision's timeout on a far Redis.
		Protocol:        2,
		DisableIdentity: true,
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
//
// A Cluster client reloads the slot map at most ClusterStateReloadInterval
// after it last did, on the next command: go-redis reloads at once on MOVED
// and ASK but not when a master stops answering, and its own default (60 s)
// kept every decision for a failed master's slots failing for a minute after
// its replica had taken over.
func NewRedisClient(c RedisConfig) redis.UniversalClient {
	o := c.UniversalOptions()
	if o.IsClusterMode {
		co := o.Cluster()
		co.ClusterStateReloadInterval = ClusterStateReloadInterval
		return redis.NewClusterClient(co)
	}
	return redis.NewUniversalClient(o)
}

// ClusterStateReloadInterval bounds how stale a Cluster client's slot map may
// get: one CLUSTER SLOTS per interval per client while decisions flow.
const ClusterStateReloadInterval = time.Second

// RedisStoreOptions configures a RedisStore. Zero values mean the defaults.
type RedisStoreOptions struct {
	// Prefix starts every key; "" means "ratelimit". A key looks like
	// ratelimit:{LEN:POLICY:KEY}:tb, LEN the policy name's length in bytes
	// (so no policy's keys can meet another's, whatever the names and keys
	// hold) — the hash tag keeps each script on one Cluster slot; tb is
	// token_bucket, sw sliding_window.
	Prefix string
	// Timeout bounds each decision, queueing included (redis.timeout);
	// 0 means 50 ms. The client must honour context deadlines (see
	// RedisConfig.UniversalOptions) for a hung server to be cut off.
	Timeout time.Duration
	// FailFastFor is how long calls are refused without trying Redis once
	// Redis is seen failing (see FailFastAfter); after it one call probes
	// and its success resumes normal operation. 0 means 1 s; negative
	// disables failing fast.
	FailFastFor time.Duration
	// FailFastAfter is how many consecutive decisions must fail on the way
	// to Redis (connection refused or reset, timeout), with no decision
	// answered in between and over at least 2 × Timeout (at least 250 ms),
	// before calls fail fast; 0 means 3. The probe after FailFastFor may take
	// 4 × Timeout (at least 1 s): it usually opens a new connection. An error reply from Redis (WRONGTYPE on one key)
	// fails its own decision only and never counts, nor does a decision
	// whose timeout ended while it was still queued.
	FailFastAfter int
	// Direct sends one EVALSHA per decision instead of coalescing the
	// decisions waiting at the same moment into one pipeline.
	Direct bool
	// MaxBatch caps how many decisions one pipeline carries; 0 means 256.
	MaxBatch int
	// MaxPipelines caps the round trips the coalescer has out at once; 0
	// means 8, 1 means one at a time. A decision that must queue while the
	// youngest round trip out left at least Timeout/5 ago is sent on another
	// pipeline instead of waiting for it, so a far Redis (a round trip up to
	// about 40% of Timeout) does not make queued decisions time out.
	MaxPipelines int
	// PerKeyScripts sends every decision of a pipeline as its own
	// one-key EVALSHA even when the client is a single server (a plain or
	// Sentinel client), where by default the coalescer sends the decisions
	// of a pipeline as one batch-script EVALSHA per algorithm. Set it when
	// one address is a proxy that shards keys (it would refuse a script over
	// keys of several slots). Cluster and Ring clients always get per-key
	// scripts.
	PerKeyScripts bool
	// Now is the clock for failing fast (never for the buckets, which use
	// Redis's TIME); nil means time.Now.
	Now func() time.Time
	// Logger receives fail-fast transitions; nil means no logging.
	Logger hclog.Logger
}

// RedisStore keeps buckets in Redis, changed only by Lua scripts that read
// Redis's own clock, so any number of replicas share one limit. A decision
// is one EVALSHA, or part of a coalesced pipeline (one key of a batch
// script's EVALSHA over a single server): at most one round trip. NOSCRIPT (first use, restart, failover, SCRIPT FLUSH) loads the
// script and retries once. Every key gets a TTL that ends when its bucket
// is full again.
//
// Errors wrap ErrStoreUnavailable. Once Redis is seen failing repeatedly
// (FailFastAfter), calls fail fast with ErrFailingFast for FailFastFor,
// then one probe goes through; see RedisStoreOptions.
type RedisStore struct {
	client  RedisClient
	prefix  string
	timeout time.Duration
	ff      failFast
	co      *coalescer // nil: Direct
	gcra    *script
	sliding *script
	// Batch scripts, used by the coalescer when batch is set: the client is
	// one server (not a Cluster or a Ring), so one script may touch any keys.
	gcraBatch    *script
	slidingBatch *script
	batch        bool
	errFast      error
	calls        sync.Pool // *call
	loadTimeout  time.Duration
	loads        sync.WaitGroup // SCRIPT LOADs in flight

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
	if opts.FailFastAfter <= 0 {
		opts.FailFastAfter = 3
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
	if opts.MaxPipelines <= 0 {
		opts.MaxPipelines = 8
	}
	s := &RedisStore{
		client:  client,
		prefix:  opts.Prefix,
		timeout: opts.Timeout,
		ff: failFast{now: opts.Now, cooldown: opts.FailFastFor, after: int64(opts.FailFastAfter),
			span: max(2*opts.Timeout, 250*time.Millisecond), log: opts.Logger.Named("ratelimit")},
		gcra:    newScript(gcraScript),
		sliding: newScript(slidingScript),

		gcraBatch:    newScript(gcraBatchScript),
		slidingBatch: newScript(slidingBatchScript),
		batch:        !opts.PerKeyScripts && isOneServer(client),
		errFast:      fmt.Errorf("%w: %w", ErrStoreUnavailable, ErrFailingFast),
		loadTimeout:  max(4*opts.Timeout, time.Second),
	}
	if !opts.Direct {
		s.co = newCoalescer(s, opts.MaxBatch, opts.MaxPipelines, opts.Timeout/5)
	}
	return s
}

// Key returns the Redis key of (p, key): PREFIX:{LEN:NAME:KEY}:tb (or :sw),
// LEN being len(p.Name) in decimal. The length makes the split between name
// and key unambiguous: policy "a" with key "h:1.2.3.4" and policy "a:h" with
// key "1.2.3.4" get different buckets even if a name held a ':'. Exported so
// operators and tests can find a bucket.
func (s *RedisStore) Key(p Policy, key string) string {
	suffix := "}:tb"
	if p.algorithm() == SlidingWindow {
		suffix = "}:sw"
	}
	return s.prefix + ":{" + strconv.Itoa(len(p.Name)) + ":" + p.Name + ":" + key + suffix
}

// Allow decides one request for key under p.
func (s *RedisStore) Allow(ctx context.Context, p Policy, key string) (Result, error) {
	ok, probe := s.ff.admit()
	if !ok {
		return Result{Limit: p.limit()}, s.errFast
	}
	c := s.getCall()
	s.prepare(c, &p, key)
	timeout := s.timeout
	if probe {
		// The probe usually needs a new connection (a HELLO round trip before
		// its command): cut at the decisions' timeout, it would never get
		// through to a far Redis, and the store would fail fast for good.
		timeout = s.loadTimeout
	}
	var vals [4]int64
	var err error
	if s.co != nil {
		vals, err = s.co.do(ctx, c, timeout)
	} else {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err = s.eval(cctx, c)
		cancel()
		vals = c.vals
		s.putCall(c)
	}
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, errExpiredQueued) || errors.Is(err, ErrClosed) {
			// The caller went away, or the decision never left the queue:
			// that says nothing about Redis.
			s.ff.abandon(probe)
		} else {
			s.ff.result(err, probe)
		}
		return Result{Limit: p.limit()}, storeError(err)
	}
	s.ff.success()
	return decision{
		allowed:    vals[0] == 1,
		remaining:  vals[1],
		retryAfter: vals[2],
		resetAfter: vals[3],
	}.result(p.limit()), nil
}

// storeError wraps a failed decision's err in ErrStoreUnavailable, and a
// connection's own i/o timeout (go-redis sets the call's deadline on the
// connection) in context.DeadlineExceeded as well, so every timeout matches
// one sentinel.
func storeError(err error) error {
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) && errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: %w: %w", ErrStoreUnavailable, context.DeadlineExceeded, err)
	}
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}

// Close stops the coalescer; decisions after Close fail with ErrClosed
// (wrapped in ErrStoreUnavailable). It is idempotent and does not close the
// client.
func (s *RedisStore) Close() error {
	if s.co != nil {
		s.co.close()
	}
	s.loads.Wait()
	return nil
}

// eval runs c with one EVALSHA, loading the script on NOSCRIPT.
func (s *RedisStore) eval(ctx context.Context, c *call) error {
	epoch := c.sc.epoch.Load()
	cmd := c.command(ctx)
	_ = s.client.Process(ctx, cmd)
	err := c.result(cmd)
	if isNoScript(err) {
		if err := s.load(ctx, c.sc, epoch); err != nil {
			return err
		}
		cmd = c.command(ctx)
		_ = s.client.Process(ctx, cmd)
		err = c.result(cmd)
	}
	return err
}

// call is one decision on its way to Redis. Calls are pooled, and the
// EVALSHA's arguments point into the call (go-redis writes *string and
// *int64 as their values), so building a command allocates only the
// command itself.
type call struct {
	sc    *script
	key   string   // KEYS[1]
	argv  [3]int64 // ARGV; the third only under testNow
	args  [7]any   // "evalsha", &sc.sha, "1", &key, &argv[0], &argv[1], &argv[2]
	nargs int      // 6, or 7 with ARGV[3]

	// Used by the coalescer.
	ctx      context.Context // the caller's: done means skip the call
	deadline time.Time       // when the caller's timeout ends
	epoch    uint64          // sc's load epoch when the call was sent
	cmd      *redis.IntSliceCmd
	vals     [4]int64 // the script's answer, set by result
	err      error
	state    atomic.Int32  // callWaiting, then callDone, callExpired or callAbandoned
	ready    chan struct{} // cap 1: one send, for callDone or callExpired
	refs     atomic.Int32  // owners while queued: the caller and the coalescer
}

// A queued call's state leaves callWaiting once, by compare-and-swap: to
// callDone when the flusher has its answer, to callExpired (sent) or
// callExpiredQueued (still queued) when the reaper finds its deadline passed
// (all three signal ready), to callAbandoned when its caller gives up (no
// signal). The flusher sends only waiting calls.
const (
	callWaiting int32 = iota
	callDone
	callExpired
	callAbandoned
	callExpiredQueued
)

func (s *RedisStore) getCall() *call {
	if c, ok := s.calls.Get().(*call); ok {
		return c
	}
	c := &call{ready: make(chan struct{}, 1)}
	c.args = [7]any{"evalsha", nil, "1", &c.key, &c.argv[0], &c.argv[1], &c.argv[2]}
	return c
}

// putCall pools c; nobody may hold it any more, and its ready is empty.
func (s *RedisStore) putCall(c *call) {
	c.sc, c.key, c.ctx, c.cmd, c.err = nil, "", nil, nil, nil
	c.args[1] = nil
	c.state.Store(callWaiting)
	c.refs.Store(0)
	s.calls.Put(c)
}

// prepare sets c up to decide key under p.
func (s *RedisStore) prepare(c *call, p *Policy, key string) {
	c.key = s.Key(*p, key)
	if p.algorithm() == SlidingWindow {
		c.sc = s.sliding
		c.argv[0], c.argv[1] = p.Period.Milliseconds(), int64(p.Requests)
	} else {
		c.sc = s.gcra
		c.argv[0], c.argv[1] = emissionMicros(p.Period, p.Requests), int64(p.burst())
	}
	c.nargs = 6
	if s.testNow != nil {
		c.argv[2] = s.testNow()
		c.nargs = 7
	}
	c.args[1] = &c.sc.sha
}

// command is c's EVALSHA; a new one each time, since go-redis caches a
// command's Cluster slot in it.
func (c *call) command(ctx context.Context) *redis.IntSliceCmd {
	return redis.NewIntSliceCmd(ctx, c.args[:c.nargs]...)
}

// result stores cmd's answer in c.vals.
func (c *call) result(cmd *redis.IntSliceCmd) error {
	vals, err := cmd.Result()
	if err != nil {
		return err
	}
	if len(vals) != 4 {
		return fmt.Errorf("%w: script returned %d values, want 4", errBadReply, len(vals))
	}
	copy(c.vals[:], vals)
	return nil
}

// load makes sure sc is loaded unless another caller loaded it since the
// caller saw epoch (so a burst of NOSCRIPTs after a restart loads it once),
// and waits for that at most until ctx ends. The SCRIPT LOAD itself runs
// on its own goroutine (owned by the store, bounded by loadTimeout) with
// its own deadline: a decision's timeout may be shorter than a round trip
// or two to a far Redis, and a load cut by every decision's deadline would
// never finish, failing every decision after a restart.
func (s *RedisStore) load(ctx context.Context, sc *script, epoch uint64) error {
	sc.mu.Lock()
	if sc.epoch.Load() != epoch {
		sc.mu.Unlock()
		return nil
	}
	lc := sc.loading
	if lc == nil {
		lc = &loadCall{done: make(chan struct{})}
		sc.loading = lc
		s.loads.Add(1)
		go s.runLoad(sc, lc)
	}
	sc.mu.Unlock()
	select {
	case <-lc.done:
		return lc.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runLoad sends SCRIPT LOAD for sc and finishes lc.
func (s *RedisStore) runLoad(sc *script, lc *loadCall) {
	defer s.loads.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.loadTimeout)
	defer cancel()
	sha, err := s.client.ScriptLoad(ctx, sc.src).Result()
	switch {
	case err != nil:
		err = fmt.Errorf("script load: %w", err)
	case sha != sc.sha:
		err = fmt.Errorf("script load: redis computed sha %s, want %s", sha, sc.sha)
	}
	sc.mu.Lock()
	if err == nil {
		sc.epoch.Add(1)
	}
	sc.loading = nil
	sc.mu.Unlock()
	lc.err = err
	close(lc.done)
}

// isOneServer reports whether every key client touches lives on one Redis
// server: a plain or Sentinel client, not a Cluster or a Ring.
func isOneServer(client RedisClient) bool {
	_, ok := client.(*redis.Client)
	return ok
}

func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

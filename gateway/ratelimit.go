package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/infinityxone/gateway/gateway/config"
	"github.com/infinityxone/gateway/ratelimit"
)

// RateLimiter decides one request for a key. *ratelimit.Limiter is the production one
// (Redis Lua scripts or a memory store); the seam is here so the pipeline does not
// depend on where buckets live.
type RateLimiter interface {
	Allow(ctx context.Context, key string) (ratelimit.Result, error)
}

// rateLimits owns the stores behind every rate_limit policy.
type rateLimits struct {
	client   redis.UniversalClient // nil without a redis block
	redis    *ratelimit.RedisStore
	memories []*ratelimit.MemoryStore // one per store = "memory" policy or "local" fallback (its max_keys)
	memNames []string                 // the policy of each of memories
	limiters []*ratelimit.Limiter
	policies map[string]*ratePolicy
	counts   headerInts // RateLimit-Remaining, -Reset and Retry-After values
	// warm is closed when the background warm-up of a Cluster client has ended
	// (ratelimit.WarmUp); stopWarm cuts it short. nil without a redis block.
	warm     chan struct{}
	stopWarm context.CancelFunc
}

// ratePolicy is a compiled rate_limit block.
type ratePolicy struct {
	name    string
	lim     RateLimiter
	keyKind string // client_ip | header | claim | route
	keyName string
	v6bits  int      // client_ipv6_prefix
	policy  []string // RateLimit-Policy value: "100;w=60" (shared; cap == len)
	limit   int      // the bucket's capacity: Result.Limit unless the local fallback decided
	limitV  []string // RateLimit-Limit value for limit (shared; cap == len)
	counts  headerInts
}

// headerInts holds the header values ("0", "1", …) of the small numbers that
// RateLimit-Remaining, RateLimit-Reset and Retry-After mostly carry, each a
// one-element slice shared by every response (cap == len, so an append by anyone
// copies), so setting one allocates nothing.
type headerInts [][]string

// headerIntsLen bounds the table: 1024 values, about 40 KiB, for all policies.
const headerIntsLen = 1024

func newHeaderInts() headerInts {
	t := make(headerInts, headerIntsLen)
	for i := range t {
		t[i] = []string{strconv.Itoa(i)}
	}
	return t
}

// set sets h[k] to n and h[k2] to n2 (canonical keys), with one allocation for both
// when either is outside the table.
func (t headerInts) set(h http.Header, k string, n int, k2 string, n2 int) {
	v, v2 := t.lookup(n), t.lookup(n2)
	if v == nil || v2 == nil {
		both := []string{strconv.Itoa(n), strconv.Itoa(n2)}
		if v == nil {
			v = both[0:1:1]
		}
		if v2 == nil {
			v2 = both[1:2:2]
		}
	}
	h[k], h[k2] = v, v2
}

func (t headerInts) lookup(n int) []string {
	if n >= 0 && n < len(t) {
		return t[n]
	}
	return nil
}

func newRateLimits(g *Gateway, cfg *config.Config) (_ *rateLimits, err error) {
	rl := &rateLimits{policies: make(map[string]*ratePolicy, len(cfg.RateLimits))}
	defer func() {
		if err != nil {
			rl.close()
		}
	}()
	if len(cfg.RateLimits) == 0 {
		return rl, nil
	}
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_ratelimit_decisions_total", Help: "Rate-limit decisions by policy and result (allowed, limited, error).",
	}, []string{"policy", "result"})
	if err := g.metrics.Registry.Register(decisions); err != nil {
		// A reload that changed the policies: the counters carry on.
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		decisions = are.ExistingCollector.(*prometheus.CounterVec)
	}
	counters := map[string]map[ratelimit.Outcome]prometheus.Counter{}
	for _, p := range cfg.RateLimits {
		counters[p.Name] = map[ratelimit.Outcome]prometheus.Counter{}
		for _, o := range []ratelimit.Outcome{ratelimit.OutcomeAllowed, ratelimit.OutcomeLimited, ratelimit.OutcomeError} {
			counters[p.Name][o] = decisions.WithLabelValues(p.Name, string(o))
		}
	}
	obs := ratelimit.ObserverFunc(func(policy string, o ratelimit.Outcome) { counters[policy][o].Inc() })

	rl.counts = newHeaderInts()
	if r := cfg.Redis; r != nil {
		rl.client = ratelimit.NewRedisClient(ratelimit.RedisConfig{
			Address: r.Address, Addresses: r.Addresses, MasterName: r.MasterName, Password: r.Password, DB: r.DB,
		})
		rl.redis = ratelimit.NewRedisStore(rl.client, ratelimit.RedisStoreOptions{
			Timeout: r.Timeout, Logger: g.log,
		})
		var ctx context.Context
		ctx, rl.stopWarm = context.WithTimeout(context.Background(), 10*time.Second)
		rl.warm = make(chan struct{})
		go func() {
			defer close(rl.warm)
			if err := ratelimit.WarmUp(ctx, rl.client); err != nil {
				g.log.Debug("ratelimit: redis warm-up failed; the first decisions will do it", "error", err)
			}
		}()
	}
	for _, p := range cfg.RateLimits {
		var memory *ratelimit.MemoryStore // the policy's own, so max_keys is per policy
		if p.Store != "redis" || p.OnStoreError == "local" {
			memory = ratelimit.NewMemoryStore(ratelimit.MemoryStoreOptions{MaxKeys: p.MaxKeys})
			rl.memories = append(rl.memories, memory)
			rl.memNames = append(rl.memNames, p.Name)
		}
		var store ratelimit.Store = memory
		if p.Store == "redis" {
			if rl.redis == nil {
				return nil, fmt.Errorf("%s: rate_limit %q: store = \"redis\" needs a redis block", p.Pos, p.Name)
			}
			store = rl.redis
		}
		lim, err := ratelimit.NewLimiter(ratelimit.Policy{
			Name:             p.Name,
			Algorithm:        ratelimit.Algorithm(p.Algorithm),
			Requests:         p.Requests,
			Period:           p.Period,
			Burst:            p.Burst,
			OnStoreError:     ratelimit.StoreErrorMode(p.OnStoreError),
			ExpectedReplicas: p.ExpectedReplicas,
		}, store, ratelimit.LimiterOptions{Local: memory, Observer: obs, Logger: g.log})
		if err != nil {
			return nil, fmt.Errorf("%s: rate_limit %q: %w", p.Pos, p.Name, err)
		}
		rl.limiters = append(rl.limiters, lim)
		rl.policies[p.Name] = &ratePolicy{
			name: p.Name, lim: lim, keyKind: p.KeyKind, keyName: p.KeyName, v6bits: p.ClientIPv6Prefix,
			policy: []string{strconv.Itoa(p.Requests) + ";w=" + strconv.FormatInt(int64(math.Ceil(p.Period.Seconds())), 10)},
			limit:  lim.Limit(),
			limitV: []string{strconv.Itoa(lim.Limit())},
			counts: rl.counts,
		}
	}
	return rl, nil
}

// close releases the stores and the Redis client.
func (rl *rateLimits) close() {
	if rl == nil {
		return
	}
	if rl.warm != nil {
		rl.stopWarm()
		<-rl.warm
	}
	for _, l := range rl.limiters {
		_ = l.Close()
	}
	if rl.redis != nil {
		_ = rl.redis.Close()
	}
	for _, m := range rl.memories {
		_ = m.Close()
	}
	if rl.client != nil {
		_ = rl.client.Close()
	}
}

// key extracts the bucket key of a request. A missing header or claim falls back to the
// client IP, so a client cannot escape its limit by leaving the header out. An IPv6
// client is keyed by its client_ipv6_prefix network, so rotating addresses within it
// neither escapes the limit nor floods the store.
func (p *ratePolicy) key(x *Exchange, routeKey string) string {
	switch p.keyKind {
	case "header":
		if v := x.R.Header.Get(p.keyName); v != "" {
			return "h:" + v
		}
	case "claim":
		if x.Claims != nil {
			if v, ok := x.Claims.Claim(p.keyName); ok && v != "" {
				return "c:" + v
			}
		}
	case "route":
		return routeKey
	}
	return ratelimit.ClientKey(x.clientIP(), p.v6bits)
}

// rateLimitStage applies the route's rate_limit: RateLimit-* headers on every answer,
// 429 with Retry-After when the bucket is spent, 503 when the store is down and the
// policy says deny.
func (g *Gateway) rateLimitStage(rt *Route, next Handler) Handler {
	if rt.Config.RateLimit == "" {
		return next
	}
	p := rt.limit
	routeKey := "r:" + rt.Name
	return HandlerFunc(func(x *Exchange) {
		res, err := p.lim.Allow(x.R.Context(), p.key(x, routeKey))
		h := x.W.Header()
		if res.Limit == p.limit {
			h["Ratelimit-Limit"] = p.limitV
		} else {
			h["Ratelimit-Limit"] = []string{strconv.Itoa(res.Limit)}
		}
		h["Ratelimit-Policy"] = p.policy
		if err != nil {
			if x.R.Context().Err() != nil {
				x.W.status, x.ErrorCode = 499, "client_closed_request" // nobody is listening
				return
			}
			x.Fail(err) // ratelimit.ErrStoreUnavailable is 503
			return
		}
		if !res.Degraded || res.Remaining > 0 || !res.Allowed {
			p.counts.set(h, "Ratelimit-Remaining", res.Remaining, "Ratelimit-Reset", ceilSeconds(res.ResetAfter, 0))
		}
		if !res.Allowed {
			if v := p.counts.lookup(ceilSeconds(res.RetryAfter, 1)); v != nil {
				h["Retry-After"] = v
			} else {
				h["Retry-After"] = []string{strconv.Itoa(ceilSeconds(res.RetryAfter, 1))}
			}
			x.Fail(ratelimit.ErrLimited)
			return
		}
		next.Serve(x)
	})
}

// ceilSeconds rounds d up to whole seconds, at least least.
func ceilSeconds(d time.Duration, least int) int {
	return max(least, int((d+time.Second-1)/time.Second))
}

// evictionsCollector reports gateway_ratelimit_evictions_total from the memory stores of
// the current snapshot's policies; registered once, so a reload that rebuilds the
// stores needs no registration (a rebuilt store starts from 0: a counter reset).
type evictionsCollector struct {
	g    *Gateway
	desc *prometheus.Desc
}

func newEvictionsCollector(g *Gateway) *evictionsCollector {
	return &evictionsCollector{g: g, desc: prometheus.NewDesc("gateway_ratelimit_evictions_total",
		"Rate-limit keys still in use dropped from a memory store (or local fallback) at its max_keys.",
		[]string{"policy"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *evictionsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *evictionsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.g.cur.Load()
	if st == nil || st.limits == nil {
		return
	}
	for i, m := range st.limits.memories {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(m.Evictions()), st.limits.memNames[i])
	}
}

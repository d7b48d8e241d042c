package ratelimit

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// Outcome labels a decision for metrics: gateway_ratelimit_decisions_total's
// result label is string(outcome).
type Outcome string

const (
	// OutcomeAllowed: the store answered and the request passes.
	OutcomeAllowed Outcome = "allowed"
	// OutcomeLimited: the store answered and the request is refused.
	OutcomeLimited Outcome = "limited"
	// OutcomeError: the store failed; on_store_error decided.
	OutcomeError Outcome = "error"
)

// Observer is told about every decision. It is called on the request path,
// so it must be fast and must not block; policy is the policy's Name.
type Observer interface {
	ObserveDecision(policy string, outcome Outcome)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(policy string, outcome Outcome)

// ObserveDecision calls f.
func (f ObserverFunc) ObserveDecision(policy string, outcome Outcome) { f(policy, outcome) }

// Stats counts a Limiter's decisions since it was built.
type Stats struct {
	Allowed, Limited, Errors uint64
}

// LimiterOptions are a Limiter's optional parts.
type LimiterOptions struct {
	// Local is the fallback store for OnErrorLocal. nil: the limiter makes
	// its own MemoryStore and closes it in Close. A shared one is fine:
	// buckets are namespaced by policy name.
	Local *MemoryStore
	// Observer, if not nil, is told about every decision.
	Observer Observer
	// Logger; nil means no logging. Store failures are logged by the store
	// (RedisStore logs transitions only), not here per request.
	Logger hclog.Logger
}

// Limiter applies one policy: the gateway builds one per rate_limit block
// and calls Allow with the key it extracted from the request. It is safe
// for concurrent use and allocates nothing per call beyond what its Store
// does (MemoryStore: nothing). The per-call timeout and failing fast belong
// to RedisStore, which every policy's Limiter shares: one Redis seen
// failing fails fast for all of them.
type Limiter struct {
	policy     Policy
	local      Policy
	store      Store
	localStore *MemoryStore
	ownsLocal  bool
	mode       StoreErrorMode
	limit      int
	obs        Observer
	log        hclog.Logger

	allowed, limited, errors atomic.Uint64
}

// NewLimiter validates p and returns its Limiter over store.
func NewLimiter(p Policy, store Store, opts LimiterOptions) (*Limiter, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, fmt.Errorf("%w %q: nil store", ErrInvalidPolicy, p.Name)
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	p.Algorithm = p.algorithm()
	p.Burst = p.burst()
	p.OnStoreError = p.onStoreError()
	p.ExpectedReplicas = max(1, p.ExpectedReplicas)
	l := &Limiter{
		policy: p,
		local:  p.localPolicy(),
		store:  store,
		mode:   p.OnStoreError,
		limit:  p.limit(),
		obs:    opts.Observer,
		log:    opts.Logger.Named("ratelimit").With("policy", p.Name),
	}
	if l.mode == OnErrorLocal {
		l.localStore = opts.Local
		if l.localStore == nil {
			l.localStore = NewMemoryStore(MemoryStoreOptions{})
			l.ownsLocal = true
		}
	}
	return l, nil
}

// Policy returns the policy with its defaults filled in.
func (l *Limiter) Policy() Policy { return l.policy }

// Limit is the bucket's capacity: Result.Limit of every decision except
// those of the OnErrorLocal fallback (whose bucket is divided by
// ExpectedReplicas). The gateway formats RateLimit-Limit from it once.
func (l *Limiter) Limit() int { return l.limit }

// Allow decides one request for key. When the store answers, err is nil and
// the Result says allowed or limited. When it fails, the policy's
// on_store_error decides and Result.Degraded is set: allow → Allowed, nil;
// local → the local store's decision, nil; deny → not Allowed, and an
// error wrapping ErrStoreUnavailable (the gateway's 503).
func (l *Limiter) Allow(ctx context.Context, key string) (Result, error) {
	res, err := l.store.Allow(ctx, l.policy, key)
	if err != nil && ctx.Err() != nil {
		// The caller gave up (its client went away): no decision was needed, and the
		// store is not to blame, so nothing is counted.
		return Result{Limit: l.limit}, ctx.Err()
	}
	if err == nil {
		if res.Allowed {
			l.allowed.Add(1)
			l.observe(OutcomeAllowed)
		} else {
			l.limited.Add(1)
			l.observe(OutcomeLimited)
		}
		return res, nil
	}
	l.errors.Add(1)
	l.observe(OutcomeError)
	if l.log.IsTrace() {
		l.log.Trace("store failed", "key", key, "on_store_error", l.mode, "error", err)
	}
	switch l.mode {
	case OnErrorDeny:
		return Result{Limit: l.limit, Degraded: true}, err
	case OnErrorLocal:
		res, _ = l.localStore.Allow(ctx, l.local, key)
		res.Degraded = true
		return res, nil
	default:
		return Result{Allowed: true, Limit: l.limit, Degraded: true}, nil
	}
}

// Stats returns the decision counts so far.
func (l *Limiter) Stats() Stats {
	return Stats{Allowed: l.allowed.Load(), Limited: l.limited.Load(), Errors: l.errors.Load()}
}

// Close releases the local fallback store if the limiter made it. The
// Store passed to NewLimiter stays the caller's.
func (l *Limiter) Close() error {
	if l.ownsLocal {
		return l.localStore.Close()
	}
	return nil
}

func (l *Limiter) observe(o Outcome) {
	if l.obs != nil {
		l.obs.ObserveDecision(l.policy.Name, o)
	}
}

package ratelimit

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors owned by this package. Match them with errors.Is; they are
// wrapped with %w and may carry the underlying cause as well.
var (
	// ErrStoreUnavailable wraps every failure of a Store: Redis unreachable,
	// timed out, a bad reply, or a call refused while failing fast. A Limiter
	// returns it only when its policy says on_store_error = "deny" (the
	// gateway answers 503); with "allow" and "local" the decision is made
	// anyway and Result.Degraded is set.
	ErrStoreUnavailable = errors.New("ratelimit: store unavailable")

	// ErrFailingFast is wrapped (together with ErrStoreUnavailable) into the
	// error of a call that was not sent to Redis at all because Redis failed
	// moments ago. See RedisStoreOptions.FailFastFor.
	ErrFailingFast = errors.New("ratelimit: store failed recently, not tried")

	// ErrLimited is what Result.Err returns for a rejected decision, for a
	// caller that maps errors to statuses in one place (429).
	ErrLimited = errors.New("ratelimit: limit exceeded")

	// ErrInvalidPolicy wraps every error of Policy.Validate.
	ErrInvalidPolicy = errors.New("ratelimit: invalid policy")

	// ErrClosed is returned by a store used after Close.
	ErrClosed = errors.New("ratelimit: store closed")
)

// Algorithm names a rate-limiting algorithm.
type Algorithm string

const (
	// TokenBucket is a token bucket of capacity Burst refilled at
	// Requests/Period, implemented as GCRA (one timestamp per key).
	TokenBucket Algorithm = "token_bucket"
	// SlidingWindow counts requests over the last Period with the two-window
	// approximation; see the package documentation for its accuracy.
	SlidingWindow Algorithm = "sliding_window"
)

// StoreErrorMode says what a Limiter decides when its Store fails.
type StoreErrorMode string

const (
	// OnErrorAllow lets the request through (the default).
	OnErrorAllow StoreErrorMode = "allow"
	// OnErrorDeny refuses it: Limiter.Allow returns ErrStoreUnavailable.
	OnErrorDeny StoreErrorMode = "deny"
	// OnErrorLocal decides with a process-local MemoryStore whose limits are
	// the policy's divided by ExpectedReplicas.
	OnErrorLocal StoreErrorMode = "local"
)

// Policy is one `rate_limit` block. The zero value of each optional field
// means its documented default; Validate reports what cannot work.
type Policy struct {
	// Name namespaces the buckets: two policies never share a bucket. It is
	// 1–128 characters of A-Z a-z 0-9 _ - . (no separator such as ':' or a
	// Redis hash-tag brace, which would make keys of two policies ambiguous).
	Name string
	// Algorithm is TokenBucket or SlidingWindow; "" means TokenBucket.
	Algorithm Algorithm
	// Requests is how many requests are allowed per Period (> 0).
	Requests int
	// Period is the refill period (token bucket) or window length (sliding
	// window). It must be > 0; a sliding window also needs a whole number of
	// milliseconds, a token bucket at least one microsecond per request.
	Period time.Duration
	// Burst is the token bucket's capacity; 0 means Requests. The sliding
	// window ignores it (its capacity is Requests).
	Burst int
	// OnStoreError is what a Limiter does when the store fails; "" means
	// OnErrorAllow.
	OnStoreError StoreErrorMode
	// ExpectedReplicas divides the limits of the local fallback store
	// (OnErrorLocal); 0 means 1. Each replica gets at least 1 request.
	ExpectedReplicas int
}

// maxRequests bounds Requests and Burst so that every product the scripts
// compute stays an exact integer in a Lua double (2^53).
// Validate keeps the products below 2^50 so that Lua's floor(a/b) equals
// integer division.
const maxRequests = 1 << 30

// Validate reports the first problem with p, wrapping ErrInvalidPolicy.
func (p Policy) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidPolicy, p.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case p.Name == "":
		return fmt.Errorf("%w: empty name", ErrInvalidPolicy)
	case !ValidPolicyName(p.Name):
		return bad("name must be 1-%d characters of A-Z a-z 0-9 _ - . (no ':', '{', '}' or spaces)", maxNameLen)
	case p.Algorithm != "" && p.Algorithm != TokenBucket && p.Algorithm != SlidingWindow:
		return bad("unknown algorithm %q (token_bucket | sliding_window)", p.Algorithm)
	case p.Requests <= 0 || p.Requests > maxRequests:
		return bad("requests must be between 1 and %d, got %d", maxRequests, p.Requests)
	case p.Period <= 0:
		return bad("period must be positive, got %v", p.Period)
	case p.Burst < 0 || p.Burst > maxRequests:
		return bad("burst must be between 0 (= requests) and %d, got %d", maxRequests, p.Burst)
	case p.OnStoreError != "" && p.OnStoreError != OnErrorAllow && p.OnStoreError != OnErrorDeny && p.OnStoreError != OnErrorLocal:
		return bad("unknown on_store_error %q (allow | deny | local)", p.OnStoreError)
	case p.ExpectedReplicas < 0:
		return bad("expected_replicas must not be negative, got %d", p.ExpectedReplicas)
	}
	if p.algorithm() == SlidingWindow {
		if p.Period%time.Millisecond != 0 {
			return bad("sliding_window period must be a whole number of milliseconds, got %v", p.Period)
		}
		// prev*(W-e) + (cur+1)*W <= L*W must stay exact in a double.
		if float64(p.Requests+1)*float64(p.Period.Milliseconds()) >= 1<<50 {
			return bad("requests × period too large for a sliding window")
		}
	} else {
		if emissionMicros(p.Period, p.Requests) < 1 {
			return bad("more than one request per microsecond (%d per %v)", p.Requests, p.Period)
		}
		if float64(p.burst())*float64(emissionMicros(p.Period, p.Requests)) >= 1<<50 {
			return bad("burst × period / requests too large")
		}
	}
	return nil
}

// maxNameLen bounds a policy name (it is part of every Redis key).
const maxNameLen = 128

// ValidPolicyName reports whether name may name a policy: 1–128 characters
// of A-Z a-z 0-9 _ - . so it never contains a key separator.
func ValidPolicyName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

// algorithm returns p.Algorithm with its default applied.
func (p *Policy) algorithm() Algorithm {
	if p.Algorithm == "" {
		return TokenBucket
	}
	return p.Algorithm
}

// burst returns the token bucket's capacity with its default applied.
func (p *Policy) burst() int {
	if p.Burst == 0 {
		return p.Requests
	}
	return p.Burst
}

// limit is what Result.Limit reports: the bucket's capacity.
func (p *Policy) limit() int {
	if p.algorithm() == SlidingWindow {
		return p.Requests
	}
	return p.burst()
}

// onStoreError returns p.OnStoreError with its default applied.
func (p *Policy) onStoreError() StoreErrorMode {
	if p.OnStoreError == "" {
		return OnErrorAllow
	}
	return p.OnStoreError
}

// localPolicy is the policy of the OnErrorLocal fallback: every limit
// divided by ExpectedReplicas, rounded down, at least 1.
func (p Policy) localPolicy() Policy {
	n := p.ExpectedReplicas
	if n <= 1 {
		return p
	}
	div := func(v int) int { return max(1, v/n) }
	lp := p
	lp.Burst = div(p.burst())
	lp.Requests = div(p.Requests)
	return lp
}

// emissionMicros is GCRA's emission interval, Period/Requests, rounded to the
// nearest microsecond. Rounding changes the rate by less than 1 µs per
// request; Validate refuses policies where it would reach 0.
func emissionMicros(period time.Duration, requests int) int64 {
	us := period.Microseconds()
	r := int64(requests)
	return (us + r/2) / r
}

// Result is one decision. It is returned by value; the zero Result is a
// rejection with no information.
type Result struct {
	// Allowed says whether the request may pass. A rejected request consumed
	// nothing.
	Allowed bool
	// Limit is the bucket's capacity (Burst for a token bucket, Requests for
	// a sliding window): RateLimit-Limit.
	Limit int
	// Remaining is how many more requests would pass right now:
	// RateLimit-Remaining.
	Remaining int
	// ResetAfter is how long until the bucket is full again (0 if it is):
	// RateLimit-Reset, rounded up to seconds.
	ResetAfter time.Duration
	// RetryAfter is, for a rejected request, how long until one more request
	// would pass; 0 when Allowed. Retry-After, rounded up, at least 1 s.
	RetryAfter time.Duration
	// Degraded reports that the store failed and the decision came from the
	// policy's on_store_error: with OnErrorLocal every field is the local
	// store's; with OnErrorAllow and OnErrorDeny only Allowed and Limit mean
	// anything.
	Degraded bool
}

// ResetSeconds is ResetAfter in whole seconds, rounded up: the value of
// RateLimit-Reset.
func (r Result) ResetSeconds() int64 { return ceilSeconds(r.ResetAfter) }

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up and at least
// 1: the value of Retry-After on a 429.
func (r Result) RetryAfterSeconds() int64 { return max(1, ceilSeconds(r.RetryAfter)) }

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// Err returns ErrLimited for a rejected result and nil for an allowed one.
func (r Result) Err() error {
	if r.Allowed {
		return nil
	}
	return ErrLimited
}

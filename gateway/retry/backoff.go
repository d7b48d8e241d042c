package retry

import (
	"math"
	"math/rand/v2"
	"time"
)

// Source is a source of random numbers. *rand.Rand from math/rand/v2 satisfies it; note
// that a *rand.Rand is not safe for concurrent use, so share one only behind a lock.
type Source interface {
	// Int64N returns a uniformly distributed number in [0, n); n > 0.
	Int64N(n int64) int64
}

// Backoff returns how long to wait before retry number attempt (1 for the first retry):
// exponential backoff with full jitter, as in AWS's "Exponential Backoff and Jitter":
//
//	uniform random in [0, min(maxDelay, base × 2^(attempt−1))]
//
// so the first retry waits up to base, the second up to 2×base, and so on, never more
// than maxDelay. attempt < 1 counts as 1. base <= 0 returns 0. maxDelay <= 0 means no cap
// (beyond what a Duration holds). rnd nil uses math/rand/v2's top-level source, which is
// safe for concurrent use; tests pass a seeded *rand.Rand. Backoff does not allocate.
func Backoff(attempt int, base, maxDelay time.Duration, rnd Source) time.Duration {
	if base <= 0 {
		return 0
	}
	ceil := maxDelay
	if ceil <= 0 {
		ceil = math.MaxInt64
	}
	if shift := max(attempt, 1) - 1; shift < 63 && base <= ceil>>shift {
		ceil = base << shift
	}
	n := int64(ceil)
	if n < math.MaxInt64 {
		n++ // inclusive of the ceiling
	}
	if rnd == nil {
		return time.Duration(rand.Int64N(n))
	}
	return time.Duration(rnd.Int64N(n))
}

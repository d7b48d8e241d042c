package retry

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Budget defaults, applied by [NewBudget] to zero fields of [BudgetSettings].
const (
	DefaultBudgetRatio  = 0.2
	DefaultBudgetWindow = 10 * time.Second
	DefaultBudgetMin    = 10
)

// budgetBuckets is the number of buckets of a Budget's rolling window.
const budgetBuckets = 10

// BudgetSettings configures a [Budget]. Zero fields mean their defaults:
//
//   - Ratio: retries allowed per request over the window. Default 0.2. Negative: none
//     by ratio, only the Min floor.
//   - Window: the rolling window, kept in 10 buckets of Window/10, so a count leaves the
//     window between 0.9×Window and Window after it was made. Default 10s.
//   - Min: retries allowed per window on top of the ratio, so that a quiet service can
//     still retry. Default 10. Negative: no floor.
//   - Now: the clock. Default time.Now.
//
// The floor is added to the ratio, as in Linkerd's retry budgets (minRetriesPerSecond),
// rather than being a minimum of it: over any window, retries <= Ratio × requests + Min.
type BudgetSettings struct {
	Ratio  float64
	Window time.Duration
	Min    int
	Now    func() time.Time
}

// Validate reports settings that no default can repair.
func (s BudgetSettings) Validate() error {
	switch {
	case math.IsNaN(s.Ratio) || math.IsInf(s.Ratio, 0):
		return fmt.Errorf("retry: budget ratio %v is not a number", s.Ratio)
	case s.Window < 0:
		return fmt.Errorf("retry: budget window %v is negative", s.Window)
	}
	return nil
}

// Budget caps a service's retries at Ratio × requests + Min over a rolling window, so that
// retries can never multiply an outage: against a service that fails every request, the
// upstream sees at most (1 + Ratio) × requests + Min attempts per window. It is safe for
// concurrent use and does not allocate.
//
// [Budget.Request] — once per client request, the hot path — is an atomic add on the
// current bucket (a tiny mutex only when a bucket turns over). [Budget.TryRetry] takes
// the mutex, so the bound is exact under concurrency.
type Budget struct {
	ratio float64 // <= 0: none
	min   float64 // <= 0: none
	width int64   // bucket width, ns
	now   func() time.Time
	base  time.Time

	mu      sync.Mutex // serialises TryRetry and bucket turnover
	buckets [budgetBuckets]budgetBucket
}

// budgetBucket counts one Window/10 slice. id is elapsed/width of the slice it counts.
// Counters are reset, then id is stored, both with Budget.mu held; readers that see the
// new id see the reset counters.
type budgetBucket struct {
	id       atomic.Int64
	requests atomic.Int64
	retries  atomic.Int64
}

// NewBudget returns a Budget with s's zero fields set to their defaults, or s's
// [BudgetSettings.Validate] error.
func NewBudget(s BudgetSettings) (*Budget, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	b := &Budget{ratio: s.Ratio, min: float64(s.Min), now: s.Now}
	if s.Ratio == 0 {
		b.ratio = DefaultBudgetRatio
	}
	if s.Min == 0 {
		b.min = DefaultBudgetMin
	}
	b.ratio, b.min = max(b.ratio, 0), max(b.min, 0)
	window := s.Window
	if window == 0 {
		window = DefaultBudgetWindow
	}
	b.width = max(int64(window)/budgetBuckets, 1)
	if b.now == nil {
		b.now = time.Now
	}
	b.base = b.now()
	return b, nil
}

// bucketID is the current bucket's id. A clock read before NewBudget's counts as then.
func (b *Budget) bucketID() int64 {
	return max(int64(b.now().Sub(b.base)), 0) / b.width
}

// Request counts one client request (not one attempt: retries are counted by TryRetry).
func (b *Budget) Request() {
	id := b.bucketID()
	bk := &b.buckets[id%budgetBuckets]
	if bk.id.Load() != id {
		b.mu.Lock()
		b.turn(bk, id)
		b.mu.Unlock()
	}
	bk.requests.Add(1)
}

// TryRetry reports whether one more retry fits the budget, and if so counts it.
func (b *Budget) TryRetry() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.bucketID()
	cur := &b.buckets[id%budgetBuckets]
	b.turn(cur, id)
	requests, retries := b.sum(id)
	if float64(retries+1) > b.ratio*float64(requests)+b.min {
		return false
	}
	cur.retries.Add(1)
	return true
}

// Available returns how many retries the budget would allow now.
func (b *Budget) Available() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	requests, retries := b.sum(b.bucketID())
	return max(int(math.Floor(b.ratio*float64(requests)+b.min))-int(retries), 0)
}

// turn makes bk count bucket id, unless it already counts id or a later one. b.mu must be
// held. (All buckets start with id 0; only bucket 0 is used for id 0, and the others hold
// zero counts until turned.)
func (b *Budget) turn(bk *budgetBucket, id int64) {
	if bk.id.Load() >= id {
		return // current, or already turned to a later slice by a newer clock reading
	}
	bk.requests.Store(0)
	bk.retries.Store(0)
	bk.id.Store(id)
}

// sum adds up the buckets of the window that ends with bucket id. b.mu must be held.
func (b *Budget) sum(id int64) (requests, retries int64) {
	for i := range b.buckets {
		bk := &b.buckets[i]
		if bid := bk.id.Load(); bid > id-budgetBuckets && bid <= id {
			requests += bk.requests.Load()
			retries += bk.retries.Load()
		}
	}
	return requests, retries
}

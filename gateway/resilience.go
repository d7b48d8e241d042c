package gateway

import (
	"math"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infinityxone/gateway/breaker"
	"github.com/infinityxone/gateway/gateway/balancer"
	"github.com/infinityxone/gateway/gateway/config"
	"github.com/infinityxone/gateway/gateway/retry"
)

// retryPolicy is a service's compiled `retry` block. Without the block a service still
// has one: a request whose connection failed before anything was sent is tried once more
// on another instance (docs/configuration.md, retry), with no backoff and no budget.
type retryPolicy struct {
	configured     bool
	attempts       int
	backoff        time.Duration
	maxBackoff     time.Duration
	idempotencyKey bool
	bufferBytes    int64 // replay buffer cap; negative: nothing kept
	budget         *retry.Budget
	retries        prometheus.Counter
}

func newRetryPolicy(rc *config.Retry, retries prometheus.Counter) (retryPolicy, error) {
	if rc == nil {
		return retryPolicy{attempts: 2, bufferBytes: -1, retries: retries}, nil
	}
	b, err := retry.NewBudget(retry.BudgetSettings{
		Ratio: rc.BudgetRatio, Window: rc.BudgetWindow, Min: rc.BudgetMin,
	})
	if err != nil {
		return retryPolicy{}, err
	}
	buf := rc.BufferBytes
	if buf == 0 {
		buf = -1 // buffer_bytes = 0: never replay a body that was read
	}
	return retryPolicy{
		configured: true, attempts: rc.Attempts, backoff: rc.Backoff, maxBackoff: rc.MaxBackoff,
		idempotencyKey: rc.IdempotencyKey, bufferBytes: buf, budget: b, retries: retries,
	}, nil
}

// retryableStatus: answers that an idempotent request may be retried after (the answer
// is then discarded).
func retryableStatus(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// breakers is a service's compiled `circuit_breaker` block: the settings each instance's
// breaker is built from, and which statuses count as failures.
type breakers struct {
	settings breaker.Settings
	failures [600]bool
}

func newBreakers(c *config.CircuitBreaker) *breakers {
	if c == nil {
		return nil
	}
	b := &breakers{settings: breaker.Settings{
		FailureThreshold: c.FailureThreshold,
		OpenTimeout:      c.OpenTimeout,
		HalfOpenRequests: c.HalfOpenRequests,
		FailureRatio:     c.FailureRatio,
		Window:           c.Window,
		MinRequests:      c.MinRequests,
	}}
	for _, s := range c.FailureStatuses {
		if s >= 0 && s < len(b.failures) {
			b.failures[s] = true
		}
	}
	return b
}

// failure reports whether an answer with this status counts against the instance.
func (bs *breakers) failure(code int) bool {
	return code >= 0 && code < len(bs.failures) && bs.failures[code]
}

// onNew builds the breaker of a new instance; the balancer keeps it as the endpoint's Ext.
func (bs *breakers) onNew(service string, ev *Events, timeout time.Duration) func(e *balancer.Endpoint) any {
	return func(e *balancer.Endpoint) any {
		s := bs.settings
		addr := e.Address
		// A trial whose answer never comes must not hold the breaker half-open forever,
		// nor be abandoned before the request's own timeout.
		s.TrialTimeout = max(timeout+time.Second, breaker.DefaultTrialTimeout)
		s.OnStateChange = func(from, to breaker.State) {
			ev.Publish(BreakerStateChanged{Service: service, Instance: addr, From: from.String(), To: to.String()})
		}
		b, err := breaker.New(s)
		if err != nil {
			return nil // settings were validated with the config; never happens
		}
		return b
	}
}

// breakerOf returns the endpoint's breaker, nil when the service has none.
func breakerOf(e *balancer.Endpoint) *breaker.Breaker {
	b, _ := e.Ext().(*breaker.Breaker)
	return b
}

// retryAfterOpen is the Retry-After, in whole seconds (at least 1), until the earliest
// open breaker of the service turns half-open.
func retryAfterOpen(set *balancer.Set, now func() time.Time) int {
	if now == nil {
		now = time.Now
	}
	var earliest time.Time
	for _, e := range set.Endpoints() {
		if b := breakerOf(e); b != nil {
			if u := b.OpenUntil(); !u.IsZero() && (earliest.IsZero() || u.Before(earliest)) {
				earliest = u
			}
		}
	}
	if earliest.IsZero() {
		return 1
	}
	return max(1, int(math.Ceil(earliest.Sub(now()).Seconds())))
}

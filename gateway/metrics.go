package gateway

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the gateway's Prometheus collectors, registered on a registry of its own
// (no global registry, so two gateways in one process don't collide).
type Metrics struct {
	Registry *prometheus.Registry

	requests         *prometheus.CounterVec
	requestDuration  *prometheus.HistogramVec
	upstreamRequests *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	upstreamRetries  *prometheus.CounterVec
	instances        *prometheus.GaugeVec
	breakerState     *prometheus.GaugeVec
	breakerTrans     *prometheus.CounterVec
	jwtValidations   *prometheus.CounterVec

	reqCounters cache[reqKey, prometheus.Counter]
	upCounters  cache[upKey, prometheus.Counter]

	// Per-instance series follow the catalog, not health: see instancesNow.
	now      func() time.Time
	seriesMu sync.Mutex
	live     map[instKey]bool      // instances in their service's list now
	departed map[instKey]time.Time // out of the list since
	gone     map[instKey]bool      // series deleted: late increments are dropped
	anyGone  atomic.Bool           // gone is not empty (the hot path skips the lock)
}

type instKey struct{ service, instance string }

type reqKey struct {
	route, method string
	code          int
}

type upKey struct{ service, instance, outcome string }

// NewMetrics creates and registers the core collectors.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry(), now: time.Now,
		live: map[instKey]bool{}, departed: map[instKey]time.Time{}, gone: map[instKey]bool{}}
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_requests_total", Help: "Requests answered, by route, method and status code.",
	}, []string{"route", "method", "code"})
	m.requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "gateway_request_duration_seconds", Help: "Time from request to the end of the response, by route.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route"})
	m.upstreamRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_upstream_requests_total", Help: "Upstream attempts by service, instance and outcome.",
	}, []string{"service", "instance", "outcome"})
	m.upstreamDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "gateway_upstream_request_duration_seconds", Help: "Upstream time to response headers, by service.",
		Buckets: prometheus.DefBuckets,
	}, []string{"service"})
	m.upstreamRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_upstream_retries_total", Help: "Retries sent upstream, by service.",
	}, []string{"service"})
	m.instances = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gateway_service_instances", Help: "Healthy instances by service.",
	}, []string{"service"})
	m.breakerState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gateway_circuit_breaker_state", Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
	}, []string{"service", "instance"})
	m.breakerTrans = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_circuit_breaker_transitions_total", Help: "Circuit breaker transitions by target state.",
	}, []string{"service", "instance", "to"})
	m.jwtValidations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_jwt_validations_total", Help: "Token validations by provider and result.",
	}, []string{"provider", "result"})
	m.Registry.MustRegister(m.jwtValidations)
	m.Registry.MustRegister(m.requests, m.requestDuration, m.upstreamRequests, m.upstreamDuration,
		m.upstreamRetries, m.instances, m.breakerState, m.breakerTrans)
	return m
}

// request counts one answered request. Standard methods are labelled as they are, anything
// else as OTHER, so a client cannot blow up the label set.
func (m *Metrics) request(route, method string, code int) {
	k := reqKey{route, metricMethod(method), code}
	c, ok := m.reqCounters.get(k)
	if !ok {
		c = m.reqCounters.put(k, m.requests.WithLabelValues(k.route, k.method, strconv.Itoa(code)))
	}
	c.Inc()
}

func (m *Metrics) upstream(service, instance, outcome string) {
	k := upKey{service, instance, outcome}
	c, ok := m.upCounters.get(k)
	if !ok {
		if m.isGone(service, instance) {
			return // a request that outlived its instance's series: not brought back
		}
		c = m.upCounters.put(k, m.upstreamRequests.WithLabelValues(service, instance, outcome))
	}
	c.Inc()
}

// isGone reports whether the instance's series were deleted.
func (m *Metrics) isGone(service, instance string) bool {
	if !m.anyGone.Load() {
		return false
	}
	m.seriesMu.Lock()
	defer m.seriesMu.Unlock()
	return m.gone[instKey{service, instance}]
}

// instancesNow is told a service's instance list after each update. Per-instance series
// (upstream requests, breaker state and transitions) are kept while an instance is out
// of the list for less than seriesRetention: Consul lists passing instances only, so a
// check going critical looks like a departure, and deleting the series then would lose
// every increment since the last scrape and restart the counters from 0. An instance
// still out after seriesRetention has left the catalog for good; its series are deleted
// then, on a later update, so address churn does not grow the metrics without bound.
// An instance that comes back with a fresh breaker has its breaker gauge reset to closed.
func (m *Metrics) instancesNow(service string, addrs []string, breakers bool) {
	m.seriesMu.Lock()
	defer m.seriesMu.Unlock()
	now := m.now()
	seen := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		k := instKey{service, a}
		seen[a] = true
		if !m.live[k] {
			m.live[k] = true
			if _, was := m.departed[k]; was && breakers {
				m.breakerState.WithLabelValues(service, a).Set(0)
			}
			delete(m.departed, k)
			delete(m.gone, k)
		}
	}
	for k := range m.live {
		if k.service == service && !seen[k.instance] {
			delete(m.live, k)
			m.departed[k] = now
		}
	}
	for k, since := range m.departed {
		if k.service == service && now.Sub(since) >= seriesRetention {
			delete(m.departed, k)
			m.gone[k] = true
			m.forgetInstance(k.service, k.instance)
		}
	}
	m.anyGone.Store(len(m.gone) > 0)
}

// forgetInstance drops the series of an instance that left its service for good.
func (m *Metrics) forgetInstance(service, instance string) {
	l := prometheus.Labels{"service": service, "instance": instance}
	m.upstreamRequests.DeletePartialMatch(l)
	m.breakerState.DeletePartialMatch(l)
	m.breakerTrans.DeletePartialMatch(l)
	m.upCounters.deleteIf(func(k upKey) bool { return k.service == service && k.instance == instance })
}

// forgetService drops every series of a service that a reload removed: its
// instances' and its own. Requests still finishing on the old configuration do not
// bring its instances' series back.
func (m *Metrics) forgetService(service string) {
	m.seriesMu.Lock()
	for k := range m.live {
		if k.service == service {
			delete(m.live, k)
			m.gone[k] = true
		}
	}
	for k := range m.departed {
		if k.service == service {
			delete(m.departed, k)
			m.gone[k] = true
		}
	}
	m.anyGone.Store(len(m.gone) > 0)
	m.seriesMu.Unlock()
	l := prometheus.Labels{"service": service}
	m.upstreamRequests.DeletePartialMatch(l)
	m.upstreamDuration.DeletePartialMatch(l)
	m.upstreamRetries.DeletePartialMatch(l)
	m.instances.DeletePartialMatch(l)
	m.breakerState.DeletePartialMatch(l)
	m.breakerTrans.DeletePartialMatch(l)
	m.upCounters.deleteIf(func(k upKey) bool { return k.service == service })
}

// subscribe keeps gauges in step with events.
func (m *Metrics) subscribe(ev *Events) {
	ev.Subscribe(func(e Event) {
		switch e := e.(type) {
		case InstanceSetChanged:
			m.instances.WithLabelValues(e.Service).Set(float64(e.Healthy))
		case BreakerStateChanged:
			if m.isGone(e.Service, e.Instance) {
				return // a late verdict on an instance that left for good
			}
			m.breakerState.WithLabelValues(e.Service, e.Instance).Set(breakerGauge(e.To))
			m.breakerTrans.WithLabelValues(e.Service, e.Instance, e.To).Inc()
		}
	})
}

func breakerGauge(state string) float64 {
	switch state {
	case "half_open":
		return 1
	case "open":
		return 2
	}
	return 0
}

func metricMethod(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "OTHER"
}

// cache is a read-mostly map read without locks: a copy-on-write map behind an
// atomic pointer. Label lookups on the hot path then cost one map read and no allocation.
type cache[K comparable, V any] struct {
	mu sync.Mutex
	m  atomic.Pointer[map[K]V]
}

func (c *cache[K, V]) get(k K) (V, bool) {
	if m := c.m.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

func (c *cache[K, V]) put(k K, v V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if existing, ok := (*old)[k]; ok {
			return existing
		}
	}
	n := make(map[K]V, 1+lenOf(old))
	if old != nil {
		for kk, vv := range *old {
			n[kk] = vv
		}
	}
	n[k] = v
	c.m.Store(&n)
	return v
}

// deleteIf removes the entries whose key matches.
func (c *cache[K, V]) deleteIf(match func(K) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old == nil {
		return
	}
	n := make(map[K]V, len(*old))
	for k, v := range *old {
		if !match(k) {
			n[k] = v
		}
	}
	c.m.Store(&n)
}

func lenOf[K comparable, V any](m *map[K]V) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// seriesRetention is how long an instance must stay out of its service's list before
// its per-instance series are deleted.
const seriesRetention = 10 * time.Minute

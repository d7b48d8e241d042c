package gateway

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infinityxone/gateway/consul"
	"github.com/infinityxone/gateway/gateway/balancer"
	"github.com/infinityxone/gateway/gateway/config"
)

// Service is the runtime form of a `service` block: the instance set its balancer picks
// from, the pooled transport to its instances, and its timeout and retry policy.
type Service struct {
	Name    string
	Source  string // static | consul
	Set     *balancer.Set
	Timeout time.Duration // until the response headers (a route may override it)
	// IdleTimeout bounds each wait for the next piece of a response body.
	IdleTimeout time.Duration
	transport   upstreamTransport // *h1Pool or *http.Transport, or a *meshTransport for a Connect service
	mesh        bool              // instances are reached through Consul Connect
	hashKey     bool              // the balancer hashes the client IP (ip_hash)
	watcher     *consul.Watcher   // nil for static services

	metrics          *Metrics // per-instance series follow the instance list
	upstreamDuration prometheus.Observer
	retry            retryPolicy
	breakers         *breakers // nil: no circuit_breaker block

	// ready is true once the service has a first instance list (always, for static ones).
	ready atomic.Bool
}

// newTransport builds the tuned, pooled transport of one service. Compression is left
// to client and upstream; proxies from the environment are ignored; HTTP/1.1 upstream.
func newTransport(t config.Transport) *http.Transport {
	d := &net.Dialer{Timeout: t.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		MaxIdleConns:          0, // bounded per host instead
		MaxIdleConnsPerHost:   t.MaxIdleConnsPerHost,
		MaxConnsPerHost:       t.MaxConnsPerHost,
		IdleConnTimeout:       t.IdleConnTimeout,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
}

// transportFor returns the transport of a service: for a Connect service (consul {
// connect = true }) HTTP/1.1 over mutual TLS with the gateway's leaf, checking each
// instance's certificate against the CA roots and the service's SPIFFE ID; otherwise
// the plain pooled transport, fronted by the gateway's own HTTP/1.1 pool (h1Pool) for
// the requests it serves — unless Options.UpstreamNetHTTP is set, the service caps
// its connections (max_conns_per_host: the Transport's queueing enforces it), or the
// pool cannot check a resting connection on this system (h1Peeks).
func (g *Gateway) transportFor(sc *config.Service) (upstreamTransport, bool) {
	if sc.Consul == nil || !sc.Consul.Connect || g.disc == nil || g.disc.mesh == nil {
		tr := newTransport(sc.Transport)
		if g.netHTTP || sc.Transport.MaxConnsPerHost > 0 || !h1Peeks {
			return tr, false
		}
		return newH1Pool(tr), false
	}
	return g.disc.mesh.transport(g, sc.Name, sc.Consul.Name, g.cfg.Consul.Datacenter, sc.Transport), true
}

// UpdateInstances replaces the service's instance set and publishes what changed.
func (s *Service) UpdateInstances(ev *Events, instances []balancer.Instance) {
	added, removed := s.Set.Update(instances)
	s.ready.Store(true)
	if s.metrics != nil {
		addrs := make([]string, len(instances))
		for i, in := range instances {
			addrs[i] = in.Address
		}
		s.metrics.instancesNow(s.Name, addrs, s.breakers != nil)
	}
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	e := InstanceSetChanged{Service: s.Name, Source: s.Source, Healthy: len(instances)}
	for _, in := range added {
		e.Added = append(e.Added, in.Address)
	}
	for _, in := range removed {
		e.Removed = append(e.Removed, in.Address)
	}
	ev.Publish(e)
}

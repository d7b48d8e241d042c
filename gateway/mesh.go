package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/infinityxone/gateway/consul"
	"github.com/infinityxone/gateway/gateway/config"
)

// This file is the gateway's side of Consul Connect. The certificates, the TLS checks
// and the classification of refusals live in package consul; here they are wired to
// services (transportFor), readiness (meshNotReady), metrics and the one error the
// proxy must treat apart (meshDenied).

// codeMeshDenied is the error code of a 502 whose upstream refused the gateway's
// certificate (an intention denies it).
const codeMeshDenied = "mesh_denied"

// upstreamTransport is what a service sends requests through: a pooled *http.Transport,
// or for a Connect service a meshTransport.
type upstreamTransport interface {
	http.RoundTripper
	CloseIdleConnections()
}

// meshDenied reports whether an upstream attempt failed because the destination refused
// the gateway in the mesh. Such a failure is answered 502 mesh_denied at once: it is not
// retried (every instance enforces the same intentions) and not held against the
// instance's breaker (the instance is healthy; policy said no).
func meshDenied(err error) bool { return errors.Is(err, consul.ErrMeshDenied) }

// mesh holds the gateway's Connect identity: its leaf certificate and the CA roots,
// followed through the agent, and the transports of the services in the mesh.
type mesh struct {
	certs     *consul.Certs
	rotations *prometheus.CounterVec

	mu         sync.Mutex
	transports []*meshTransport
	// dialers are every dialer a service label ever had (a reload that changes a
	// Connect service builds a new one); gateway_connect_upstream_connections_total
	// sums them, registered once per label, so it never goes backwards.
	dialers map[string][]*consul.Dialer
	settle  *time.Timer // the second renewal after an intention change; nil when none
	stopped bool
}

// intentionSettle is how long after an intention change the mesh services get fresh
// connections a second time: a destination's agent answers authorizations from its own
// cache of intentions, which may learn of the change a moment after the gateway does,
// and a connection it allowed in that moment would stay open.
const intentionSettle = 2 * time.Second

// newMesh builds the Connect identity cfg.ServiceName on the discovery's client and
// registers its metrics.
func newMesh(g *Gateway, client *api.Client, cfg *config.Connect, wait time.Duration) (*mesh, error) {
	m := &mesh{dialers: map[string][]*consul.Dialer{}}
	m.rotations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_connect_rotations_total", Help: "Connect leaf certificate and CA roots rotations seen, by kind (leaf, roots).",
	}, []string{"kind"})
	m.rotations.WithLabelValues("leaf")
	m.rotations.WithLabelValues("roots")
	certs, err := consul.NewCerts(client.Agent(), consul.ConnectOptions{
		Service:    cfg.ServiceName,
		Intentions: client.Connect(),
		WaitTime:   wait,
		Observer:   meshObserver{m},
		Logger:     g.log.Named("consul"),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: connect: %w", cfg.Pos, err)
	}
	m.certs = certs
	g.metrics.Registry.MustRegister(m.rotations, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gateway_connect_leaf_expiry_timestamp_seconds",
		Help: "When the gateway's Connect leaf certificate expires (Unix seconds; 0 before the first).",
	}, func() float64 {
		if l := certs.Leaf(); l != nil {
			return float64(l.NotAfter.Unix())
		}
		return 0
	}))
	return m, nil
}

// transport returns the transport of a Connect service: HTTP/1.1 over mutual TLS,
// pooled like any other service's, to instances whose certificate names svc (the
// Consul service name) in datacenter dc ("" = the gateway's own).
func (m *mesh) transport(g *Gateway, label, svc, dc string, tc config.Transport) *meshTransport {
	nd := &net.Dialer{Timeout: tc.DialTimeout, KeepAlive: 30 * time.Second}
	d := m.certs.Dialer(svc, dc, nd)
	t := &meshTransport{build: func() *http.Transport {
		tr := newTransport(tc)
		tr.DialContext = d.DialContext
		return tr
	}}
	t.cur.Store(t.build())
	m.mu.Lock()
	m.transports = append(m.transports, t)
	first := m.dialers[label] == nil
	m.dialers[label] = append(m.dialers[label], d)
	m.mu.Unlock()
	if first {
		g.metrics.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "gateway_connect_upstream_connections_total",
			Help:        "Mutual-TLS connections opened to a Connect service's instances (successful handshakes).",
			ConstLabels: prometheus.Labels{"service": label},
		}, func() float64 { return m.connections(label) }))
	}
	return t
}

// connections sums the handshakes of every dialer the service label has had.
func (m *mesh) connections(label string) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n uint64
	for _, d := range m.dialers[label] {
		n += uint64(d.Connections())
	}
	return float64(n)
}

// forget drops a retired service's transport, so renewals no longer touch it.
func (m *mesh) forget(t upstreamTransport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, mt := range m.transports {
		if mt == t {
			m.transports = append(m.transports[:i], m.transports[i+1:]...)
			return
		}
	}
}

// renewAll moves every Connect service to fresh connections: the new leaf is presented,
// and intentions are checked again, from now on; requests in flight finish on their old
// connections.
func (m *mesh) renewAll() {
	m.mu.Lock()
	ts := append([]*meshTransport(nil), m.transports...)
	m.mu.Unlock()
	for _, t := range ts {
		t.renew()
	}
}

// meshObserver counts rotations and acts on a new leaf.
type meshObserver struct{ m *mesh }

func (o meshObserver) LeafUpdated(_ *consul.Leaf, rotated bool) {
	if rotated {
		o.m.rotations.WithLabelValues("leaf").Inc()
		o.m.renewAll()
	}
}

func (o meshObserver) RootsUpdated(_ *consul.Roots, rotated bool) {
	if rotated {
		o.m.rotations.WithLabelValues("roots").Inc()
	}
}

func (meshObserver) ConnectFailed(string, error, time.Duration) {}

// IntentionsChanged opens fresh connections: destinations check intentions only when
// a connection opens, so without this a deny would wait for pooled connections to idle
// out. It does so again intentionSettle later.
func (o meshObserver) IntentionsChanged() {
	m := o.m
	m.renewAll()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	if m.settle != nil {
		m.settle.Stop()
	}
	m.settle = time.AfterFunc(intentionSettle, m.renewAll)
}

// stop ends the Connect queries and any pending renewal.
func (m *mesh) stop() {
	m.certs.Stop()
	m.mu.Lock()
	m.stopped = true
	if m.settle != nil {
		m.settle.Stop()
	}
	m.mu.Unlock()
}

// meshTransport is a pooled transport whose connections all carry the current leaf:
// when the leaf rotates (or intentions change), renew swaps in a fresh *http.Transport
// and closes the old one's idle connections; its busy ones finish their request and
// then idle out, or are closed by the next renew or CloseIdleConnections. Errors of a
// refusal by the upstream wrap consul.ErrMeshDenied.
type meshTransport struct {
	build func() *http.Transport
	cur   atomic.Pointer[http.Transport]

	mu      sync.Mutex
	retired []*http.Transport // replaced transports whose connections may still be busy
}

// maxRetired bounds the replaced transports kept for closing: older ones have had a
// whole idle_conn_timeout (or many renewals) to finish.
const maxRetired = 8

// RoundTrip sends req on the current transport.
func (t *meshTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.cur.Load().RoundTrip(req)
	if err != nil {
		// With TLS 1.3 the destination's refusal arrives on the first read, after the dial.
		err = consul.ClassifyMeshError(err)
	}
	return resp, err
}

// CloseIdleConnections closes the idle connections of the current transport and of
// the replaced ones.
func (t *meshTransport) CloseIdleConnections() {
	t.mu.Lock()
	retired := t.retired
	t.retired = nil
	t.mu.Unlock()
	for _, r := range retired {
		r.CloseIdleConnections()
	}
	t.cur.Load().CloseIdleConnections()
}

func (t *meshTransport) renew() {
	old := t.cur.Swap(t.build())
	t.mu.Lock()
	retired := append(t.retired, old)
	if len(retired) > maxRetired {
		retired = retired[len(retired)-maxRetired:]
	}
	t.retired = retired
	t.mu.Unlock()
	for _, r := range retired {
		r.CloseIdleConnections()
	}
}

// meshNotReady is why the gateway is not ready on the mesh's account ("" when it is):
// until the first leaf and roots arrived, no Connect upstream can be reached.
func (g *Gateway) meshNotReady() string {
	if g.disc == nil || g.disc.mesh == nil {
		return ""
	}
	c := g.disc.mesh.certs
	select {
	case <-c.Ready():
		return ""
	default:
	}
	if err := c.Err(); err != nil {
		if errors.Is(err, consul.ErrACL) {
			return "consul refused the ACL token for the Connect leaf certificate of " + c.Service() + " (it needs service:write on it): " + err.Error()
		}
		return "waiting for the Connect leaf certificate and CA roots: " + err.Error()
	}
	return "waiting for the Connect leaf certificate and CA roots"
}

package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/infinityxone/gateway/consul"
	"github.com/infinityxone/gateway/gateway/balancer"
	"github.com/infinityxone/gateway/gateway/config"
)

// discovery owns the Consul side of a gateway: one blocking-query watcher per
// Consul-backed service, feeding that service's instance set, and this replica's own
// registration.
type discovery struct {
	g        *Gateway
	client   *api.Client
	watchers []*consul.Watcher
	reg      *config.Register
	registr  *consul.Registrar
	stopKeep context.CancelFunc // ends the keep-registered loop
	keepDone chan struct{}      // closed when that loop has returned
	mesh     *mesh              // nil without a connect block
	wg       sync.WaitGroup

	// mu guards what a reload changes: the watchers, the context they run in once
	// started, and the watcher each service's age gauge reads.
	mu     sync.Mutex
	runCtx context.Context // nil until start
	ages   map[string]*consul.Watcher
	gauges map[string]prometheus.Collector // each service's age gauge

	updates *prometheus.CounterVec
	errs    *prometheus.CounterVec
}

func newDiscovery(g *Gateway, cfg *config.Consul) (*discovery, error) {
	client, err := consul.NewClient(consul.Config{
		Address: cfg.Address, Token: cfg.Token, Datacenter: cfg.Datacenter,
		Logger: g.log.Named("consul"),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: consul: %w", cfg.Pos, err)
	}
	d := &discovery{g: g, client: client, reg: cfg.Register}
	d.updates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_consul_watch_updates_total", Help: "Instance lists received from Consul, by service.",
	}, []string{"service"})
	d.errs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_consul_watch_errors_total", Help: "Failed Consul queries, by service.",
	}, []string{"service"})
	g.metrics.Registry.MustRegister(d.updates, d.errs)
	if g.cfg.Connect != nil {
		if d.mesh, err = newMesh(g, client, g.cfg.Connect, cfg.WaitTime); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// watch adds a watcher for one service.
func (d *discovery) watch(s *Service, sc *config.ServiceConsul, wait time.Duration, dc string) error {
	w, err := consul.NewWatcher(d.client.Health(), consul.WatchOptions{
		Service:    sc.Name,
		Tags:       sc.Tags,
		Datacenter: dc,
		Stale:      sc.Stale,
		Cached:     sc.Cached,
		Connect:    sc.Connect,
		WaitTime:   wait,
		Label:      s.Name,
		Sink: consul.SinkFunc(func(_ string, ins []consul.Instance) {
			s.UpdateInstances(d.g.events, toBalancer(ins))
		}),
		Observer: observer{d},
		Logger:   d.g.log, // the watcher names itself "consul" and adds the service
	})
	if err != nil {
		return fmt.Errorf("%s: service %q: %w", sc.Pos, s.Name, err)
	}
	s.watcher = w
	d.updates.WithLabelValues(s.Name)
	d.errs.WithLabelValues(s.Name)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.watchers = append(d.watchers, w)
	if d.ages == nil {
		d.ages = map[string]*consul.Watcher{}
	}
	d.ages[s.Name] = w
	if _, gauged := d.gauges[s.Name]; !gauged { // one gauge per service name, reading whichever watcher is current
		name := s.Name
		gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "gateway_consul_last_success_age_seconds",
			Help:        "Seconds since the last good answer from Consul for this service (-1 before the first).",
			ConstLabels: prometheus.Labels{"service": name},
		}, func() float64 {
			d.mu.Lock()
			w := d.ages[name]
			d.mu.Unlock()
			if w == nil {
				return -1
			}
			t := w.LastSuccess()
			if t.IsZero() {
				return -1
			}
			return time.Since(t).Seconds()
		})
		d.g.metrics.Registry.MustRegister(gauge)
		if d.gauges == nil {
			d.gauges = map[string]prometheus.Collector{}
		}
		d.gauges[name] = gauge
	}
	if d.runCtx != nil { // added by a reload: runs at once
		d.run(w)
	}
	return nil
}

// unwatch stops the watcher of a service that a reload removed or replaced.
func (d *discovery) unwatch(s *Service) {
	w := s.watcher
	d.mu.Lock()
	d.watchers = slices.DeleteFunc(d.watchers, func(x *consul.Watcher) bool { return x == w })
	if d.ages[s.Name] == w {
		// The watcher still running for the name, if any, is the one its gauge reads:
		// a failed reload retires the replacement it built, not the service.
		d.ages[s.Name] = nil
		for _, x := range d.watchers {
			if x.Service() == s.Name {
				d.ages[s.Name] = x
			}
		}
	}
	d.mu.Unlock()
	w.Stop()
}

// forget drops the Consul series of a service that a reload removed (once no watcher
// for its name is left).
func (d *discovery) forget(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ages[name] != nil {
		return
	}
	if gauge, ok := d.gauges[name]; ok {
		d.g.metrics.Registry.Unregister(gauge)
		delete(d.gauges, name)
	}
	delete(d.ages, name)
	d.updates.DeleteLabelValues(name)
	d.errs.DeleteLabelValues(name)
}

// run starts one watcher; d.mu is held.
func (d *discovery) run(w *consul.Watcher) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_ = w.Run(d.runCtx)
	}()
}

// toBalancer turns Consul's instances into the balancer's. IDs are only unique per
// node, so the node is part of the balancer's ID.
func toBalancer(ins []consul.Instance) []balancer.Instance {
	out := make([]balancer.Instance, len(ins))
	for i, in := range ins {
		out[i] = balancer.Instance{
			ID: in.Node + "/" + in.ID, Address: in.HostPort(), Weight: in.Weight, Tags: in.Tags, Meta: in.Meta,
		}
	}
	return out
}

// observer turns watcher callbacks into metrics.
type observer struct{ d *discovery }

func (o observer) WatchUpdated(service string, _ int) { o.d.updates.WithLabelValues(service).Inc() }
func (o observer) WatchFailed(service string, _ error, _ time.Duration) {
	o.d.errs.WithLabelValues(service).Inc()
}
func (o observer) WatchSucceeded(string, time.Time) {}
func (o observer) WatchReady(string)                {}

// start runs every watcher, and the Connect certificates, until ctx ends.
func (d *discovery) start(ctx context.Context) {
	if d.mesh != nil {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			_ = d.mesh.certs.Run(ctx)
		}()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.runCtx = ctx
	for _, w := range d.watchers {
		d.run(w)
	}
}

// stop ends the watchers and waits for them.
func (d *discovery) stop() {
	if d.stopKeep != nil {
		d.stopKeep()
		<-d.keepDone
	}
	d.mu.Lock()
	ws := slices.Clone(d.watchers)
	d.mu.Unlock()
	for _, w := range ws {
		w.Stop()
	}
	if d.mesh != nil {
		d.mesh.stop()
	}
	d.wg.Wait()
}

// register registers this replica with an HTTP check on its own /readyz, and keeps it
// registered in the background: retried while the agent is unreachable, registered again
// if the agent forgets it (a restarted dev agent).
func (d *discovery) register(ctx context.Context, listen, admin string) error {
	if d.reg == nil {
		return nil
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(portStr)
	addr := d.reg.Address
	if addr == "" {
		addr = advertiseHost(host)
	}
	ahost, aport, err := net.SplitHostPort(admin)
	if err != nil {
		return err
	}
	if isUnspecified(ahost) {
		ahost = addr // the agent checks /readyz where others reach this replica
	}
	reg := consul.Registration{
		ID:       consul.ServiceID(d.reg.Service, addr, port),
		Service:  d.reg.Service,
		Address:  addr,
		Port:     port,
		Tags:     d.reg.Tags,
		CheckURL: "http://" + net.JoinHostPort(ahost, aport) + "/readyz",
		Interval: 2 * time.Second,
	}
	if err := reg.Validate(); err != nil {
		return err
	}
	d.registr = consul.NewRegistrar(d.client.Agent(), d.g.log) // named "consul" by the registrar
	kctx, cancel := context.WithCancel(ctx)
	d.stopKeep = cancel
	d.keepDone = make(chan struct{})
	go func() {
		defer close(d.keepDone)
		if err := d.registr.Keep(kctx, reg, 10*time.Second); err != nil {
			d.g.log.Error("consul registration refused", "error", err)
		}
	}()
	return nil
}

// deregister removes this replica from Consul, then waits deregister_delay so that load
// balancers and other replicas' watchers see it gone while it still serves.
func (d *discovery) deregister(ctx context.Context) {
	if d.registr == nil {
		return
	}
	d.stopKeep()
	select { // a registration in flight must not land after the deregistration
	case <-d.keepDone:
	case <-ctx.Done():
	}
	id := d.registr.ID()
	if err := d.registr.Deregister(ctx); err != nil {
		d.g.log.Warn("consul deregistration failed", "id", id, "error", err)
	} // the registrar logs a deregistration that worked
	select {
	case <-time.After(d.reg.DeregisterDelay):
	case <-ctx.Done():
	}
}

// advertiseHost is the address other hosts reach this replica at: the listener's host,
// or for a wildcard listener (0.0.0.0, ::) the first non-loopback IPv4 address, so that
// replicas in containers register distinct, reachable addresses.
func advertiseHost(listenHost string) string {
	if !isUnspecified(listenHost) {
		return listenHost
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return "127.0.0.1"
}

func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// watchErr is the reason a Consul-backed service is not ready, for /readyz.
func watchErr(s *Service) string {
	if s.watcher == nil {
		return ""
	}
	if err := s.watcher.Err(); err != nil {
		if errors.Is(err, consul.ErrACL) {
			return "consul refused the ACL token for service " + s.Name + ": " + err.Error()
		}
		return "consul: service " + s.Name + ": " + err.Error()
	}
	return ""
}

// Package gateway is the proxy core: the request pipeline, routing, proxying,
// balancing, the admin listener and the server's lifecycle. Discovery, rate limits,
// authentication and circuit breakers live in their own packages and plug in through
// the small interfaces this package owns.
package gateway

import (
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/infinityxone/gateway/gateway/balancer"
	"github.com/infinityxone/gateway/gateway/config"
	"github.com/infinityxone/gateway/gateway/router"
)

// Options are what New needs besides the config. Zero values mean defaults.
type Options struct {
	// Logger for application logs; default: hclog to stderr at the config's level.
	Logger hclog.Logger
	// AccessLog receives the access log; default os.Stdout.
	AccessLog io.Writer
	// Version is reported in logs.
	Version string
	// Now is the clock of circuit breakers; nil: time.Now. Tests move it.
	Now func() time.Time
}

// Route is the runtime form of a `route` block.
type Route struct {
	Name     string
	Config   config.Route
	Service  *Service
	handler  Handler
	cors     *corsPolicy
	fallback *fallback
	duration prometheus.Observer
}

// Gateway is one gateway replica: built by New from a validated config, served by Run.
type Gateway struct {
	cfg       *config.Config
	log       hclog.Logger
	events    *Events
	metrics   *Metrics
	accessLog *AccessLog
	ids       *requestIDs
	trusted   trustedProxies
	maxBody   int64

	table    *router.Table
	routes   []*Route
	services map[string]*Service
	svcOrder []*Service
	stages   []Stage
	auth     map[string]*authProvider
	disc     *discovery // nil without a consul block
	limits   *rateLimits
	compress *compressor            // caching: nil without a route that compresses
	caches   map[string]*routeCache // caching: cache blocks by name
	// claimHeaders are every header some provider sets from claims; the front removes
	// them from every client request so that none can be forged.
	claimHeaders []string
	pool         sync.Pool
	bufs         sync.Pool

	// Constant header values, shared by every request (each slice has cap == len, so an
	// append elsewhere copies instead of writing into it).
	hdrUpgrade, hdrTrailers, hdrEmpty, hdrHTTP, hdrHTTPS []string

	draining atomic.Bool
	started  chan struct{}
	addr     atomic.Pointer[string]
	admin    atomic.Pointer[string]
	tlsConf  *tls.Config
}

// New builds a gateway from a validated cfg.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	g := &Gateway{
		cfg:      cfg,
		log:      opts.Logger,
		events:   &Events{},
		metrics:  NewMetrics(),
		ids:      newRequestIDs(),
		trusted:  trustedProxies(cfg.Gateway.TrustedProxies),
		maxBody:  cfg.Gateway.MaxBodyBytes,
		services: make(map[string]*Service, len(cfg.Services)),
		started:  make(chan struct{}),

		hdrUpgrade:  []string{"Upgrade"},
		hdrTrailers: []string{"trailers"},
		hdrEmpty:    []string{""},
		hdrHTTP:     []string{"http"},
		hdrHTTPS:    []string{"https"},
	}
	if g.log == nil {
		g.log = hclog.New(&hclog.LoggerOptions{Name: "gateway", Level: hclog.LevelFromString(cfg.Log.Level), Output: os.Stderr})
	}
	built := false
	defer func() {
		if !built {
			g.closeLogs() // stop what was started before the error
		}
	}()
	g.pool.New = func() any { return &Exchange{W: &responseWriter{}} }
	g.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	g.metrics.subscribe(g.events)
	g.subscribeLogs()
	// The route pipeline, in DESIGN.md's order; the proxy ends every route.
	g.stages = []Stage{corsStage, g.authStage, g.rateLimitStage, g.compressStage, g.cacheStage}
	if cfg.Compression != nil { // caching
		g.compress = newCompressor(cfg.Compression)
	}
	limits, err := newRateLimits(g, cfg)
	if err != nil {
		return nil, err
	}
	g.limits = limits
	if g.caches, err = newCaches(g, cfg, opts.Now); err != nil { // caching
		return nil, err
	}

	g.auth = make(map[string]*authProvider, len(cfg.JWT))
	for _, jc := range cfg.JWT {
		p, err := newAuthProvider(jc, g.log, g.metrics)
		if err != nil {
			return nil, err
		}
		g.auth[jc.Name] = p
		p.warm()
		for _, f := range p.forward {
			if !slices.Contains(g.claimHeaders, f[1]) {
				g.claimHeaders = append(g.claimHeaders, f[1])
			}
		}
	}

	if cfg.Consul != nil {
		d, err := newDiscovery(g, cfg.Consul)
		if err != nil {
			return nil, err
		}
		g.disc = d
	}
	for i := range cfg.Services {
		sc := &cfg.Services[i]
		bs := newBreakers(sc.CircuitBreaker)
		bopts := balancer.Options{OnRemove: func(e *balancer.Endpoint) { g.metrics.forgetInstance(sc.Name, e.Address) }}
		if bs != nil {
			bs.settings.Now = opts.Now
			bopts.OnNew = bs.onNew(sc.Name, g.events, sc.Timeout)
		}
		set, err := balancer.NewSet(sc.LoadBalancer, bopts)
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", sc.Name, err)
		}
		pol, err := newRetryPolicy(sc.Retry, g.metrics.upstreamRetries.WithLabelValues(sc.Name))
		if err != nil {
			return nil, fmt.Errorf("%s: service %q: retry: %w", sc.Pos, sc.Name, err)
		}
		s := &Service{
			breakers:  bs,
			retry:     pol,
			Name:      sc.Name,
			Source:    "static",
			Set:       set,
			Timeout:   sc.Timeout,
			transport: newTransport(sc.Transport),
			hashKey:   sc.LoadBalancer == "ip_hash",

			upstreamDuration: g.metrics.upstreamDuration.WithLabelValues(sc.Name),
		}
		if sc.Consul != nil {
			s.Source = "consul"
			if err := g.disc.watch(s, sc.Consul, cfg.Consul.WaitTime, cfg.Consul.Datacenter); err != nil {
				return nil, err
			}
		}
		g.services[sc.Name] = s
		g.svcOrder = append(g.svcOrder, s)
	}

	rroutes := make([]router.Route, len(cfg.Routes))
	for i := range cfg.Routes {
		rc := cfg.Routes[i]
		rroutes[i] = router.Route{Hosts: rc.Hosts, Methods: rc.Methods, Path: rc.Path}
		svc := g.services[rc.Service]
		rt := &Route{
			Name:     rc.Name,
			Config:   rc,
			Service:  svc,
			cors:     newCORS(rc.CORS),
			fallback: newFallback(rc.Fallback),
			duration: g.metrics.requestDuration.WithLabelValues(rc.Name),
		}
		timeout := rc.Timeout
		if timeout == 0 {
			timeout = svc.Timeout
		}
		var h Handler = &proxy{g: g, route: rt, service: svc, timeout: timeout, strip: rc.StripPrefix, bufs: &g.bufs}
		for j := len(g.stages) - 1; j >= 0; j-- {
			h = g.stages[j](rt, h)
		}
		rt.handler = h
		g.routes = append(g.routes, rt)
	}
	table, err := router.New(rroutes)
	if err != nil {
		return nil, err
	}
	g.table = table

	if t := cfg.Gateway.TLS; t != nil {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: tls: %w", t.Pos, err)
		}
		g.tlsConf = &tls.Config{MinVersion: t.MinVersion, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	}

	// Static instances are known now.
	for _, sc := range cfg.Services {
		if sc.Consul != nil {
			continue
		}
		ins := make([]balancer.Instance, len(sc.Instances))
		for i, in := range sc.Instances {
			ins[i] = balancer.Instance{ID: in.Address, Address: in.Address, Weight: in.Weight}
		}
		g.services[sc.Name].UpdateInstances(g.events, ins)
	}
	if cfg.Log.AccessLog {
		out := opts.AccessLog
		if out == nil {
			out = os.Stdout
		}
		g.accessLog = NewAccessLog(out, cfg.Log.Format, cfg.Log.RedactHeaders)
	}
	built = true
	g.events.Publish(ConfigLoaded{Routes: len(g.routes), Services: len(g.services)})
	return g, nil
}

// Events is the gateway's event bus, for subscribers outside the package (tests, tools).
func (g *Gateway) Events() *Events { return g.events }

// Metrics returns the gateway's collectors.
func (g *Gateway) Metrics() *Metrics { return g.metrics }

// Routes returns the runtime routes in declaration order.
func (g *Gateway) Routes() []*Route { return g.routes }

// Service returns the runtime service by name, or nil.
func (g *Gateway) Service(name string) *Service { return g.services[name] }

// Started is closed once both listeners accept connections.
func (g *Gateway) Started() <-chan struct{} { return g.started }

// Addr is the public listener's address once started.
func (g *Gateway) Addr() string { return deref(g.addr.Load()) }

// AdminAddr is the admin listener's address once started.
func (g *Gateway) AdminAddr() string { return deref(g.admin.Load()) }

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// subscribeLogs logs events at the level they deserve.
func (g *Gateway) subscribeLogs() {
	l := g.log
	g.events.Subscribe(func(e Event) {
		switch e := e.(type) {
		case ConfigLoaded:
			l.Info("config loaded", "routes", e.Routes, "services", e.Services)
		case InstanceSetChanged:
			l.Info("instance set changed", "service", e.Service, "source", e.Source,
				"added", strings.Join(e.Added, ","), "removed", strings.Join(e.Removed, ","), "healthy", e.Healthy)
		case ShutdownBegun:
			l.Info("shutdown begun", "reason", e.Reason, "timeout", e.Timeout)
		case BreakerStateChanged:
			l.Warn("circuit breaker state changed", "service", e.Service, "instance", e.Instance, "from", e.From, "to", e.To)
		}
	})
}

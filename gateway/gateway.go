// Package gateway is the proxy core: the request pipeline, routing, proxying,
// balancing, the admin listener and the server's lifecycle. Discovery, rate limits,
// authentication and circuit breakers live in their own packages and plug in through
// the small interfaces this package owns.
package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/infinityxone/gateway/gateway/config"
	"github.com/infinityxone/gateway/gateway/router"
	"github.com/infinityxone/gateway/gateway/tracing"
)

// Options are what New needs besides the config. Zero values mean defaults.
type Options struct {
	// Logger for application logs; default: hclog to stderr at the config's level.
	Logger hclog.Logger
	// AccessLog receives the access log; default os.Stdout.
	AccessLog io.Writer
	// Version is this build's version, reported in the "config loaded" log line and as
	// the version label of gateway_build_info. "": "dev".
	Version string
	// Now is the clock of circuit breakers; nil: time.Now. Tests move it. (Every package
	// takes its clock the same way: a Now func, plus an After func where it waits.)
	Now func() time.Time
	// ConfigPath is the file or directory the config came from; when set, Run reloads
	// it on SIGHUP (see Reload).
	ConfigPath string
	// UpstreamNetHTTP sends every upstream request through net/http's Transport,
	// switching off the gateway's own HTTP/1.1 connection pool (h1pool.go) that otherwise
	// serves bodyless GET, HEAD and OPTIONS requests to plain-HTTP instances. For
	// comparisons (bench/e2e's gateway-nethttp row) and as a way back.
	UpstreamNetHTTP bool
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
	auth     *authProvider // the route's jwt provider, nil without one
	limit    *ratePolicy   // the route's rate_limit policy, nil without one
}

// Gateway is one gateway replica: built by New from a validated config, served by Run.
type Gateway struct {
	cfg       *config.Config
	version   string
	log       hclog.Logger
	events    *Events
	metrics   *Metrics
	accessLog *AccessLog
	ids       *requestIDs
	trusted   trustedProxies
	maxBody   int64

	// cur is what a reload swaps: routes, services, policies and JWT providers. A
	// request loads it once (reload.go).
	cur    atomic.Pointer[snapshot]
	reload reloader
	stages []Stage
	disc   *discovery      // nil without a consul block
	tracer *tracing.Tracer // nil without a tracing block
	pool   sync.Pool
	bufs   sync.Pool
	// Compression and caches are built once at start (a reload keeps them; changing
	// them takes a restart).
	compress   *compressor            // caching: nil without a compression block
	caches     map[string]*routeCache // caching: cache blocks by name
	cacheRedis redis.UniversalClient  // caching: the Redis caches' client; nil without one

	// Constant header values, shared by every request (each slice has cap == len, so an
	// append elsewhere copies instead of writing into it).
	hdrUpgrade, hdrTrailers, hdrEmpty, hdrHTTP, hdrHTTPS, hdrClose []string

	tunnels  tunnels          // upgraded connections, for shutdown
	now      func() time.Time // breakers' clock (Options.Now)
	path     string           // Options.ConfigPath
	netHTTP  bool             // Options.UpstreamNetHTTP
	draining atomic.Bool
	started  chan struct{}
	addr     atomic.Pointer[string]
	admin    atomic.Pointer[string]
	tlsConf  *tls.Config
	cert     atomic.Pointer[tls.Certificate] // re-read on reload
}

// New builds a gateway from a validated cfg.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	g := &Gateway{
		cfg:     cfg,
		log:     opts.Logger,
		events:  &Events{},
		metrics: NewMetrics(),
		ids:     newRequestIDs(),
		trusted: trustedProxies(cfg.Gateway.TrustedProxies),
		maxBody: cfg.Gateway.MaxBodyBytes,
		started: make(chan struct{}),
		now:     opts.Now,
		path:    opts.ConfigPath,
		netHTTP: opts.UpstreamNetHTTP,

		hdrUpgrade:  []string{"Upgrade"},
		hdrTrailers: []string{"trailers"},
		hdrEmpty:    []string{""},
		hdrHTTP:     []string{"http"},
		hdrHTTPS:    []string{"https"},
		hdrClose:    []string{"close"},
	}
	if g.log == nil {
		g.log = NewAppLogger(cfg.Log, os.Stderr)
	}
	built := false
	defer func() {
		if !built {
			g.closeLogs() // stop what was started before the error
		}
	}()
	g.pool.New = func() any { return &Exchange{W: &responseWriter{}} }
	g.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	if g.version = opts.Version; g.version == "" {
		g.version = "dev"
	}
	g.metrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "gateway_build_info",
		Help:        "Always 1; the version label is the running build's version.",
		ConstLabels: prometheus.Labels{"version": g.version},
	}, func() float64 { return 1 }))
	if opts.Now != nil {
		g.metrics.now = opts.Now
	}
	g.metrics.subscribe(g.events)
	g.subscribeLogs()
	g.newReloadMetrics()
	g.metrics.Registry.MustRegister(newEvictionsCollector(g))
	// The route pipeline, in the order of docs/architecture.md (Request flow); the proxy
	// ends every route.
	g.stages = []Stage{corsStage, g.authStage, g.rateLimitStage, g.compressStage, g.cacheStage}
	var err error
	if g.tracer, err = g.newTracer(opts.Version); err != nil {
		return nil, err
	}
	if cfg.Compression != nil { // caching
		g.compress = newCompressor(cfg.Compression)
	}
	if g.caches, err = newCaches(g, cfg, opts.Now); err != nil { // caching
		return nil, err
	}
	if cfg.Consul != nil {
		d, err := newDiscovery(g, cfg.Consul)
		if err != nil {
			return nil, err
		}
		g.disc = d
	}
	st, err := g.build(cfg, nil)
	if err != nil {
		return nil, routeTableError(cfg.Routes, err)
	}
	g.cur.Store(st)
	if t := cfg.Gateway.TLS; t != nil {
		if err := g.loadCertificate(t); err != nil {
			return nil, err
		}
		g.tlsConf = &tls.Config{MinVersion: t.MinVersion, NextProtos: []string{"h2", "http/1.1"}, GetCertificate: g.certificate}
	}
	if cfg.Log.AccessLog {
		out := opts.AccessLog
		if out == nil {
			out = os.Stdout
		}
		g.accessLog = NewAccessLog(out, cfg.Log.Format, cfg.Log.RedactHeaders)
	}
	built = true
	g.events.Publish(ConfigLoaded{Routes: len(st.routes), Services: len(st.services)})
	return g, nil
}

// routeTableError names the route(s) and position(s) of an error from router.New (which
// speaks of route indexes). A validated config never gets here: validation runs the
// router's own checks.
func routeTableError(routes []config.Route, err error) error {
	var re *router.RouteError
	var ce *router.ConflictError
	switch {
	case errors.As(err, &re):
		r := routes[re.Route]
		return fmt.Errorf("%s: route %q: %w", r.Pos, r.Name, re.Err)
	case errors.As(err, &ce):
		a, b := routes[ce.First], routes[ce.Second]
		return fmt.Errorf("%s: route %q conflicts with route %q at %s: %w", b.Pos, b.Name, a.Name, a.Pos, err)
	}
	return err
}

// Events is the gateway's event bus, for subscribers outside the package (tests, tools).
func (g *Gateway) Events() *Events { return g.events }

// Metrics returns the gateway's collectors.
func (g *Gateway) Metrics() *Metrics { return g.metrics }

// Routes returns the runtime routes in declaration order.
func (g *Gateway) Routes() []*Route { return g.cur.Load().routes }

// Service returns the runtime service by name, or nil.
func (g *Gateway) Service(name string) *Service { return g.cur.Load().services[name] }

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
			l.Info("config loaded", "routes", e.Routes, "services", e.Services, "version", g.version)
		case InstanceSetChanged:
			log := l.Info
			if e.Healthy == 0 {
				log = l.Warn // the service can no longer be served
			}
			log("instance set changed", "service", e.Service, "source", e.Source,
				"added", strings.Join(e.Added, ","), "removed", strings.Join(e.Removed, ","), "healthy", e.Healthy)
		case ShutdownBegun:
			l.Info("shutdown begun", "reason", e.Reason, "timeout", e.Timeout)
		case BreakerStateChanged:
			l.Warn("circuit breaker state changed", "service", e.Service, "instance", e.Instance, "from", e.From, "to", e.To)
		}
	})
}

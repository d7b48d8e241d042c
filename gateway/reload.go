package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infinityxone/gateway/gateway/balancer"
	"github.com/infinityxone/gateway/gateway/config"
	"github.com/infinityxone/gateway/gateway/router"
)

// snapshot is everything a reload replaces: built whole, then swapped in with one
// atomic store. A request loads it once at the front and keeps that snapshot to the
// end, so an in-flight request (or an upgraded connection) finishes on the routes and
// services it started with.
type snapshot struct {
	cfg      *config.Config
	table    *router.Table
	routes   []*Route
	services map[string]*Service
	svcOrder []*Service
	auth     map[string]*authProvider
	limits   *rateLimits
	// claimHeaders are every header some provider sets from claims; the front removes
	// them from every client request so that none can be forged.
	claimHeaders []string
}

// reloader serialises reloads and holds their metrics.
type reloader struct {
	mu      sync.Mutex
	total   *prometheus.CounterVec
	lastOK  prometheus.Gauge
	ok, bad prometheus.Counter
}

func (g *Gateway) newReloadMetrics() {
	r := &g.reload
	r.total = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_config_reloads_total", Help: "Config reloads (SIGHUP) by result: ok, or error (the running config was kept).",
	}, []string{"result"})
	r.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gateway_config_last_reload_success_timestamp_seconds", Help: "Unix time of the last config (re)load that took effect.",
	})
	r.ok, r.bad = r.total.WithLabelValues("ok"), r.total.WithLabelValues("error")
	r.lastOK.SetToCurrentTime()
	g.metrics.Registry.MustRegister(r.total, r.lastOK)
}

// build makes the snapshot of cfg. Parts whose config did not change since prev are
// taken over as they are: a service keeps its instance set, breakers, in-flight counts,
// connection pool and Consul watcher (a static service whose instances alone changed
// gets the new list through the balancer's update); a JWT provider keeps its JWKS cache;
// the rate-limit stores keep their buckets.
func (g *Gateway) build(cfg *config.Config, prev *snapshot) (_ *snapshot, err error) {
	st := &snapshot{
		cfg:      cfg,
		services: make(map[string]*Service, len(cfg.Services)),
		auth:     make(map[string]*authProvider, len(cfg.JWT)),
	}
	var fresh []*Service // built here: released again if the build fails
	defer func() {
		if err == nil {
			return
		}
		for _, s := range fresh {
			g.retireService(s)
		}
		for name, p := range st.auth {
			if prev == nil || prev.auth[name] != p {
				p.stop()
			}
		}
		if prev == nil || st.limits != prev.limits {
			st.limits.close()
		}
	}()

	if prev != nil && same(prev.cfg.Redis, cfg.Redis) && same(prev.cfg.RateLimits, cfg.RateLimits) {
		st.limits = prev.limits
	} else if st.limits, err = newRateLimits(g, cfg); err != nil {
		return nil, err
	}

	for _, jc := range cfg.JWT {
		var p *authProvider
		if old := prevJWT(prev, jc.Name); old != nil && same(*old, jc) {
			p = prev.auth[jc.Name]
		} else {
			if p, err = newAuthProvider(jc, g.log, g.metrics); err != nil {
				return nil, err
			}
			st.auth[jc.Name] = p
			p.warm()
		}
		st.auth[jc.Name] = p
		for _, f := range p.forward {
			if !slices.Contains(st.claimHeaders, f[1]) {
				st.claimHeaders = append(st.claimHeaders, f[1])
			}
		}
	}

	for i := range cfg.Services {
		sc := &cfg.Services[i]
		s, reused := g.reuseService(prev, sc)
		if !reused {
			if s, err = g.newService(cfg, sc); err != nil {
				return nil, err
			}
			fresh = append(fresh, s)
		}
		st.services[sc.Name] = s
		st.svcOrder = append(st.svcOrder, s)
	}

	rroutes := make([]router.Route, len(cfg.Routes))
	for i := range cfg.Routes {
		rc := cfg.Routes[i]
		rroutes[i] = router.Route{Hosts: rc.Hosts, Methods: rc.Methods, Path: rc.Path}
		svc := st.services[rc.Service]
		rt := &Route{
			Name:     rc.Name,
			Config:   rc,
			Service:  svc,
			cors:     newCORS(rc.CORS),
			fallback: newFallback(rc.Fallback),
			duration: g.metrics.requestDuration.WithLabelValues(rc.Name),
			auth:     st.auth[rc.JWT],
			limit:    st.limits.policies[rc.RateLimit],
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
		st.routes = append(st.routes, rt)
	}
	if st.table, err = router.New(rroutes); err != nil {
		return nil, err
	}

	// Static instances are known now; a reused static service gets its new list.
	for _, sc := range cfg.Services {
		if sc.Consul != nil {
			continue
		}
		ins := make([]balancer.Instance, len(sc.Instances))
		for i, in := range sc.Instances {
			ins[i] = balancer.Instance{ID: in.Address, Address: in.Address, Weight: in.Weight}
		}
		st.services[sc.Name].UpdateInstances(g.events, ins)
	}
	if prev != nil {
		waitFirstAnswers(fresh, reloadReadyWait)
	}
	return st, nil
}

// reloadReadyWait bounds how long a reload waits for the first instance lists of the
// Consul services it rebuilt, so their routes do not answer 503 (and /readyz does not
// fail) between the swap and the new watchers' first answers. A first query with
// index 0 answers at once; an agent that does not answer only delays the reload.
const reloadReadyWait = 5 * time.Second

// waitFirstAnswers waits until every Consul service in ss has its first instance list
// (its watcher hands the list on before it reports ready), or d.
func waitFirstAnswers(ss []*Service, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for _, s := range ss {
		if s.watcher == nil {
			continue
		}
		select {
		case <-s.watcher.Ready():
		case <-timer.C:
			return
		}
	}
}

func prevJWT(prev *snapshot, name string) *config.JWT {
	if prev == nil {
		return nil
	}
	for i := range prev.cfg.JWT {
		if prev.cfg.JWT[i].Name == name {
			return &prev.cfg.JWT[i]
		}
	}
	return nil
}

// reuseService returns prev's service of the same name when its block is unchanged,
// static instances aside.
func (g *Gateway) reuseService(prev *snapshot, sc *config.Service) (*Service, bool) {
	if prev == nil {
		return nil, false
	}
	s := prev.services[sc.Name]
	if s == nil {
		return nil, false
	}
	for i := range prev.cfg.Services {
		old := prev.cfg.Services[i]
		if old.Name != sc.Name {
			continue
		}
		a, b := old, *sc
		a.Instances, b.Instances = nil, nil
		if same(a, b) {
			return s, true
		}
	}
	return nil, false
}

// newService builds the runtime service of one block; a Consul service's watcher runs
// at once when the gateway is already running.
func (g *Gateway) newService(cfg *config.Config, sc *config.Service) (*Service, error) {
	bs := newBreakers(sc.CircuitBreaker)
	var bopts balancer.Options // per-instance series outlive a health flap (Service.UpdateInstances)
	if bs != nil {
		bs.settings.Now = g.now
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
	if sc.Consul != nil && sc.Consul.Connect && (g.disc == nil || g.disc.mesh == nil) {
		return nil, fmt.Errorf("%s: service %q: connect = true needs the connect block the gateway started with (adding one takes a restart)", sc.Consul.Pos, sc.Name)
	}
	tr, inMesh := g.transportFor(sc)
	s := &Service{
		breakers:    bs,
		retry:       pol,
		Name:        sc.Name,
		Source:      "static",
		Set:         set,
		Timeout:     sc.Timeout,
		IdleTimeout: sc.IdleTimeout,
		transport:   tr,
		mesh:        inMesh,
		hashKey:     sc.LoadBalancer == "ip_hash",

		metrics:          g.metrics,
		upstreamDuration: g.metrics.upstreamDuration.WithLabelValues(sc.Name),
	}
	if sc.Consul != nil {
		s.Source = "consul"
		if g.disc == nil {
			return nil, fmt.Errorf("%s: service %q: a consul block at the top level is needed (adding one takes a restart)", sc.Consul.Pos, sc.Name)
		}
		if err := g.disc.watch(s, sc.Consul, g.cfg.Consul.WaitTime, g.cfg.Consul.Datacenter); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// retireService stops what a service no longer in use owns: its Consul watcher and its
// idle upstream connections (requests still in flight finish on theirs).
func (g *Gateway) retireService(s *Service) {
	if s.watcher != nil && g.disc != nil {
		g.disc.unwatch(s)
	}
	if s.mesh && g.disc != nil && g.disc.mesh != nil {
		g.disc.mesh.forget(s.transport)
	}
	s.transport.CloseIdleConnections()
}

// same compares two config values, ignoring source positions (a reload may move a
// block to another line without changing it).
func same(a, b any) bool {
	return reflect.DeepEqual(withoutPos(reflect.ValueOf(a)), withoutPos(reflect.ValueOf(b)))
}

var posType = reflect.TypeFor[config.Pos]()

// withoutPos returns a copy of v with every config.Pos zeroed, as an interface value.
func withoutPos(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	zeroPos(c)
	return c.Interface()
}

func zeroPos(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == posType {
			v.SetZero()
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).CanSet() {
				zeroPos(v.Field(i))
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			n := reflect.New(v.Type().Elem())
			n.Elem().Set(v.Elem())
			zeroPos(n.Elem())
			v.Set(n)
		}
	case reflect.Slice:
		if !v.IsNil() {
			n := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			reflect.Copy(n, v)
			for i := 0; i < n.Len(); i++ {
				zeroPos(n.Index(i))
			}
			v.Set(n)
		}
	}
}

// Reload reads the config at Options.ConfigPath again and, when it is valid, swaps the
// routes, services, rate-limit policies and JWT providers in for the next request and
// re-reads the TLS certificate files. When it is not, the running config stays and the
// diagnostics go to the log. Either way gateway_config_reloads_total{result} counts it.
// Listeners, in-flight requests and upgraded connections are not touched; settings that
// only a restart applies (listener addresses, TLS on or off, the admin, log, tracing
// and consul blocks) are logged as warnings.
func (g *Gateway) Reload() error {
	if g.path == "" {
		return fmt.Errorf("reload: the gateway was not started from a config file")
	}
	cfg, ds := config.Load(g.path)
	if len(ds) > 0 {
		for _, d := range ds {
			g.log.Error("reload: invalid config; the running one stays", "diagnostic", d.String())
		}
		g.reload.bad.Inc()
		return ds
	}
	return g.ReloadConfig(cfg)
}

// ReloadConfig swaps in a validated cfg as Reload does.
func (g *Gateway) ReloadConfig(cfg *config.Config) error {
	r := &g.reload
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := g.swap(cfg); err != nil {
		g.log.Error("reload failed; the running config stays", "error", err)
		r.bad.Inc()
		return err
	}
	r.ok.Inc()
	r.lastOK.SetToCurrentTime()
	return nil
}

func (g *Gateway) swap(cfg *config.Config) error {
	prev := g.cur.Load()
	g.warnRestartOnly(cfg)
	var cert *tls.Certificate
	if t := cfg.Gateway.TLS; t != nil && g.tlsConf != nil {
		c, err := readCertificate(t)
		if err != nil {
			return err
		}
		cert = c
	}
	st, err := g.build(cfg, prev)
	if err != nil {
		return err
	}
	g.cur.Store(st)
	if cert != nil {
		g.cert.Store(cert)
	}
	// What the new snapshot no longer uses is released. Requests still running on the
	// old snapshot keep working: the transport finishes their exchanges, and a limiter
	// or a JWT provider that was replaced only loses its background work.
	for _, s := range prev.svcOrder {
		if st.services[s.Name] != s {
			g.retireService(s)
		}
		if _, kept := st.services[s.Name]; !kept { // removed: its series go too
			g.metrics.forgetService(s.Name)
			if g.disc != nil {
				g.disc.forget(s.Name)
			}
		}
	}
	for name, p := range prev.auth {
		if st.auth[name] != p {
			p.stop()
		}
	}
	if st.limits != prev.limits {
		prev.limits.close()
	}
	added, removed := 0, 0
	for _, rt := range st.routes {
		if !slices.ContainsFunc(prev.routes, func(o *Route) bool { return o.Name == rt.Name }) {
			added++
		}
	}
	for _, rt := range prev.routes {
		if !slices.ContainsFunc(st.routes, func(o *Route) bool { return o.Name == rt.Name }) {
			removed++
		}
	}
	g.log.Info("config reloaded", "routes", len(st.routes), "routes_added", added, "routes_removed", removed, "services", len(st.services))
	g.events.Publish(ConfigLoaded{Routes: len(st.routes), Services: len(st.services)})
	return nil
}

// warnRestartOnly logs the changes a reload does not apply.
func (g *Gateway) warnRestartOnly(cfg *config.Config) {
	old := g.cfg
	a, b := old.Gateway, cfg.Gateway
	a.TLS, b.TLS = nil, nil
	if !same(a, b) {
		g.log.Warn("reload: changes to the gateway block take a restart", "address", cfg.Gateway.Address)
	}
	if (old.Gateway.TLS == nil) != (cfg.Gateway.TLS == nil) {
		g.log.Warn("reload: turning TLS on or off takes a restart")
	}
	if !same(old.Admin, cfg.Admin) {
		g.log.Warn("reload: changes to the admin block take a restart", "address", cfg.Admin.Address)
	}
	if !same(old.Log, cfg.Log) {
		g.log.Warn("reload: changes to the log block take a restart")
	}
	if !same(old.Tracing, cfg.Tracing) {
		g.log.Warn("reload: changes to the tracing block take a restart")
	}
	if !same(old.Consul, cfg.Consul) {
		g.log.Warn("reload: changes to the consul block take a restart; Consul services keep the running one")
	}
	if !same(old.Connect, cfg.Connect) {
		g.log.Warn("reload: changes to the connect block take a restart")
	}
	if !same(old.Compression, cfg.Compression) || !same(old.Caches, cfg.Caches) {
		g.log.Warn("reload: changes to compression and cache blocks take a restart; routes use the running ones")
	}
	if g.cacheRedis != nil && !same(old.Redis, cfg.Redis) {
		g.log.Warn("reload: the Redis caches keep the redis block they started with until a restart; rate limits use the new one")
	}
}

// readCertificate reads the listener's certificate and key files.
func readCertificate(t *config.TLS) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: tls: %w", t.Pos, err)
	}
	return &cert, nil
}

// loadCertificate reads the listener's certificate files.
func (g *Gateway) loadCertificate(t *config.TLS) error {
	cert, err := readCertificate(t)
	if err != nil {
		return err
	}
	g.cert.Store(cert)
	return nil
}

// certificate is the listener's tls.Config.GetCertificate: the certificate last read.
func (g *Gateway) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return g.cert.Load(), nil
}

// reloadOnSIGHUP reloads on every SIGHUP until ctx ends. Run owns it.
func (g *Gateway) reloadOnSIGHUP(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			start := time.Now()
			if err := g.Reload(); err == nil {
				g.log.Info("reload took", "duration", time.Since(start))
			}
		}
	}
}

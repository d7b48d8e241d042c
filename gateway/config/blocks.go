package config

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// parsed is the config as decoded from every file, with the positions that validation
// needs. Slices of locs run parallel to the Config's slices.
type parsed struct {
	cfg                                Config
	gateway, admin, log, consul, redis *loc // nil: block absent
	connect, tracing                   *loc // nil: block absent
	jwt, rateLimits, services, routes  []*loc
	routeBlocks                        int    // route blocks seen, named or not
	compression                        *loc   // caching: nil without a compression block
	caches                             []*loc // caching: parallel to cfg.Caches
}

// Top-level block types. The named ones may repeat; the others appear at most once in
// the whole config, across files.
var (
	namedBlocks  = []string{"jwt", "rate_limit", "service", "route", "cache"}
	singleBlocks = []string{"gateway", "admin", "log", "tracing", "consul", "redis", "connect", "compression"}
)

// file decodes one file's top-level blocks into p.
func (d *decoder) file(f *hclsyntax.Body, p *parsed) {
	top := d.open(f, Pos{}, "", schema{
		blocks: append(append([]string{}, singleBlocks...), namedBlocks...),
		many:   append(append([]string{}, singleBlocks...), namedBlocks...),
	})
	for _, typ := range singleBlocks {
		for _, blk := range top.blocks[typ] {
			d.single(blk, p)
		}
	}
	for _, blk := range top.blocks["jwt"] {
		if name, ok := d.label(blk); ok {
			j, l := d.jwt(blk, name)
			p.cfg.JWT, p.jwt = append(p.cfg.JWT, j), append(p.jwt, l)
		}
	}
	for _, blk := range top.blocks["rate_limit"] {
		if name, ok := d.label(blk); ok {
			r, l := d.rateLimit(blk, name)
			p.cfg.RateLimits, p.rateLimits = append(p.cfg.RateLimits, r), append(p.rateLimits, l)
		}
	}
	for _, blk := range top.blocks["service"] {
		if name, ok := d.label(blk); ok {
			s, l := d.service(blk, name)
			p.cfg.Services, p.services = append(p.cfg.Services, s), append(p.services, l)
		}
	}
	for _, blk := range top.blocks["cache"] { // caching
		if name, ok := d.label(blk); ok {
			c, l := d.cacheBlock(blk, name)
			p.cfg.Caches, p.caches = append(p.cfg.Caches, c), append(p.caches, l)
		}
	}
	for _, blk := range top.blocks["route"] {
		p.routeBlocks++
		if name, ok := d.label(blk); ok {
			r, l := d.route(blk, name)
			p.cfg.Routes, p.routes = append(p.cfg.Routes, r), append(p.routes, l)
		}
	}
}

// single decodes a block that may appear once in the whole config.
func (d *decoder) single(blk *hclsyntax.Block, p *parsed) {
	d.noLabels(blk)
	var first **loc
	switch blk.Type {
	case "gateway":
		first = &p.gateway
	case "admin":
		first = &p.admin
	case "log":
		first = &p.log
	case "tracing":
		first = &p.tracing
	case "consul":
		first = &p.consul
	case "redis":
		first = &p.redis
	case "connect":
		first = &p.connect
	case "compression":
		first = &p.compression
	}
	if *first != nil {
		d.errorf(rangePos(blk.TypeRange), "duplicate %s block; the first is at %s", blk.Type, (*first).block)
		return
	}
	switch blk.Type {
	case "gateway":
		p.cfg.Gateway, p.gateway = d.gateway(blk)
	case "admin":
		p.cfg.Admin, p.admin = d.admin(blk)
	case "log":
		p.cfg.Log, p.log = d.logBlock(blk)
	case "tracing":
		t, l := d.tracing(blk)
		p.cfg.Tracing, p.tracing = &t, l
	case "consul":
		c, l := d.consul(blk)
		p.cfg.Consul, p.consul = &c, l
	case "redis":
		r, l := d.redis(blk)
		p.cfg.Redis, p.redis = &r, l
	case "connect":
		c, l := d.connect(blk)
		p.cfg.Connect, p.connect = &c, l
	case "compression":
		c, l := d.compression(blk)
		p.cfg.Compression, p.compression = &c, l
	}
}

// label returns a named block's name. A block without one is reported and skipped.
func (d *decoder) label(blk *hclsyntax.Block) (string, bool) {
	switch {
	case len(blk.Labels) == 0:
		d.errorf(rangePos(blk.TypeRange), "%s block needs a name, as in %s \"NAME\" { … }", blk.Type, blk.Type)
		return "", false
	case len(blk.Labels) > 1:
		d.errorf(rangePos(blk.LabelRanges[1]), "%s block takes one name, not %d", blk.Type, len(blk.Labels))
	}
	name := blk.Labels[0]
	if !validName(name) {
		d.errorf(rangePos(blk.LabelRanges[0]), "%s name %q: use letters, digits, '_', '-' and '.' only", blk.Type, name)
	}
	return name, true
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// nested opens a nested block (which takes no name) and records its loc under key.
func (d *decoder) nested(parent *body, blk *hclsyntax.Block, key string, s schema) *body {
	d.noLabels(blk)
	b := d.open(blk.Body, rangePos(blk.TypeRange), parent.loc.what+" "+blk.Type, s)
	parent.loc.subs[key] = b.loc
	return b
}

func (d *decoder) gateway(blk *hclsyntax.Block) (Gateway, *loc) {
	g := defaultGateway()
	b := d.open(blk.Body, rangePos(blk.TypeRange), "gateway", schema{
		attrs: []string{"address", "shutdown_timeout", "read_header_timeout", "idle_timeout",
			"client_write_timeout", "max_header_bytes", "max_body_bytes", "trusted_proxies"},
		blocks: []string{"tls"},
	})
	g.Pos = b.loc.block
	b.str("address", &g.Address)
	b.duration("shutdown_timeout", &g.ShutdownTimeout)
	b.duration("read_header_timeout", &g.ReadHeaderTimeout)
	b.duration("idle_timeout", &g.IdleTimeout)
	b.duration("client_write_timeout", &g.ClientWriteTimeout)
	b.integer("max_header_bytes", &g.MaxHeaderBytes)
	b.int64("max_body_bytes", &g.MaxBodyBytes)
	var proxies []string
	b.strs("trusted_proxies", &proxies)
	for i, s := range proxies {
		pfx, err := parsePrefix(s)
		if err != nil {
			b.errorf(b.loc.elem("trusted_proxies", i), "trusted_proxies: %q is not a CIDR prefix such as \"10.0.0.0/8\" or an IP address", s)
			continue
		}
		g.TrustedProxies = append(g.TrustedProxies, pfx)
	}
	if t := b.block("tls"); t != nil {
		tb := d.nested(b, t, "tls", schema{attrs: []string{"cert_file", "key_file", "min_version"}})
		v := defaultTLS()
		v.Pos = tb.loc.block
		tb.str("cert_file", &v.CertFile)
		tb.str("key_file", &v.KeyFile)
		var mv string
		if tb.str("min_version", &mv); tb.loc.has("min_version") {
			switch mv {
			case "1.2":
				v.MinVersion = tls.VersionTLS12
			case "1.3":
				v.MinVersion = tls.VersionTLS13
			default:
				tb.errorf(tb.loc.at("min_version"), "min_version %q: want \"1.2\" or \"1.3\"", mv)
			}
		}
		g.TLS = &v
	}
	return g, b.loc
}

// parsePrefix reads a CIDR prefix, or a bare address as a single-host prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	return p.Masked(), err
}

func (d *decoder) admin(blk *hclsyntax.Block) (Admin, *loc) {
	a := defaultAdmin()
	b := d.open(blk.Body, rangePos(blk.TypeRange), "admin", schema{attrs: []string{"address"}})
	a.Pos = b.loc.block
	b.str("address", &a.Address)
	return a, b.loc
}

func (d *decoder) logBlock(blk *hclsyntax.Block) (Log, *loc) {
	lg := defaultLog()
	b := d.open(blk.Body, rangePos(blk.TypeRange), "log", schema{
		attrs: []string{"level", "format", "access_log", "redact_headers", "app_format"},
	})
	lg.Pos = b.loc.block
	b.str("app_format", &lg.AppFormat)
	b.str("level", &lg.Level)
	b.str("format", &lg.Format)
	b.boolean("access_log", &lg.AccessLog)
	b.strs("redact_headers", &lg.RedactHeaders)
	return lg, b.loc
}

func (d *decoder) tracing(blk *hclsyntax.Block) (Tracing, *loc) {
	t := defaultTracing()
	b := d.open(blk.Body, rangePos(blk.TypeRange), "tracing", schema{
		attrs: []string{"endpoint", "sample_ratio", "service_name"},
	})
	t.Pos = b.loc.block
	b.str("endpoint", &t.Endpoint)
	b.float("sample_ratio", &t.SampleRatio)
	b.str("service_name", &t.ServiceName)
	return t, b.loc
}

func (d *decoder) consul(blk *hclsyntax.Block) (Consul, *loc) {
	c := defaultConsul()
	b := d.open(blk.Body, rangePos(blk.TypeRange), "consul", schema{
		attrs:  []string{"address", "token", "datacenter", "wait_time"},
		blocks: []string{"register"},
	})
	c.Pos = b.loc.block
	b.str("address", &c.Address)
	b.str("token", &c.Token)
	b.str("datacenter", &c.Datacenter)
	b.duration("wait_time", &c.WaitTime)
	if r := b.block("register"); r != nil {
		rb := d.nested(b, r, "register", schema{attrs: []string{"service", "address", "tags", "deregister_delay"}})
		v := defaultRegister()
		v.Pos = rb.loc.block
		rb.str("service", &v.Service)
		rb.str("address", &v.Address)
		rb.strs("tags", &v.Tags)
		rb.duration("deregister_delay", &v.DeregisterDelay)
		c.Register = &v
	}
	return c, b.loc
}

func (d *decoder) connect(blk *hclsyntax.Block) (Connect, *loc) {
	b := d.open(blk.Body, rangePos(blk.TypeRange), "connect", schema{attrs: []string{"service_name"}})
	c := Connect{Pos: b.loc.block}
	b.str("service_name", &c.ServiceName)
	return c, b.loc
}

func (d *decoder) redis(blk *hclsyntax.Block) (Redis, *loc) {
	r := defaultRedis()
	b := d.open(blk.Body, rangePos(blk.TypeRange), "redis", schema{
		attrs: []string{"address", "addresses", "master_name", "password", "db", "timeout"},
	})
	r.Pos = b.loc.block
	b.str("address", &r.Address)
	b.strs("addresses", &r.Addresses)
	b.str("master_name", &r.MasterName)
	b.str("password", &r.Password)
	b.integer("db", &r.DB)
	b.duration("timeout", &r.Timeout)
	return r, b.loc
}

func (d *decoder) jwt(blk *hclsyntax.Block, name string) (JWT, *loc) {
	j := defaultJWT()
	b := d.open(blk.Body, rangePos(blk.TypeRange), fmt.Sprintf("jwt %q", name), schema{
		attrs: []string{"algorithms", "secret", "public_key_file", "jwks_url", "issuer", "audience",
			"leeway", "roles_claim", "forward_claims", "token_cookie", "token_query", "forward_authorization"},
	})
	j.Pos, j.Name = b.loc.block, name
	b.strs("algorithms", &j.Algorithms)
	b.str("secret", &j.Secret)
	b.str("public_key_file", &j.PublicKeyFile)
	b.str("jwks_url", &j.JWKSURL)
	b.str("issuer", &j.Issuer)
	b.strs("audience", &j.Audience)
	b.duration("leeway", &j.Leeway)
	b.str("roles_claim", &j.RolesClaim)
	b.strMap("forward_claims", &j.ForwardClaims)
	b.str("token_cookie", &j.TokenCookie)
	b.str("token_query", &j.TokenQuery)
	b.boolean("forward_authorization", &j.ForwardAuthorization)
	return j, b.loc
}

func (d *decoder) rateLimit(blk *hclsyntax.Block, name string) (RateLimit, *loc) {
	r := defaultRateLimit()
	b := d.open(blk.Body, rangePos(blk.TypeRange), fmt.Sprintf("rate_limit %q", name), schema{
		attrs: []string{"algorithm", "requests", "period", "burst", "key", "store", "on_store_error",
			"expected_replicas", "max_keys", "client_ipv6_prefix"},
	})
	r.Pos, r.Name = b.loc.block, name
	b.str("algorithm", &r.Algorithm)
	b.integer("requests", &r.Requests)
	b.duration("period", &r.Period)
	b.integer("burst", &r.Burst)
	b.str("key", &r.Key)
	b.str("store", &r.Store)
	b.str("on_store_error", &r.OnStoreError)
	b.integer("expected_replicas", &r.ExpectedReplicas)
	b.integer("max_keys", &r.MaxKeys)
	b.integer("client_ipv6_prefix", &r.ClientIPv6Prefix)
	return r, b.loc
}

func (d *decoder) service(blk *hclsyntax.Block, name string) (Service, *loc) {
	s := defaultService()
	b := d.open(blk.Body, rangePos(blk.TypeRange), fmt.Sprintf("service %q", name), schema{
		attrs:  []string{"load_balancer", "timeout", "idle_timeout"},
		blocks: []string{"consul", "instance", "retry", "circuit_breaker", "transport"},
		many:   []string{"instance"},
	})
	s.Pos, s.Name = b.loc.block, name
	b.str("load_balancer", &s.LoadBalancer)
	b.duration("timeout", &s.Timeout)
	b.duration("idle_timeout", &s.IdleTimeout)
	if c := b.block("consul"); c != nil {
		cb := d.nested(b, c, "consul", schema{attrs: []string{"name", "tags", "stale", "cached", "connect"}})
		v := ServiceConsul{Pos: cb.loc.block, Name: name}
		cb.str("name", &v.Name)
		cb.strs("tags", &v.Tags)
		cb.boolean("stale", &v.Stale)
		cb.boolean("cached", &v.Cached)
		cb.boolean("connect", &v.Connect)
		s.Consul = &v
	}
	for i, in := range b.blocks["instance"] {
		ib := d.nested(b, in, fmt.Sprintf("instance#%d", i), schema{attrs: []string{"address", "weight"}})
		v := defaultInstance()
		v.Pos = ib.loc.block
		ib.str("address", &v.Address)
		ib.integer("weight", &v.Weight)
		s.Instances = append(s.Instances, v)
	}
	if r := b.block("retry"); r != nil {
		rb := d.nested(b, r, "retry", schema{attrs: []string{"attempts", "backoff", "max_backoff",
			"budget_ratio", "budget_window", "budget_min", "idempotency_key", "buffer_bytes"}})
		v := defaultRetry()
		v.Pos = rb.loc.block
		rb.integer("attempts", &v.Attempts)
		rb.duration("backoff", &v.Backoff)
		rb.duration("max_backoff", &v.MaxBackoff)
		rb.float("budget_ratio", &v.BudgetRatio)
		rb.duration("budget_window", &v.BudgetWindow)
		rb.integer("budget_min", &v.BudgetMin)
		rb.boolean("idempotency_key", &v.IdempotencyKey)
		rb.int64("buffer_bytes", &v.BufferBytes)
		s.Retry = &v
	}
	if c := b.block("circuit_breaker"); c != nil {
		cb := d.nested(b, c, "circuit_breaker", schema{attrs: []string{"failure_threshold", "open_timeout",
			"half_open_requests", "failure_statuses", "failure_ratio", "min_requests", "window"}})
		v := defaultCircuitBreaker()
		v.Pos = cb.loc.block
		cb.integer("failure_threshold", &v.FailureThreshold)
		cb.duration("open_timeout", &v.OpenTimeout)
		cb.integer("half_open_requests", &v.HalfOpenRequests)
		cb.ints("failure_statuses", &v.FailureStatuses)
		cb.float("failure_ratio", &v.FailureRatio)
		cb.integer("min_requests", &v.MinRequests)
		cb.duration("window", &v.Window)
		s.CircuitBreaker = &v
	}
	if t := b.block("transport"); t != nil {
		tb := d.nested(b, t, "transport", schema{attrs: []string{"max_idle_conns_per_host",
			"max_conns_per_host", "idle_conn_timeout", "dial_timeout"}})
		s.Transport.Pos = tb.loc.block
		tb.integer("max_idle_conns_per_host", &s.Transport.MaxIdleConnsPerHost)
		tb.integer("max_conns_per_host", &s.Transport.MaxConnsPerHost)
		tb.duration("idle_conn_timeout", &s.Transport.IdleConnTimeout)
		tb.duration("dial_timeout", &s.Transport.DialTimeout)
	}
	return s, b.loc
}

func (d *decoder) route(blk *hclsyntax.Block, name string) (Route, *loc) {
	r := Route{}
	b := d.open(blk.Body, rangePos(blk.TypeRange), fmt.Sprintf("route %q", name), schema{
		attrs: []string{"hosts", "methods", "path", "service", "strip_prefix", "jwt", "roles",
			"rate_limit", "timeout", "metadata", "compress", "cache"},
		blocks: []string{"fallback", "cors"},
	})
	r.Pos, r.Name = b.loc.block, name
	b.strs("hosts", &r.Hosts)
	b.strs("methods", &r.Methods)
	b.str("path", &r.Path)
	b.str("service", &r.Service)
	b.str("strip_prefix", &r.StripPrefix)
	b.str("jwt", &r.JWT)
	b.strs("roles", &r.Roles)
	b.str("rate_limit", &r.RateLimit)
	b.duration("timeout", &r.Timeout)
	b.strMap("metadata", &r.Metadata)
	routeCaching(b, &r)
	for i := range r.Hosts {
		r.Hosts[i] = strings.ToLower(r.Hosts[i])
	}
	for i := range r.Methods {
		r.Methods[i] = strings.ToUpper(r.Methods[i])
	}
	if f := b.block("fallback"); f != nil {
		fb := d.nested(b, f, "fallback", schema{attrs: []string{"status", "content_type", "body"}})
		v := defaultFallback()
		v.Pos = fb.loc.block
		fb.integer("status", &v.Status)
		fb.str("content_type", &v.ContentType)
		fb.str("body", &v.Body)
		r.Fallback = &v
	}
	if c := b.block("cors"); c != nil {
		cb := d.nested(b, c, "cors", schema{attrs: []string{"allowed_origins", "allowed_methods",
			"allowed_headers", "exposed_headers", "allow_credentials", "max_age"}})
		v := defaultCORS()
		v.Pos = cb.loc.block
		cb.strs("allowed_origins", &v.AllowedOrigins)
		cb.strs("allowed_methods", &v.AllowedMethods)
		cb.strs("allowed_headers", &v.AllowedHeaders)
		cb.strs("exposed_headers", &v.ExposedHeaders)
		cb.boolean("allow_credentials", &v.AllowCredentials)
		cb.duration("max_age", &v.MaxAge)
		for i := range v.AllowedMethods {
			v.AllowedMethods[i] = strings.ToUpper(v.AllowedMethods[i])
		}
		r.CORS = &v
	}
	return r, b.loc
}

package config

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/infinityxone/gateway/breaker"
	"github.com/infinityxone/gateway/gateway/balancer"
	"github.com/infinityxone/gateway/gateway/router"
	"github.com/infinityxone/gateway/ratelimit"
)

// Enumerations, in the order messages list them.
var (
	logLevels      = []string{"trace", "debug", "info", "warn", "error"}
	logFormats     = []string{"json", "combined", "common", "dev"}
	appLogFormats  = []string{"text", "json"}
	limitAlgos     = []string{"token_bucket", "sliding_window"}
	limitStores    = []string{"redis", "memory"}
	storeErrors    = []string{"allow", "deny", "local"}
	jwtAlgorithms  = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
	minSecretBytes = 32
	maxConsulWait  = 10 * time.Minute // Consul caps a blocking query's wait there
)

// validator checks a decoded config; it reports through the decoder's diagnostics.
type validator struct {
	d *decoder
	p *parsed
}

func (v *validator) errorf(l *loc, attr string, format string, args ...any) {
	v.d.errorf(l.at(attr), "%s", l.msg(format, args...))
}

func (v *validator) errorAt(l *loc, p Pos, format string, args ...any) {
	v.d.errorf(p, "%s", l.msg(format, args...))
}

// validate runs every check on p, normalising values (header names) on the way.
func (v *validator) validate() {
	c := &v.p.cfg
	if v.p.gateway != nil {
		v.gateway(&c.Gateway, v.p.gateway)
	}
	if v.p.admin != nil {
		v.address(v.p.admin, "address", c.Admin.Address)
		if c.Admin.Address == c.Gateway.Address && !strings.HasSuffix(c.Admin.Address, ":0") {
			v.errorf(v.p.admin, "address", "address %q is also the gateway's address", c.Admin.Address)
		}
	}
	if v.p.log != nil {
		v.log(&c.Log, v.p.log)
	}
	if c.Tracing != nil {
		v.tracing(c.Tracing, v.p.tracing)
	}
	if c.Consul != nil {
		v.consul(c.Consul, v.p.consul)
	}
	if c.Redis != nil {
		v.redis(c.Redis, v.p.redis)
	}
	if c.Connect != nil {
		v.connect(c.Connect, v.p.connect)
	}
	v.uniqueNames()
	for i := range c.JWT {
		v.jwt(&c.JWT[i], v.p.jwt[i])
	}
	for i := range c.RateLimits {
		v.rateLimit(&c.RateLimits[i], v.p.rateLimits[i])
	}
	for i := range c.Services {
		v.service(&c.Services[i], v.p.services[i])
	}
	for i := range c.Routes {
		v.route(&c.Routes[i], v.p.routes[i])
	}
	v.routeTable()
	v.caching() // compression and cache blocks (caching.go)
}

// positive reports a written duration or number that must be above zero.
func (v *validator) positive(l *loc, attr string, n int64) {
	if l.has(attr) && n <= 0 {
		v.errorf(l, attr, "%s must be positive", attr)
	}
}

func (v *validator) atLeast(l *loc, attr string, n, lo int64) {
	if l.has(attr) && n < lo {
		v.errorf(l, attr, "%s must be at least %d, not %d", attr, lo, n)
	}
}

func (v *validator) enum(l *loc, attr, val string, allowed []string) {
	if !slices.Contains(allowed, val) {
		v.errorf(l, attr, "%s %q is not one of %s", attr, val, strings.Join(allowed, ", "))
	}
}

// address checks a written host:port.
func (v *validator) address(l *loc, attr, addr string) {
	if l.has(attr) {
		v.hostPort(l, l.at(attr), attr, addr)
	}
}

func (v *validator) hostPort(l *loc, p Pos, attr, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		n, perr := strconv.ParseUint(port, 10, 64)
		if perr == nil && n > 65535 && port[0] != '0' {
			v.errorAt(l, p, "%s %q: port %s is out of range (0-65535)", attr, addr, port)
			return
		}
		if perr != nil || n > 65535 || n == 0 && port != "0" {
			err = fmt.Errorf("bad port")
		}
	}
	if err != nil {
		v.errorAt(l, p, "%s %q is not host:port", attr, addr)
	}
}

// headerNames checks a list of header names and puts them in canonical form; "*" is
// accepted where star is true.
func (v *validator) headerNames(l *loc, attr string, names []string, star bool) {
	for i, h := range names {
		switch {
		case star && h == "*":
		case !httpguts.ValidHeaderFieldName(h):
			v.errorAt(l, l.elem(attr, i), "%s: %q is not a valid header name", attr, h)
		default:
			names[i] = http.CanonicalHeaderKey(h)
		}
	}
}

func (v *validator) gateway(g *Gateway, l *loc) {
	v.address(l, "address", g.Address)
	v.positive(l, "shutdown_timeout", int64(g.ShutdownTimeout))
	v.positive(l, "read_header_timeout", int64(g.ReadHeaderTimeout))
	v.positive(l, "idle_timeout", int64(g.IdleTimeout))
	v.positive(l, "client_write_timeout", int64(g.ClientWriteTimeout))
	v.positive(l, "max_header_bytes", int64(g.MaxHeaderBytes))
	if g.MaxBodyBytes < 0 {
		v.errorf(l, "max_body_bytes", "max_body_bytes must not be negative (0 means unlimited)")
	}
	if t := g.TLS; t != nil {
		tl := l.sub("tls")
		if t.CertFile == "" && !tl.invalid("cert_file") {
			v.errorf(tl, "cert_file", "cert_file is required")
		}
		if t.KeyFile == "" && !tl.invalid("key_file") {
			v.errorf(tl, "key_file", "key_file is required")
		}
	}
}

func (v *validator) log(lg *Log, l *loc) {
	v.enum(l, "level", lg.Level, logLevels)
	v.enum(l, "format", lg.Format, logFormats)
	v.enum(l, "app_format", lg.AppFormat, appLogFormats)
	v.headerNames(l, "redact_headers", lg.RedactHeaders, false)
}

func (v *validator) tracing(t *Tracing, l *loc) {
	if u, err := url.Parse(t.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errorf(l, "endpoint", "endpoint %q: want an http:// or https:// URL of an OTLP/HTTP receiver, such as \"http://127.0.0.1:4318\"", t.Endpoint)
	}
	if t.SampleRatio < 0 || t.SampleRatio > 1 {
		v.errorf(l, "sample_ratio", "sample_ratio must be between 0 and 1")
	}
	if t.ServiceName == "" {
		v.errorf(l, "service_name", "service_name must not be empty")
	}
}

func (v *validator) consul(c *Consul, l *loc) {
	if c.Address == "" {
		v.errorf(l, "address", "address must not be empty")
	}
	v.positive(l, "wait_time", int64(c.WaitTime))
	if c.WaitTime > maxConsulWait {
		v.errorf(l, "wait_time", "wait_time must be at most 10m (Consul's limit for a blocking query)")
	}
	if r := c.Register; r != nil && r.Service == "" {
		v.errorf(l.sub("register"), "service", "service must not be empty")
	}
}

func (v *validator) connect(c *Connect, l *loc) {
	if v.p.cfg.Consul == nil {
		v.d.errorf(l.block, "%s", l.msg("the connect block needs a top-level consul block: the leaf certificate and CA roots come from the Consul agent (consul {} takes the defaults)"))
	}
	if l.has("service_name") && !validName(c.ServiceName) {
		v.errorf(l, "service_name", "service_name %q: use letters, digits, '_', '-' and '.' only", c.ServiceName)
	}
}

func (v *validator) redis(r *Redis, l *loc) {
	if l.has("address") && l.has("addresses") {
		v.errorf(l, "addresses", "set address (one node) or addresses (cluster or sentinel), not both")
	}
	v.address(l, "address", r.Address)
	for i, a := range r.Addresses {
		v.hostPort(l, l.elem("addresses", i), "addresses", a)
	}
	if l.has("addresses") && len(r.Addresses) == 0 {
		v.errorf(l, "addresses", "addresses must not be empty")
	}
	if r.DB < 0 {
		v.errorf(l, "db", "db must not be negative")
	}
	v.positive(l, "timeout", int64(r.Timeout))
}

// uniqueNames reports a second jwt, rate_limit, service or route of the same name.
func (v *validator) uniqueNames() {
	c := &v.p.cfg
	check := func(kind string, names []string, locs []*loc) {
		first := map[string]*loc{}
		for i, n := range names {
			if f, ok := first[n]; ok {
				v.d.errorf(locs[i].block, "duplicate %s %q; the first is at %s", kind, n, f.block)
				continue
			}
			first[n] = locs[i]
		}
	}
	check("jwt", jwtNames(c), v.p.jwt)
	check("rate_limit", rateLimitNames(c), v.p.rateLimits)
	check("service", serviceNames(c), v.p.services)
	check("route", routeNames(c), v.p.routes)
}

func (v *validator) jwt(j *JWT, l *loc) {
	if len(j.Algorithms) == 0 && !l.invalid("algorithms") {
		v.errorf(l, "algorithms", "algorithms is required, as in algorithms = [\"HS256\"]")
	}
	var hs, asym bool
	for i, a := range j.Algorithms {
		switch {
		case !slices.Contains(jwtAlgorithms, a):
			v.errorAt(l, l.elem("algorithms", i), "algorithm %q is not one of %s", a, strings.Join(jwtAlgorithms, ", "))
		case strings.HasPrefix(a, "HS"):
			hs = true
			if j.Secret == "" && (j.PublicKeyFile != "" || j.JWKSURL != "") {
				v.errorAt(l, l.elem("algorithms", i), "algorithm %s needs a secret", a)
			}
		default:
			asym = true
			if j.PublicKeyFile == "" && j.JWKSURL == "" && j.Secret != "" {
				v.errorAt(l, l.elem("algorithms", i), "algorithm %s needs public_key_file or jwks_url", a)
			}
		}
	}
	switch {
	case j.Secret == "" && j.PublicKeyFile == "" && j.JWKSURL == "" &&
		!l.invalid("secret") && !l.invalid("public_key_file") && !l.invalid("jwks_url"):
		v.d.errorf(l.block, "%s", l.msg("no key source: set secret (HS*), public_key_file or jwks_url"))
	case j.PublicKeyFile != "" && j.JWKSURL != "":
		v.errorf(l, "jwks_url", "set public_key_file or jwks_url, not both")
	case j.Secret != "" && (j.PublicKeyFile != "" || j.JWKSURL != ""):
		attr := "public_key_file"
		if j.JWKSURL != "" {
			attr = "jwks_url"
		}
		v.errorf(l, attr, "a provider is either symmetric (secret) or asymmetric (%s), not both: declare two jwt blocks", attr)
	}
	if j.Secret != "" {
		if len(j.Secret) < minSecretBytes {
			v.errorf(l, "secret", "secret is %d bytes; HS* secrets must be at least %d bytes", len(j.Secret), minSecretBytes)
		}
		if !hs && len(j.Algorithms) > 0 {
			v.errorf(l, "secret", "secret is set but algorithms has no HS* algorithm")
		}
	}
	if (j.PublicKeyFile != "" || j.JWKSURL != "") && !asym && len(j.Algorithms) > 0 {
		attr := "public_key_file"
		if j.JWKSURL != "" {
			attr = "jwks_url"
		}
		v.errorf(l, attr, "%s is set but algorithms has no RS*, PS*, ES* or EdDSA algorithm", attr)
	}
	if j.JWKSURL != "" {
		if u, err := url.Parse(j.JWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errorf(l, "jwks_url", "jwks_url %q is not an http:// or https:// URL", j.JWKSURL)
		}
	}
	if j.RolesClaim == "" {
		v.errorf(l, "roles_claim", "roles_claim must not be empty")
	}
	for _, claim := range sortedKeys(j.ForwardClaims) {
		h := j.ForwardClaims[claim]
		if !httpguts.ValidHeaderFieldName(h) {
			v.errorAt(l, l.key("forward_claims", claim), "forward_claims: %q is not a valid header name", h)
			continue
		}
		j.ForwardClaims[claim] = http.CanonicalHeaderKey(h)
	}
}

func (v *validator) rateLimit(r *RateLimit, l *loc) {
	before := len(v.d.diags)
	defer func() {
		// Whatever else the limiter itself would refuse at start is reported now, so
		// validate and run never disagree.
		if len(v.d.diags) > before || !validName(r.Name) { // a bad name is reported at its label
			return
		}
		err := ratelimit.Policy{
			Name: r.Name, Algorithm: ratelimit.Algorithm(r.Algorithm), Requests: r.Requests, Period: r.Period,
			Burst: r.Burst, OnStoreError: ratelimit.StoreErrorMode(r.OnStoreError), ExpectedReplicas: r.ExpectedReplicas,
		}.Validate()
		if err != nil {
			v.d.errorf(l.block, "%s", l.msg("%v", err))
		}
	}()
	v.enum(l, "algorithm", r.Algorithm, limitAlgos)
	if !l.seen["requests"] {
		v.errorf(l, "requests", "requests is required")
	}
	v.positive(l, "requests", int64(r.Requests))
	if !l.seen["period"] {
		v.errorf(l, "period", "period is required")
	}
	v.positive(l, "period", int64(r.Period))
	if l.has("burst") {
		v.positive(l, "burst", int64(r.Burst))
		if r.Algorithm == "sliding_window" {
			v.errorf(l, "burst", "burst applies to token_bucket only; a sliding_window allows requests per period")
		}
	}
	kind, name, ok := parseKey(r.Key)
	if !ok {
		v.errorf(l, "key", "key %q is not client_ip, route, header:NAME or claim:NAME", r.Key)
	} else if kind == "header" && !httpguts.ValidHeaderFieldName(name) {
		v.errorf(l, "key", "key %q: %q is not a valid header name", r.Key, name)
	} else {
		if kind == "header" {
			name = http.CanonicalHeaderKey(name)
		}
		r.KeyKind, r.KeyName = kind, name
	}
	v.enum(l, "store", r.Store, limitStores)
	if r.Store == "redis" && v.p.cfg.Redis == nil {
		v.errorf(l, "store", "the redis store needs a redis block (or set store = \"memory\")")
	}
	v.enum(l, "on_store_error", r.OnStoreError, storeErrors)
	v.atLeast(l, "expected_replicas", int64(r.ExpectedReplicas), 1)
	v.atLeast(l, "max_keys", int64(r.MaxKeys), 1)
	if l.has("client_ipv6_prefix") && (r.ClientIPv6Prefix < 1 || r.ClientIPv6Prefix > 128) {
		v.errorf(l, "client_ipv6_prefix", "client_ipv6_prefix must be 1-128 (a prefix length), not %d", r.ClientIPv6Prefix)
	}
	// The limiter's own limits (exact integer arithmetic in Lua, whole milliseconds for a
	// sliding window) are checked here too, so validate and run never disagree.
	if r.Requests > maxLimitRequests {
		v.errorf(l, "requests", "requests must be at most %d", maxLimitRequests)
	}
	if l.has("burst") && r.Burst > maxLimitRequests {
		v.errorf(l, "burst", "burst must be at most %d", maxLimitRequests)
	}
	if r.Algorithm == "sliding_window" && r.Period > 0 && r.Period%time.Millisecond != 0 {
		v.errorf(l, "period", "a sliding_window period must be a whole number of milliseconds, not %v", r.Period)
	}
	if r.Algorithm == "token_bucket" && r.Requests > 0 && r.Period > 0 && r.Period/time.Duration(r.Requests) < time.Microsecond {
		v.errorf(l, "period", "a token_bucket needs at least 1µs per request: %d requests in %v is too many", r.Requests, r.Period)
	}
}

// maxLimitRequests keeps the rate limiter's products exact in a Lua double (ratelimit).
const maxLimitRequests = 1 << 30

// parseKey splits a rate-limit key into its kind and name.
func parseKey(key string) (kind, name string, ok bool) {
	switch key {
	case "client_ip", "route":
		return key, "", true
	}
	kind, name, found := strings.Cut(key, ":")
	if !found || name == "" || (kind != "header" && kind != "claim") {
		return "", "", false
	}
	return kind, name, true
}

func (v *validator) service(s *Service, l *loc) {
	if balancer.ValidateAlgorithm(s.LoadBalancer) != nil {
		v.errorf(l, "load_balancer", "load_balancer %q is not one of %s", s.LoadBalancer, strings.Join(balancer.Algorithms(), ", "))
	}
	v.positive(l, "timeout", int64(s.Timeout))
	v.positive(l, "idle_timeout", int64(s.IdleTimeout))
	switch {
	case s.Consul != nil && len(s.Instances) > 0:
		il := l.sub("instance#0")
		v.d.errorf(il.block, "%s", l.msg("static instance blocks cannot be combined with consul (at %s); use one or the other", s.Consul.Pos))
	case s.Consul == nil && len(s.Instances) == 0:
		v.d.errorf(l.block, "%s", l.msg("no instances: add a consul block or instance blocks"))
	}
	if s.Consul != nil {
		cl := l.sub("consul")
		if s.Consul.Name == "" {
			v.errorf(cl, "name", "name must not be empty")
		}
		if v.p.cfg.Consul == nil {
			v.d.errorf(cl.block, "%s", cl.msg("consul discovery needs a top-level consul block (consul {} takes the defaults)"))
		}
		if s.Consul.Connect && v.p.cfg.Connect == nil {
			v.errorf(cl, "connect", "connect = true needs a top-level connect block, the gateway's mesh identity (connect { service_name = \"gateway\" })")
		}
	}
	seen := map[string]Pos{}
	for i, in := range s.Instances {
		il := l.sub(fmt.Sprintf("instance#%d", i))
		if !il.seen["address"] {
			v.errorf(il, "address", "address is required")
		} else if il.has("address") {
			v.hostPort(il, il.at("address"), "address", in.Address)
			if first, dup := seen[in.Address]; dup {
				v.errorf(il, "address", "instance %q is already listed at %s", in.Address, first)
			} else {
				seen[in.Address] = il.at("address")
			}
		}
		v.atLeast(il, "weight", int64(in.Weight), 1)
	}
	if r := s.Retry; r != nil {
		rl := l.sub("retry")
		v.atLeast(rl, "attempts", int64(r.Attempts), 1)
		if r.MaxBackoff < r.Backoff {
			v.errorf(rl, "max_backoff", "max_backoff (%s) is less than backoff (%s)", r.MaxBackoff, r.Backoff)
		}
		if r.BudgetRatio < 0 || r.BudgetRatio > 1 {
			v.errorf(rl, "budget_ratio", "budget_ratio must be between 0 and 1, not %g", r.BudgetRatio)
		}
		v.positive(rl, "budget_window", int64(r.BudgetWindow))
		v.atLeast(rl, "budget_min", int64(r.BudgetMin), 0)
		v.atLeast(rl, "buffer_bytes", r.BufferBytes, 0)
	}
	if cb := s.CircuitBreaker; cb != nil {
		cl := l.sub("circuit_breaker")
		before := len(v.d.diags)
		defer func() {
			// Whatever else the breaker itself refuses is reported too: the gateway
			// builds one breaker per instance from these settings.
			if len(v.d.diags) > before {
				return
			}
			err := breaker.Settings{
				FailureThreshold: cb.FailureThreshold, OpenTimeout: cb.OpenTimeout, HalfOpenRequests: cb.HalfOpenRequests,
				FailureRatio: cb.FailureRatio, Window: cb.Window, MinRequests: cb.MinRequests,
			}.Validate()
			if err != nil {
				v.d.errorf(cl.block, "%s", cl.msg("%v", err))
			}
		}()
		v.atLeast(cl, "failure_threshold", int64(cb.FailureThreshold), 1)
		v.positive(cl, "open_timeout", int64(cb.OpenTimeout))
		v.atLeast(cl, "half_open_requests", int64(cb.HalfOpenRequests), 1)
		for i, st := range cb.FailureStatuses {
			if st < 100 || st > 599 {
				v.errorAt(cl, cl.elem("failure_statuses", i), "failure_statuses: %d is not an HTTP status code", st)
			}
		}
		if cb.FailureRatio < 0 || cb.FailureRatio > 1 {
			v.errorf(cl, "failure_ratio", "failure_ratio must be between 0 and 1 (0 turns it off), not %g", cb.FailureRatio)
		}
		v.atLeast(cl, "min_requests", int64(cb.MinRequests), 1)
		v.positive(cl, "window", int64(cb.Window))
	}
	tl := l.sub("transport")
	v.atLeast(tl, "max_idle_conns_per_host", int64(s.Transport.MaxIdleConnsPerHost), 1)
	v.atLeast(tl, "max_conns_per_host", int64(s.Transport.MaxConnsPerHost), 0)
	v.positive(tl, "dial_timeout", int64(s.Transport.DialTimeout))
}

func (v *validator) route(r *Route, l *loc) {
	c := &v.p.cfg
	switch {
	case !l.seen["path"]:
		v.errorf(l, "path", "path is required")
	case !l.has("path"): // reported while decoding
	case l.has("strip_prefix"):
		// The path itself is checked with the whole table (routeTable). The prefix is
		// kept in the form normalised request paths start with, which the proxy strips.
		prefix, err := router.CanonicalPrefix(r.Path, r.StripPrefix)
		switch {
		case errors.Is(err, router.ErrBadPattern):
		case err != nil:
			v.errorf(l, "strip_prefix", "%v", err)
		default:
			r.StripPrefix = prefix
		}
	}
	switch {
	case !l.seen["service"]:
		v.errorf(l, "service", "service is required")
	case l.invalid("service"): // reported while decoding
	case c.Service(r.Service) == nil:
		v.errorf(l, "service", "service %q is not defined%s", r.Service, didYouMean(r.Service, serviceNames(c)))
	}
	if l.has("jwt") && c.JWTProvider(r.JWT) == nil {
		v.errorf(l, "jwt", "jwt %q is not defined%s", r.JWT, didYouMean(r.JWT, jwtNames(c)))
	}
	if len(r.Roles) > 0 && !l.has("jwt") {
		v.errorf(l, "roles", "roles need a jwt provider on the route")
	}
	if l.has("rate_limit") {
		if rl := c.RateLimit(r.RateLimit); rl == nil {
			v.errorf(l, "rate_limit", "rate_limit %q is not defined%s", r.RateLimit, didYouMean(r.RateLimit, rateLimitNames(c)))
		} else if rl.KeyKind == "claim" && !l.has("jwt") {
			v.errorf(l, "rate_limit", "rate_limit %q is keyed by %s, which needs a jwt provider on the route", r.RateLimit, rl.Key)
		}
	}
	v.positive(l, "timeout", int64(r.Timeout))
	// Malformed hosts and methods are reported by routeTable, with the router's words.
	for i, h := range r.Hosts {
		if j := slices.Index(r.Hosts, h); j < i && router.ValidateHost(h) == nil {
			v.errorAt(l, l.elem("hosts", i), "hosts: %q is listed twice", h)
		}
	}
	for i, m := range r.Methods {
		if j := slices.Index(r.Methods, m); j < i && router.ValidateMethod(m) == nil {
			v.errorAt(l, l.elem("methods", i), "methods: %q is listed twice", m)
		}
	}
	if f := r.Fallback; f != nil && (f.Status < 100 || f.Status > 599) {
		v.errorf(l.sub("fallback"), "status", "status %d is not an HTTP status code", f.Status)
	}
	if cors := r.CORS; cors != nil {
		v.cors(cors, l.sub("cors"))
	}
}

func (v *validator) cors(c *CORS, l *loc) {
	if len(c.AllowedOrigins) == 0 && !l.invalid("allowed_origins") {
		v.errorf(l, "allowed_origins", "allowed_origins is required: the origins (or \"*\") that may call this route")
	}
	for i, o := range c.AllowedOrigins {
		if o == "*" {
			if len(c.AllowedOrigins) > 1 {
				v.errorAt(l, l.elem("allowed_origins", i), "allowed_origins: \"*\" already allows every origin; list origins or \"*\" alone")
			}
			if c.AllowCredentials {
				v.errorf(l, "allow_credentials", "allow_credentials with allowed_origins = [\"*\"] would let every site send credentialed requests; list the origins")
			}
			continue
		}
		if !validOrigin(o) {
			v.errorAt(l, l.elem("allowed_origins", i), "allowed_origins: %q is not an origin such as \"https://app.example.com\"", o)
		}
	}
	for i, m := range c.AllowedMethods {
		if err := router.ValidateMethod(m); err != nil {
			v.errorAt(l, l.elem("allowed_methods", i), "allowed_methods: %v", err)
		}
	}
	v.headerNames(l, "allowed_headers", c.AllowedHeaders, true)
	v.headerNames(l, "exposed_headers", c.ExposedHeaders, false)
}

// validOrigin accepts scheme://host[:port] with nothing after it.
func validOrigin(o string) bool {
	u, err := url.Parse(o)
	return err == nil && u.Scheme != "" && u.Host != "" && u.Path == "" && u.RawQuery == "" &&
		u.Fragment == "" && u.User == nil && o == strings.ToLower(u.Scheme)+"://"+u.Host
}

// routeTable checks the routes as the router will build them: every path, host and
// method with the router's own rules, and every pair of routes that would serve the
// same host, method and pattern (a route with hosts next to one without, or a route
// with methods next to one without, is precedence, not a conflict).
func (v *validator) routeTable() {
	c := &v.p.cfg
	rs := make([]router.Route, len(c.Routes))
	for i, r := range c.Routes {
		rs[i] = router.Route{Hosts: r.Hosts, Methods: r.Methods, Path: r.Path}
	}
	for _, err := range router.Check(rs) {
		var re *router.RouteError
		var ce *router.ConflictError
		switch {
		case errors.As(err, &re):
			l := v.p.routes[re.Route]
			switch re.Field {
			case "path":
				if l.has("path") { // a missing path is reported by route
					v.errorf(l, "path", "%v", re.Err)
				}
			case "hosts":
				v.errorAt(l, l.elem("hosts", re.Index), "%v", re.Err)
			case "methods":
				v.errorAt(l, l.elem("methods", re.Index), "%v", re.Err)
			}
		case errors.As(err, &ce):
			first, second := c.Routes[ce.First], c.Routes[ce.Second]
			what := ce.Method
			if what == "" {
				what = "every method"
			}
			what += " " + second.Path
			if ce.Host != "" {
				what += " on host " + ce.Host
			}
			v.d.errorf(second.Pos, "route %q conflicts with route %q at %s: both match %s", second.Name, first.Name, first.Pos, what)
		default:
			v.d.errorf(c.Routes[0].Pos, "routes: %v", err)
		}
	}
}

func didYouMean(name string, candidates []string) string {
	if s := suggest(name, candidates); s != "" {
		return fmt.Sprintf("; did you mean %q?", s)
	}
	return ""
}

func serviceNames(c *Config) []string {
	out := make([]string, len(c.Services))
	for i := range c.Services {
		out[i] = c.Services[i].Name
	}
	return out
}

func jwtNames(c *Config) []string {
	out := make([]string, len(c.JWT))
	for i := range c.JWT {
		out[i] = c.JWT[i].Name
	}
	return out
}

func rateLimitNames(c *Config) []string {
	out := make([]string, len(c.RateLimits))
	for i := range c.RateLimits {
		out[i] = c.RateLimits[i].Name
	}
	return out
}

func routeNames(c *Config) []string {
	out := make([]string, len(c.Routes))
	for i := range c.Routes {
		out[i] = c.Routes[i].Name
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Package config turns the gateway's HCL files into plain, validated Go structs.
//
// HCL types stop here: the rest of the gateway sees time.Durations, netip.Prefixes and
// validated enum strings. Every struct carries the Pos of its declaration so later
// stages (for example "not supported yet") can point at the source.
package config

import (
	"fmt"
	"net/netip"
	"time"
)

// Pos is a source position: file, 1-based line and column.
type Pos struct {
	File   string
	Line   int
	Column int
}

// String formats the position as FILE:LINE:COL.
// A Pos without a line (a file that could not be read) prints as FILE alone.
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Diagnostic is one problem found in the config, printed as "FILE:LINE:COL: message".
type Diagnostic struct {
	Pos     Pos
	Message string
}

func (d Diagnostic) String() string { return d.Pos.String() + ": " + d.Message }

// Diagnostics is a list of problems; it implements error when non-empty.
type Diagnostics []Diagnostic

func (ds Diagnostics) Error() string {
	s := ""
	for i, d := range ds {
		if i > 0 {
			s += "\n"
		}
		s += d.String()
	}
	return s
}

// Config is the whole, validated configuration (all files merged).
type Config struct {
	Gateway    Gateway
	Admin      Admin
	Log        Log
	Tracing    *Tracing // nil: no tracing block (no spans, no trace headers touched)
	Consul     *Consul  // nil: no consul block
	Redis      *Redis   // nil: no redis block
	Connect    *Connect // nil: no connect block (the gateway is not in the service mesh)
	JWT        []JWT    // declaration order
	RateLimits []RateLimit
	Services   []Service
	Routes     []Route

	Compression *Compression // nil: no compression block (routes with compress = true use the defaults)
	Caches      []Cache      // cache "name" blocks, declaration order
}

// Gateway is the `gateway` block: the public listener.
type Gateway struct {
	Pos               Pos
	Address           string        // default "0.0.0.0:8080"
	ShutdownTimeout   time.Duration // default 30s
	ReadHeaderTimeout time.Duration // default 10s
	IdleTimeout       time.Duration // default 120s: keep-alive idle of client connections
	// ClientWriteTimeout bounds one write to a client: a client that stops reading is cut
	// off after it. Default 30s.
	ClientWriteTimeout time.Duration
	MaxHeaderBytes     int   // default 65536
	MaxBodyBytes       int64 // default 10 MiB; 0 = unlimited
	TrustedProxies     []netip.Prefix
	TLS                *TLS // nil: plain HTTP
}

// TLS is the listener's certificate.
type TLS struct {
	Pos        Pos
	CertFile   string
	KeyFile    string
	MinVersion uint16 // tls.VersionTLS12 by default; "1.2" or "1.3"
}

// Admin is the admin listener.
type Admin struct {
	Pos     Pos
	Address string // default "127.0.0.1:9901"
}

// Log configures application and access logs.
type Log struct {
	Pos           Pos
	Level         string   // trace | debug | info | warn | error; default info
	Format        string   // json | combined | common | dev; default json
	AccessLog     bool     // default true
	RedactHeaders []string // default Authorization, Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key
	AppFormat     string   // text | json: the application log on stderr; default text
}

// Tracing is the `tracing` block: OpenTelemetry spans exported over OTLP/HTTP.
type Tracing struct {
	Pos         Pos
	Endpoint    string  // OTLP/HTTP base URL; default OTEL_EXPORTER_OTLP_ENDPOINT or http://127.0.0.1:4318
	SampleRatio float64 // share of new traces sampled, 0..1; default 1 (a sampled parent is always kept)
	ServiceName string  // default "gateway"
}

// Consul is the `consul` block.
type Consul struct {
	Pos        Pos
	Address    string // default CONSUL_HTTP_ADDR or 127.0.0.1:8500
	Token      string
	Datacenter string
	WaitTime   time.Duration // default 5m
	Register   *Register     // nil: do not register
}

// Register is `consul { register { ... } }`.
type Register struct {
	Pos             Pos
	Service         string // default "gateway"
	Address         string // default: the listener's host
	Tags            []string
	DeregisterDelay time.Duration // default 5s
}

// Connect is the `connect` block: the gateway's identity in Consul's service mesh.
type Connect struct {
	Pos Pos
	// ServiceName is the identity the leaf certificate is issued for; intentions
	// name it as their source. Default: consul.register.service, else "gateway".
	ServiceName string
}

// Redis is the `redis` block.
type Redis struct {
	Pos        Pos
	Address    string   // single node (default 127.0.0.1:6379)
	Addresses  []string // cluster or sentinel
	MasterName string   // sentinel
	Password   string
	DB         int
	Timeout    time.Duration // default 50ms
}

// JWT is a `jwt "name"` provider.
type JWT struct {
	Pos                  Pos
	Name                 string
	Algorithms           []string // validated names: HS256 … EdDSA
	Secret               string
	PublicKeyFile        string
	JWKSURL              string
	Issuer               string   // "" = not checked
	Audience             []string // empty = not checked
	Leeway               time.Duration
	RolesClaim           string            // default "roles"
	ForwardClaims        map[string]string // claim -> header
	TokenCookie          string            // also read the token from this cookie
	TokenQuery           string            // also read the token from this query parameter
	ForwardAuthorization bool              // default true
}

// RateLimit is a `rate_limit "name"` policy.
type RateLimit struct {
	Pos              Pos
	Name             string
	Algorithm        string // token_bucket | sliding_window
	Requests         int
	Period           time.Duration
	Burst            int    // default Requests
	Key              string // as written: client_ip | header:NAME | claim:NAME | route
	KeyKind          string // client_ip | header | claim | route
	KeyName          string // header or claim name
	Store            string // redis | memory; default redis
	OnStoreError     string // allow | deny | local; default allow
	ExpectedReplicas int    // default 1
	MaxKeys          int    // keys a memory store (or the local fallback) holds at most; default 100000
	ClientIPv6Prefix int    // an IPv6 client is keyed by this prefix length, 1-128; default 64
}

// Service is a `service "name"` block.
type Service struct {
	Pos          Pos
	Name         string
	Consul       *ServiceConsul // nil: static instances
	Instances    []Instance
	LoadBalancer string        // round_robin | least_conn | random | ip_hash | weighted
	Timeout      time.Duration // default 30s: until the response headers arrive
	// IdleTimeout is the longest silence of the upstream while a response body streams;
	// then the exchange is cut and counted against the instance. Default 60s.
	IdleTimeout    time.Duration
	Retry          *Retry // nil: connect failures retried once (docs/configuration.md)
	CircuitBreaker *CircuitBreaker
	Transport      Transport
}

// ServiceConsul selects instances from Consul's health API.
type ServiceConsul struct {
	Pos    Pos
	Name   string // default: the service's name
	Tags   []string
	Stale  bool
	Cached bool
	// Connect: instances from /v1/health/connect/NAME (sidecar proxies and
	// Connect-native instances), reached over mutual TLS. Needs a connect block.
	Connect bool
}

// Instance is one static upstream.
type Instance struct {
	Pos     Pos
	Address string // host:port
	Weight  int    // default 1
}

// Transport tunes the per-service http.Transport.
type Transport struct {
	Pos                 Pos           // zero when the service has no transport block
	MaxIdleConnsPerHost int           // default 256
	MaxConnsPerHost     int           // default 0 = unlimited
	IdleConnTimeout     time.Duration // default 90s
	DialTimeout         time.Duration // default 5s
}

// Retry is a service's `retry` block.
type Retry struct {
	Pos            Pos
	Attempts       int           // default 3, first try included
	Backoff        time.Duration // default 50ms
	MaxBackoff     time.Duration // default 1s
	BudgetRatio    float64       // default 0.2
	BudgetWindow   time.Duration // default 10s
	BudgetMin      int           // default 10
	IdempotencyKey bool
	BufferBytes    int64 // body replay buffer cap; default 64 KiB
}

// CircuitBreaker is a service's `circuit_breaker` block.
type CircuitBreaker struct {
	Pos              Pos
	FailureThreshold int           // default 5
	OpenTimeout      time.Duration // default 30s
	HalfOpenRequests int           // default 1
	FailureStatuses  []int         // default 502, 503, 504
	FailureRatio     float64       // 0 = off
	MinRequests      int           // for FailureRatio; default 20
	Window           time.Duration // for FailureRatio; default 10s
}

// Route is a `route "name"` block.
type Route struct {
	Pos         Pos
	Name        string
	Hosts       []string // lower-cased; empty = any
	Methods     []string // upper-cased; empty = any
	Path        string
	Service     string
	StripPrefix string
	JWT         string
	Roles       []string
	RateLimit   string
	Timeout     time.Duration // 0 = the service's
	Metadata    map[string]string
	Fallback    *Fallback
	CORS        *CORS
	Compress    bool   // compress answers (the compression block's settings)
	Cache       string // name of a cache block; "" = not cached
}

// Fallback is served instead of 503 when a route's service has no instance to try.
type Fallback struct {
	Pos         Pos
	Status      int // default 503
	ContentType string
	Body        string
}

// CORS is a route's cross-origin policy.
type CORS struct {
	Pos              Pos
	AllowedOrigins   []string // "*" allowed
	AllowedMethods   []string
	AllowedHeaders   []string
	ExposedHeaders   []string
	AllowCredentials bool
	MaxAge           time.Duration
}

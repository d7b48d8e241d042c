package config

import (
	"crypto/tls"
	"time"

	"github.com/infinityxone/gateway/ratelimit"
)

// Defaults. Each block is filled with these before its attributes are decoded, so an
// attribute that is written always wins, and zero can be written on purpose where zero
// means something (max_body_bytes = 0, budget_min = 0 …).
const (
	DefaultGatewayAddress = "0.0.0.0:8080"
	DefaultAdminAddress   = "127.0.0.1:9901"
	DefaultConsulAddress  = "127.0.0.1:8500"
	DefaultConnectService = "gateway"
	DefaultRedisAddress   = "127.0.0.1:6379"
	DefaultRolesClaim     = "roles"
	DefaultRegisterName   = "gateway"
)

// DefaultRedactHeaders are the request headers the access log never prints.
func DefaultRedactHeaders() []string {
	return []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key"}
}

func defaultGateway() Gateway {
	return Gateway{
		Address:            DefaultGatewayAddress,
		ShutdownTimeout:    30 * time.Second,
		ReadHeaderTimeout:  10 * time.Second,
		IdleTimeout:        120 * time.Second,
		ClientWriteTimeout: 30 * time.Second,
		MaxHeaderBytes:     64 << 10,
		MaxBodyBytes:       10 << 20,
	}
}

func defaultTLS() TLS { return TLS{MinVersion: tls.VersionTLS12} }

func defaultAdmin() Admin { return Admin{Address: DefaultAdminAddress} }

func defaultLog() Log {
	return Log{Level: "info", Format: "json", AccessLog: true, RedactHeaders: DefaultRedactHeaders(), AppFormat: "text"}
}

// DefaultTracingEndpoint is the OTLP/HTTP receiver used when neither the block nor
// OTEL_EXPORTER_OTLP_ENDPOINT names one.
const DefaultTracingEndpoint = "http://127.0.0.1:4318"

// defaultTracing leaves Endpoint empty: it is OTEL_EXPORTER_OTLP_ENDPOINT or
// DefaultTracingEndpoint, decided once the environment is at hand.
func defaultTracing() Tracing { return Tracing{SampleRatio: 1, ServiceName: "gateway"} }

// defaultConsul leaves Address empty: it is CONSUL_HTTP_ADDR or DefaultConsulAddress,
// decided once the environment is at hand.
func defaultConsul() Consul { return Consul{WaitTime: 5 * time.Minute} }

func defaultRegister() Register {
	return Register{Service: DefaultRegisterName, DeregisterDelay: 5 * time.Second}
}

// defaultRedis leaves Address empty: DefaultRedisAddress applies only without addresses.
func defaultRedis() Redis { return Redis{Timeout: 50 * time.Millisecond} }

func defaultJWT() JWT { return JWT{RolesClaim: DefaultRolesClaim, ForwardAuthorization: true} }

// defaultRateLimit leaves Burst zero: it defaults to Requests once that is known.
func defaultRateLimit() RateLimit {
	return RateLimit{Algorithm: "token_bucket", Key: "client_ip", KeyKind: "client_ip",
		Store: "redis", OnStoreError: "allow", ExpectedReplicas: 1,
		MaxKeys: ratelimit.DefaultMaxKeys, ClientIPv6Prefix: ratelimit.DefaultIPv6Prefix}
}

func defaultService() Service {
	return Service{LoadBalancer: "round_robin", Timeout: 30 * time.Second, IdleTimeout: 60 * time.Second, Transport: defaultTransport()}
}

func defaultInstance() Instance { return Instance{Weight: 1} }

func defaultTransport() Transport {
	return Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, DialTimeout: 5 * time.Second}
}

func defaultRetry() Retry {
	return Retry{Attempts: 3, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second,
		BudgetRatio: 0.2, BudgetWindow: 10 * time.Second, BudgetMin: 10, BufferBytes: 64 << 10}
}

func defaultCircuitBreaker() CircuitBreaker {
	return CircuitBreaker{FailureThreshold: 5, OpenTimeout: 30 * time.Second, HalfOpenRequests: 1,
		FailureStatuses: []int{502, 503, 504}, MinRequests: 20, Window: 10 * time.Second}
}

func defaultFallback() Fallback { return Fallback{Status: 503} }

func defaultCORS() CORS { return CORS{} }

// finishDefaults fills the defaults that depend on other values or on the environment.
func finishDefaults(p *parsed, lookup LookupEnv) {
	if p.gateway == nil || !p.gateway.seen["address"] {
		if a, ok := lookup("GATEWAY_ADDR"); ok && a != "" {
			p.cfg.Gateway.Address = a // GATEWAY_ADDR overrides the default (docs/configuration.md)
		}
	}
	if c := p.cfg.Consul; c != nil && !p.consul.has("address") {
		c.Address = DefaultConsulAddress
		if a, ok := lookup("CONSUL_HTTP_ADDR"); ok && a != "" {
			c.Address = a
		}
	}
	if c := p.cfg.Connect; c != nil && !p.connect.has("service_name") {
		c.ServiceName = DefaultConnectService
		if p.cfg.Consul != nil && p.cfg.Consul.Register != nil && p.cfg.Consul.Register.Service != "" {
			c.ServiceName = p.cfg.Consul.Register.Service
		}
	}
	if t := p.cfg.Tracing; t != nil && !p.tracing.has("endpoint") {
		t.Endpoint = DefaultTracingEndpoint
		if a, ok := lookup("OTEL_EXPORTER_OTLP_ENDPOINT"); ok && a != "" {
			t.Endpoint = a
		}
	}
	if r := p.cfg.Redis; r != nil && !p.redis.has("address") && !p.redis.has("addresses") {
		r.Address = DefaultRedisAddress
	}
	for i := range p.cfg.RateLimits {
		if r := &p.cfg.RateLimits[i]; !p.rateLimits[i].has("burst") {
			r.Burst = r.Requests
		}
	}
}

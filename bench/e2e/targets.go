package main

import (
	"fmt"
	"slices"
	"strings"
)

// Target kinds.
const (
	kindDirect  = "direct"
	kindFloor   = "floor"
	kindGateway = "gateway"
)

// upstreamNetHTTPEnv, set to 1, makes `gateway run` (and this harness's in-process
// gateway) send every upstream request through net/http's Transport.
const upstreamNetHTTPEnv = "GATEWAY_UPSTREAM_NETHTTP"

// baseGateway is the plain gateway row: one static route, access log off. Feature rows
// are measured as ratios to it.
const baseGateway = "gateway-log-off"

// targetSpec describes one target before anything is started.
type targetSpec struct {
	key   string
	label string
	kind  string
	// cpuLimit is a CPU/request target as a multiple of the floor (set by issue
	// cpuIssue); 0: none.
	cpuLimit float64
	cpuIssue string

	// Gateway targets only.
	logBlock string   // the body of the log block
	features []string // feature blocks this gateway's config carries: jwt, resilience, redis-limit
	env      []string // added to the gateway process's environment

	// Feature rows (issue set): ratios are to baseGateway; rpsGoal is the issue's
	// minimum req/s ratio, 0 when the issue sets none.
	rpsGoal float64
	issue   string
	what    string // what the row adds, for the report's notes
}

// Feature names (targetSpec.features).
const (
	featJWT        = "jwt"
	featResilience = "resilience"
	featRedisLimit = "redis-limit"
	featMesh       = "mesh"
	featTrace0     = "trace-ratio-0" // tracing block, sample_ratio = 0
	featTrace1     = "trace-ratio-1" // tracing block, sample_ratio = 1
)

// tracing reports whether a feature list carries a tracing block.
func tracing(features []string) bool {
	return slices.Contains(features, featTrace0) || slices.Contains(features, featTrace1)
}

// feature reports whether t is a feature row: measured as ratios to baseGateway.
func (t targetSpec) feature() bool { return t.issue != "" }

// allTargets are the targets in report order. The order also fixes the rotation: each
// round starts one target later.
func allTargets() []targetSpec {
	return []targetSpec{
		{key: "direct", label: "direct (wrk → backend)", kind: kindDirect},
		{key: "floor", label: "floor (httputil.ReverseProxy)", kind: kindFloor},
		{key: baseGateway, label: "gateway, access log off", kind: kindGateway, cpuLimit: 0.80, cpuIssue: "17",
			logBlock: "  access_log = false\n"},
		// The plain gateway with its upstream HTTP/1.1 pool switched off: every upstream
		// request through net/http's Transport, as before issue 17.
		{key: "gateway-nethttp", label: "gateway, access log off, upstream via net/http", kind: kindGateway, cpuLimit: 1.05, cpuIssue: "2",
			logBlock: "  access_log = false\n", env: []string{upstreamNetHTTPEnv + "=1"}},
		{key: "gateway-log-on", label: "gateway, access log on (json)", kind: kindGateway, cpuLimit: 1.20, cpuIssue: "2",
			logBlock: "  access_log = true\n  format     = \"json\"\n"},
		{key: "gateway-jwt", label: "gateway + JWT HS256", kind: kindGateway,
			logBlock: "  access_log = false\n", features: []string{featJWT}, rpsGoal: 0.85, issue: "6",
			what: "`jwt` HS256 provider on the route, `roles = [\"r\"]`; wrk sends `Authorization: Bearer <token>` (HS256, sub and roles claims, minted with jwtauth.Mint)"},
		{key: "gateway-breaker-retry", label: "gateway + circuit breaker + retry", kind: kindGateway,
			logBlock: "  access_log = false\n", features: []string{featResilience}, rpsGoal: 0.97, issue: "5",
			what: "`retry` (3 attempts, budget 20 %) and `circuit_breaker` (threshold 5, failure_ratio 0.5 over 10 s) on the service; nothing fails"},
		{key: "gateway-redis-limit", label: "gateway + Redis rate limit", kind: kindGateway,
			logBlock: "  access_log = false\n", features: []string{featRedisLimit}, rpsGoal: 0.80, issue: "4",
			what: "`rate_limit` token bucket in Redis (key client_ip, 1,000,000 requests/s, so nothing is refused; on_store_error = \"deny\", so a Redis failure shows as a non-2xx answer) against a redis-server the harness starts"},
		// Issue 10's target is CPU/request ≤ 1.15× the plain route's: capacity ≥ 1/1.15.
		{key: "gateway-full", label: "gateway, full pipeline (JSON log, JWT, Redis limit, breaker, retry)", kind: kindGateway,
			logBlock: "  access_log = true\n  format     = \"json\"\n", features: []string{featJWT, featRedisLimit, featResilience},
			rpsGoal: 1 / 1.15, issue: "10 (CPU/req ≤ 1.15×)",
			what: "every feature row at once, plus the JSON access log: the route's whole pipeline"},
		// Issue 13's targets are CPU/request ≤ 1.03× (ratio 0) and ≤ 1.25× (ratio 1) the
		// plain route's: capacity ≥ 1/1.03 and ≥ 1/1.25.
		{key: "gateway-trace-off", label: "gateway + tracing, sample_ratio = 0", kind: kindGateway,
			logBlock: "  access_log = false\n", features: []string{featTrace0}, rpsGoal: 1 / 1.03, issue: "13 (CPU/req ≤ 1.03×)",
			what: "a `tracing` block with `sample_ratio = 0`: no span recorded or exported, the trace context still made and sent upstream (`traceparent`); exporter endpoint the harness's OTLP/HTTP receiver"},
		{key: "gateway-trace-on", label: "gateway + tracing, sample_ratio = 1", kind: kindGateway,
			logBlock: "  access_log = false\n", features: []string{featTrace1}, rpsGoal: 1 / 1.25, issue: "13 (CPU/req ≤ 1.25×)",
			what: "a `tracing` block with `sample_ratio = 1`: every request's server span and client span recorded and exported in batches over OTLP/HTTP to a receiver the harness starts (`e2e otlp`: parses every ExportTraceServiceRequest at the protobuf wire level, counts the spans; pinned with wrk and the backend, standing for the collector's machine, so its CPU is not in the proxy column)"},
		{key: "gateway-mesh", label: "gateway + Consul Connect (sidecar)", kind: kindGateway,
			logBlock: "  access_log = false\n", features: []string{featMesh}, issue: "12",
			what: "the same backend behind Consul's built-in sidecar (`consul connect proxy -sidecar-for`), reached with `consul { connect = true }`: mutual TLS with the gateway's leaf, the sidecar's certificate checked against the CA roots and its SPIFFE ID, pooled keep-alive connections; a `consul agent -dev` and the sidecar run with wrk and the backend, standing for the backend's machine (their CPU is not in the proxy column)"},
	}
}

// targetGroups are names -targets accepts besides target keys.
func targetGroups() map[string][]string {
	return map[string][]string{
		"all":      nil, // every target
		"core":     {"direct", "floor", baseGateway, "gateway-nethttp", "gateway-log-on"},
		"features": {baseGateway, "gateway-jwt", "gateway-breaker-retry", "gateway-redis-limit", "gateway-full", "gateway-trace-off", "gateway-trace-on", "gateway-mesh"},
		"tracing":  {baseGateway, "gateway-trace-off", "gateway-trace-on"},
	}
}

// selectTargets parses -targets: a comma-separated list of target keys and group names.
// The floor is always measured (the main table's ratios are to it), and the plain
// gateway whenever a feature row is (theirs are to it). The result is in report order.
func selectTargets(list string) ([]targetSpec, error) {
	all, groups := allTargets(), targetGroups()
	want := map[string]bool{}
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if g, ok := groups[name]; ok {
			if g == nil {
				for _, t := range all {
					want[t.key] = true
				}
			}
			for _, k := range g {
				want[k] = true
			}
			continue
		}
		if !slices.ContainsFunc(all, func(t targetSpec) bool { return t.key == name }) {
			return nil, fmt.Errorf("-targets: unknown target %q (targets: %s; groups: all, core, features, tracing)", name, targetKeys())
		}
		want[name] = true
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("-targets: no target named (targets: %s; groups: all, core, features, tracing)", targetKeys())
	}
	want["floor"] = true
	var out []targetSpec
	for _, t := range all {
		if t.feature() && want[t.key] {
			want[baseGateway] = true
		}
	}
	for _, t := range all {
		if want[t.key] {
			out = append(out, t)
		}
	}
	return out, nil
}

func targetKeys() string {
	all := allTargets()
	keys := make([]string, len(all))
	for i, t := range all {
		keys[i] = t.key
	}
	return strings.Join(keys, ", ")
}

// gwParams are what a gateway target's config is made from.
type gwParams struct {
	addr, admin, backend string
	logBlock             string
	features             []string
	jwtSecret            string // featJWT
	redisAddr            string // featRedisLimit
	consulAddr           string // featMesh
	otlpEndpoint         string // featTrace0, featTrace1: the receiver's base URL
	serviceName          string // featTrace0, featTrace1: the tracing block's service_name
}

// gatewayConfig renders a gateway target's config: one static route GET /bench to the
// backend, plus the blocks of its features.
func gatewayConfig(p gwParams) string {
	var top, service, route strings.Builder
	instances := fmt.Sprintf("  instance {\n    address = %q\n  }\n", p.backend)
	for _, f := range p.features {
		switch f {
		case featMesh:
			fmt.Fprintf(&top, `
consul {
  address = %q
}

connect {
  service_name = "bench-gateway"
}
`, p.consulAddr)
			instances = fmt.Sprintf("  consul {\n    name    = %q\n    connect = true\n  }\n", meshBackendService)
		case featTrace0, featTrace1:
			ratio := 0
			if f == featTrace1 {
				ratio = 1
			}
			fmt.Fprintf(&top, `
tracing {
  endpoint     = %q
  sample_ratio = %d
  service_name = %q
}
`, p.otlpEndpoint, ratio, p.serviceName)
		case featJWT:
			fmt.Fprintf(&top, `
jwt "bench" {
  algorithms = ["HS256"]
  secret     = %q
}
`, p.jwtSecret)
			route.WriteString("  jwt     = \"bench\"\n  roles   = [\"r\"]\n")
		case featResilience:
			service.WriteString(`  retry {
    attempts      = 3
    backoff       = "50ms"
    max_backoff   = "1s"
    budget_ratio  = 0.2
    budget_window = "10s"
    budget_min    = 10
  }
  circuit_breaker {
    failure_threshold  = 5
    open_timeout       = "30s"
    half_open_requests = 1
    failure_statuses   = [502, 503, 504]
    failure_ratio      = 0.5
    min_requests       = 20
    window             = "10s"
  }
`)
		case featRedisLimit:
			fmt.Fprintf(&top, `
redis {
  address = %q
  timeout = "1s" # a shared, loaded machine stalls Redis past the 50ms default: that is noise, not the limiter's cost
}

rate_limit "bench" {
  algorithm      = "token_bucket"
  requests       = 1000000
  period         = "1s"
  key            = "client_ip"
  store          = "redis"
  on_store_error = "deny"
}
`, p.redisAddr)
			route.WriteString("  rate_limit = \"bench\"\n")
		}
	}
	return fmt.Sprintf(`gateway {
  address          = %q
  shutdown_timeout = "2s"
}

admin {
  address = %q
}

log {
  level = "info"
%s}
%s
service "backend" {
%s%s}

route "bench" {
  methods = ["GET"]
  path    = "/bench"
  service = "backend"
%s}
`, p.addr, p.admin, p.logBlock, top.String(), instances, service.String(), route.String())
}

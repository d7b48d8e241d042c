package main

import (
	"bufio"
	"slices"
	"strings"
	"testing"

	"github.com/infinityxone/gateway/gateway/config"
)

func TestSelectTargets(t *testing.T) {
	all := []string{"direct", "floor", "gateway-log-off", "gateway-nethttp", "gateway-log-on", "gateway-jwt", "gateway-breaker-retry", "gateway-redis-limit", "gateway-full", "gateway-trace-off", "gateway-trace-on", "gateway-mesh"}
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"all", all, false},
		{"core", []string{"direct", "floor", "gateway-log-off", "gateway-nethttp", "gateway-log-on"}, false},
		{"features", []string{"floor", "gateway-log-off", "gateway-jwt", "gateway-breaker-retry", "gateway-redis-limit", "gateway-full", "gateway-trace-off", "gateway-trace-on", "gateway-mesh"}, false},
		{"tracing", []string{"floor", "gateway-log-off", "gateway-trace-off", "gateway-trace-on"}, false},
		{"gateway-trace-on", []string{"floor", "gateway-log-off", "gateway-trace-on"}, false},
		{"gateway-mesh", []string{"floor", "gateway-log-off", "gateway-mesh"}, false},
		// The floor always; the plain gateway with any feature row; report order kept.
		{"gateway-jwt", []string{"floor", "gateway-log-off", "gateway-jwt"}, false},
		{"gateway-redis-limit, direct", []string{"direct", "floor", "gateway-log-off", "gateway-redis-limit"}, false},
		{"gateway-log-on", []string{"floor", "gateway-log-on"}, false},
		{"floor,floor", []string{"floor"}, false},
		{"gateway-jwtt", nil, true},
		{" , ", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := selectTargets(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			var keys []string
			for _, s := range got {
				keys = append(keys, s.key)
			}
			if !slices.Equal(keys, tt.want) {
				t.Errorf("got %q, want %q", keys, tt.want)
			}
		})
	}
}

// TestGatewayConfigs: every gateway target's config passes the gateway's own validator
// and carries the blocks its features need.
func TestGatewayConfigs(t *testing.T) {
	for _, spec := range allTargets() {
		if spec.kind != kindGateway {
			continue
		}
		t.Run(spec.key, func(t *testing.T) {
			text := gatewayConfig(gwParams{addr: "127.0.0.1:18080", admin: "127.0.0.1:19901", backend: "127.0.0.1:18081",
				logBlock: spec.logBlock, features: spec.features,
				jwtSecret: strings.Repeat("s", 64), redisAddr: "127.0.0.1:16379", consulAddr: "127.0.0.1:18500",
				otlpEndpoint: "http://127.0.0.1:14318", serviceName: spec.key})
			cfg, ds := config.ParseWithEnv(map[string][]byte{spec.key + ".hcl": []byte(text)}, func(string) (string, bool) { return "", false })
			if len(ds) > 0 {
				t.Fatalf("config does not validate: %v\n%s", ds, text)
			}
			if len(cfg.Routes) != 1 || cfg.Routes[0].Path != "/bench" || cfg.Routes[0].Service != "backend" {
				t.Fatalf("routes = %+v", cfg.Routes)
			}
			rt, svc := cfg.Routes[0], cfg.Services[0]
			has := func(f string) bool { return slices.Contains(spec.features, f) }
			if got := rt.JWT == "bench" && slices.Equal(rt.Roles, []string{"r"}); got != has(featJWT) {
				t.Errorf("jwt on route = %v, want %v", got, has(featJWT))
			}
			if got := svc.Retry != nil && svc.CircuitBreaker != nil; got != has(featResilience) {
				t.Errorf("retry and circuit_breaker = %v, want %v", got, has(featResilience))
			}
			if got := rt.RateLimit == "bench" && cfg.Redis != nil && cfg.Redis.Address == "127.0.0.1:16379"; got != has(featRedisLimit) {
				t.Errorf("redis rate limit = %v, want %v", got, has(featRedisLimit))
			}
			if has(featRedisLimit) {
				p := cfg.RateLimits[0]
				if p.Store != "redis" || p.OnStoreError != "deny" || p.KeyKind != "client_ip" || p.Requests < 1000000 {
					t.Errorf("rate_limit = %+v", p)
				}
			}
			if got := svc.Consul != nil && svc.Consul.Connect && cfg.Connect != nil && cfg.Consul.Address == "127.0.0.1:18500"; got != has(featMesh) {
				t.Errorf("mesh = %v, want %v", got, has(featMesh))
			}
			if tc := cfg.Tracing; tracing(spec.features) != (tc != nil) {
				t.Errorf("tracing block = %+v, want one: %v", tc, tracing(spec.features))
			} else if tc != nil {
				want := 0.0
				if has(featTrace1) {
					want = 1
				}
				if tc.Endpoint != "http://127.0.0.1:14318" || tc.SampleRatio != want || tc.ServiceName != spec.key {
					t.Errorf("tracing = %+v, want endpoint http://127.0.0.1:14318, sample_ratio %v, service_name %s", tc, want, spec.key)
				}
			}
			if got, want := cfg.Log.AccessLog, strings.Contains(spec.logBlock, "true"); got != want {
				t.Errorf("access_log = %v, want %v", got, want)
			}
		})
	}
}

func TestFeatureCheck(t *testing.T) {
	text := `# HELP gateway_jwt_validations_total Token validations by provider and result.
# TYPE gateway_jwt_validations_total counter
gateway_jwt_validations_total{provider="bench",result="ok"} 1234
gateway_jwt_validations_total{provider="bench",result="expired"} 2
gateway_ratelimit_decisions_total{policy="bench",result="allowed"} 5000
gateway_ratelimit_decisions_total{policy="bench",result="error"} 0
gateway_ratelimit_decisions_total{policy="bench",result="limited"} 3
gateway_upstream_retries_total{service="backend"} 0
gateway_circuit_breaker_state{instance="127.0.0.1:1",service="backend"} 0
gateway_circuit_breaker_transitions_total{instance="127.0.0.1:1",service="backend",to="open"} 1
gateway_tracing_spans_dropped_total{reason="queue_full"} 5
gateway_tracing_spans_dropped_total{reason="export_failed"} 2
process_cpu_seconds_total 1.5e+01
`
	m, err := parseMetrics(bufio.NewScanner(strings.NewReader(text)))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.sum("process_cpu_seconds_total"); got != 15 {
		t.Errorf("process_cpu_seconds_total = %v, want 15", got)
	}
	tests := []struct {
		feature, want string
	}{
		{featJWT, "JWT validations ok 1234, other 2"},
		{featRedisLimit, "rate-limit decisions allowed 5000, limited 3, error 0"},
		{featResilience, "retries 0, breaker transitions 1, breakers open or half-open 0"},
		{featTrace1, "spans dropped 7 (queue full 5, export failed 2)"},
	}
	for _, tt := range tests {
		if got := featureCheck([]string{tt.feature}, m); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.feature, got, tt.want)
		}
	}
}

func TestRoundRatios(t *testing.T) {
	rr := func(round int, rps float64) roundResult {
		return roundResult{round: round, wrk: wrkResult{ReqPerSec: rps}}
	}
	base := []roundResult{rr(1, 100), rr(2, 200), rr(3, 100)}
	feat := []roundResult{rr(1, 90), rr(2, 190), rr(3, 80)}
	lo, hi := roundRatios(feat, base)
	if lo != 0.8 || hi != 0.95 {
		t.Errorf("got %v–%v, want 0.8–0.95", lo, hi)
	}
}

func TestRoundCPURatios(t *testing.T) {
	rr := func(round int, us float64) roundResult { return roundResult{round: round, proxyUS: us} }
	base := []roundResult{rr(1, 20), rr(2, 40), rr(3, 10)}
	feat := []roundResult{rr(1, 22), rr(2, 60), rr(3, 12), rr(4, 99)} // round 4 has no base run
	med, lo, hi := roundCPURatios(feat, base)
	if med != 1.2 || lo != 1.1 || hi != 1.5 {
		t.Errorf("got median %v, %v–%v; want 1.2, 1.1–1.5", med, lo, hi)
	}
	if med, lo, hi := roundCPURatios(feat, nil); med != 0 || lo != 0 || hi != 0 {
		t.Errorf("no base: got %v, %v, %v", med, lo, hi)
	}
}

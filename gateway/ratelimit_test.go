package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/testenv"
)

const rateConfig = `
redis {
  address = env("REDIS")
  timeout = "1s" # the tests are about sharing and failure modes, not latency: a loaded machine must not flip decisions
}
rate_limit "shared" {
  requests = 20
  period   = "1m"
  key      = "header:X-Client"
}
rate_limit "deny" {
  requests       = 1000
  period         = "1m"
  on_store_error = "deny"
}
rate_limit "allow" {
  requests       = 1000
  period         = "1m"
  on_store_error = "allow"
}
rate_limit "local" {
  requests          = 6
  period            = "1m"
  on_store_error    = "local"
  expected_replicas = 3
}
rate_limit "mem" {
  algorithm = "sliding_window"
  requests  = 3
  period    = "1m"
  key       = "route"
  store     = "memory"
}
service "a" {
  instance { address = env("A") }
}
route "shared" {
  path = "/shared"
  service = "a"
  rate_limit = "shared"
}
route "deny" {
  path = "/deny"
  service = "a"
  rate_limit = "deny"
}
route "allow" {
  path = "/allow"
  service = "a"
  rate_limit = "allow"
}
route "local" {
  path = "/local"
  service = "a"
  rate_limit = "local"
}
route "mem" {
  path = "/mem"
  service = "a"
  rate_limit = "mem"
}`

func TestRateLimitSharedAcrossReplicas(t *testing.T) {
	r := testenv.StartRedis(t)
	b := echoBackend(t, "a")
	vars := map[string]string{"REDIS": r.Addr, "A": hostOf(b.Server)}
	var replicas []*testGateway
	for i := 0; i < 3; i++ {
		replicas = append(replicas, startGateway(t, rateConfig, vars))
	}

	blast := func(client string, n int) (ok, limited int64) {
		var okN, limN atomic.Int64
		var wg sync.WaitGroup
		work := make(chan int)
		for w := 0; w < 12; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					resp, _ := get(t, replicas[i%3].URL+"/shared", "X-Client", client)
					switch resp.StatusCode {
					case 200:
						okN.Add(1)
					case 429:
						limN.Add(1)
					default:
						t.Errorf("status %d", resp.StatusCode)
					}
				}
			}()
		}
		for i := 0; i < n; i++ {
			work <- i
		}
		close(work)
		wg.Wait()
		return okN.Load(), limN.Load()
	}

	if ok, limited := blast("alice", 120); ok != 20 || limited != 100 {
		t.Fatalf("alice: %d allowed, %d limited; want exactly 20 allowed over three replicas", ok, limited)
	}
	// Another key is independent.
	if ok, _ := blast("bob", 30); ok != 20 {
		t.Fatalf("bob: %d allowed", ok)
	}
	// The 429 carries Retry-After and the JSON error; after that long, one more passes.
	resp, body := get(t, replicas[0].URL+"/shared", "X-Client", "alice")
	if resp.StatusCode != 429 || !strings.Contains(body, `"rate_limited"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if ra < 1 || ra > 3 || resp.Header.Get("Ratelimit-Limit") != "20" || resp.Header.Get("Ratelimit-Remaining") != "0" ||
		resp.Header.Get("Ratelimit-Policy") != "20;w=60" {
		t.Fatalf("headers %v", resp.Header)
	}
	if reset, _ := strconv.Atoi(resp.Header.Get("Ratelimit-Reset")); reset < 55 || reset > 60 {
		t.Fatalf("RateLimit-Reset %d, want about a minute for an empty bucket", reset)
	}
	time.Sleep(time.Duration(ra) * time.Second) // the refill itself is what is tested
	resp, _ = get(t, replicas[1].URL+"/shared", "X-Client", "alice")
	if resp.StatusCode != 200 {
		t.Fatalf("after Retry-After: %d", resp.StatusCode)
	}
	if resp, _ := get(t, replicas[2].URL+"/shared", "X-Client", "alice"); resp.StatusCode != 429 {
		t.Fatalf("one token refilled, two requests passed: %d", resp.StatusCode)
	}
	// A successful answer carries the headers too.
	resp, _ = get(t, replicas[0].URL+"/shared", "X-Client", "carol")
	if resp.Header.Get("Ratelimit-Remaining") != "19" || resp.Header.Get("Ratelimit-Reset") == "" {
		t.Fatalf("headers on 200: %v", resp.Header)
	}
}

func TestRateLimitStoreDown(t *testing.T) {
	r := testenv.StartRedis(t)
	b := echoBackend(t, "a")
	g := startGateway(t, rateConfig, map[string]string{"REDIS": r.Addr, "A": hostOf(b.Server)})
	for _, p := range []string{"/deny", "/allow", "/local"} {
		if resp, _ := get(t, g.URL+p); resp.StatusCode != 200 {
			t.Fatalf("%s with redis up: %d", p, resp.StatusCode)
		}
	}
	r.Stop()
	if resp, body := get(t, g.URL+"/deny"); resp.StatusCode != 503 || !strings.Contains(body, "service_unavailable") {
		t.Fatalf("deny: %d %s", resp.StatusCode, body)
	}
	for i := 0; i < 5; i++ {
		resp, _ := get(t, g.URL+"/allow")
		// Nothing was counted: the limit and policy are shown, no remaining or reset.
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("Ratelimit-Limit") == "" || h.Get("Ratelimit-Policy") == "" ||
			h["Ratelimit-Remaining"] != nil || h["Ratelimit-Reset"] != nil {
			t.Fatalf("allow: %d %v", resp.StatusCode, h)
		}
	}
	// local: this replica's share is 6 / 3 = 2 requests per minute, with its counts shown.
	var codes []int
	var remaining []string
	for i := 0; i < 4; i++ {
		resp, _ := get(t, g.URL+"/local")
		codes = append(codes, resp.StatusCode)
		remaining = append(remaining, resp.Header.Get("Ratelimit-Remaining"))
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 || codes[3] != 429 ||
		remaining[0] != "1" || remaining[2] != "0" {
		t.Fatalf("local: %v, RateLimit-Remaining %q", codes, remaining)
	}
	mustContainMetric(t, g, `gateway_ratelimit_decisions_total{policy="deny",result="error"}`)

	// Redis back (empty, scripts gone): decisions resume.
	r.Start()
	eventually(t, 10*time.Second, "redis decisions again", func() bool {
		resp, _ := get(t, g.URL+"/deny")
		return resp.StatusCode == 200 && resp.Header.Get("Ratelimit-Remaining") == "999"
	})
}

func TestRateLimitMemoryRouteKey(t *testing.T) {
	b := echoBackend(t, "a")
	src := rateConfig[strings.Index(rateConfig, `rate_limit "mem"`):]
	src = src[:strings.Index(src, `route "shared"`)] + src[strings.Index(src, `route "mem"`):]
	g := startGateway(t, src, map[string]string{"A": hostOf(b.Server)})
	var codes []int
	for i := 0; i < 5; i++ {
		resp, _ := get(t, g.URL+"/mem", "X-Forwarded-For", strconv.Itoa(i)+".1.1.1")
		codes = append(codes, resp.StatusCode)
	}
	if codes[2] != 200 || codes[3] != 429 || codes[4] != 429 {
		t.Fatalf("route key across clients: %v", codes)
	}
}

func mustContainMetric(t *testing.T, g *testGateway, series string) {
	t.Helper()
	rec := &recorder{header: http.Header{}}
	g.AdminHandler().ServeHTTP(rec, mustRequest(t, "GET", "/metrics"))
	for _, line := range strings.Split(rec.body.String(), "\n") {
		if strings.HasPrefix(line, series+" ") && !strings.HasSuffix(line, " 0") {
			return
		}
	}
	t.Fatalf("no non-zero %s in metrics", series)
}

// TestRateLimitIPv6PrefixAndMaxKeys: IPv6 clients are keyed by their /64 (an address
// rotated within it is the same client), and a memory policy holds at most max_keys
// keys, counting the keys it drops in gateway_ratelimit_evictions_total.
func TestRateLimitIPv6PrefixAndMaxKeys(t *testing.T) {
	b := echoBackend(t, "a")
	src := `
gateway {
  trusted_proxies = ["127.0.0.1/32"]
}
rate_limit "v6" {
  requests = 2
  period   = "1h"
  store    = "memory"
  max_keys = 1
}
service "a" {
  instance { address = env("A") }
}
route "v6" {
  path = "/v6"
  service = "a"
  rate_limit = "v6"
}`
	g := startGateway(t, src, map[string]string{"A": hostOf(b.Server)})
	status := func(client string) int {
		resp, _ := get(t, g.URL+"/v6", "X-Forwarded-For", client)
		return resp.StatusCode
	}
	// Three addresses of one /64: one bucket of 2.
	var codes []int
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"} {
		codes = append(codes, status(ip))
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Fatalf("three addresses of one /64: %v, want 200 200 429", codes)
	}
	// Another /64 is another client; with max_keys = 1 it evicts the first.
	if c := status("2001:db8:1:3::1"); c != 200 {
		t.Fatalf("another /64: %d", c)
	}
	mustContainMetric(t, g, `gateway_ratelimit_evictions_total{policy="v6"}`)
	if c := status("2001:db8:1:2::9"); c != 200 {
		t.Fatalf("the evicted /64 starts over: %d, want 200", c)
	}
}

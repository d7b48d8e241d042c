package gateway

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/infinityxone/gateway/gateway/balancer"
	"github.com/infinityxone/gateway/internal/testenv"
)

// upstreamCount sums gateway_upstream_requests_total for one instance from /metrics,
// and reports whether any of its per-instance series exist.
func upstreamCount(t *testing.T, g *Gateway, instance string) (float64, bool) {
	t.Helper()
	rec := httptest.NewRecorder()
	g.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var sum float64
	found := false
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if !strings.Contains(line, `instance="`+instance+`"`) {
			continue
		}
		found = true
		if strings.HasPrefix(line, "gateway_upstream_requests_total{") {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatal(err)
			}
			sum += v
		}
	}
	return sum, found
}

// Per-instance series survive health flaps (a check going critical and passing again
// must not reset the counters), are deleted only once the instance has stayed away, and
// never come back for a request that finishes after that.
func TestInstanceSeriesFollowTheCatalog(t *testing.T) {
	release := make(chan struct{})
	slow := newCueBackend(t, "slow", 200)
	fast := newCueBackend(t, "fast", 200)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	g := startGatewayClock(t, `
log { format = "json" }
service "a" {
  instance { address = env("A") }
  circuit_breaker { failure_threshold = 3 }
}
route "plain" {
  path    = "/plain"
  service = "a"
}`, map[string]string{"A": hostOf(fast.Server)}, clock)
	svc := g.Service("a")
	a, b := hostOf(fast.Server), hostOf(slow.Server)
	set := func(addrs ...string) {
		ins := make([]balancer.Instance, len(addrs))
		for i, ad := range addrs {
			ins[i] = balancer.Instance{ID: ad, Address: ad}
		}
		svc.UpdateInstances(g.events, ins)
	}
	send := func(n int) {
		for i := 0; i < n; i++ {
			if resp, _ := get(t, g.URL+"/plain"); resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
	}

	send(5)
	for flap := 0; flap < 3; flap++ { // critical, then passing again
		set()
		set(a)
		send(5)
	}
	if n, _ := upstreamCount(t, g.Gateway, a); n != 20 {
		t.Fatalf("after 3 flaps: %v upstream requests counted for %s, want 20", n, a)
	}

	// An instance that stays away is forgotten once the retention passes.
	set(b)
	clock.Add(seriesRetention + time.Second)
	set(b) // any later update sweeps
	if _, found := upstreamCount(t, g.Gateway, a); found {
		t.Fatalf("series of %s kept after it left for good", a)
	}

	// A request in flight when its instance leaves for good does not bring the series
	// back when it ends.
	gate := make(chan struct{})
	slow.gate.Store(&gate)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(g.URL + "/plain")
		if err == nil {
			resp.Body.Close()
		}
	}()
	eventually(t, 5*time.Second, "the slow request", func() bool { return slow.held.Load() == 1 })
	set(a)
	clock.Add(seriesRetention + time.Second)
	set(a)
	if _, found := upstreamCount(t, g.Gateway, b); found {
		t.Fatalf("series of %s kept after it left for good", b)
	}
	close(gate)
	<-done
	close(release)
	if _, found := upstreamCount(t, g.Gateway, b); found {
		t.Fatalf("series of %s came back after an in-flight request ended", b)
	}
}

// With a real Consul agent: an instance whose check flaps keeps its upstream counters,
// so their sum stays equal to the requests sent.
func TestConsulFlapKeepsInstanceSeries(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := consulClient(t, agent.Addr)
	a, b := echoBackend(t, "a"), echoBackend(t, "b")
	g, _, _, _ := runGateway(t, consulConfig, map[string]string{"CONSUL": agent.Addr})
	url := "http://" + g.Addr() + "/x"
	ida := registerTTL(t, c, "echo", a.Server, api.HealthPassing)
	registerTTL(t, c, "echo", b.Server, api.HealthPassing)
	eventually(t, 10*time.Second, "both instances in rotation", func() bool { return g.Service("echo").Set.Len() == 2 })
	sent := 0
	for flap := 0; flap < 5; flap++ {
		backendsSeen(t, url, 10)
		sent += 10
		setTTL(t, c, ida, api.HealthCritical)
		eventually(t, 10*time.Second, "a leaves", func() bool { return g.Service("echo").Set.Len() == 1 })
		backendsSeen(t, url, 4)
		sent += 4
		setTTL(t, c, ida, api.HealthPassing)
		eventually(t, 10*time.Second, "a returns", func() bool { return g.Service("echo").Set.Len() == 2 })
	}
	na, _ := upstreamCount(t, g, hostOf(a.Server))
	nb, _ := upstreamCount(t, g, hostOf(b.Server))
	if int(na+nb) != sent || int(na) != int(a.hits.Load()) {
		t.Fatalf("upstream counters a=%v b=%v (sum %v) for %d requests (a served %d)", na, nb, na+nb, sent, a.hits.Load())
	}
}

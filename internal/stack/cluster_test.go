package stack_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/stack"
)

// TestStackCluster runs the stack in cluster mode (what `make stack
// STACK_FLAGS=-cluster` runs): three Consul servers with a client agent, a
// six-node Redis Cluster, and checks that the gateways route through the client
// agent's catalog and share one rate limit through the cluster.
func TestStackCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	services := stack.DefaultServices()
	for i := range services {
		services[i].Instances = 1
	}
	began := time.Now()
	s, err := stack.Start(ctx, stack.Options{
		Cluster:  true,
		Gateways: 2,
		Services: services,
		Env:      []string{"ORDERS_RATE_LIMIT=" + strconv.Itoa(rateLimit), "ORDERS_RATE_PERIOD=1h", "GATEWAY_DEREGISTER_DELAY=0s"},
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			ps := append(append([]*proc.Process{s.Consul}, s.ConsulServers...), s.RedisNodes...)
			for _, g := range s.Gateways {
				ps = append(ps, g.Process)
			}
			for _, p := range ps {
				t.Logf("--- %s log (end):\n%s", p.Name, p.Tail(8<<10))
			}
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	t.Logf("stack up in %v", time.Since(began).Round(time.Millisecond))
	if len(s.ConsulServers) != 3 || len(s.RedisNodes) != 6 || s.Redis != nil {
		t.Fatalf("topology: %d consul servers, %d redis nodes", len(s.ConsulServers), len(s.RedisNodes))
	}
	cfg, err := os.ReadFile(filepath.Join(s.ConfigDir, "gateway.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `addresses = ["`+strings.Join(s.RedisAddrs(), `", "`)+`"]`) {
		t.Fatalf("the replicas' redis block does not list the cluster's nodes:\n%s", cfg)
	}
	var desc strings.Builder
	s.Describe(&desc)
	if !strings.Contains(desc.String(), "consul-server-3") || !strings.Contains(desc.String(), "redis       cluster ") {
		t.Fatalf("Describe:\n%s", desc.String())
	}

	c := newClient()
	for _, g := range s.Gateways {
		if r := c.do(t, http.MethodGet, g.URL("/api/users/1"), nil); r.status != http.StatusOK {
			t.Fatalf("%s /api/users/1: %d %s", g.Name, r.status, r.body)
		}
	}
	// A replica decides through Redis once its cluster client has warmed up
	// (until then on_store_error = "allow" lets requests through).
	warm := bearer(token(t, s, "warm-up"))
	for _, g := range s.Gateways {
		waitFor(t, 30*time.Second, g.Name+" decides through the Redis Cluster", func() error {
			if r := c.request(http.MethodGet, g.URL("/api/orders/1"), warm); r.err != nil {
				return r.err
			}
			if n := metric(t, c, g, `gateway_ratelimit_decisions_total{policy="per_user",result="allowed"}`); n == 0 {
				return errors.New("no decision from Redis yet")
			}
			return nil
		})
	}
	t.Logf("decisions through the cluster %v after the start", time.Since(began).Round(time.Millisecond))
	tok := token(t, s, "cluster-limit")
	storeErrors := func() (n float64) {
		for _, g := range s.Gateways {
			n += metric(t, c, g, `gateway_ratelimit_decisions_total{policy="per_user",result="error"}`)
		}
		return n
	}
	errors0 := storeErrors()
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range 3 * rateLimit {
		wg.Go(func() {
			r := c.request(http.MethodGet, s.Gateways[i%2].URL("/api/orders/1"), bearer(tok))
			mu.Lock()
			defer mu.Unlock()
			if r.err != nil {
				t.Error(r.err)
			}
			codes[r.status]++
		})
	}
	wg.Wait()
	// deploy/gateway.hcl gives Redis 50 ms and lets requests through when it
	// fails: on a machine too loaded for that, exactness holds for the decisions
	// Redis made.
	if errs := int(storeErrors() - errors0); errs > 0 {
		t.Logf("%d decisions missed the 50 ms timeout (on_store_error = allow)", errs)
		if codes[http.StatusOK]-errs > rateLimit || codes[http.StatusOK]+codes[http.StatusTooManyRequests] != 3*rateLimit {
			t.Fatalf("statuses %v with %d store errors; want at most %d allowed by Redis", codes, errs, rateLimit)
		}
		return
	}
	if codes[http.StatusOK] != rateLimit || codes[http.StatusTooManyRequests] != 2*rateLimit {
		t.Fatalf("statuses %v; want %d allowed and the rest limited, shared through the Redis Cluster", codes, rateLimit)
	}
}

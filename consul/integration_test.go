package consul

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/internal/testenv"
)

// Tests in this file run against a real `consul agent -dev` from internal/testenv.

const waitLong = 15 * time.Second // bound on anything that should take milliseconds to a few seconds

// testLogger logs to the test's output, so a failing test shows the watcher's events.
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// agentClient returns an API client for addr.
func agentClient(t testing.TB, addr string) *api.Client {
	t.Helper()
	c, err := NewClient(Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// registerTTL registers an instance whose health is a TTL check the test sets.
func registerTTL(t testing.TB, c *api.Client, svc *api.AgentServiceRegistration) {
	t.Helper()
	svc.Check = &api.AgentServiceCheck{CheckID: "ttl:" + svc.ID, TTL: "10m", Status: api.HealthPassing}
	if err := c.Agent().ServiceRegister(svc); err != nil {
		t.Fatalf("register %s: %v", svc.ID, err)
	}
}

// setTTL turns an instance's TTL check passing or critical.
func setTTL(t testing.TB, c *api.Client, id, status string) {
	t.Helper()
	if err := c.Agent().UpdateTTL("ttl:"+id, "", status); err != nil {
		t.Fatalf("update TTL of %s: %v", id, err)
	}
}

// startWatch runs a watcher with a recorder as sink and observer.
func startWatch(t testing.TB, h HealthAPI, opts WatchOptions) (*Watcher, *recorder) {
	t.Helper()
	rec := &recorder{}
	opts.Sink, opts.Observer = rec, rec
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	w, err := NewWatcher(h, opts)
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	return w, rec
}

// waitIDs waits until the sink's last list has exactly the IDs want, in order.
func waitIDs(t testing.TB, rec *recorder, want ...string) []Instance {
	t.Helper()
	var got []Instance
	eventually(t, waitLong, "instances "+strings.Join(want, ","), func() bool {
		var ok bool
		got, ok = rec.last()
		return ok && slices.Equal(ids(got), nonNil(want))
	})
	return got
}

// TestAgent runs the watcher and registrar scenarios that can share one agent;
// each uses its own service names.
func TestAgent(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := agentClient(t, agent.Addr)

	t.Run("follows health checks", func(t *testing.T) {
		registerTTL(t, c, &api.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "127.0.0.1", Port: 9001})
		registerTTL(t, c, &api.AgentServiceRegistration{ID: "web-2", Name: "web", Port: 9002, // no address: the node's
			Weights: &api.AgentWeights{Passing: 3, Warning: 1}, Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}})
		w, rec := startWatch(t, c.Health(), WatchOptions{Service: "web", WaitTime: 10 * time.Second})

		got := waitIDs(t, rec, "web-1", "web-2")
		want := []Instance{
			{ID: "web-1", Node: agent.Node, Address: "127.0.0.1", Port: 9001, Weight: 1, Tags: []string{}, Meta: map[string]string{}},
			{ID: "web-2", Node: agent.Node, Address: "127.0.0.1", Port: 9002, Weight: 3, Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}},
		}
		if !slices.EqualFunc(got, want, Instance.equal) {
			t.Fatalf("instances =\n%+v\nwant\n%+v", got, want)
		}
		select {
		case <-w.Ready():
		default:
			t.Fatal("not ready after the first answer")
		}

		setTTL(t, c, "web-1", api.HealthCritical)
		waitIDs(t, rec, "web-2")
		setTTL(t, c, "web-1", api.HealthPassing)
		waitIDs(t, rec, "web-1", "web-2")
		if err := c.Agent().ServiceDeregister("web-2"); err != nil {
			t.Fatal(err)
		}
		waitIDs(t, rec, "web-1")
		setTTL(t, c, "web-1", api.HealthCritical)
		waitIDs(t, rec) // an empty answer is an answer

		updates, errs, _, _, ready := rec.snapshot()
		if len(errs) != 0 || ready != 1 {
			t.Fatalf("errors %v, ready %d", errs, ready)
		}
		for i := 1; i < len(updates); i++ {
			if equalInstances(updates[i-1], updates[i]) {
				t.Fatalf("update %d repeats the previous list %v", i, ids(updates[i]))
			}
		}
	})

	t.Run("tags filter as has-all", func(t *testing.T) {
		for _, r := range []struct {
			id   string
			tags []string
		}{{"users-a", []string{"v1", "blue"}}, {"users-b", []string{"v1"}}, {"users-c", []string{"blue"}}, {"users-d", []string{"green", "blue", "v1"}}} {
			registerTTL(t, c, &api.AgentServiceRegistration{ID: r.id, Name: "users", Port: 8000, Tags: r.tags})
		}
		_, both := startWatch(t, c.Health(), WatchOptions{Service: "users", Tags: []string{"v1", "blue"}, Label: "users-v1-blue"})
		_, one := startWatch(t, c.Health(), WatchOptions{Service: "users", Tags: []string{"blue"}})
		_, all := startWatch(t, c.Health(), WatchOptions{Service: "users"})
		waitIDs(t, both, "users-a", "users-d")
		waitIDs(t, one, "users-a", "users-c", "users-d")
		waitIDs(t, all, "users-a", "users-b", "users-c", "users-d")
		if !both.labels["users-v1-blue"] {
			t.Fatalf("labels %v", both.labels)
		}
	})

	t.Run("connect proxies are skipped", func(t *testing.T) {
		registerTTL(t, c, &api.AgentServiceRegistration{ID: "api-1", Name: "api", Port: 7001})
		err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: "api-1-proxy", Name: "api", Kind: api.ServiceKindConnectProxy, Port: 21000,
			Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: "api", DestinationServiceID: "api-1", LocalServicePort: 7001},
		})
		if err != nil {
			t.Fatal(err)
		}
		entries, _, err := c.Health().Service("api", "", true, nil)
		if err != nil || len(entries) != 2 {
			t.Fatalf("health API shows %d entries (%v); the test needs the proxy listed under the service's name", len(entries), err)
		}
		_, rec := startWatch(t, c.Health(), WatchOptions{Service: "api"})
		waitIDs(t, rec, "api-1")
	})

	t.Run("registrar", func(t *testing.T) {
		var ready atomic.Bool
		ready.Store(true)
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/readyz" && ready.Load() {
				return
			}
			http.Error(w, "draining", http.StatusServiceUnavailable)
		}))
		defer backend.Close()
		port := backend.Listener.Addr().(*net.TCPAddr).Port

		reg := NewRegistrar(c.Agent(), testLogger(t))
		err := reg.Register(t.Context(), Registration{
			Service: "gateway", Address: "127.0.0.1", Port: port, Tags: []string{"edge"},
			CheckURL: backend.URL + "/readyz", Interval: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		id := reg.ID()
		if want := ServiceID("gateway", "127.0.0.1", port); id != want {
			t.Fatalf("ID = %q, want %q", id, want)
		}
		passing := func() []string {
			entries, _, err := c.Health().Service("gateway", "", true, nil)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, e := range entries {
				out = append(out, e.Service.ID)
			}
			return out
		}
		eventually(t, waitLong, "the registration passing its HTTP check", func() bool { return slices.Equal(passing(), []string{id}) })

		ready.Store(false) // /readyz answers 503: the check turns critical
		eventually(t, waitLong, "the registration leaving the passing list", func() bool { return len(passing()) == 0 })
		ready.Store(true)
		eventually(t, waitLong, "the registration passing again", func() bool { return len(passing()) == 1 })

		if err := reg.Deregister(t.Context()); err != nil {
			t.Fatal(err)
		}
		entries, _, err := c.Health().Service("gateway", "", false, nil) // passing or not
		if err != nil || len(entries) != 0 {
			t.Fatalf("after Deregister the health API lists %d entries (%v)", len(entries), err)
		}
		if reg.ID() != "" {
			t.Fatalf("ID after Deregister = %q", reg.ID())
		}
		if err := reg.Deregister(t.Context()); err != nil {
			t.Fatalf("second Deregister = %v", err)
		}
	})

	t.Run("idle cost", func(t *testing.T) {
		// The Consul requests of two idle watchers with a 2s wait, counted by a
		// proxy in front of the agent, over a 6s stretch: one blocking call per
		// watcher per wait period (2 or 3 each), not polling.
		proxy := newCountingProxy(t, agent.Addr)
		pc := agentClient(t, proxy.addr())
		for _, s := range []string{"idle-a", "idle-b"} {
			registerTTL(t, c, &api.AgentServiceRegistration{ID: s + "-1", Name: s, Port: 9000})
		}
		var recs []*recorder
		for _, s := range []string{"idle-a", "idle-b"} {
			_, rec := startWatch(t, pc.Health(), WatchOptions{Service: s, WaitTime: 2 * time.Second})
			waitIDs(t, rec, s+"-1")
			recs = append(recs, rec)
		}
		// Start counting once both watchers are blocked in their second query.
		eventually(t, waitLong, "both watchers blocking", func() bool {
			return proxy.count("idle-a") >= 2 && proxy.count("idle-b") >= 2
		})
		a0, b0, all0 := proxy.count("idle-a"), proxy.count("idle-b"), proxy.total.Load()
		const idle = 6 * time.Second
		time.Sleep(idle) // the idle stretch being measured
		a, b, all := proxy.count("idle-a")-a0, proxy.count("idle-b")-b0, proxy.total.Load()-all0
		t.Logf("over %v idle with wait 2s: idle-a %d, idle-b %d, all %d requests", idle, a, b, all)
		for name, n := range map[string]int{"idle-a": a, "idle-b": b} {
			if n < 2 || n > 4 {
				t.Errorf("%s: %d queries in %v with a 2s wait; want 2-4", name, n, idle)
			}
		}
		if all != int64(a+b) {
			t.Errorf("%d requests reached Consul, %d of them health queries", all, a+b)
		}
		for _, rec := range recs {
			if updates, _, _, _, _ := rec.snapshot(); len(updates) != 1 {
				t.Errorf("%d sink updates while idle, want just the first", len(updates))
			}
		}
	})
}

// TestWatcherSurvivesAgentRestart stops the agent under a watcher: the last list
// stays (no update at all, certainly not an empty one), errors are reported with
// growing backoff, and a new agent on the same ports is picked up by itself.
func TestWatcherSurvivesAgentRestart(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := agentClient(t, agent.Addr)
	registerTTL(t, c, &api.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 9001})
	const minB, maxB = 50 * time.Millisecond, 400 * time.Millisecond
	w, rec := startWatch(t, c.Health(), WatchOptions{Service: "web", WaitTime: 30 * time.Second, MinBackoff: minB, MaxBackoff: maxB})
	before := waitIDs(t, rec, "web-1")
	lastOK := w.LastSuccess()

	agent.Stop()
	eventually(t, waitLong, "six failed queries", func() bool {
		_, errs, _, _, _ := rec.snapshot()
		return len(errs) >= 6
	})
	updates, errs, retries, _, _ := rec.snapshot()
	if len(updates) != 1 {
		t.Fatalf("%d sink updates while Consul was down (last %v), want none after the first", len(updates)-1, ids(updates[len(updates)-1]))
	}
	if got := w.Instances(); !slices.EqualFunc(got, before, Instance.equal) {
		t.Fatalf("Instances() = %v during the outage, want the last list", ids(got))
	}
	if w.Err() == nil || errors.Is(w.Err(), ErrACL) || !w.LastSuccess().Equal(lastOK) {
		t.Fatalf("Err() = %v, LastSuccess moved: %v", w.Err(), !w.LastSuccess().Equal(lastOK))
	}
	for i, d := range retries {
		ceiling := min(maxB, minB<<i)
		if d < ceiling/2 || d > ceiling {
			t.Errorf("retry %d after %v: waited %v, want %v-%v", i+1, errs[i], d, ceiling/2, ceiling)
		}
	}

	agent.Start() // fresh state, same ports
	c = agentClient(t, agent.Addr)
	registerTTL(t, c, &api.AgentServiceRegistration{ID: "web-3", Name: "web", Port: 9003})
	waitIDs(t, rec, "web-3")
	if w.Err() != nil || !w.LastSuccess().After(lastOK) {
		t.Fatalf("after recovery Err() = %v, LastSuccess %v (was %v)", w.Err(), w.LastSuccess(), lastOK)
	}
}

// A Consul server that restarts answers default-mode reads for a moment from a state
// that has not caught up with its log (an empty list, with a known leader). The watcher
// must never hand that on: across restarts of a persistent server its list of a service
// that never changed is never anything but that service.
func TestWatcherNeverSeesAServerCatchingUp(t *testing.T) {
	agent := testenv.StartConsulServer(t)
	c := agentClient(t, agent.Addr)
	// No check: a restored check starts critical, which would be a real change.
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 9001}); err != nil {
		t.Fatal(err)
	}
	w, rec := startWatch(t, c.Health(), WatchOptions{Service: "web", WaitTime: 30 * time.Second, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	waitIDs(t, rec, "web-1")
	for round := 1; round <= 4; round++ {
		last := w.LastSuccess()
		agent.Stop()
		eventually(t, waitLong, "a failed query", func() bool { return w.Err() != nil })
		agent.Start()
		eventually(t, waitLong, "an answer after the restart", func() bool { return w.LastSuccess().After(last) && w.Err() == nil })
	}
	updates, _, _, _, _ := rec.snapshot()
	for i, u := range updates {
		if got := ids(u); !slices.Equal(got, []string{"web-1"}) {
			t.Errorf("update %d: %v, want [web-1] throughout", i, got)
		}
	}
}

// countingProxy is a reverse proxy in front of an agent that counts the requests
// it forwards, health queries by service, and knows how many are in flight.
type countingProxy struct {
	srv      *httptest.Server
	total    atomic.Int64
	inFlight atomic.Int64
	mu       sync.Mutex
	health   map[string]int
}

func newCountingProxy(t testing.TB, agentAddr string) *countingProxy {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: agentAddr}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0) // aborted blocking queries are expected
	p := &countingProxy{health: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.total.Add(1)
		if svc, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/"); ok {
			p.mu.Lock()
			p.health[svc]++
			p.mu.Unlock()
		}
		p.inFlight.Add(1)
		defer p.inFlight.Add(-1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *countingProxy) addr() string { return p.srv.Listener.Addr().String() }

func (p *countingProxy) count(service string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health[service]
}

// Keep registers while the agent is still down, and registers again after the agent
// restarts with fresh state.
func TestRegistrarKeep(t *testing.T) {
	agent := testenv.StartConsul(t)
	c, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	listed := func() bool {
		entries, _, err := c.Health().Service("edge", "", false, nil)
		return err == nil && len(entries) == 1
	}
	agent.Stop()
	reg := NewRegistrar(c.Agent(), testLogger(t))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- reg.Keep(ctx, Registration{Service: "edge", Address: "127.0.0.1", Port: 8080}, 100*time.Millisecond)
	}()
	agent.Start()
	eventually(t, waitLong, "registered once the agent is up", listed)
	agent.Stop()
	agent.Start() // a dev agent comes back empty
	eventually(t, waitLong, "registered again after the restart", listed)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := reg.Deregister(t.Context()); err != nil || listed() {
		t.Fatalf("deregister: %v, still listed %v", err, listed())
	}
}

package stack_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/stack"
	"github.com/infinityxone/gateway/jwtauth"
)

// rateLimit is the per-user limit the test runs the stack with (ORDERS_RATE_LIMIT),
// over a period long enough that no token comes back while the test runs.
const rateLimit = 10

// slowConfig adds a route to a test upstream that holds requests until released,
// for the replica-drain case. The upstream registers in Consul like any service.
const slowConfig = `
service "slow" {
  consul {
    name = "slow"
  }
  timeout = "20s"
}

route "slow" {
  path    = "/slow/*"
  service = "slow"
}
`

// TestStack runs the local deployment (Consul, Redis, two echo services with two
// instances each, three gateway replicas on deploy/gateway.hcl) as real processes
// and checks, in order: routing through every replica to every instance; the JWT
// route; one rate limit shared by the replicas through Redis; Redis stopped
// (on_store_error = "allow": requests pass) and started again (limits return); an
// echo instance killed under steady load without a failed request; and a replica
// sent SIGTERM with requests in flight, none of which fails.
func TestStack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	slow := newSlowUpstream(t)

	began := time.Now()
	s, err := stack.Start(ctx, stack.Options{
		ExtraConfig: map[string]string{"slow.hcl": slowConfig},
		Env: []string{
			"ORDERS_RATE_LIMIT=" + strconv.Itoa(rateLimit),
			"ORDERS_RATE_PERIOD=1h",
			"GATEWAY_DEREGISTER_DELAY=1s",
			// The shared-limit checks are about sharing, not latency: a loaded test
			// machine must not turn slow Redis answers into allow decisions.
			"REDIS_TIMEOUT=1s",
		},
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Logf("stack up in %v: %d gateways, %d instances", time.Since(began).Round(time.Millisecond), len(s.Gateways), len(s.Instances))
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range processes(s) {
				t.Logf("--- %s log (end):\n%s", p.Name, p.Tail(12<<10))
			}
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	if len(s.Gateways) != 3 || len(s.ServiceInstances("users")) != 2 || len(s.ServiceInstances("orders")) != 2 {
		t.Fatalf("topology: %d gateways, %d users, %d orders; want 3, 2, 2",
			len(s.Gateways), len(s.ServiceInstances("users")), len(s.ServiceInstances("orders")))
	}
	slow.register(t, s.Consul.Addr)
	c := newClient()
	for _, g := range s.Gateways {
		waitFor(t, 10*time.Second, g.Name+" sees the slow upstream", func() error {
			return wantInstances(c, g, "slow", 1)
		})
	}

	t.Run("every replica reaches every instance", func(t *testing.T) {
		for _, g := range s.Gateways {
			tok := token(t, s, "routing-"+g.Name)
			for _, svc := range []string{"users", "orders"} {
				want := map[string]bool{}
				for _, in := range s.ServiceInstances(svc) {
					want[in.ID] = true
				}
				seen := map[string]bool{}
				for i := 0; i < 8 && len(seen) < len(want); i++ { // 8 < rateLimit
					r := c.do(t, http.MethodGet, g.URL("/api/"+svc+"/42"), bearer(tok))
					if r.status != http.StatusOK {
						t.Fatalf("%s /api/%s/42: %d %s", g.Name, svc, r.status, r.body)
					}
					e := r.echo(t)
					if e.Service != svc || e.Path != "/"+svc+"/42" {
						t.Fatalf("%s /api/%s/42 reached service %q path %q", g.Name, svc, e.Service, e.Path)
					}
					if !want[e.Instance] {
						t.Fatalf("%s /api/%s/42 reached unknown instance %q", g.Name, svc, e.Instance)
					}
					if r.header.Get("X-Request-Id") == "" {
						t.Fatalf("%s: answer without X-Request-Id", g.Name)
					}
					seen[e.Instance] = true
				}
				if len(seen) != len(want) {
					t.Fatalf("%s reached %v of service %s; want all of %v", g.Name, keys(seen), svc, keys(want))
				}
			}
		}
	})

	t.Run("JWT route", func(t *testing.T) {
		good := token(t, s, "alice")
		forged, err := jwtauth.Mint([]byte(strings.Repeat("x", 32)), jwtauth.MintOptions{
			Subject: "alice", TTL: time.Hour, Issuer: s.Issuer, Audience: s.Audience,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range s.Gateways {
			for _, tc := range []struct {
				name   string
				header http.Header
				want   int
			}{
				{"no token", nil, http.StatusUnauthorized},
				{"wrong secret", bearer(forged), http.StatusUnauthorized},
				{"malformed", http.Header{"Authorization": {"Bearer not.a.token"}}, http.StatusUnauthorized},
				{"valid", bearer(good), http.StatusOK},
			} {
				r := c.do(t, http.MethodGet, g.URL("/api/orders/7"), tc.header)
				if r.status != tc.want {
					t.Fatalf("%s %s: status %d, want %d: %s", g.Name, tc.name, r.status, tc.want, r.body)
				}
				if tc.want == http.StatusUnauthorized {
					if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
						t.Fatalf("%s %s: WWW-Authenticate %q", g.Name, tc.name, r.header.Get("WWW-Authenticate"))
					}
					if code := r.errorCode(t); code != "unauthorized" {
						t.Fatalf("%s %s: error code %q", g.Name, tc.name, code)
					}
				}
			}
			// The subject is forwarded, and a client cannot forge the header.
			h := bearer(good)
			h.Set("X-User-Id", "mallory")
			e := c.do(t, http.MethodGet, g.URL("/api/orders/7"), h).echo(t)
			if got := e.Headers["X-User-Id"]; len(got) != 1 || got[0] != "alice" {
				t.Fatalf("%s: upstream got X-User-Id %q, want [alice]", g.Name, got)
			}
		}
		// The users route is public.
		if r := c.do(t, http.MethodGet, s.Gateways[0].URL("/api/users/1"), nil); r.status != http.StatusOK {
			t.Fatalf("public route: %d", r.status)
		}
	})

	t.Run("one rate limit shared by the replicas", func(t *testing.T) {
		tok := token(t, s, "shared-limit")
		const total = 3 * rateLimit
		statuses := make([]int, total)
		var wg sync.WaitGroup
		for i := range total {
			wg.Go(func() {
				g := s.Gateways[i%len(s.Gateways)]
				r := c.request(http.MethodGet, g.URL("/api/orders/1"), bearer(tok))
				if r.err != nil {
					t.Errorf("%s: %v", g.Name, r.err)
				}
				statuses[i] = r.status
				if r.status == http.StatusTooManyRequests {
					if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
						t.Errorf("%s 429 with Retry-After %q", g.Name, r.header.Get("Retry-After"))
					}
					if lim := r.header.Get("RateLimit-Limit"); lim != strconv.Itoa(rateLimit) {
						t.Errorf("%s 429 with RateLimit-Limit %q", g.Name, lim)
					}
				}
			})
		}
		wg.Wait()
		ok, limited := 0, 0
		for _, st := range statuses {
			switch st {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				limited++
			default:
				t.Errorf("unexpected status %d", st)
			}
		}
		if ok != rateLimit || limited != total-rateLimit {
			t.Fatalf("%d requests over %d replicas: %d passed, %d limited; want exactly %d passed (one shared bucket)",
				total, len(s.Gateways), ok, limited, rateLimit)
		}
		// Every replica now sees the same spent bucket.
		for _, g := range s.Gateways {
			if r := c.do(t, http.MethodGet, g.URL("/api/orders/1"), bearer(tok)); r.status != http.StatusTooManyRequests {
				t.Fatalf("%s after the shared bucket was spent: %d, want 429", g.Name, r.status)
			}
		}
	})

	t.Run("Redis down: on_store_error allow", func(t *testing.T) {
		tok := token(t, s, "redis-down")
		for i := range rateLimit {
			if r := c.do(t, http.MethodGet, s.Gateways[i%3].URL("/api/orders/1"), bearer(tok)); r.status != http.StatusOK {
				t.Fatalf("request %d: %d", i, r.status)
			}
		}
		if r := c.do(t, http.MethodGet, s.Gateways[0].URL("/api/orders/1"), bearer(tok)); r.status != http.StatusTooManyRequests {
			t.Fatalf("spent bucket: %d, want 429", r.status)
		}
		s.Redis.Kill()
		// The bucket is spent, but the store is gone: the policy lets requests through.
		for _, g := range s.Gateways {
			for range 3 {
				if r := c.do(t, http.MethodGet, g.URL("/api/orders/1"), bearer(tok)); r.status != http.StatusOK {
					t.Fatalf("%s with Redis down: %d %s; want 200 (on_store_error = allow)", g.Name, r.status, r.body)
				}
			}
			if n := metric(t, c, g, `gateway_ratelimit_decisions_total{policy="per_user",result="error"}`); n < 1 {
				t.Fatalf("%s: %v store errors counted, want some", g.Name, n)
			}
		}
		// Redis back (empty): limits apply again, without restarting a replica.
		if err := s.Redis.Start(ctx); err != nil {
			t.Fatal(err)
		}
		fresh := token(t, s, "redis-back")
		for _, g := range s.Gateways {
			waitFor(t, 15*time.Second, g.Name+" limits again after Redis restarted", func() error {
				r := c.do(t, http.MethodGet, g.URL("/api/orders/1"), bearer(fresh))
				if r.status == http.StatusTooManyRequests {
					return nil
				}
				return fmt.Errorf("status %d", r.status)
			})
		}
	})

	t.Run("instance killed under load", func(t *testing.T) {
		victim := s.ServiceInstances("users")[0]
		survivor := s.ServiceInstances("users")[1]
		load := startLoad(c, s.Gateways, "/api/users/load", nil)
		defer load.stop()
		load.waitOK(t, 100)
		if load.reached(victim.ID) == 0 {
			t.Fatalf("the load never reached %s", victim.ID)
		}
		victim.Kill() // SIGKILL: no deregistration; Consul's check finds it dead
		killed := time.Now()
		for _, g := range s.Gateways {
			waitFor(t, 15*time.Second, g.Name+" drops "+victim.Name, func() error {
				return wantInstances(c, g, "users", 1)
			})
		}
		t.Logf("%s gone from every replica %v after SIGKILL", victim.Name, time.Since(killed).Round(time.Millisecond))
		before := load.okCount()
		load.waitOK(t, before+100)
		load.stop()
		if n := load.failed(); n > 0 {
			t.Fatalf("%d of %d requests failed; first: %s", n, load.okCount()+n, load.firstFailure())
		}
		if load.reached(survivor.ID) == 0 {
			t.Fatalf("no request reached %s", survivor.ID)
		}
		var retries float64
		for _, g := range s.Gateways {
			retries += metric(t, c, g, `gateway_upstream_retries_total{service="users"}`)
		}
		t.Logf("%d requests, none failed (%v retried on the other instance)", load.okCount(), retries)
	})

	t.Run("replica drains on SIGTERM", func(t *testing.T) {
		victim := s.Gateways[len(s.Gateways)-1]
		// Steady load through a client-side balancer that, like the compose file's
		// front load balancer, takes a replica out once its /readyz fails.
		load := startLoad(c, s.Gateways, "/api/users/drain", nil)
		defer load.stop()
		load.waitOK(t, 50)

		const inFlight = 5
		slow.arrived.Store(0)
		results := make(chan result, inFlight)
		for i := range inFlight {
			go func() {
				results <- c.get(victim.URL("/slow/" + strconv.Itoa(i)))
			}()
		}
		waitFor(t, 10*time.Second, "slow requests reach the upstream", func() error {
			if n := slow.arrived.Load(); n < inFlight {
				return fmt.Errorf("%d of %d arrived", n, inFlight)
			}
			return nil
		})
		if err := victim.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, victim.Name+" out of the load's rotation", func() error {
			if load.inRotation(victim) {
				return errors.New("still in rotation")
			}
			return nil
		})
		// After deregister_delay the listener closes: the drain proper, with our
		// requests still in flight.
		waitFor(t, 10*time.Second, victim.Name+" stops accepting", func() error {
			conn, err := net.DialTimeout("tcp", victim.Addr, time.Second)
			if err != nil {
				return nil
			}
			conn.Close()
			return errors.New("still accepting")
		})
		slow.releaseAll()
		for range inFlight {
			r := <-results
			if r.err != nil || r.status != http.StatusOK || r.body != "slow done" {
				t.Fatalf("in-flight request through the draining replica: %d %q %v", r.status, r.body, r.err)
			}
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := victim.Wait(wctx); err != nil {
			t.Fatalf("%s after SIGTERM: %v, want exit status 0", victim.Name, err)
		}
		before := load.okCount()
		load.waitOK(t, before+50)
		load.stop()
		if n := load.failed(); n > 0 {
			t.Fatalf("%d of %d requests failed; first: %s", n, load.okCount()+n, load.firstFailure())
		}
		t.Logf("%d in-flight requests completed; load: %d requests, none failed", inFlight, load.okCount())
	})
}

// processes lists every process of the stack.
func processes(s *stack.Stack) []*proc.Process {
	ps := []*proc.Process{s.Consul}
	if s.Redis != nil {
		ps = append(ps, s.Redis)
	}
	ps = append(ps, s.ConsulServers...)
	ps = append(ps, s.RedisNodes...)
	for _, in := range s.Instances {
		ps = append(ps, in.Process)
		if in.Sidecar != nil {
			ps = append(ps, in.Sidecar)
		}
	}
	for _, g := range s.Gateways {
		ps = append(ps, g.Process)
	}
	return ps
}

// token mints a token for sub that the stack accepts.
func token(t *testing.T, s *stack.Stack, sub string) string {
	t.Helper()
	tok, err := s.Token(context.Background(), sub)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// client sends the test's requests, with keep-alive connections like a real client.
type client struct{ hc *http.Client }

func newClient() *client {
	return &client{hc: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
	}}
}

// result is one answer (or transport error).
type result struct {
	status int
	header http.Header
	body   string
	err    error
}

func (c *client) get(u string) result { return c.request(http.MethodGet, u, nil) }

func (c *client) request(method, u string, h http.Header) result {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return result{err: err}
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

// do sends a request and fails the test on a transport error.
func (c *client) do(t *testing.T, method, u string, h http.Header) result {
	t.Helper()
	r := c.request(method, u, h)
	if r.err != nil {
		t.Fatalf("%s %s: %v", method, u, r.err)
	}
	return r
}

// echoReply is what examples/services/echo answers.
type echoReply struct {
	Service  string              `json:"service"`
	Instance string              `json:"instance"`
	Path     string              `json:"path"`
	Headers  map[string][]string `json:"headers"`
}

func (r result) echo(t *testing.T) echoReply {
	t.Helper()
	var e echoReply
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("not an echo reply: %v: %s", err, r.body)
	}
	return e
}

// errorCode returns the code of a gateway error body.
func (r result) errorCode(t *testing.T) string {
	t.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("not a gateway error body: %v: %s", err, r.body)
	}
	return e.Error.Code
}

// wantInstances returns nil once the replica's /admin/services lists n instances
// of service.
func wantInstances(c *client, g *stack.Gateway, service string, n int) error {
	r := c.get(g.AdminURL("/admin/services"))
	if r.err != nil {
		return r.err
	}
	var svcs []struct {
		Name      string
		Instances []struct{ ID string }
	}
	if err := json.Unmarshal([]byte(r.body), &svcs); err != nil {
		return err
	}
	for _, sv := range svcs {
		if sv.Name == service {
			if len(sv.Instances) != n {
				return fmt.Errorf("%d instances of %s, want %d", len(sv.Instances), service, n)
			}
			return nil
		}
	}
	return fmt.Errorf("no service %s", service)
}

// metric returns the value of one sample in the replica's /metrics.
func metric(t *testing.T, c *client, g *stack.Gateway, sample string) float64 {
	t.Helper()
	r := c.do(t, http.MethodGet, g.AdminURL("/metrics"), nil)
	sc := bufio.NewScanner(strings.NewReader(r.body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", sample, err)
			}
			return f
		}
	}
	t.Fatalf("%s: no sample %s", g.Name, sample)
	return 0
}

// waitFor polls cond until it returns nil, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// load is a bounded steady load (loadWorkers workers, each at most one request per
// loadPace) spread round-robin over the replicas in rotation. A monitor takes a
// replica out of rotation once its /readyz stops answering 200, as the front load
// balancer of docker-compose.yml does.
type load struct {
	c        *client
	gateways []*stack.Gateway
	path     string
	header   http.Header

	out     sync.Map // gateway name -> struct{}: out of rotation
	next    atomic.Uint64
	ok      atomic.Int64
	nfailed atomic.Int64
	mu      sync.Mutex
	first   string
	hits    map[string]int // echo instance -> answers

	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

const (
	loadWorkers = 4
	loadPace    = 4 * time.Millisecond
)

func startLoad(c *client, gws []*stack.Gateway, path string, h http.Header) *load {
	l := &load{c: c, gateways: gws, path: path, header: h, hits: map[string]int{}, done: make(chan struct{})}
	l.wg.Go(l.monitor)
	for range loadWorkers {
		l.wg.Go(l.worker)
	}
	return l
}

func (l *load) inRotation(g *stack.Gateway) bool {
	_, out := l.out.Load(g.Name)
	return !out
}

func (l *load) monitor() {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, g := range l.gateways {
			if !l.inRotation(g) {
				continue
			}
			resp, err := hc.Get(g.AdminURL("/readyz"))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != http.StatusOK {
				l.out.Store(g.Name, struct{}{})
			}
		}
		select {
		case <-l.done:
			return
		case <-tick.C:
		}
	}
}

func (l *load) worker() {
	tick := time.NewTicker(loadPace)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-tick.C:
		}
		g := l.pick()
		if g == nil {
			l.fail("no replica in rotation")
			continue
		}
		r := l.c.request(http.MethodGet, g.URL(l.path), l.header)
		if r.err != nil || r.status != http.StatusOK {
			l.fail(fmt.Sprintf("%s: status %d, error %v, body %.200s", g.Name, r.status, r.err, r.body))
			continue
		}
		var e echoReply
		if err := json.Unmarshal([]byte(r.body), &e); err != nil {
			l.fail(fmt.Sprintf("%s: %v", g.Name, err))
			continue
		}
		l.mu.Lock()
		l.hits[e.Instance]++
		l.mu.Unlock()
		l.ok.Add(1)
	}
}

func (l *load) pick() *stack.Gateway {
	for range len(l.gateways) {
		g := l.gateways[l.next.Add(1)%uint64(len(l.gateways))]
		if l.inRotation(g) {
			return g
		}
	}
	return nil
}

func (l *load) fail(msg string) {
	l.nfailed.Add(1)
	l.mu.Lock()
	if l.first == "" {
		l.first = msg
	}
	l.mu.Unlock()
}

func (l *load) stop() {
	l.stopOnce.Do(func() { close(l.done) })
	l.wg.Wait()
}

func (l *load) okCount() int64 { return l.ok.Load() }
func (l *load) failed() int64  { return l.nfailed.Load() }

func (l *load) firstFailure() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

func (l *load) reached(instance string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hits[instance]
}

// waitOK waits until n requests have succeeded, failing early on a failed one.
func (l *load) waitOK(t *testing.T, n int64) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d successful requests", n), func() error {
		if f := l.failed(); f > 0 {
			t.Fatalf("%d requests failed; first: %s", f, l.firstFailure())
		}
		if got := l.okCount(); got < n {
			return fmt.Errorf("%d so far", got)
		}
		return nil
	})
}

// slowUpstream is a service that holds every request until released; it registers
// in Consul through the agent, as any service would.
type slowUpstream struct {
	srv      *httptest.Server
	arrived  atomic.Int32
	release  chan struct{}
	released sync.Once
}

func newSlowUpstream(t *testing.T) *slowUpstream {
	u := &slowUpstream{release: make(chan struct{})}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.arrived.Add(1)
		select {
		case <-u.release:
			_, _ = io.WriteString(w, "slow done")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		u.releaseAll()
		u.srv.Close()
	})
	return u
}

func (u *slowUpstream) releaseAll() { u.released.Do(func() { close(u.release) }) }

func (u *slowUpstream) register(t *testing.T, consulAddr string) {
	t.Helper()
	cl, err := api.NewClient(&api.Config{Address: consulAddr})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := url.Parse(u.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(addr.Port())
	err = cl.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "slow-1", Name: "slow", Address: addr.Hostname(), Port: port,
	})
	if err != nil {
		t.Fatal(err)
	}
}

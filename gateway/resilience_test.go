package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// cueBackend answers with whatever status it is told to, counting hits.
type cueBackend struct {
	*testServer
	status atomic.Int64
	gate   atomic.Pointer[chan struct{}] // when set, requests wait for it to close
	held   atomic.Int64                  // requests waiting at the gate
}

func newCueBackend(t testing.TB, name string, status int) *cueBackend {
	cb := &cueBackend{testServer: &testServer{}}
	cb.status.Store(int64(status))
	cb.Server = backend(t, func(w http.ResponseWriter, r *http.Request) {
		cb.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if g := cb.gate.Load(); g != nil {
			cb.held.Add(1)
			<-*g
		}
		w.Header().Set("X-Backend", name)
		w.WriteHeader(int(cb.status.Load()))
	})
	return cb
}

// startGatewayClock is startGateway with a breaker clock.
func startGatewayClock(t testing.TB, src string, vars map[string]string, clock *fakeClock) *testGateway {
	t.Helper()
	cfg := parseConfig(t, src, vars)
	acc, app := &syncBuffer{}, &syncBuffer{}
	g, err := New(cfg, Options{Logger: hclog.New(&hclog.LoggerOptions{Output: app}), AccessLog: acc, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	front := http.Server{Handler: g}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = front.Serve(ln) }()
	t.Cleanup(func() { front.Close(); g.closeLogs() })
	return &testGateway{Gateway: g, URL: "http://" + ln.Addr().String(), AccessLog: acc, AppLog: app}
}

const breakerConfig = `
service "a" {
  instance { address = env("A") }
  circuit_breaker {
    failure_threshold  = 3
    open_timeout       = "30s"
    half_open_requests = 2
  }
}
route "plain" {
  path = "/plain"
  service = "a"
}
route "fb" {
  path = "/fb"
  service = "a"
  fallback {
    status = 200
    body   = "cached answer"
  }
}`

func TestCircuitBreaker(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	b := newCueBackend(t, "a", 502)
	g := startGatewayClock(t, breakerConfig, map[string]string{"A": hostOf(b.Server)}, clock)
	var events []BreakerStateChanged
	var mu sync.Mutex
	g.Events().Subscribe(func(e Event) {
		if e, ok := e.(BreakerStateChanged); ok {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}
	})
	state := func() string { return g.serviceInfo()[0].Instances[0].Breaker }

	// 4xx never count.
	b.status.Store(404)
	for i := 0; i < 10; i++ {
		if resp, _ := get(t, g.URL+"/plain"); resp.StatusCode != 404 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if state() != "closed" {
		t.Fatalf("4xx opened the breaker: %s", state())
	}
	// Exactly failure_threshold failures open it.
	b.status.Store(502)
	for i := 0; i < 3; i++ {
		if state() != "closed" {
			t.Fatalf("open after %d failures", i)
		}
		if resp, _ := get(t, g.URL+"/plain"); resp.StatusCode != 502 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if state() != "open" {
		t.Fatalf("state %s after 3 failures", state())
	}
	hits := b.hits.Load()
	resp, body := get(t, g.URL+"/plain")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "30" || !strings.Contains(body, "circuit breaker") {
		t.Fatalf("open: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if resp, body := get(t, g.URL+"/fb"); resp.StatusCode != 200 || body != "cached answer" {
		t.Fatalf("fallback: %d %s", resp.StatusCode, body)
	}
	if b.hits.Load() != hits {
		t.Fatal("an open breaker let a request through")
	}
	clock.Add(10 * time.Second)
	if resp, _ := get(t, g.URL+"/plain"); resp.Header.Get("Retry-After") != "20" {
		t.Fatalf("Retry-After %q, want the time until half-open", resp.Header.Get("Retry-After"))
	}

	// After open_timeout: half-open admits exactly half_open_requests trials.
	clock.Add(20 * time.Second)
	if state() != "half_open" {
		t.Fatalf("state %s after open_timeout", state())
	}
	b.status.Store(200)
	release := make(chan struct{})
	b.gate.Store(&release)
	var wg sync.WaitGroup
	codes := make(chan int, 5)
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(g.URL + "/plain")
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	// Three of the five are refused at once; two reach the instance.
	for i := 0; i < 3; i++ {
		if c := <-codes; c != 503 {
			t.Fatalf("third request in half-open: %d", c)
		}
	}
	eventually(t, 5*time.Second, "two trials at the backend", func() bool { return b.held.Load() == 2 })
	b.gate.Store(nil)
	close(release)
	wg.Wait()
	if c1, c2 := <-codes, <-codes; c1 != 200 || c2 != 200 {
		t.Fatalf("trials: %d %d", c1, c2)
	}
	if state() != "closed" {
		t.Fatalf("state %s after successful trials", state())
	}

	// Failures open it again; a failed trial reopens it.
	b.status.Store(503)
	for i := 0; i < 3; i++ {
		get(t, g.URL+"/plain")
	}
	clock.Add(31 * time.Second)
	get(t, g.URL+"/plain") // trial fails
	if state() != "open" {
		t.Fatalf("state %s after a failed trial", state())
	}

	mu.Lock()
	var seq []string
	for _, e := range events {
		seq = append(seq, e.To)
	}
	mu.Unlock()
	if got := strings.Join(seq, ","); got != "open,half_open,closed,open,half_open,open" {
		t.Fatalf("transitions %s", got)
	}
	mfs, _ := g.metrics.Registry.Gather()
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "gateway_circuit_breaker_state" && mf.GetMetric()[0].GetGauge().GetValue() == 2 {
			found = true
		}
	}
	if !found {
		t.Fatal("gateway_circuit_breaker_state is not 2 (open)")
	}
}

const retryConfig = `
service "a" {
  load_balancer = "round_robin"
  timeout = "2s"
  instance { address = env("A") }
  instance { address = env("B") }
  retry {
    attempts = 3
    backoff = "1ms"
    max_backoff = "5ms"
    budget_ratio = 0.2
    budget_min = 5
  }
}
route "r" {
  path = "/*"
  service = "a"
}`

func TestRetries(t *testing.T) {
	t.Run("a retry lands on a different instance", func(t *testing.T) {
		bad, good := newCueBackend(t, "bad", 503), newCueBackend(t, "good", 200)
		g := startGateway(t, retryConfig, map[string]string{"A": hostOf(bad.Server), "B": hostOf(good.Server)})
		for i := 0; i < 6; i++ {
			resp, _ := get(t, g.URL+"/x")
			if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "good" {
				t.Fatalf("request %d: %d from %q", i, resp.StatusCode, resp.Header.Get("X-Backend"))
			}
		}
		if bad.hits.Load() == 0 || bad.hits.Load() > 6 || good.hits.Load() != 6 {
			t.Fatalf("hits bad=%d good=%d", bad.hits.Load(), good.hits.Load())
		}
	})

	t.Run("a POST whose body reached the upstream is not retried", func(t *testing.T) {
		bad, good := newCueBackend(t, "bad", 502), newCueBackend(t, "good", 200)
		g := startGateway(t, retryConfig, map[string]string{"A": hostOf(bad.Server), "B": hostOf(good.Server)})
		var got502 bool
		for i := 0; i < 4; i++ {
			resp, _ := do(t, "POST", g.URL+"/x", "payload")
			if resp.StatusCode == 502 {
				got502 = true
			}
		}
		if !got502 || bad.hits.Load()+good.hits.Load() != 4 {
			t.Fatalf("got502=%v hits bad=%d good=%d (want exactly one attempt per POST)", got502, bad.hits.Load(), good.hits.Load())
		}
	})

	t.Run("a POST with Idempotency-Key is retried when allowed", func(t *testing.T) {
		bad, good := newCueBackend(t, "bad", 502), newCueBackend(t, "good", 200)
		src := strings.Replace(retryConfig, "budget_min = 5", "budget_min = 5\n    idempotency_key = true", 1)
		g := startGateway(t, src, map[string]string{"A": hostOf(bad.Server), "B": hostOf(good.Server)})
		for i := 0; i < 4; i++ {
			if resp, _ := do(t, "POST", g.URL+"/x", "payload", "Idempotency-Key", "k"); resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
	})

	t.Run("a connect-refused POST is retried", func(t *testing.T) {
		good := newCueBackend(t, "good", 200)
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := ln.Addr().String()
		ln.Close()
		g := startGateway(t, retryConfig, map[string]string{"A": dead, "B": hostOf(good.Server)})
		for i := 0; i < 4; i++ {
			if resp, _ := do(t, "POST", g.URL+"/x", "payload"); resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
	})

	t.Run("the budget bounds retries against a service that always fails", func(t *testing.T) {
		a, b := newCueBackend(t, "a", 503), newCueBackend(t, "b", 503)
		g := startGateway(t, retryConfig, map[string]string{"A": hostOf(a.Server), "B": hostOf(b.Server)})
		const n = 100
		for i := 0; i < n; i++ {
			if resp, _ := get(t, g.URL+"/x"); resp.StatusCode != 503 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		attempts := a.hits.Load() + b.hits.Load()
		if limit := int64(n*1.2) + 5; attempts > limit || attempts <= n {
			t.Fatalf("%d upstream attempts for %d requests; budget allows at most %d", attempts, n, limit)
		}
	})

	t.Run("the route timeout bounds the whole retry sequence", func(t *testing.T) {
		// Each attempt takes 150ms and fails with 503; five attempts would take 750ms,
		// the route allows 400ms.
		var hits atomic.Int64
		slow503 := func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			select {
			case <-time.After(150 * time.Millisecond):
				w.WriteHeader(503)
			case <-r.Context().Done():
			}
		}
		a, b := backend(t, slow503), backend(t, slow503)
		src := strings.Replace(retryConfig, "attempts = 3", "attempts = 5", 1)
		src = strings.Replace(src, `path = "/*"`, "path = \"/*\"\n  timeout = \"400ms\"", 1)
		g := startGateway(t, src, map[string]string{"A": hostOf(a), "B": hostOf(b)})
		start := time.Now()
		resp, _ := get(t, g.URL+"/x")
		took := time.Since(start)
		if resp.StatusCode != 504 && resp.StatusCode != 503 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if took > 400*time.Millisecond+time.Second || hits.Load() > 3 {
			t.Fatalf("%d attempts over %v; the route's 400ms timeout must bound them", hits.Load(), took)
		}
	})
}

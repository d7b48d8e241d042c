package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/jwtauth"
)

// The pipeline benchmarks serve one request at a time through g.ServeHTTP, in process,
// with a minimal ResponseWriter, against a real loopback backend, and report allocs/op
// next to a floor: httputil.ReverseProxy with a tuned Transport and a pooled copy buffer
// (the same floor as bench/e2e). The backend is a raw TCP responder that allocates
// nothing per request, so allocs/op is the proxy side alone: net/http's client
// (Transport.RoundTrip) plus the handler. The server side of net/http (reading the
// client's request) is not in the loop: the request is built once and reset each
// iteration, as a server would hand over a fresh one.
//
//	go test -run='^$' -bench=Pipeline -benchmem ./gateway/
//	go test -run='^$' -bench=Pipeline/plain -memprofile mem.out -memprofilerate=1 ./gateway/
//	go tool pprof -sample_index=alloc_objects -top gateway.test mem.out

// benchBody is what the bench backend answers (the same 29 bytes as bench/e2e's).
const benchBody = "hello from the bench backend\n"

// benchSecret signs the JWT route's token (HS256 needs at least 32 bytes).
const benchSecret = "bench-secret-0123456789abcdef0123456789"

// benchConfig is one gateway with the four routes the benchmarks compare. Every route
// reaches the same backend; the access log is off, as in the e2e harness.
const benchConfig = `
log {
  access_log = false
}

jwt "bench" {
  algorithms = ["HS256"]
  secret     = env("JWT_SECRET")
}

rate_limit "mem" {
  algorithm = "token_bucket"
  requests  = 1000000
  period    = "1s"
  key       = "client_ip"
  store     = "memory"
}

service "plain" {
  instance {
    address = "%[1]s"
  }
}

service "resilient" {
  instance {
    address = "%[1]s"
  }
  retry {
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
}

route "plain" {
  methods = ["GET"]
  path    = "/plain"
  service = "plain"
}

route "jwt" {
  methods = ["GET"]
  path    = "/jwt"
  service = "plain"
  jwt     = "bench"
  roles   = ["r"]
}

route "breaker-retry" {
  methods = ["GET"]
  path    = "/breaker-retry"
  service = "resilient"
}

route "ratelimit-memory" {
  methods    = ["GET"]
  path       = "/ratelimit-memory"
  service    = "plain"
  rate_limit = "mem"
}
`

// BenchmarkPipeline: ns and allocations per proxied request for the floor, net/http's
// client alone, and the gateway's routes (plain, JWT HS256, circuit breaker + retry with
// nothing failing, memory token bucket).
func BenchmarkPipeline(b *testing.B) {
	addr := startRawBackend(b)
	g := newBenchGateway(b, addr, Options{})
	tok, err := jwtauth.Mint([]byte(benchSecret), jwtauth.MintOptions{Subject: "bench", Roles: []string{"r"}, TTL: 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	client := http.Header{"User-Agent": {"wrk"}, "Accept": {"*/*"}}
	withToken := http.Header{"User-Agent": {"wrk"}, "Accept": {"*/*"}, "Authorization": {"Bearer " + tok}}

	b.Run("floor-reverseproxy", func(b *testing.B) {
		benchServe(b, newFloorProxy(addr), "/plain", client)
	})
	pool := g.Service("plain").transport.(*h1Pool)
	b.Run("nethttp-roundtrip", func(b *testing.B) {
		benchRoundTrip(b, pool.fallback, addr)
	})
	b.Run("h1pool-roundtrip", func(b *testing.B) {
		benchRoundTrip(b, pool, addr)
	})
	b.Run("gateway-plain-nethttp", func(b *testing.B) {
		benchServe(b, newBenchGateway(b, addr, Options{UpstreamNetHTTP: true}), "/plain", client)
	})
	tests := []struct {
		name string
		path string
		hdr  http.Header
	}{
		{"gateway-plain", "/plain", client},
		{"gateway-jwt-hs256", "/jwt", withToken},
		{"gateway-breaker-retry", "/breaker-retry", client},
		{"gateway-ratelimit-memory", "/ratelimit-memory", client},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			benchServe(b, g, tt.path, tt.hdr)
		})
	}
}

// newBenchGateway builds the gateway of benchConfig with a silent logger (and opts'
// other options); it is closed when the benchmark ends.
func newBenchGateway(b *testing.B, backendAddr string, opts Options) *Gateway {
	b.Helper()
	cfg := parseConfig(b, fmt.Sprintf(benchConfig, backendAddr), map[string]string{"JWT_SECRET": benchSecret})
	opts.Logger, opts.AccessLog = hclog.NewNullLogger(), io.Discard
	g, err := New(cfg, opts)
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	b.Cleanup(g.closeLogs)
	return g
}

// newFloorProxy is the floor of bench/e2e: Rewrite + SetURL, a tuned Transport, pooled
// 32 KiB copy buffers.
func newFloorProxy(backendAddr string) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: backendAddr}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		BufferPool: &benchBufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}},
	}
}

type benchBufferPool struct{ p sync.Pool }

func (bp *benchBufferPool) Get() []byte  { return *bp.p.Get().(*[]byte) }
func (bp *benchBufferPool) Put(b []byte) { bp.p.Put(&b) }

// benchServe sends GET path through h once per iteration and fails on any answer other
// than 200 with the backend's body. Before each request the client's headers are put
// back (the pipeline adds X-Request-Id and X-Forwarded-*, as it would to a fresh server
// request) without allocating.
func benchServe(b *testing.B, h http.Handler, path string, hdr http.Header) {
	req, err := http.NewRequest(http.MethodGet, "http://bench.local"+path, nil)
	if err != nil {
		b.Fatal(err)
	}
	// net/http's server gives every request a cancelable context; one that lives as long
	// as the benchmark keeps its allocation out of the loop.
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	req = req.WithContext(ctx)
	req.RequestURI = path
	req.RemoteAddr = "127.0.0.1:40000"
	req.Body = http.NoBody
	w := &benchWriter{h: make(http.Header, 16)}
	serve := func() {
		clear(req.Header)
		for k, v := range hdr {
			req.Header[k] = v
		}
		clear(w.h)
		w.code, w.n = 0, 0
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK || w.n != len(benchBody) {
			b.Fatalf("GET %s: status %d, %d body bytes; want 200 and %d", path, w.code, w.n, len(benchBody))
		}
	}
	serve() // connection open, counters and buckets created
	b.ReportAllocs()
	for b.Loop() {
		serve()
	}
}

// benchRoundTrip is an upstream client alone, one of the service's own transports:
// one RoundTrip and the body read and closed, on a kept-alive connection. With the
// service's *http.Transport it is what every Go proxy pays per request; with its h1Pool,
// what the gateway pays.
func benchRoundTrip(b *testing.B, tr http.RoundTripper, addr string) {

	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/plain", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header = http.Header{"User-Agent": {"wrk"}, "Accept": {"*/*"}}
	var buf [512]byte
	rt := func() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.ReadFull(resp.Body, buf[:])
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n != len(benchBody) {
			b.Fatalf("status %d, %d body bytes", resp.StatusCode, n)
		}
	}
	rt()
	b.ReportAllocs()
	for b.Loop() {
		rt()
	}
}

// benchWriter is the smallest http.ResponseWriter: it keeps the status and counts the
// body.
type benchWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *benchWriter) Header() http.Header { return w.h }

func (w *benchWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *benchWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

// startRawBackend serves HTTP/1.1 on loopback without net/http: for every request head
// ("\r\n\r\n") read on a connection it writes one fixed 200 answer with benchBody. It
// allocates nothing per request, so a benchmark's allocs/op is the proxy's alone. It
// serves bodiless requests only (the benchmarks send GETs), keeps connections alive,
// and stops when the benchmark ends.
func startRawBackend(b testing.TB) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	answer := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s", len(benchBody), benchBody))
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	serve := func(c net.Conn) {
		defer wg.Done()
		defer c.Close()
		buf := make([]byte, 64<<10)
		end := []byte("\r\n\r\n")
		n := 0
		for {
			k, err := c.Read(buf[n:])
			n += k
			start := 0
			for {
				i := bytes.Index(buf[start:n], end)
				if i < 0 {
					break
				}
				start += i + len(end)
				if _, werr := c.Write(answer); werr != nil {
					return
				}
			}
			n = copy(buf, buf[start:n])
			if err != nil || n == len(buf) {
				return
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go serve(c)
		}
	}()
	b.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestRawBackend checks the bench backend answers pipelined and split request heads.
func TestRawBackend(t *testing.T) {
	addr := startRawBackend(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	head := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	// Two requests in one write, then one split across two writes.
	if _, err := io.WriteString(c, head+head+head[:10]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, head[10:]); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i := range 3 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != benchBody {
			t.Fatalf("response %d: status %d body %q err %v", i, resp.StatusCode, body, err)
		}
	}
	if n := br.Buffered(); n != 0 {
		t.Errorf("%d bytes buffered after three answers", n)
	}
}

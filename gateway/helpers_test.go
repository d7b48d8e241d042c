package gateway

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/infinityxone/gateway/gateway/config"
)

// parseConfig parses HCL text for a test; vars are what env() sees.
func parseConfig(t testing.TB, src string, vars map[string]string) *config.Config {
	t.Helper()
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	cfg, ds := config.ParseWithEnv(map[string][]byte{"test.hcl": []byte(src)}, lookup)
	if len(ds) > 0 {
		t.Fatalf("config: %v", ds)
	}
	return cfg
}

// syncBuffer is a goroutine-safe bytes.Buffer for captured logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testGateway struct {
	*Gateway
	URL       string
	Front     *httptest.Server
	AccessLog *syncBuffer
	AppLog    *syncBuffer
}

// upstreamNetHTTP runs the tests' gateways with Options.UpstreamNetHTTP: every
// upstream request through net/http's Transport instead of the gateway's HTTP/1.1 pool.
// `go test ./gateway/ -args -upstream-nethttp` runs the whole suite that way.
var upstreamNetHTTP = flag.Bool("upstream-nethttp", false, "gateways under test send upstream requests through net/http's Transport only")

// startGateway builds a gateway from src and serves its pipeline behind a real
// httptest front server (the listener lifecycle has its own tests).
func startGateway(t testing.TB, src string, vars map[string]string) *testGateway {
	t.Helper()
	return startGatewayWith(t, src, vars, Options{UpstreamNetHTTP: *upstreamNetHTTP})
}

// startGatewayWith is startGateway with opts (its Logger and AccessLog are the test's).
func startGatewayWith(t testing.TB, src string, vars map[string]string, opts Options) *testGateway {
	t.Helper()
	cfg := parseConfig(t, src, vars)
	acc, app := &syncBuffer{}, &syncBuffer{}
	opts.Logger = hclog.New(&hclog.LoggerOptions{Output: app, Level: hclog.Debug})
	opts.AccessLog = acc
	g, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	front := httptest.NewUnstartedServer(g)
	front.Config.MaxHeaderBytes = g.serverMaxHeaderBytes()
	front.Start()
	t.Cleanup(func() {
		front.Close()
		g.closeLogs()
		if t.Failed() {
			t.Logf("app log:\n%s", app.String())
		}
	})
	return &testGateway{Gateway: g, URL: front.URL, Front: front, AccessLog: acc, AppLog: app}
}

// backend is a real upstream for tests.
func backend(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func hostOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkGoroutines fails the test if goroutines started during it are still running
// after cleanup settles.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		deadline := time.Now().Add(5 * time.Second)
		var n int
		for {
			n = runtime.NumGoroutine()
			if n <= before+2 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if n > before+2 {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf)
		}
	})
}

func get(t testing.TB, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return do(t, "GET", url, "", hdr...)
}

func do(t testing.TB, method, url, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequestWithContext(ctx, method, url, rd)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, url, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp, b.String()
}

func mustContain(t testing.TB, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}

var _ = fmt.Sprintf

func netListen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// recorder is a minimal ResponseWriter for handler tests.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(c int)           { r.code = c }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }

func mustRequest(t testing.TB, method, target string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	rcache "github.com/infinityxone/gateway/cache"
	"github.com/infinityxone/gateway/internal/testenv"
)

// cacheConfig is a gateway with route "c" (/c/*) cached by cache "api".
func cacheConfig(upstream, redisAddr, cacheBlock string) string {
	rb := ""
	if redisAddr != "" {
		rb = fmt.Sprintf("redis {\n  address = %q\n}\n", redisAddr)
	}
	return fmt.Sprintf(`
log {
  access_log = false
}
%s
cache "api" {
%s
}
service "s" {
  timeout = "5s"
  instance {
    address = %q
  }
}
route "c" {
  path    = "/c/*"
  service = "s"
  cache   = "api"
}
`, rb, cacheBlock, upstream)
}

// startClockGateway is startGateway with a clock the test moves.
func startClockGateway(t testing.TB, src string, now func() time.Time) *testGateway {
	t.Helper()
	cfg := parseConfig(t, src, nil)
	app := &syncBuffer{}
	g, err := New(cfg, Options{Logger: hclog.New(&hclog.LoggerOptions{Output: app, Level: hclog.Debug}), AccessLog: io.Discard, Now: now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	front := httptest.NewServer(g)
	t.Cleanup(func() {
		front.Close()
		g.closeLogs()
		if t.Failed() {
			t.Logf("app log:\n%s", app.String())
		}
	})
	return &testGateway{Gateway: g, URL: front.URL, Front: front, AppLog: app}
}

// counted is an upstream that counts requests per path.
type counted struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counted) add(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[path]++
}

func (c *counted) get(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[path]
}

// cachingUpstream answers by path:
//
//	/c/fresh      max-age=60
//	/c/lang       max-age=60, Vary: Accept-Language, body = the language
//	/c/private    private   /c/nostore  no-store   /c/cookie  Set-Cookie
//	/c/auth       max-age=60 (the request carries Authorization)
//	/c/big        2 MiB, max-age=60
//	/c/short      max-age=1
func cachingUpstream(t *testing.T, c *counted) *httptest.Server {
	return backend(t, func(w http.ResponseWriter, r *http.Request) {
		c.add(r.URL.Path)
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
		switch r.URL.Path {
		case "/c/lang":
			h.Set("Cache-Control", "max-age=60")
			h.Set("Vary", "Accept-Language")
			fmt.Fprint(w, "lang="+r.Header.Get("Accept-Language"))
			return
		case "/c/private":
			h.Set("Cache-Control", "private, max-age=60")
		case "/c/nostore":
			h.Set("Cache-Control", "no-store")
		case "/c/cookie":
			h.Set("Cache-Control", "max-age=60")
			h.Set("Set-Cookie", "session=1")
		case "/c/big":
			h.Set("Cache-Control", "max-age=60")
			w.Write(bytes.Repeat([]byte("0123456789abcdef"), 128<<10)) // 2 MiB
			return
		case "/c/short":
			h.Set("Cache-Control", "max-age=1")
		default:
			h.Set("Cache-Control", "max-age=60")
			h.Set("Etag", `"e1"`)
			h.Set("Last-Modified", "Mon, 01 Jun 2026 10:00:00 GMT")
		}
		fmt.Fprintf(w, "body of %s", r.URL.Path)
	})
}

func TestCacheTwoReplicasSharedRedis(t *testing.T) {
	srv := testenv.StartRedis(t)
	var c counted
	up := cachingUpstream(t, &c)
	cfg := cacheConfig(hostOf(up), srv.Addr, `  store = "redis"`)
	a := startGateway(t, cfg, nil)
	b := startGateway(t, cfg, nil)

	resp, body := hget(t, a.URL+"/c/fresh")
	if resp.StatusCode != 200 || body != "body of /c/fresh" {
		t.Fatalf("replica A: %d %q", resp.StatusCode, body)
	}
	if cs := resp.Header.Get("Cache-Status"); cs != "gateway; fwd=uri-miss; stored" {
		t.Fatalf("miss Cache-Status = %q", cs)
	}
	resp, body = hget(t, b.URL+"/c/fresh")
	if cs := resp.Header.Get("Cache-Status"); !strings.HasPrefix(cs, "gateway; hit") || body != "body of /c/fresh" {
		t.Fatalf("replica B: Cache-Status %q, body %q", cs, body)
	}
	if n := c.get("/c/fresh"); n != 1 {
		t.Fatalf("upstream saw %d requests, want 1", n)
	}
	if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Fatalf("hit headers: %v", resp.Header)
	}
	age0, _ := strconv.Atoi(resp.Header.Get("Age"))
	eventually(t, 10*time.Second, "Age to grow", func() bool {
		resp, _ := hget(t, b.URL+"/c/fresh")
		age, err := strconv.Atoi(resp.Header.Get("Age"))
		return err == nil && age > age0
	})
	if n := c.get("/c/fresh"); n != 1 {
		t.Fatalf("upstream saw %d requests, want 1", n)
	}

	t.Run("Vary gives one entry per value", func(t *testing.T) {
		for i, gw := range []*testGateway{a, b, a, b} {
			lang := []string{"en", "fr"}[i%2]
			resp, body := hget(t, gw.URL+"/c/lang", "Accept-Language", lang)
			if body != "lang="+lang {
				t.Fatalf("%s: body %q (Cache-Status %q)", lang, body, resp.Header.Get("Cache-Status"))
			}
			if i >= 2 && !strings.HasPrefix(resp.Header.Get("Cache-Status"), "gateway; hit") {
				t.Fatalf("%s second time: Cache-Status %q", lang, resp.Header.Get("Cache-Status"))
			}
		}
		if n := c.get("/c/lang"); n != 2 {
			t.Fatalf("upstream saw %d requests, want one per language", n)
		}
		resp, _ := hget(t, b.URL+"/c/lang", "Accept-Language", "de")
		if cs := resp.Header.Get("Cache-Status"); cs != "gateway; fwd=vary-miss; stored" {
			t.Fatalf("third language: Cache-Status %q", cs)
		}
	})

	t.Run("not stored", func(t *testing.T) {
		for _, tc := range []struct{ path, auth string }{
			{"/c/private", ""}, {"/c/nostore", ""}, {"/c/cookie", ""}, {"/c/auth", "Bearer x"},
		} {
			for i := 0; i < 2; i++ {
				var hdr []string
				if tc.auth != "" {
					hdr = []string{"Authorization", tc.auth}
				}
				resp, _ := hget(t, []*testGateway{a, b}[i].URL+tc.path, hdr...)
				if cs := resp.Header.Get("Cache-Status"); cs != "gateway; fwd=uri-miss" {
					t.Fatalf("%s: Cache-Status %q", tc.path, cs)
				}
			}
			if n := c.get(tc.path); n != 2 {
				t.Fatalf("%s: upstream saw %d requests, want 2 (not stored)", tc.path, n)
			}
		}
	})

	t.Run("request no-cache and no-store", func(t *testing.T) {
		resp, _ := hget(t, a.URL+"/c/fresh", "Cache-Control", "no-cache")
		if cs := resp.Header.Get("Cache-Status"); cs != "gateway; fwd=request; stored" {
			t.Fatalf("no-cache: Cache-Status %q", cs)
		}
		if n := c.get("/c/fresh"); n != 2 {
			t.Fatalf("no-cache did not go upstream (%d)", n)
		}
		resp, _ = hget(t, a.URL+"/c/ns", "Cache-Control", "no-store")
		if cs := resp.Header.Get("Cache-Status"); cs != "gateway; fwd=uri-miss" {
			t.Fatalf("no-store: Cache-Status %q", cs)
		}
		resp, _ = hget(t, b.URL+"/c/ns")
		if cs := resp.Header.Get("Cache-Status"); cs != "gateway; fwd=uri-miss; stored" {
			t.Fatalf("after no-store: Cache-Status %q (the no-store answer was stored)", cs)
		}
	})

	t.Run("HEAD is answered from the GET entry", func(t *testing.T) {
		resp, body := do(t, "HEAD", b.URL+"/c/fresh", "", "Host", "api.test")
		if !strings.HasPrefix(resp.Header.Get("Cache-Status"), "gateway; hit") || body != "" {
			t.Fatalf("HEAD: %q %q", resp.Header.Get("Cache-Status"), body)
		}
	})

	t.Run("over max_object_bytes streams through unstored", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			resp, body := hget(t, a.URL+"/c/big")
			// Its length is unknown when the header goes out, so Cache-Status may say
			// stored; the copy is dropped once the body outgrows max_object_bytes.
			if len(body) != 2<<20 || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "gateway; fwd=uri-miss") {
				t.Fatalf("big: %d bytes, Cache-Status %q", len(body), resp.Header.Get("Cache-Status"))
			}
		}
		if n := c.get("/c/big"); n != 2 {
			t.Fatalf("upstream saw %d requests for the big body, want 2", n)
		}
	})

	t.Run("redis entries expire with their freshness", func(t *testing.T) {
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer rc.Close()
		keys, err := rc.Keys(t.Context(), "gwcache:api:*").Result()
		if err != nil || len(keys) == 0 {
			t.Fatalf("keys %v %v", keys, err)
		}
		for _, k := range keys {
			if ttl := rc.PTTL(t.Context(), k).Val(); ttl <= 0 || ttl > time.Minute {
				t.Fatalf("%s: TTL %v", k, ttl)
			}
		}
	})

	t.Run("redis down: served, never an error", func(t *testing.T) {
		srv.Stop()
		for i := 0; i < 5; i++ {
			resp, body := hget(t, a.URL+"/c/fresh")
			if resp.StatusCode != 200 || body != "body of /c/fresh" {
				t.Fatalf("redis down: %d %q", resp.StatusCode, body)
			}
			if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "fwd=bypass") {
				t.Fatalf("redis down: Cache-Status %q", cs)
			}
		}
		srv.Start()
	})

	t.Run("metrics and admin", func(t *testing.T) {
		resp, err := http.Get("http://" + adminAddr(t, a) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{`gateway_cache_requests_total{cache="api",result="miss"}`, `gateway_cache_requests_total{cache="api",result="bypass"}`} {
			if !strings.Contains(string(m), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		var routes []RouteInfo
		json.Unmarshal(adminGet(t, a, "/admin/routes"), &routes)
		if len(routes) != 1 || routes[0].Cache != "api" || routes[0].Compress {
			t.Fatalf("/admin/routes: %+v", routes)
		}
	})
}

// hget is get with the Host every replica sees behind a load balancer.
func hget(t testing.TB, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return get(t, url, append([]string{"Host", "api.test"}, hdr...)...)
}

// adminAddr serves the gateway's admin handler on a test server.
func adminAddr(t *testing.T, g *testGateway) string {
	s := httptest.NewServer(g.AdminHandler())
	t.Cleanup(s.Close)
	return hostOf(s)
}

func adminGet(t *testing.T, g *testGateway, path string) []byte {
	resp, err := http.Get("http://" + adminAddr(t, g) + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// TestCacheCoalescesMisses: 100 concurrent misses of one key make one upstream request.
func TestCacheCoalescesMisses(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			redisAddr := ""
			if store == "redis" {
				redisAddr = testenv.StartRedis(t).Addr
			}
			var hits atomic.Int64
			release := make(chan struct{})
			up := backend(t, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				select {
				case <-release:
				case <-time.After(30 * time.Second):
				}
				w.Header().Set("Cache-Control", "max-age=60")
				fmt.Fprint(w, "shared answer")
			})
			gw := startGateway(t, cacheConfig(hostOf(up), redisAddr, fmt.Sprintf("  store = %q", store)), nil)
			const n = 100
			var wg sync.WaitGroup
			errs := make(chan string, n)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
			defer client.CloseIdleConnections()
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := client.Get(gw.URL + "/c/hot")
					if err != nil {
						errs <- err.Error()
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(b) != "shared answer" {
						errs <- fmt.Sprintf("%d %q", resp.StatusCode, b)
					}
				}()
			}
			rc := gw.caches["api"]
			eventually(t, 30*time.Second, "every request to wait for the first", func() bool {
				return rc.c.Waiting("GET "+hostOf(gw.Front)+"/c/hot") == n-1
			})
			close(release)
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Fatal(e)
			}
			if h := hits.Load(); h != 1 {
				t.Fatalf("upstream saw %d requests, want 1", h)
			}
		})
	}
}

// TestCacheStaleIfError: with the upstream down, a stale copy within stale_if_error is
// served, saying so in Cache-Status; past it the failure is the answer.
func TestCacheStaleIfError(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var c counted
	up := cachingUpstream(t, &c)
	gw := startClockGateway(t, cacheConfig(hostOf(up), "", `  store = "memory"
  stale_if_error = "1m"`), clock)
	get(t, gw.URL+"/c/short")
	resp, _ := get(t, gw.URL+"/c/short")
	if !strings.HasPrefix(resp.Header.Get("Cache-Status"), "gateway; hit") {
		t.Fatalf("second request: %q", resp.Header.Get("Cache-Status"))
	}
	advance(2 * time.Second)
	resp, _ = get(t, gw.URL+"/c/short")
	if cs := resp.Header.Get("Cache-Status"); cs != "gateway; fwd=stale; stored" {
		t.Fatalf("stale entry refetched: Cache-Status %q", cs)
	}
	advance(2 * time.Second)
	up.Close() // the upstream is down
	resp, body := get(t, gw.URL+"/c/short")
	if resp.StatusCode != 200 || body != "body of /c/short" {
		t.Fatalf("upstream down: %d %q", resp.StatusCode, body)
	}
	if cs := resp.Header.Get("Cache-Status"); !strings.HasPrefix(cs, "gateway; fwd=stale; fwd-status=502; ttl=-") {
		t.Fatalf("stale served: Cache-Status %q", cs)
	}
	if resp.Header.Get("Content-Type") != "text/plain" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("stale headers: %v", resp.Header)
	}
	advance(2 * time.Minute)
	resp, _ = get(t, gw.URL+"/c/short")
	if resp.StatusCode != 502 {
		t.Fatalf("past stale_if_error: %d, want 502", resp.StatusCode)
	}
}

// TestCacheNeverStoresPartial: a client that leaves mid-body and an upstream that
// resets mid-body leave nothing in the cache.
func TestCacheNeverStoresPartial(t *testing.T) {
	var c counted
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		c.add(r.URL.Path)
		w.Header().Set("Cache-Control", "max-age=60")
		switch r.URL.Path {
		case "/c/reset":
			w.Header().Set("Content-Length", strconv.Itoa(4*len(chunk)))
			w.Write(chunk)
			w.(http.Flusher).Flush()
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		case "/c/slow":
			for i := 0; i < 8; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	gw := startGateway(t, cacheConfig(hostOf(up), "", `  store = "memory"`), nil)
	rc := gw.caches["api"]

	// An upstream reset mid-body.
	for i := 0; i < 2; i++ {
		resp, err := http.Get(gw.URL + "/c/reset")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	if n := c.get("/c/reset"); n != 2 {
		t.Fatalf("upstream reset: %d upstream requests, want 2 (nothing stored)", n)
	}

	// A client that reads one chunk and leaves.
	conn, err := net.Dial("tcp", hostOf(gw.Front))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /c/slow HTTP/1.1\r\nHost: %s\r\n\r\n", hostOf(gw.Front))
	buf := make([]byte, 1024)
	if _, err := conn.Read(buf); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
	eventually(t, 10*time.Second, "the abandoned fill to end", func() bool {
		_, n, _ := rc.memory.Stats()
		return c.get("/c/slow") == 1 && rc.c.Waiting("GET "+hostOf(gw.Front)+"/c/slow") == 0 && n == 0
	})
	resp, body := get(t, gw.URL+"/c/slow")
	if len(body) != 8*len(chunk) || resp.Header.Get("Cache-Status") != "gateway; fwd=uri-miss; stored" {
		t.Fatalf("after a client left: %d bytes, Cache-Status %q", len(body), resp.Header.Get("Cache-Status"))
	}
	resp, body = get(t, gw.URL+"/c/slow")
	if len(body) != 8*len(chunk) || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "gateway; hit") {
		t.Fatalf("whole body then hit: %d bytes, Cache-Status %q", len(body), resp.Header.Get("Cache-Status"))
	}
}

// TestCacheWithCompression: the cache keeps the identity body; each client gets it in
// its own encoding, from the cache.
func TestCacheWithCompression(t *testing.T) {
	var c counted
	body := bigJSON(300)
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		c.add(r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(body)
	})
	src := strings.Replace(cacheConfig(hostOf(up), "", `  store = "memory"`), `cache   = "api"`, "cache   = \"api\"\n  compress = true", 1)
	gw := startGateway(t, src, nil)
	for i, enc := range []string{"gzip", "br", "", "zstd"} {
		hdr := []string{}
		if enc != "" {
			hdr = []string{"Accept-Encoding", enc}
		}
		resp, raw := rawGet(t, "GET", gw.URL+"/c/json", hdr...)
		if resp.Header.Get("Content-Encoding") != enc {
			t.Fatalf("%d: Content-Encoding %q, want %q", i, resp.Header.Get("Content-Encoding"), enc)
		}
		if got := decode(t, enc, raw); !bytes.Equal(got, body) {
			t.Fatalf("%d (%s): body differs", i, enc)
		}
		if cs := resp.Header.Get("Cache-Status"); i > 0 && !strings.HasPrefix(cs, "gateway; hit") {
			t.Fatalf("%d (%s): Cache-Status %q", i, enc, cs)
		}
		if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Accept-Encoding") {
			t.Fatalf("%d: Vary %q", i, resp.Header.Values("Vary"))
		}
	}
	if n := c.get("/c/json"); n != 1 {
		t.Fatalf("upstream saw %d requests, want 1", n)
	}
	var routes []RouteInfo
	json.Unmarshal(adminGet(t, gw, "/admin/routes"), &routes)
	if len(routes) != 1 || routes[0].Cache != "api" || !routes[0].Compress {
		t.Fatalf("/admin/routes: %+v", routes)
	}
}

// TestCacheHitSkipsBreaker: hits are answered without an instance, so a dead upstream
// behind a breaker neither fails them nor sees its breaker move.
func TestCacheHitSkipsBreaker(t *testing.T) {
	var c counted
	up := cachingUpstream(t, &c)
	src := strings.Replace(cacheConfig(hostOf(up), "", `  store = "memory"`), `  timeout = "5s"`, `  timeout = "5s"
  circuit_breaker {
    failure_threshold = 1
    open_timeout      = "1h"
  }`, 1)
	gw := startGateway(t, src, nil)
	get(t, gw.URL+"/c/fresh")
	up.Close()
	for i := 0; i < 20; i++ {
		resp, body := get(t, gw.URL+"/c/fresh")
		if resp.StatusCode != 200 || body != "body of /c/fresh" {
			t.Fatalf("hit %d: %d %q", i, resp.StatusCode, body)
		}
	}
	var svcs []ServiceInfo
	json.Unmarshal(adminGet(t, gw, "/admin/services"), &svcs)
	if len(svcs) != 1 || svcs[0].Instances[0].Breaker != "closed" || svcs[0].Instances[0].InFlight != 0 {
		t.Fatalf("/admin/services after hits: %+v", svcs)
	}
}

// TestCacheFillCapacityCapped: the copy of an answer never grows past max_object_bytes,
// even in capacity.
func TestCacheFillCapacityCapped(t *testing.T) {
	rc := &routeCache{c: rcache.New(rcache.Options{Store: rcache.NewMemoryStore(1<<20, nil), MaxObjectBytes: 10000})}
	f := &cacheFill{rc: rc}
	chunk := make([]byte, 3000)
	for i := 0; i < 3; i++ {
		f.keep(chunk)
		if cap(f.buf) > 10000 {
			t.Fatalf("after %d bytes the copy has capacity %d, over the 10000 cap", len(f.buf), cap(f.buf))
		}
	}
	f.keep(chunk[:1000])
	if len(f.buf) != 10000 || cap(f.buf) != 10000 {
		t.Fatalf("len %d cap %d", len(f.buf), cap(f.buf))
	}
}

// TestCacheConditionalHit: a client's conditional request is answered 304 from a fresh
// entry.
func TestCacheConditionalHit(t *testing.T) {
	var c counted
	up := cachingUpstream(t, &c)
	gw := startGateway(t, cacheConfig(hostOf(up), "", `  store = "memory"`), nil)
	get(t, gw.URL+"/c/fresh")
	for _, tc := range []struct {
		hdr  []string
		want int
	}{
		{[]string{"If-None-Match", `"e1"`}, 304},
		{[]string{"If-None-Match", `"x", W/"e1"`}, 304},
		{[]string{"If-None-Match", `*`}, 304},
		{[]string{"If-None-Match", `"e2"`}, 200},
		{[]string{"If-Modified-Since", "Mon, 01 Jun 2026 10:00:00 GMT"}, 304},
		{[]string{"If-Modified-Since", "Sun, 31 May 2026 10:00:00 GMT"}, 200},
		{[]string{"If-None-Match", `"e2"`, "If-Modified-Since", "Mon, 01 Jun 2026 10:00:00 GMT"}, 200},
	} {
		resp, body := get(t, gw.URL+"/c/fresh", tc.hdr...)
		if resp.StatusCode != tc.want || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "gateway; hit") {
			t.Fatalf("%q: %d (Cache-Status %q), want %d", tc.hdr, resp.StatusCode, resp.Header.Get("Cache-Status"), tc.want)
		}
		if tc.want == 304 && (body != "" || resp.Header.Get("Etag") != `"e1"` || resp.Header.Get("Content-Type") != "" || resp.Header.Get("Age") == "") {
			t.Fatalf("%q: 304 with body %q, headers %v", tc.hdr, body, resp.Header)
		}
	}
	if n := c.get("/c/fresh"); n != 1 {
		t.Fatalf("upstream saw %d requests", n)
	}
}
